"""Pure unit and property tests of the reference mapping (vfo_otel.otel) and the receiver's one-pass
decoder against it (fixed ids and timestamps)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from vfo_otel import contract, otel, receiver
from vfo_otel._gen.vfo.events.v1.events_pb2 import Origin
from vfo_otel.contract import AssetRef, Command, Error, Limits, RunEvent, check_event
from vfo_otel.contract import conventions as c
from vfo_otel.contract.conventions import Key
from vfo_otel.receiver import record_of
from vfo_otel.testing import in_memory_emitter, run_events

T0_NS = 1_764_400_000_123_456_789  # a fixed event time (2025-11-29)
SCOPE_RUN, SCOPE_PIPELINE, SCOPE_ASSET, SCOPE_NODE = 1, 2, 3, 4
QUEUED, RUNNING, WAITING, COMPLETE, FAILED, SKIPPED = 1, 2, 3, 4, 5, 6

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make(scope: int = SCOPE_NODE, state: int = RUNNING, **fields: Any) -> RunEvent:
    """An event with fixed ids and time; only the ids its scope needs."""
    ids: dict[str, Any] = {"run_id": "run-1"}
    if scope >= SCOPE_PIPELINE:
        ids["pipeline_id"] = "video"
    if scope >= SCOPE_ASSET:
        ids["asset_id"] = "clip-1"
    if scope == SCOPE_NODE:
        ids.update(node_id="encode_h264", attempt_id=1, stage_id="encode")
    ids.update(fields)
    event = RunEvent(event_id="ev-1", source_id="src-1", sequence=7, scope=scope, state=state, **ids)
    event.time.FromNanoseconds(T0_NS)
    return event


# ---------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------


def test_trace_id_is_sha256_of_run_id_and_stable() -> None:
    expected = int.from_bytes(hashlib.sha256(b"vfo-trace\x1frun-1").digest()[:16], "big")
    assert contract.trace_id_for_run("run-1") == expected
    assert contract.trace_id_for_run("run-1") == contract.trace_id_for_run("run-1")
    assert contract.trace_id_for_run("run-2") != expected


def test_span_id_is_sha256_of_entity_key() -> None:
    key = ("run-1", "video", "clip-1", "encode_h264", "2")
    expected = int.from_bytes(
        hashlib.sha256(b"vfo-span" + b"".join(b"\x1f" + p.encode() for p in key)).digest()[:8], "big"
    )
    assert contract.span_id_for(key) == expected
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert contract.span_id_for(("ab", "c")) != contract.span_id_for(("a", "bc"))


def test_entity_key_per_scope() -> None:
    assert contract.entity_key(make(SCOPE_RUN)) == ("run-1",)
    assert contract.entity_key(make(SCOPE_PIPELINE)) == ("run-1", "video")
    assert contract.entity_key(make(SCOPE_ASSET)) == ("run-1", "video", "clip-1")
    node_key = ("run-1", "video", "clip-1", "encode_h264", "3")
    assert contract.entity_key(make(SCOPE_NODE, attempt_id=3)) == node_key
    with pytest.raises(ValueError, match="scope 0"):
        contract.entity_key(make(0))


def test_span_parent_chain_node_asset_pipeline_run() -> None:
    node = otel.span_start(make(SCOPE_NODE))
    asset = otel.span_start(make(SCOPE_ASSET))
    pipeline = otel.span_start(make(SCOPE_PIPELINE))
    run = otel.span_start(make(SCOPE_RUN))
    assert node.parent_span_id == asset.span_id
    assert asset.parent_span_id == pipeline.span_id
    assert pipeline.parent_span_id == run.span_id
    assert run.parent_span_id is None
    trace_ids = {node.trace_id, asset.trace_id, pipeline.trace_id, run.trace_id}
    assert trace_ids == {contract.trace_id_for_run("run-1")}
    assert len({node.span_id, asset.span_id, pipeline.span_id, run.span_id}) == 4
    # Retries are sibling spans under the same asset.
    retry = otel.span_start(make(SCOPE_NODE, attempt_id=2))
    assert retry.parent_span_id == asset.span_id and retry.span_id != node.span_id


def test_span_names_and_cicd_attributes() -> None:
    node = otel.span_start(make(SCOPE_NODE, attempt_id=2))
    assert node.name == "vfo.node encode_h264"
    assert node.attributes[Key.CICD_TASK_NAME] == "encode_h264"
    assert node.attributes[Key.CICD_TASK_RUN_ID] == "video/clip-1/encode_h264/2"
    assert node.attributes[Key.CICD_PIPELINE_RUN_ID] == "run-1"
    assert node.attributes[Key.ATTEMPT_ID] == 2
    assert otel.span_start(make(SCOPE_PIPELINE)).name == "vfo.pipeline video"
    assert otel.span_start(make(SCOPE_RUN)).name == "vfo.run"
    assert Key.PIPELINE_ID not in otel.span_start(make(SCOPE_RUN)).attributes


# ---------------------------------------------------------------------------
# Forward: logs, span events, span end, metrics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "number", "text"),
    [
        (QUEUED, 9, "INFO"),
        (RUNNING, 9, "INFO"),
        (WAITING, 9, "INFO"),
        (COMPLETE, 9, "INFO"),
        (SKIPPED, 13, "WARN"),
        (FAILED, 17, "ERROR"),
    ],
)
def test_log_severity_from_state(state: int, number: int, text: str) -> None:
    rec = otel.log_record(make(SCOPE_NODE, state))
    assert (rec.severity_number, rec.severity_text) == (number, text)


def test_log_record_fields() -> None:
    event = make(SCOPE_NODE, FAILED, exit_code=3, error=Error(error_class="ExitCode", detail="status 3"))
    rec = otel.log_record(event)
    assert rec.timestamp_ns == T0_NS
    assert rec.event_name == "vfo.node.transition"
    assert rec.trace_id == contract.trace_id_for_run("run-1")
    assert rec.span_id == contract.span_id_for(contract.entity_key(event))
    assert rec.body == "node encode_h264 attempt 1 for clip-1 in video failed: ExitCode (exit 3)"
    assert rec.attributes[Key.EVENT_ID] == "ev-1"
    assert rec.attributes[Key.STATE] == "failed"
    assert rec.attributes[Key.EXIT_CODE] == 3
    assert rec.attributes[Key.ERROR_TYPE] == "ExitCode"
    assert rec.attributes[Key.EVENT_SEQUENCE] == 7
    assert {otel.log_record(make(s)).event_name for s in (1, 2, 3, 4)} == set(c.LOG_EVENT_NAMES.values())


def test_span_event_carries_transition_fields() -> None:
    event = make(
        SCOPE_NODE,
        COMPLETE,
        previous_state=RUNNING,
        upstream_node_ids=["probe"],
        command=Command(command_line="ffmpeg -i a.mov a.mp4", argv=["ffmpeg", "-i", "a.mov", "a.mp4"]),
        outputs=[AssetRef(uri="/out/a.mp4", size_bytes=1024)],
    )
    event.duration.FromNanoseconds(1_500_000_000)
    data = otel.span_event(event)
    assert data.name == c.SPAN_EVENT_NAME == "vfo.transition"
    assert data.timestamp_ns == T0_NS
    attrs = data.attributes
    assert attrs[Key.PREVIOUS_STATE] == "running"
    assert attrs[Key.DURATION_NS] == 1_500_000_000
    assert attrs[Key.COMMAND_ARGS] == ["ffmpeg", "-i", "a.mov", "a.mp4"]
    assert attrs[Key.UPSTREAM] == ["probe"]
    assert attrs[Key.OUTPUTS] == '[{"uri":"/out/a.mp4","sizeBytes":"1024"}]'
    assert Key.RUN_ID not in attrs  # the entity lives on the span


def test_span_end_status() -> None:
    failed = otel.span_end(make(SCOPE_NODE, FAILED, error=Error(error_class="Timeout", detail="600 s")))
    assert not failed.ok and failed.description == "600 s"
    assert failed.attributes[Key.ERROR_TYPE] == "Timeout"
    assert failed.attributes[Key.CICD_TASK_RUN_RESULT] == "failure"
    unknown = otel.span_end(make(SCOPE_PIPELINE, FAILED))
    assert unknown.attributes[Key.ERROR_TYPE] == "_OTHER"
    assert unknown.attributes[Key.CICD_PIPELINE_RESULT] == "failure"
    ok = otel.span_end(make(SCOPE_NODE, COMPLETE))
    assert ok.ok and ok.description == "" and Key.ERROR_TYPE not in ok.attributes
    assert ok.attributes[Key.CICD_TASK_RUN_RESULT] == "success"
    assert otel.span_end(make(SCOPE_RUN, SKIPPED)).attributes[Key.CICD_PIPELINE_RESULT] == "skip"


@pytest.mark.parametrize("scope", [1, 2, 3, 4])
@pytest.mark.parametrize("state", [1, 2, 3, 4, 5, 6])
def test_metric_labels_come_from_the_allow_list(scope: int, state: int) -> None:
    event = make(
        scope,
        state,
        previous_state=RUNNING if state != RUNNING else QUEUED,
        error=Error(error_class="Timeout", detail="/tmp/secret"),
        command=Command(command_line="ffmpeg -i /tmp/secret"),
    )
    event.duration.FromNanoseconds(2_000_000_000)
    points = otel.metric_points(event)
    assert points[0].name == "vfo.transitions" and points[0].value == 1
    for point in points:
        assert set(point.labels) <= c.METRIC_LABELS
        assert set(point.labels) <= set(next(m.labels for m in c.METRICS if m.name == point.name))
        assert not {"run-1", "clip-1", "encode_h264", "ev-1", "/tmp/secret"} & set(point.labels.values())
    names = [p.name for p in points]
    assert ("vfo.duration" in names) == (state in c.TERMINAL_STATES)
    assert ("vfo.errors" in names) == (state == FAILED)


def test_duration_metric_in_seconds_and_error_class_label() -> None:
    event = make(SCOPE_NODE, FAILED, previous_state=RUNNING, error=Error(error_class="Crashed"))
    event.duration.FromNanoseconds(2_500_000_000)
    points = {p.name: p for p in otel.metric_points(event)}
    assert points["vfo.duration"].value == 2.5
    assert points["vfo.duration"].labels[Key.STATE] == "failed"
    assert points["vfo.errors"].labels[Key.ERROR_TYPE] == "Crashed"
    assert otel.metric_points(make(SCOPE_RUN, FAILED))[-1].labels[Key.ERROR_TYPE] == "_OTHER"


@pytest.mark.parametrize(
    ("previous", "state", "delta"),
    [
        (QUEUED, RUNNING, 1),
        (0, RUNNING, 1),
        (WAITING, RUNNING, 1),
        (RUNNING, COMPLETE, -1),
        (RUNNING, FAILED, -1),
        (RUNNING, WAITING, -1),
        (QUEUED, SKIPPED, None),
        (0, QUEUED, None),
        (RUNNING, RUNNING, None),
    ],
)
def test_nodes_active_moves_by_running(previous: int, state: int, delta: int | None) -> None:
    points = [
        p
        for p in otel.metric_points(make(SCOPE_NODE, state, previous_state=previous))
        if p.name == "vfo.nodes.active"
    ]
    if delta is None:
        assert points == []
    else:
        assert [(p.value, p.labels) for p in points] == [
            (delta, {Key.PIPELINE_ID: "video", Key.STAGE_ID: "encode"})
        ]


def test_nodes_active_only_for_nodes() -> None:
    for scope in (SCOPE_RUN, SCOPE_PIPELINE, SCOPE_ASSET):
        assert all(p.name != "vfo.nodes.active" for p in otel.metric_points(make(scope, RUNNING)))


def test_normalize_clears_empty_submessages() -> None:
    event = make(SCOPE_RUN, COMPLETE)
    event.command.SetInParent()
    event.error.SetInParent()
    assert event.HasField("command") and event.HasField("error")
    normal = otel.normalize(event)
    assert not normal.HasField("command") and not normal.HasField("error")
    assert event.HasField("command"), "normalize must not modify its argument"
    kept = otel.normalize(make(SCOPE_RUN, FAILED, error=Error(detail="x")))
    assert kept.error.detail == "x"


# ---------------------------------------------------------------------------
# Reverse: decode and its errors
# ---------------------------------------------------------------------------


def _kv(key: str, value: Any) -> common_pb2.KeyValue:
    if isinstance(value, bool):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(bool_value=value))
    if isinstance(value, int):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=value))
    if isinstance(value, list):
        array = common_pb2.ArrayValue(values=[common_pb2.AnyValue(string_value=v) for v in value])
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(array_value=array))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def _record(attrs: dict[str, Any]) -> logs_pb2.LogRecord:
    return logs_pb2.LogRecord(
        time_unix_nano=T0_NS,
        event_name="vfo.node.transition",
        attributes=[_kv(k, v) for k, v in attrs.items()],
    )


def _attrs(event: RunEvent) -> dict[str, Any]:
    return dict(otel.log_record(event).attributes)


def test_decode_log_record_round_trip_fixed() -> None:
    event = make(
        SCOPE_NODE,
        FAILED,
        previous_state=RUNNING,
        exit_code=-9,
        synthetic=True,
        error=Error(error_class="Signal", detail="killed by SIGKILL"),
        attributes={"host": "w3"},
        inputs=[AssetRef(asset_id="clip-1", uri="/in/a.mov", size_bytes=0)],
    )
    decoded = otel.events_from_log_record(_record(_attrs(event)))
    assert decoded == otel.normalize(event)
    assert decoded.inputs[0].HasField("size_bytes")  # an explicit 0 survives


def test_decode_uses_observed_time_when_time_is_unset() -> None:
    record = _record(_attrs(make(SCOPE_RUN, RUNNING)))
    record.time_unix_nano, record.observed_time_unix_nano = 0, T0_NS + 5
    assert otel.events_from_log_record(record).time.ToNanoseconds() == T0_NS + 5


def test_decode_error_missing_run_id() -> None:
    attrs = _attrs(make(SCOPE_PIPELINE, RUNNING))
    del attrs[Key.RUN_ID]
    with pytest.raises(otel.DecodeError, match=r"missing attribute 'vfo\.run\.id'"):
        otel.events_from_log_record(_record(attrs))


def test_decode_error_empty_run_id() -> None:
    attrs = {**_attrs(make(SCOPE_RUN, RUNNING)), Key.RUN_ID: ""}
    with pytest.raises(otel.DecodeError, match=r"'vfo\.run\.id' is empty"):
        otel.events_from_log_record(_record(attrs))


def test_decode_error_unknown_state() -> None:
    attrs = {**_attrs(make(SCOPE_NODE, RUNNING)), Key.STATE: "exploded"}
    with pytest.raises(otel.DecodeError, match="unknown state 'exploded'"):
        otel.events_from_log_record(_record(attrs))


def test_decode_error_unknown_scope() -> None:
    attrs = {**_attrs(make(SCOPE_NODE, RUNNING)), Key.SCOPE: "cluster"}
    with pytest.raises(otel.DecodeError, match="unknown scope 'cluster'"):
        otel.events_from_log_record(_record(attrs))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (Key.ATTEMPT_ID, "2", r"'vfo\.attempt\.id' must be int, got str"),
        (Key.EVENT_SEQUENCE, True, r"'vfo\.event\.sequence' must be int, got bool"),
        (Key.RUN_ID, 5, r"'vfo\.run\.id' must be str, got int"),
        (Key.UPSTREAM, "a", r"'vfo\.node\.upstream' must be an array of strings"),
        (Key.INPUTS, "{}", r"'vfo\.inputs' is not a JSON array of AssetRef"),
        (c.ATTR_PREFIX_EXTRA + "x", 1, r"'vfo\.attr\.x' must be str"),
    ],
)
def test_decode_error_wrong_attribute_type(key: str, value: Any, message: str) -> None:
    attrs = {**_attrs(make(SCOPE_NODE, RUNNING)), key: value}
    with pytest.raises(otel.DecodeError, match=message):
        otel.events_from_log_record(_record(attrs))


def test_decode_error_node_without_attempt() -> None:
    attrs = _attrs(make(SCOPE_NODE, RUNNING))
    del attrs[Key.ATTEMPT_ID]
    with pytest.raises(otel.DecodeError, match=r"missing attribute 'vfo\.attempt\.id'"):
        otel.events_from_log_record(_record(attrs))
    with pytest.raises(otel.DecodeError, match="out of range: 0"):
        otel.events_from_log_record(_record({**attrs, Key.ATTEMPT_ID: 0}))


def test_is_vfo_log_record() -> None:
    assert otel.is_vfo_log_record(_record(_attrs(make())))
    assert otel.is_vfo_log_record(logs_pb2.LogRecord(event_name="vfo.run.transition"))
    assert not otel.is_vfo_log_record(logs_pb2.LogRecord(event_name="app.started"))


def test_events_from_span_merges_entity_and_reports_bad_events() -> None:
    event = make(SCOPE_NODE, COMPLETE)
    start = otel.span_start(event)
    good = otel.span_event(event)
    bad = {**good.attributes, Key.STATE: "nope"}
    span = trace_pb2.Span(
        name=start.name,
        attributes=[_kv(k, v) for k, v in start.attributes.items()],
        events=[
            trace_pb2.Span.Event(name="exception", time_unix_nano=T0_NS),
            trace_pb2.Span.Event(
                name=good.name,
                time_unix_nano=T0_NS,
                attributes=[_kv(k, v) for k, v in good.attributes.items()],
            ),
            trace_pb2.Span.Event(
                name=good.name, time_unix_nano=T0_NS, attributes=[_kv(k, v) for k, v in bad.items()]
            ),
        ],
    )
    events, errors = otel.events_from_span(span)
    assert events == [otel.normalize(event)]
    assert len(errors) == 1 and "unknown state 'nope'" in str(errors[0])


def _outcome(decode: Any) -> Any:
    try:
        return decode()
    except (otel.DecodeError, ValueError) as exc:
        return (type(exc).__name__, str(exc))


_ANY_VALUES = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "node", "asset", "running", "exploded", "[]", '[{"uri":"/x","sizeBytes":"12"}]']),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 2**32, -1, 2**31]),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.text(max_size=4), max_size=3),
)
_KEYS = st.sampled_from([str(k) for k in Key] + [c.ATTR_PREFIX_EXTRA + "x", "other.key"])


def _kv_any(key: str, value: Any) -> common_pb2.KeyValue:
    if isinstance(value, float):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(double_value=value))
    return _kv(key, value)


def _full_record_with(changes: list[tuple[str, Any]], node: bool) -> Any:
    """The log record of a failed run or node event with every optional field set, plus
    ``changes`` appended as extra attributes (duplicates of canonical keys included)."""
    base = make(
        SCOPE_NODE if node else SCOPE_RUN,
        FAILED,
        exit_code=2,
        command=Command(command_line="ffmpeg -i a b", argv=["ffmpeg", "-i", "a", "b"]),
        inputs=[AssetRef(uri="/in/a", size_bytes=3)],
        error=Error(error_class="Boom", detail="d"),
        attributes={"k": "v"},
    )
    record = _record(_attrs(base))
    record.attributes.extend(_kv_any(k, v) for k, v in changes)
    return record


@PROPERTY
@given(st.lists(st.tuples(_KEYS, _ANY_VALUES), max_size=4), st.booleans())
def test_property_fast_decode_agrees_with_the_reference_path(
    changes: list[tuple[str, Any]], node: bool
) -> None:
    """The one-pass decoder gives the reference decoder's result (event or error message) for
    any attribute set: wrong types, bad values, duplicate keys (last wins), extras."""
    record = _full_record_with(changes, node)
    fast = _outcome(lambda: otel.events_from_log_record(record))
    reference = _outcome(
        lambda: otel.event_from_attributes(otel.otlp_attributes_to_dict(record.attributes), T0_NS)
    )
    assert fast == reference


_LIMITS_FOR_TESTS = Limits(
    max_id_length=12, max_detail_length=64, max_command_length=64, max_attribute_length=64
)
_LONG_TEXT = st.text(min_size=60, max_size=70)  # around the smallest text limits (64)
_RECEIVER_VALUES = st.one_of(
    _ANY_VALUES,
    _LONG_TEXT,
    st.lists(st.text(min_size=20, max_size=40), min_size=1, max_size=3),
    st.sampled_from(["encode_h264_x", "a\u2028b", "a\x85b", '[{"uri":"\\ud800"}]', "/in/a.mov"]),
)
_ORIGIN = Origin(service_name="svc", service_version="1", host_name="h")


def _decode_then_check(decode: Any, limits: Limits = _LIMITS_FOR_TESTS) -> RunEvent | tuple[str, str]:
    """The reference result for the receiver: decode, check_event, origin; or the error."""
    try:
        event: RunEvent = decode()
        check_event(event, limits)
    except ValueError as exc:
        return (type(exc).__name__, str(exc))
    event.origin.CopyFrom(_ORIGIN)
    return event


def test_receiver_decoder_takes_a_plain_record_and_gives_its_record() -> None:
    event = make(SCOPE_NODE, FAILED, exit_code=2, error=Error(error_class="Boom", detail="d"))
    event.inputs.add(uri="/in/a", size_bytes=3)
    event.outputs.add(uri="/out/b")
    event.attributes["k"] = "v"
    record = _record(_attrs(event))
    got = receiver.log_record_event(record, Limits(), _ORIGIN)
    assert got is not None
    expected = otel.normalize(event)
    expected.origin.CopyFrom(_ORIGIN)
    assert got.event == expected
    assert got == record_of(expected)
    assert receiver.log_record_event(record, Limits(), _ORIGIN) == got  # the refs cache changes nothing


_ID_FIELDS = ("event_id", "run_id", "pipeline_id", "asset_id", "node_id", "stage_id", "source_id")


@PROPERTY
@given(run_events(), st.booleans())
def test_property_receiver_decoder_on_emitted_records_and_spans(event: RunEvent, printable: bool) -> None:
    """Every record and span event the emitter writes for any event: the receiver's one-pass
    decoder gives what decode + check_event give, and record_of of it. It leaves an event to
    the reference path only where check_event acts or an id is not printable."""
    if printable:  # mostly arbitrary text has a non-printable character somewhere
        for name in _ID_FIELDS:
            setattr(event, name, "".join(ch if ch.isprintable() else "x" for ch in getattr(event, name)))
        ups = ["".join(ch if ch.isprintable() else "x" for ch in u) for u in event.upstream_node_ids]
        event.upstream_node_ids[:] = ups
    t = in_memory_emitter()
    try:
        t.emitter.emit(event)
        records, spans = t.otlp_log_records(), t.otlp_spans()
    finally:
        t.close()
    limits = Limits()
    plain = otel.normalize(event)
    checked = _decode_then_check(lambda: RunEvent.FromString(plain.SerializeToString()), limits)
    ids = [getattr(event, name) for name in _ID_FIELDS] + list(event.upstream_node_ids)
    plain.origin.CopyFrom(_ORIGIN)
    may_decline = checked != plain or not "".join(ids).isprintable()
    for record in records:
        got = receiver.log_record_event(record, limits, _ORIGIN)
        assert got is not None or may_decline
        if got is not None:
            assert got.event == checked
            assert got == record_of(got.event)
    for span in spans:
        decoded, errors = receiver.span_events(span, limits, _ORIGIN)
        assert errors == []
        for got_event, facts in decoded:
            assert facts is not None or may_decline
            if facts is not None:
                assert got_event == checked
                assert facts == record_of(got_event)


@PROPERTY
@given(st.lists(st.tuples(_KEYS, _RECEIVER_VALUES), max_size=4), st.booleans())
def test_property_receiver_decoder_agrees_with_decode_then_check(
    changes: list[tuple[str, Any]], node: bool
) -> None:
    """The receiver's one-pass decoder (ids and texts checked against the limits inside it) gives
    the event that events_from_log_record + check_event give, with its origin, or leaves the
    record to them (None); its record is record_of(event)."""
    record = _full_record_with(changes, node)
    got = receiver.log_record_event(record, _LIMITS_FOR_TESTS, _ORIGIN)
    expected = _decode_then_check(lambda: otel.events_from_log_record(record))
    if got is None:
        return
    assert isinstance(expected, RunEvent), expected
    assert got.event == expected
    assert got == record_of(expected)


@PROPERTY
@given(
    st.lists(st.tuples(_KEYS, _RECEIVER_VALUES), max_size=3),
    st.lists(st.lists(st.tuples(_KEYS, _RECEIVER_VALUES), max_size=3), min_size=1, max_size=3),
)
def test_property_receiver_span_decoder_agrees_with_decode_then_check(
    span_changes: list[tuple[str, Any]], event_changes: list[list[tuple[str, Any]]]
) -> None:
    """span_events with limits: each event it takes with facts is what events_from_span +
    check_event give (with its origin), the others are events_from_span's own, and the errors
    are the same."""
    event = make(SCOPE_NODE, COMPLETE, command=Command(command_line="x", argv=["x"]))
    start = otel.span_start(event)
    transition = otel.span_event(event)
    span = trace_pb2.Span(
        name=start.name, attributes=[_kv(k, v) for k, v in start.attributes.items()]
    )
    span.attributes.extend(_kv_any(k, v) for k, v in span_changes)
    for changes in event_changes:
        span_ev = span.events.add(name=transition.name, time_unix_nano=T0_NS)
        span_ev.attributes.extend(_kv(k, v) for k, v in transition.attributes.items())
        span_ev.attributes.extend(_kv_any(k, v) for k, v in changes)
    decoded, errors = receiver.span_events(span, _LIMITS_FOR_TESTS, _ORIGIN)
    reference, reference_errors = otel.events_from_span(span)
    assert [str(e) for e in errors] == [str(e) for e in reference_errors]
    assert len(decoded) == len(reference)
    for (got, facts), ref in zip(decoded, reference, strict=True):
        if facts is None:  # left to the reference path (the receiver checks it then)
            assert got == ref
        else:
            assert got == _decode_then_check(lambda ref=ref: ref)
            assert facts == record_of(ref)


@pytest.mark.parametrize(
    "refs",
    [
        '[{"assetId":"a","uri":"/x","role":"in","sizeBytes":"0","mediaType":"video/mp4"}]',
        '[{"asset_id":"a","size_bytes":12}]',
        '[{"sizeBytes":"007"},{}]',
        '[{"sizeBytes":"18446744073709551616"}]',
        '[{"sizeBytes":-1}]',
        '[{"sizeBytes":"1_000"}]',
        '[{"sizeBytes":1.0}]',
        '[{"uri":5}]',
        '[{"uri":null}]',
        '[{"assetId":"a","asset_id":"b"}]',
        '[{"unknown":1}]',
        "{}",
        "not json",
    ],
)
def test_refs_fast_path_agrees_with_protobuf_json(refs: str) -> None:
    from google.protobuf import json_format

    def reference() -> Any:
        try:
            items = json.loads(refs)
            if not isinstance(items, list):
                raise ValueError("not a JSON array")
            return [json_format.ParseDict(i, AssetRef()) for i in items]
        except (ValueError, json_format.ParseError) as exc:
            message = f"attribute 'vfo.inputs' is not a JSON array of AssetRef: {exc}"
            raise otel.DecodeError(message) from exc

    assert _outcome(lambda: otel.refs_from_json("vfo.inputs", refs)) == _outcome(reference)


def test_refs_item_that_is_not_an_object_is_a_decode_error() -> None:
    # protobuf's ParseDict raises TypeError here, which used to escape the decoder
    with pytest.raises(otel.DecodeError, match=r"'vfo\.inputs' is not a JSON array of AssetRef: item 1"):
        otel.refs_from_json("vfo.inputs", '[{"uri":"/x"}, 1]')


# ---------------------------------------------------------------------------
# Properties: event -> SDK -> OTLP protobuf -> event
# ---------------------------------------------------------------------------


@PROPERTY
@given(run_events())
def test_property_log_path_round_trip(event: RunEvent) -> None:
    t = in_memory_emitter()
    try:
        emitted = t.emitter.emit(event)
        assert t.emitter.stats.failures == {}
        assert emitted == event  # nothing to fill in: ids, time and source are set
        records = t.otlp_log_records()
        assert len(records) == 1
        assert otel.events_from_log_record(records[0]) == otel.normalize(event)
    finally:
        t.close()


@PROPERTY
@given(run_events(states=tuple(sorted(c.TERMINAL_STATES))))
def test_property_span_path_round_trip(event: RunEvent) -> None:
    t = in_memory_emitter()
    try:
        t.emitter.emit(event)
        assert t.emitter.stats.failures == {}
        spans = t.otlp_spans()
        assert len(spans) == 1  # a terminal event ends (and exports) its entity's span
        events, errors = otel.events_from_span(spans[0])
        assert errors == []
        assert events == [otel.normalize(event)]
        span = spans[0]
        assert span.trace_id == contract.trace_id_for_run(event.run_id).to_bytes(16, "big")
        assert span.span_id == contract.span_id_for(contract.entity_key(event)).to_bytes(8, "big")
        assert span.end_time_unix_nano == event.time.ToNanoseconds()
        duration_ns = event.duration.ToNanoseconds() if event.HasField("duration") else 0
        assert span.start_time_unix_nano == event.time.ToNanoseconds() - duration_ns
        assert (span.status.code == trace_pb2.Status.STATUS_CODE_ERROR) == (event.state == FAILED)
    finally:
        t.close()


@PROPERTY
@given(run_events())
def test_property_metric_labels_never_carry_entity_ids(event: RunEvent) -> None:
    for point in otel.metric_points(event):
        assert set(point.labels) <= c.METRIC_LABELS
        assert Key.RUN_ID not in point.labels and Key.ASSET_ID not in point.labels
