"""Pure OTLP -> RunEvent decoding of the receiver (vfo_otel.ingest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.receiver import logs_request, node, resource, vfo_log_record
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import Limits
from vfo_otel.contract import conventions as c
from vfo_otel.receiver import decode_logs, decode_traces
from vfo_otel.testing import InMemoryTelemetry, in_memory_emitter

LIMITS = Limits()


@pytest.fixture
def emitted() -> Iterator[InMemoryTelemetry]:
    t = in_memory_emitter(service_name="ingest-test")
    with t.emitter.run("run-7") as run, run.pipeline("video") as p, p.asset("clip") as a:
        with a.node("probe", stage="analyze") as n:
            n.set_exit_code(0)
    yield t
    t.close()


def _foreign_record(body: str = "GET /index.html 200") -> logs_pb2.LogRecord:
    return logs_pb2.LogRecord(
        time_unix_nano=1,
        body=common_pb2.AnyValue(string_value=body),
        attributes=[common_pb2.KeyValue(key="http.method", value=common_pb2.AnyValue(string_value="GET"))],
    )


def _set_attr(record: logs_pb2.LogRecord, key: str, value: common_pb2.AnyValue) -> None:
    for kv in record.attributes:
        if kv.key == key:
            kv.value.CopyFrom(value)
            return
    record.attributes.add(key=key, value=value)


def test_real_emitter_log_records_decode_to_its_events(emitted: InMemoryTelemetry) -> None:
    records = emitted.otlp_log_records()
    decoded = decode_logs(logs_request(records), LIMITS)
    assert (decoded.rejected, decoded.ignored, decoded.message()) == (0, 0, "")
    assert len(decoded.events) == len(records) == 8  # run, pipeline, asset, node: running + complete
    assert [(e.scope, e.state) for e in decoded.events][-2:] == [
        (ev.SCOPE_PIPELINE, ev.STATE_COMPLETE),
        (ev.SCOPE_RUN, ev.STATE_COMPLETE),
    ]
    node_end = next(e for e in decoded.events if e.scope == ev.SCOPE_NODE and e.state == ev.STATE_COMPLETE)
    assert (
        node_end.run_id,
        node_end.pipeline_id,
        node_end.asset_id,
        node_end.node_id,
        node_end.stage_id,
        node_end.attempt_id,
        node_end.exit_code,
    ) == ("run-7", "video", "clip", "probe", "analyze", 1, 0)
    assert len({e.event_id for e in decoded.events}) == 8


def test_origin_comes_from_theresource(emitted: InMemoryTelemetry) -> None:
    records = emitted.otlp_log_records()[:1]
    decoded = decode_logs(logs_request(records), LIMITS)
    assert decoded.events[0].origin == ev.Origin(
        service_name="svc", service_version="1.2.3", host_name="host-a"
    )
    # a resource without identity gives an empty origin; non-string values are ignored
    res = resource_pb2.Resource(
        attributes=[common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(int_value=3))]
    )
    decoded = decode_logs(logs_request(records, res), LIMITS)
    assert decoded.events[0].origin == ev.Origin()


def test_span_events_decode_with_origin_and_agree_with_logs(emitted: InMemoryTelemetry) -> None:
    spans = emitted.otlp_spans()
    req = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource(service_name="tsvc", host_name="host-b"),
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    )
    decoded = decode_traces(req, LIMITS)
    assert (decoded.rejected, decoded.ignored) == (0, 0)
    from_logs = decode_logs(logs_request(emitted.otlp_log_records()), LIMITS).events
    # the same transitions arrive by both paths with the same event ids (the receiver stores them once)
    assert sorted(e.event_id for e in decoded.events) == sorted(e.event_id for e in from_logs)
    assert {e.origin.service_name for e in decoded.events} == {"tsvc"}
    assert {e.origin.host_name for e in decoded.events} == {"host-b"}


def test_foreign_telemetry_is_ignored_and_counted(emitted: InMemoryTelemetry) -> None:
    records = [_foreign_record(), *emitted.otlp_log_records(), _foreign_record("other")]
    decoded = decode_logs(logs_request(records), LIMITS)
    assert (len(decoded.events), decoded.ignored, decoded.rejected) == (8, 2, 0)
    assert decoded.message() == ""
    foreign_span = trace_pb2.Span(
        name="GET /",
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        events=[trace_pb2.Span.Event(name="exception", time_unix_nano=5)],
    )
    req = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                scope_spans=[trace_pb2.ScopeSpans(spans=[foreign_span, trace_pb2.Span(name="plain")])]
            )
        ]
    )
    decoded = decode_traces(req, LIMITS)
    assert (decoded.events, decoded.ignored, decoded.rejected) == ([], 2, 0)


def test_malformed_record_is_rejected_with_a_message_and_batch_mates_kept() -> None:
    good = [
        vfo_log_record(node("x", ev.STATE_RUNNING, t_s=1)),
        vfo_log_record(node("x", ev.STATE_COMPLETE, t_s=2)),
    ]
    bad_state = vfo_log_record(node("x", ev.STATE_FAILED, t_s=3))
    _set_attr(bad_state, c.Key.STATE, common_pb2.AnyValue(string_value="exploded"))
    no_run = vfo_log_record(node("x", ev.STATE_FAILED, t_s=3))
    del no_run.attributes[[kv.key for kv in no_run.attributes].index(c.Key.RUN_ID)]
    control_id = vfo_log_record(node("x\x07", ev.STATE_COMPLETE, t_s=3))
    decoded = decode_logs(
        logs_request([good[0], bad_state, no_run, _foreign_record(), control_id, good[1]]), LIMITS
    )
    assert [e.state for e in decoded.events] == [ev.STATE_RUNNING, ev.STATE_COMPLETE]
    assert (decoded.rejected, decoded.ignored) == (3, 1)
    msg = decoded.message()
    assert msg.startswith("rejected 3 vfo record(s); the rest of the batch was kept: ")
    assert "log record 1: unknown state 'exploded'" in msg
    assert "log record 2: missing attribute 'vfo.run.id'" in msg
    assert "log record 4: node_id contains the control character U+0007" in msg


def test_message_is_capped_with_a_count_of_the_rest() -> None:
    bad = []
    for i in range(7):
        r = vfo_log_record(node("x", ev.STATE_RUNNING, t_s=i))
        _set_attr(r, c.Key.SCOPE, common_pb2.AnyValue(string_value="galaxy"))
        bad.append(r)
    decoded = decode_logs(logs_request(bad), LIMITS)
    assert decoded.rejected == 7 and len(decoded.errors) == 5
    assert decoded.message().endswith("(+2 more)")


def test_a_bad_span_event_is_rejected_alone_its_span_counted_and_every_other_event_kept(
    emitted: InMemoryTelemetry,
) -> None:
    spans = emitted.otlp_spans()
    broken = trace_pb2.Span()
    broken.CopyFrom(spans[0])
    bad_id = ""
    for kv in broken.events[0].attributes:
        if kv.key == c.Key.STATE:
            kv.value.string_value = "melted"
        if kv.key == c.Key.EVENT_ID:
            bad_id = kv.value.string_value
    req = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=[broken, *spans[1:]])])
        ]
    )
    decoded = decode_traces(req, LIMITS)
    total = sum(1 for s in spans for e in s.events if e.name == c.SPAN_EVENT_NAME)
    assert decoded.rejected == 1  # the span with a bad event counts as one rejected span
    assert len(decoded.events) == total - 1
    every_id = {
        kv.value.string_value
        for s in spans
        for e in s.events
        for kv in e.attributes
        if e.name == c.SPAN_EVENT_NAME and kv.key == c.Key.EVENT_ID
    }
    assert bad_id and {e.event_id for e in decoded.events} == every_id - {bad_id}  # its span-mates kept
    assert len(broken.events) > 1 or len(spans) > 1
    assert f"span {broken.name!r}: unknown state 'melted'" in decoded.message()


def test_limits_truncate_text_and_reject_long_ids() -> None:
    limits = Limits(max_id_length=16, max_detail_length=64)
    long_detail = node("x", ev.STATE_FAILED, t_s=1, error=("E", "d" * 100))
    long_id = node("n" * 17, ev.STATE_RUNNING, t_s=1)
    decoded = decode_logs(logs_request([vfo_log_record(long_detail), vfo_log_record(long_id)]), limits)
    (kept,) = decoded.events
    assert kept.error.detail == "d" * 64
    assert kept.attributes["error_detail_original_length"] == "100"
    assert decoded.rejected == 1
    assert "node_id is 17 characters, over the limit of 16" in decoded.message()
