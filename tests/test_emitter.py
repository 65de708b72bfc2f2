"""The emitter and the runner handles, against the SDK's in-memory exporters."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from vfo_otel import Emitter, RunEvent, contract, otel
from vfo_otel.contract import conventions as c
from vfo_otel.contract.conventions import Key
from vfo_otel.testing import InMemoryTelemetry, in_memory_emitter

from .conftest import WORKFLOW

T0_NS = 1_764_400_000_000_000_000
QUEUED, RUNNING, WAITING, COMPLETE, FAILED, SKIPPED = 1, 2, 3, 4, 5, 6


class Boom(Exception):
    """A runner's own exception type."""


def logged_events(t: InMemoryTelemetry) -> list[RunEvent]:
    return [otel.events_from_log_record(r) for r in t.otlp_log_records()]


def spans_by_name(t: InMemoryTelemetry) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for span in t.spans.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def node_event(state: int, **fields: Any) -> RunEvent:
    ids: dict[str, Any] = {
        "run_id": "run-1",
        "pipeline_id": "video",
        "asset_id": "clip-1",
        "node_id": "encode",
        "stage_id": "encode",
        "attempt_id": 1,
    }
    ids.update(fields)
    event = RunEvent(scope=4, state=state, **ids)
    event.time.FromNanoseconds(T0_NS)
    return event


# ---------------------------------------------------------------------------
# The MUST-SHOW scenario
# ---------------------------------------------------------------------------


def test_reference_pipeline_with_one_retry(
    telemetry: InMemoryTelemetry, reference_scenario: Callable[..., None]
) -> None:
    reference_scenario(telemetry.emitter)
    spans = telemetry.spans.get_finished_spans()
    logs = telemetry.logs.get_finished_logs()

    # Exactly one trace, derived from the run id.
    assert {s.context.trace_id for s in spans} == {contract.trace_id_for_run("run-1")}
    by_name = spans_by_name(telemetry)
    assert {name: len(v) for name, v in by_name.items()} == {
        "vfo.run": 1,
        "vfo.pipeline video": 1,
        "vfo.asset": 2,
        "vfo.node a": 2,
        "vfo.node b": 3,
        "vfo.node c": 2,
    }
    assert sum(1 for s in spans if s.name.startswith("vfo.node ")) == 7

    # One log record per event: run 2 + pipeline 2 + assets 2x2 + queued 3x2 + 7 attempts x 2 = 28.
    assert telemetry.emitter.stats.events == len(logs) == 28
    assert telemetry.emitter.stats.failures == {}

    # Parent chain: node attempt -> asset -> pipeline -> run.
    by_id = {s.context.span_id: s for s in spans}
    for span in spans:
        depth, cur = 0, span
        while cur.parent is not None:
            cur, depth = by_id[cur.parent.span_id], depth + 1
        assert cur.name == "vfo.run"
        assert depth == {"vfo.run": 0, "vfo.pipeline video": 1, "vfo.asset": 2}.get(span.name, 3)

    # The failed first attempt of b is an ERROR span; the retry (attempt 2) succeeded.
    b_spans = sorted(
        by_name["vfo.node b"], key=lambda s: (s.attributes[Key.ASSET_ID], s.attributes[Key.ATTEMPT_ID])
    )
    assert [
        (s.attributes[Key.ASSET_ID], s.attributes[Key.ATTEMPT_ID], s.status.status_code.name) for s in b_spans
    ] == [("clip-1", 1, "ERROR"), ("clip-1", 2, "UNSET"), ("clip-2", 1, "UNSET")]
    assert b_spans[0].attributes[Key.ERROR_TYPE] == "RuntimeError"
    assert b_spans[0].status.description == "transient"
    assert all(s.status.status_code.name == "UNSET" for s in spans if s.name != "vfo.node b")
    # Every transition is one span event on its entity's span.
    assert sum(len(s.events) for s in spans) == 28
    assert all(e.name == c.SPAN_EVENT_NAME for s in spans for e in s.events)

    # Metric series: labels only from the allow-list; counts add up.
    points = telemetry.metric_points()
    assert points
    for _name, labels, _point in points:
        assert set(labels) <= c.METRIC_LABELS
    transitions = sum(p.value for name, _labels, p in points if name == "vfo.transitions")
    assert transitions == 28
    errors = [(labels, p.value) for name, labels, p in points if name == "vfo.errors"]
    assert errors == [
        (
            {
                Key.SCOPE: "node",
                Key.PIPELINE_ID: "video",
                Key.STAGE_ID: "encode",
                Key.ERROR_TYPE: "RuntimeError",
            },
            1,
        )
    ]
    active = [p.value for name, _labels, p in points if name == "vfo.nodes.active"]
    assert active and all(v == 0 for v in active)

    # The run, pipeline and both assets completed (the retry repaired the asset).
    final = {(e.scope, e.asset_id): e.state for e in logged_events(telemetry) if e.scope in (1, 2, 3)}
    assert set(final.values()) == {COMPLETE}


def test_events_are_ordered_per_source(
    telemetry: InMemoryTelemetry, reference_scenario: Callable[..., None]
) -> None:
    reference_scenario(telemetry.emitter)
    events = logged_events(telemetry)
    assert {e.source_id for e in events} == {telemetry.emitter.source_id}
    assert [e.sequence for e in events] == list(range(1, 29))
    assert len({e.event_id for e in events}) == 28


# ---------------------------------------------------------------------------
# Failures, exit codes, signals
# ---------------------------------------------------------------------------


def test_exception_in_node_fails_it_and_reraises(telemetry: InMemoryTelemetry) -> None:
    with telemetry.emitter.run("r") as run, run.pipeline("p", WORKFLOW) as p, p.asset("x") as asset:
        with pytest.raises(Boom, match="disk full"), asset.node("a"):
            raise Boom("disk full")
        with pytest.raises(ValueError), asset.node("b"):
            raise ValueError("bad value")
    events = logged_events(telemetry)
    failed = {e.node_id: e for e in events if e.scope == 4 and e.state == FAILED}
    assert failed["a"].error.error_class == f"{Boom.__module__}.Boom"
    assert failed["a"].error.detail == "disk full"
    assert failed["b"].error.error_class == "ValueError"
    assert failed["a"].previous_state == RUNNING and failed["a"].HasField("duration")
    # Failure propagates upward as NodeFailed / AssetFailed / PipelineFailed.
    ends = {e.scope: e for e in events if e.scope in (1, 2, 3) and e.state in c.TERMINAL_STATES}
    assert {s: e.error.error_class for s, e in ends.items()} == {
        3: "NodeFailed",
        2: "AssetFailed",
        1: "PipelineFailed",
    }
    assert ends[3].error.detail == "failed nodes: a, b"
    # c never ran: skipped at asset end.
    assert any(e.node_id == "c" and e.state == SKIPPED for e in events)


def test_interrupt_is_cancelled(telemetry: InMemoryTelemetry) -> None:
    with pytest.raises(KeyboardInterrupt), telemetry.emitter.run("r"):
        raise KeyboardInterrupt
    (end,) = [e for e in logged_events(telemetry) if e.state == FAILED]
    assert end.error.error_class == "Cancelled"


def test_subprocess_exit_code_is_recorded(telemetry: InMemoryTelemetry) -> None:
    with telemetry.emitter.run("r") as run, run.pipeline("p", WORKFLOW) as p, p.asset("x") as asset:
        with asset.node("a") as node:
            proc = node.run(["sh", "-c", "exit 3"])
        assert proc.returncode == 3
    (end,) = [e for e in logged_events(telemetry) if e.node_id == "a" and e.state in c.TERMINAL_STATES]
    assert end.state == FAILED
    assert end.exit_code == 3
    assert (end.error.error_class, end.error.detail) == ("ExitCode", "exited with status 3")
    assert list(end.command.argv) == ["sh", "-c", "exit 3"]
    assert end.command.command_line == "sh -c 'exit 3'"
    (span,) = spans_by_name(telemetry)["vfo.node a"]
    assert span.attributes[Key.EXIT_CODE] == 3
    assert span.attributes[Key.ERROR_TYPE] == "ExitCode"
    assert span.attributes[Key.COMMAND_LINE] == "sh -c 'exit 3'"
    assert span.attributes[Key.COMMAND_ARGS] == ("sh", "-c", "exit 3")
    assert span.status.status_code.name == "ERROR"


def test_subprocess_killed_by_signal(telemetry: InMemoryTelemetry) -> None:
    with telemetry.emitter.run("r") as run, run.pipeline("p", WORKFLOW) as p, p.asset("x") as asset:
        with asset.node("a") as node:
            node.run(["sh", "-c", "kill -KILL $$"])
    (end,) = [e for e in logged_events(telemetry) if e.node_id == "a" and e.state in c.TERMINAL_STATES]
    assert end.state == FAILED and end.exit_code == -9
    assert (end.error.error_class, end.error.detail) == ("Signal", "killed by SIGKILL")


def test_zero_exit_code_completes(telemetry: InMemoryTelemetry) -> None:
    with telemetry.emitter.run("r") as run, run.pipeline("p", WORKFLOW) as p, p.asset("x") as asset:
        with asset.node("a") as node:
            node.run(["true"])
    (end,) = [e for e in logged_events(telemetry) if e.node_id == "a" and e.state in c.TERMINAL_STATES]
    assert end.state == COMPLETE and end.HasField("exit_code") and end.exit_code == 0


# ---------------------------------------------------------------------------
# Workflow: queued, upstream, skipped, waiting
# ---------------------------------------------------------------------------


def test_workflow_declaration_queues_nodes_with_upstream(telemetry: InMemoryTelemetry) -> None:
    with telemetry.emitter.run("r") as run, run.pipeline("p", WORKFLOW) as p, p.asset("x"):
        pass
    events = logged_events(telemetry)
    queued = {e.node_id: e for e in events if e.scope == 4 and e.state == QUEUED}
    assert {n: list(e.upstream_node_ids) for n, e in queued.items()} == {"a": [], "b": ["a"], "c": ["a"]}
    assert {n: (e.stage_id, e.attempt_id) for n, e in queued.items()} == {
        "a": ("analyze", 1),
        "b": ("encode", 1),
        "c": ("package", 1),
    }


def test_nodes_never_run_are_skipped_at_asset_end(telemetry: InMemoryTelemetry) -> None:
    with telemetry.emitter.run("r") as run, run.pipeline("p", WORKFLOW) as p, p.asset("x") as asset:
        with asset.node("a"):
            pass
    events = logged_events(telemetry)
    skipped = [e for e in events if e.state == SKIPPED]
    assert sorted(e.node_id for e in skipped) == ["b", "c"]
    assert all(e.previous_state == QUEUED and e.attributes["skip_reason"] == "not run" for e in skipped)
    # Skips are emitted before the asset's own end, which completes.
    asset_end = next(i for i, e in enumerate(events) if e.scope == 3 and e.state == COMPLETE)
    assert all(events.index(e) < asset_end for e in skipped)
    # Their spans (opened by `queued`) ended: warn-level log records, unset span status.
    assert sorted(s.name for s in telemetry.spans.get_finished_spans() if s.name.startswith("vfo.node")) == [
        "vfo.node a",
        "vfo.node b",
        "vfo.node c",
    ]
    severities = {
        r.log_record.attributes[Key.NODE_ID]: r.log_record.severity_text
        for r in telemetry.logs.get_finished_logs()
        if r.log_record.attributes.get(Key.STATE) == "skipped"
    }
    assert severities == {"b": "WARN", "c": "WARN"}


def test_explicit_skip_and_wait(telemetry: InMemoryTelemetry) -> None:
    with telemetry.emitter.run("r") as run, run.pipeline("p", WORKFLOW) as p, p.asset("x") as asset:
        with asset.node("a") as node:
            node.wait("license")
            node.resume()
        with asset.node("b") as node:
            node.skip("cached")
    states = [
        (e.node_id, e.state, e.previous_state)
        for e in logged_events(telemetry)
        if e.node_id in ("a", "b") and e.state != QUEUED
    ]
    assert states == [
        ("a", RUNNING, QUEUED),
        ("a", WAITING, RUNNING),
        ("a", RUNNING, WAITING),
        ("a", COMPLETE, RUNNING),
        ("b", RUNNING, QUEUED),
        ("b", SKIPPED, RUNNING),
    ]
    points = telemetry.metric_points()
    assert all(p.value == 0 for name, _l, p in points if name == "vfo.nodes.active")


def test_unknown_upstream_node_is_refused(telemetry: InMemoryTelemetry) -> None:
    from vfo_otel import NodeSpec

    with telemetry.emitter.run("r") as run, pytest.raises(ValueError, match="unknown nodes"):
        run.pipeline("p", {"b": NodeSpec("encode", ("a",))})


# ---------------------------------------------------------------------------
# Spans after the fact, determinism
# ---------------------------------------------------------------------------


def test_terminal_event_alone_gives_span_with_real_start(telemetry: InMemoryTelemetry) -> None:
    event = node_event(COMPLETE)
    event.duration.FromNanoseconds(90 * 10**9)
    telemetry.emitter.emit(event)
    (span,) = telemetry.spans.get_finished_spans()
    assert span.end_time == T0_NS
    assert span.start_time == T0_NS - 90 * 10**9
    assert span.context.span_id == contract.span_id_for(contract.entity_key(event))
    assert span.parent is not None
    assert span.parent.span_id == contract.span_id_for(("run-1", "video", "clip-1"))


def test_start_and_end_from_separate_events_share_one_span(telemetry: InMemoryTelemetry) -> None:
    telemetry.emitter.emit(node_event(RUNNING))
    assert telemetry.spans.get_finished_spans() == ()  # running: visible only through logs
    assert len(telemetry.logs.get_finished_logs()) == 1
    end = node_event(COMPLETE)
    end.time.FromNanoseconds(T0_NS + 5 * 10**9)
    emitted = telemetry.emitter.emit(end)
    assert emitted.previous_state == RUNNING  # filled in from what the emitter saw
    (span,) = telemetry.spans.get_finished_spans()
    assert (span.start_time, span.end_time) == (T0_NS, T0_NS + 5 * 10**9)
    assert [e.attributes[Key.STATE] for e in span.events] == ["running", "complete"]


def test_span_ids_are_deterministic_across_emitters(reference_scenario: Callable[..., None]) -> None:
    def ids() -> set[tuple[str, int, int, int | None]]:
        t = in_memory_emitter()
        try:
            reference_scenario(t.emitter)
            return {
                (s.name, s.context.trace_id, s.context.span_id, s.parent.span_id if s.parent else None)
                for s in t.spans.get_finished_spans()
            }
        finally:
            t.close()

    first, second = ids(), ids()
    assert first == second
    assert len({span_id for _n, _t, span_id, _p in first}) == 11


# ---------------------------------------------------------------------------
# Metrics: cardinality cap
# ---------------------------------------------------------------------------


def test_cardinality_cap_folds_into_overflow_series() -> None:
    t = in_memory_emitter(cardinality_limit=5)
    try:
        for i in range(50):
            event = RunEvent(scope=2, state=RUNNING, run_id="r", pipeline_id=f"pipe-{i}")
            t.emitter.emit(event)
        series = [(labels, p.value) for name, labels, p in t.metric_points() if name == "vfo.transitions"]
        assert len(series) <= 5
        overflow = [(labels, v) for labels, v in series if labels.get(Key.METRIC_OVERFLOW) is True]
        assert len(overflow) == 1
        assert overflow[0][0] == {Key.METRIC_OVERFLOW: True}
        assert t.emitter.stats.overflowed["vfo.transitions"] == 50 - 4 == overflow[0][1]
        assert sum(v for _labels, v in series) == 50  # nothing lost, only folded
    finally:
        t.close()


def test_cardinality_limit_must_leave_room_for_overflow() -> None:
    with pytest.raises(ValueError, match="cardinality_limit"):
        in_memory_emitter(cardinality_limit=1)


# ---------------------------------------------------------------------------
# The emit path never raises
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (RunEvent(scope=0, state=RUNNING, run_id="r"), "ValueError"),
        (RunEvent(scope=1, state=0, run_id="r"), "ValueError"),
        (RunEvent(scope=1, state=RUNNING), "ValueError"),
        (RunEvent(scope=1, state=RUNNING, run_id="r", source_id="s", sequence=2**63), "ValueError"),
        (RunEvent(scope=3, state=RUNNING, run_id="r", pipeline_id="p"), "ValueError"),
        (
            RunEvent(scope=4, state=RUNNING, run_id="r", pipeline_id="p", asset_id="a", node_id="n"),
            "ValueError",
        ),
    ],
    ids=[
        "scope-unspecified",
        "state-unspecified",
        "no-run-id",
        "sequence-beyond-int64",
        "asset-without-id",
        "node-attempt-0",
    ],
)
def test_invalid_event_is_counted_not_raised(
    telemetry: InMemoryTelemetry, event: RunEvent, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="vfo_otel"):
        result = telemetry.emitter.emit(event)
        telemetry.emitter.emit(event)
    assert result == RunEvent()
    assert telemetry.emitter.stats.failures == {kind: 2}
    assert telemetry.emitter.stats.events == 0
    assert telemetry.logs.get_finished_logs() == ()
    assert sum("emitter failure" in r.getMessage() for r in caplog.records) == 1  # logged once per kind


def test_duration_longer_than_epoch_time_clamps_span_start(telemetry: InMemoryTelemetry) -> None:
    event = RunEvent(scope=1, state=COMPLETE, run_id="r")
    event.time.FromNanoseconds(10**9)
    event.duration.FromNanoseconds(3600 * 10**9)
    telemetry.emitter.emit(event)
    (span,) = telemetry.otlp_spans()  # encodes: no negative start time
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (0, 10**9)


def test_emit_fills_in_missing_fields(telemetry: InMemoryTelemetry) -> None:
    source = RunEvent(scope=1, state=RUNNING, run_id="r")
    out = telemetry.emitter.emit(source)
    assert source.event_id == "" and not source.HasField("time")  # caller's message untouched
    assert out.event_id and out.time.ToNanoseconds() > 0
    assert (out.source_id, out.sequence) == (telemetry.emitter.source_id, 1)
    assert telemetry.emitter.emit(source).sequence == 2


def test_flush_and_shutdown_are_safe(telemetry: InMemoryTelemetry) -> None:
    assert telemetry.emitter.force_flush(1000) is True
    telemetry.emitter.shutdown()
    telemetry.emitter.shutdown()


# ---------------------------------------------------------------------------
# Resource: service identity only
# ---------------------------------------------------------------------------


def test_vfo_resource_attribute_is_refused() -> None:
    with pytest.raises(ValueError, match=r"vfo\.run\.id"):
        Emitter(resource_attributes={"vfo.run.id": "x"})


def test_vfo_keys_from_environment_are_dropped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "vfo.run.id=x,deployment.environment.name=ci")
    with caplog.at_level(logging.WARNING, logger="vfo_otel"):
        t = in_memory_emitter()
    try:
        assert "vfo.run.id" not in t.emitter.resource.attributes
        assert t.emitter.resource.attributes["deployment.environment.name"] == "ci"
        assert any("vfo.run.id" in r.getMessage() for r in caplog.records)
        t.emitter.emit(RunEvent(scope=1, state=COMPLETE, run_id="r"))
        (span,) = t.spans.get_finished_spans()
        (log,) = t.logs.get_finished_logs()
        for resource in (span.resource, log.resource):
            assert "vfo.run.id" not in resource.attributes
            assert resource.attributes["service.name"] == "vfo-test"
    finally:
        t.close()


def test_no_entity_id_path_or_command_in_labels_or_resource() -> None:
    secrets = {
        "RUNID-123",
        "/tmp/secret/path.mov",
        "ffmpeg -i /tmp/secret/path.mov out.mp4",
        "CLIP-SECRET",
        "NODE-SECRET",
        "boom detail",
    }
    t = in_memory_emitter()
    try:
        workflow = {"NODE-SECRET": WORKFLOW["a"]}
        with (
            t.emitter.run("RUNID-123", command="ffmpeg -i /tmp/secret/path.mov out.mp4") as run,
            run.pipeline("video", workflow) as p,
            p.asset("CLIP-SECRET") as asset,
        ):
            with pytest.raises(RuntimeError), asset.node("NODE-SECRET") as node:
                node.set_command("ffmpeg -i /tmp/secret/path.mov out.mp4")
                node.add_input("/tmp/secret/path.mov")
                raise RuntimeError("boom detail")
        # The ids really were emitted (so the scan below could have found them)...
        assert any(s.attributes.get(Key.RUN_ID) == "RUNID-123" for s in t.spans.get_finished_spans())
        # ...but never as a metric label value or a resource attribute.
        data = t.metrics.get_metrics_data()
        assert data is not None
        label_values: list[Any] = []
        resources = [rm.resource for rm in data.resource_metrics]
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        assert set(point.attributes or {}) <= c.METRIC_LABELS
                        label_values += list((point.attributes or {}).values())
        assert label_values
        resources += [s.resource for s in t.spans.get_finished_spans()]
        resources += [r.resource for r in t.logs.get_finished_logs()]
        resource_values = [v for r in resources for v in r.attributes.values()]
        resource_keys = {k for r in resources for k in r.attributes}
        for secret in secrets:
            assert not any(secret in str(v) for v in label_values), secret
            assert not any(secret in str(v) for v in resource_values), secret
        assert not any(k.startswith("vfo.") for k in resource_keys)
        assert Counter(type(v) for v in label_values)[str] == len(label_values)
    finally:
        t.close()


def test_many_extra_attributes_never_evict_canonical_keys(telemetry: InMemoryTelemetry) -> None:
    event = RunEvent(scope=1, state=COMPLETE, run_id="r", attributes={f"k{i:03d}": "v" for i in range(300)})
    emitted = telemetry.emitter.emit(event)
    assert len(emitted.attributes) == 64
    assert emitted.attributes["attributes_original_count"] == "300"
    assert "k000" in emitted.attributes and "k299" not in emitted.attributes
    (record,) = telemetry.otlp_log_records()
    assert otel.events_from_log_record(record) == otel.normalize(emitted)
    (span,) = telemetry.otlp_spans()
    assert otel.events_from_span(span) == ([otel.normalize(emitted)], [])


def test_heartbeat_is_a_log_record_of_each_running_node_and_no_transition() -> None:
    tel = in_memory_emitter(heartbeat_interval_s=None)  # no thread: call heartbeat() directly
    emitter = tel.emitter
    run = emitter.run("hb-run")
    asset = run.pipeline("p").asset("a")
    with asset.node("long", stage="encode"):
        before = len(tel.logs.get_finished_logs())
        assert emitter.heartbeat() == 1
        records = tel.logs.get_finished_logs()[before:]
    assert len(records) == 1
    rec = records[0].log_record
    assert rec.event_name == "vfo.node.heartbeat"
    assert rec.attributes["vfo.heartbeat"] is True and rec.attributes["vfo.state"] == "running"
    assert rec.attributes["vfo.stage.id"] == "encode"
    assert emitter.heartbeat() == 0  # nothing running any more
    assert emitter.stats.heartbeats == 1
    node_span = next(s for s in tel.spans.get_finished_spans() if s.name == "vfo.node long")
    assert len(node_span.events) == 2  # running, complete: the heartbeat added no span event
    running = [
        p
        for name, labels, p in tel.metric_points()
        if name == "vfo.transitions"
        and labels.get("vfo.state") == "running"
        and labels.get("vfo.scope") == "node"
    ]
    assert running[0].value == 1  # the heartbeat counted no transition


def test_an_event_after_the_span_ended_opens_no_second_span() -> None:
    tel = in_memory_emitter()
    emitter = tel.emitter
    base = dict(scope=4, run_id="r", pipeline_id="p", asset_id="a", node_id="n", stage_id="s", attempt_id=1)
    emitter.emit(RunEvent(state=2, **base))
    emitter.emit(RunEvent(state=4, **base))
    emitter.emit(RunEvent(state=2, **base))  # late duplicate-ish running after complete
    assert len(tel.spans.get_finished_spans()) == 1
    assert emitter.stats.late_events == 1
    assert len(tel.logs.get_finished_logs()) == 3  # still logged: the receiver's fold decides
