"""The emitter's per-event path on plain values (``otel.EventFields``): the runner's handles hand
their fields over without building a RunEvent, and ``emit(RunEvent)`` reads the message once.
Both must emit exactly what the RunEvent path emits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vfo_otel import RunEvent, contract, otel
from vfo_otel.emitter import NodeSpec
from vfo_otel.testing import InMemoryTelemetry, in_memory_emitter, run_events

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WORKFLOW = {
    "a": NodeSpec("analyze"),
    "b": NodeSpec("encode", ("a",)),
    "c": NodeSpec("encode", ("b",)),
    "d": NodeSpec("package", ("a", "c")),
}


def _scenario(tel: InMemoryTelemetry) -> None:
    """Every kind of handle event: queued, running, waiting, complete, failed (exception, exit
    code, signal, fail()), skipped (explicit and never run), commands, inputs and outputs."""
    emitter = tel.emitter
    with emitter.run("run-1", command=["vfo", "run", "it's"], action="act", attributes={"k": "v"}) as run:
        with run.pipeline("p\u00e9", WORKFLOW) as pipeline:
            with pipeline.asset("a1") as asset:
                with asset.node("a") as node:
                    node.set_command("ffmpeg -i in.mov out.mp4")
                    node.add_input("/in/x.mov", role="source", size_bytes=0, media_type="video/quicktime")
                    node.wait("lock")
                    node.resume()
                    node.set_exit_code(3)
                with asset.node("a") as node:
                    node.set_command(["ffmpeg", "-i", "in.mov", "out.mp4"])
                    node.set_exit_code(0)
                    node.add_output("/out/x.mp4", role="proxy", size_bytes=2**64 - 1)
                try:
                    with asset.node("b"):
                        raise RuntimeError("boom")
                except RuntimeError:
                    pass
                with asset.node("x", stage="extra", after=["a"]) as node:
                    node.set_exit_code(-9)
                with asset.node("c") as node:
                    node.skip("not needed")
            with pipeline.asset("a2") as asset:
                with asset.node("a") as node:
                    node.set_command(action="only-an-action")
                    node.fail("MyError", "detail")
            with pipeline.asset("a3"):
                pass


def _normalized_signals(tel: InMemoryTelemetry) -> list[str]:
    """The OTLP log records and spans (text format), without clocks and random event ids."""
    ids: dict[str, str] = {}

    def scrub(attributes: Any) -> None:
        for kv in attributes:
            if kv.key == "vfo.event.id":
                kv.value.string_value = ids.setdefault(kv.value.string_value, f"id-{len(ids)}")
            elif kv.key == "vfo.duration_ns":
                kv.value.int_value = 0

    out = []
    for record in tel.otlp_log_records():
        record.time_unix_nano = record.observed_time_unix_nano = 0
        scrub(record.attributes)
        out.append(text_format.MessageToString(record, as_one_line=True))
    for span in tel.otlp_spans():
        span.start_time_unix_nano = span.end_time_unix_nano = 0
        scrub(span.attributes)
        for event in span.events:
            event.time_unix_nano = 0
            scrub(event.attributes)
        out.append(text_format.MessageToString(span, as_one_line=True))
    return out


def _metric_counts(tel: InMemoryTelemetry) -> list[tuple[str, list[tuple[str, Any]], Any]]:
    points = []
    for name, labels, point in tel.metric_points():
        value = getattr(point, "value", None)
        points.append((name, sorted(labels.items()), point.count if value is None else value))
    return sorted(points, key=repr)


def test_handle_events_emit_the_same_signals_as_through_emit() -> None:
    fast = in_memory_emitter(source_id="src", heartbeat_interval_s=None)
    slow = in_memory_emitter(source_id="src", heartbeat_interval_s=None)
    seen: list[RunEvent] = []
    emit = slow.emitter.emit

    def passthrough(event: RunEvent) -> RunEvent:  # an override: handles build a RunEvent for it
        seen.append(event)
        return emit(event)

    slow.emitter.emit = passthrough  # type: ignore[method-assign]
    try:
        _scenario(fast)
        _scenario(slow)
        assert len(seen) == fast.emitter.stats.events == slow.emitter.stats.events == 44
        assert _normalized_signals(fast) == _normalized_signals(slow)
        assert _metric_counts(fast) == _metric_counts(slow)
        assert fast.emitter.stats.failures == slow.emitter.stats.failures == {}
    finally:
        fast.close()
        slow.close()


def test_the_override_sees_each_handle_event_as_the_handle_builds_it() -> None:
    tel = in_memory_emitter(heartbeat_interval_s=None)
    seen: list[RunEvent] = []
    emit = tel.emitter.emit
    tel.emitter.emit = lambda event: (seen.append(event), emit(event))[1]  # type: ignore[method-assign]
    try:
        run = tel.emitter.run("r")
        node = run.pipeline("p").asset("a").node("n", stage="s")
        with node:
            node.set_command(["echo", "hi"])
        running, complete = seen
        ids = dict(run_id="r", pipeline_id="p", asset_id="a", node_id="n", stage_id="s", attempt_id=1)
        assert running == RunEvent(scope=4, state=2, **ids)  # the emitter fills in ids, time, source
        assert (complete.state, complete.command.command_line, list(complete.command.argv)) == (
            4,
            "echo hi",
            ["echo", "hi"],
        )
        assert complete.HasField("duration") and not complete.event_id
    finally:
        tel.close()


@PROPERTY
@given(run_events())
def test_plain_fields_of_a_run_event_build_the_same_run_event(event: RunEvent) -> None:
    fields = otel.EventFields.of(event)
    assert fields.message() == event
    assert fields.key() == contract.entity_key(event)


def test_emit_refuses_what_is_not_a_run_event(telemetry: InMemoryTelemetry) -> None:
    assert telemetry.emitter.emit(None) == RunEvent()  # type: ignore[arg-type]
    assert telemetry.emitter.stats.failures == {"TypeError": 1}


def test_the_sdk_gets_plain_str_attribute_keys(telemetry: InMemoryTelemetry) -> None:
    """Every attribute key handed to the SDK is an exact ``str`` (not a ``Key`` member, a str
    subclass): CPython keeps such dicts in its compact str-only form, 16 B an entry instead of
    24, and the SDK's own attribute dicts take the form of ours."""
    _scenario(telemetry)
    keys = [k for r in telemetry.logs.get_finished_logs() for k in (r.log_record.attributes or {})]
    for span in telemetry.spans.get_finished_spans():
        keys += list(span.attributes or {})
        keys += [k for event in span.events for k in (event.attributes or {})]
    keys += [k for _name, labels, _point in telemetry.metric_points() for k in labels]
    assert keys and {type(k) for k in keys} == {str}


def _node_scenario(emitter: Any, **node: Any) -> Any:
    with emitter.run("r") as run, run.pipeline("p") as pipeline, pipeline.asset("x") as asset:
        exit_code = node.pop("exit_code", None)
        with asset.node("n", stage="s", **node) as handle:
            if exit_code is not None:
                handle.set_exit_code(exit_code)


@pytest.mark.parametrize(
    ("scenario", "events", "failures"),
    [
        (lambda em: em.run(5).__exit__(None, None, None), 0, {"TypeError": 1}),  # an int run id
        (lambda em: em.run("r", attributes={"k": 5}).__exit__(None, None, None), 0, {"TypeError": 1}),
        (lambda em: _node_scenario(em, attempt=2**33), 6, {"ValueError": 2}),  # beyond uint32
        # the node's terminal event is refused, so the node never ends: its asset, pipeline and run
        # wait for it (a parent never ends before its children) until shutdown ends it Abandoned
        (lambda em: _node_scenario(em, exit_code=2**40), 4, {"ValueError": 1}),  # beyond int32
        (lambda em: _node_scenario(em, exit_code=True), 4, {"TypeError": 1}),
    ],
    ids=["run-id-int", "attribute-int", "attempt-beyond-uint32", "exit-code-beyond-int32", "exit-code-bool"],
)
def test_handle_values_a_run_event_refuses_fail_their_events(
    scenario: Callable[[Any], None], events: int, failures: dict[str, int]
) -> None:
    """A handle's events carry plain values, checked as RunEvent's fields check them: a value a
    RunEvent refuses fails each event that carries it (counted, never raised, nothing emitted)."""
    tel = in_memory_emitter(heartbeat_interval_s=None)
    try:
        scenario(tel.emitter)
        assert tel.emitter.stats.failures == failures
        assert tel.emitter.stats.events == len(tel.otlp_log_records()) == events
    finally:
        tel.close()


def test_lone_surrogates_in_workflow_ids_become_replacement_characters(telemetry: InMemoryTelemetry) -> None:
    workflow = {"a\ud800": NodeSpec("s\udc00"), "b": NodeSpec("s", ("a\ud800",))}
    with telemetry.emitter.run("r") as run, run.pipeline("p", workflow) as pipeline:
        with pipeline.asset("x") as asset, asset.node("b", after=["u\ud800"]):
            pass
    assert telemetry.emitter.stats.failures == {}
    records = telemetry.otlp_log_records()  # encodes: every string is valid UTF-8
    events = [otel.events_from_log_record(r) for r in records]
    assert {(e.node_id, e.stage_id) for e in events if e.node_id} == {("a\ufffd", "s\ufffd"), ("b", "s")}
    upstream = {tuple(e.upstream_node_ids) for e in events if e.node_id == "b" and e.upstream_node_ids}
    assert upstream == {("a\ufffd",), ("u\ufffd",)}  # queued (workflow), running (after=)
    skipped = [e for e in events if e.node_id == "a\ufffd" and e.state == 6]
    assert skipped and skipped[0].attributes["skip_reason"] == "not run"


def _points(t: InMemoryTelemetry) -> list[tuple[str, list[tuple[str, Any]], Any]]:
    """Metric points as comparable values: (name, sorted labels, value or (count, sum))."""
    out = []
    for name, labels, point in t.metric_points():
        value = (point.count, point.sum) if hasattr(point, "count") else point.value
        out.append((name, sorted(labels.items()), value))
    return sorted(out, key=repr)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(run_events(), min_size=1, max_size=40), limit=st.sampled_from([3, 8, 2000]))
def test_cached_metric_labels_record_what_the_mapping_says(events: list[RunEvent], limit: int) -> None:
    """The emitter's per-entity cache of admitted metric labels (Emitter._emit_metrics) records
    exactly what otel.metric_updates through the cardinality cap records, overflow included."""
    cached, reference = in_memory_emitter(cardinality_limit=limit), in_memory_emitter(cardinality_limit=limit)
    reference.emitter._shared_labels = lambda parts: parts  # type: ignore[method-assign]  # no cache
    try:
        for e in events:
            cached.emitter.emit(e)
            reference.emitter.emit(e)
        assert _points(cached) == _points(reference)
        assert cached.emitter.stats.overflowed == reference.emitter.stats.overflowed
        assert cached.emitter.stats.events == reference.emitter.stats.events
    finally:
        cached.close()
        reference.close()
