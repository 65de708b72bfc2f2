"""Promise 5, bad input: each bad record is rejected through OTLP partial_success (count and
message) while the rest of its batch is kept; oversized text is truncated with its original
length recorded; an oversized export is RESOURCE_EXHAUSTED; a bounded fuzz run over the OTLP
decode and the fold finds nothing but clean rejections, and the receiver keeps serving.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from tests.receiver import logs_request, node, resource, vfo_log_record
from tests.reliability.support import DEADLINE_S, record_figures, wait_revision
from vfo_otel import Emitter
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.contract import Limits
from vfo_otel.contract.conventions import Key
from vfo_otel.receiver import (
    EventStore,
    Fold,
    ReceiverConfig,
    ReceiverThread,
    RequestError,
    Selection,
    SqliteStore,
    parse_logs,
    parse_traces,
)
from vfo_otel.testing import in_memory_emitter

C, F = ev.STATE_COMPLETE, ev.STATE_FAILED
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def receiver() -> Iterator[ReceiverThread]:
    config = ReceiverConfig(
        grpc_address="127.0.0.1:0",
        http_address=None,
        store_path=":memory:",
        max_request_bytes=8 * 1024 * 1024,
    )
    with ReceiverThread(config) as thread:
        yield thread


def _raw_export(port: int, method: str, data: bytes) -> bytes:
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]
    ) as ch:
        return ch.unary_unary(method, request_serializer=None, response_deserializer=None)(  # type: ignore[no-any-return]
            data, timeout=DEADLINE_S
        )


def _set(record: object, key: str, value: common_pb2.AnyValue | None) -> None:
    attrs = record.attributes  # type: ignore[attr-defined]
    for i, kv in enumerate(attrs):
        if kv.key == key:
            if value is None:
                del attrs[i]
            else:
                kv.value.CopyFrom(value)
            return
    raise KeyError(key)


def _stored(receiver: ReceiverThread) -> dict[str, ev.RunEvent]:
    store = receiver.server.receiver.store
    assert isinstance(store, SqliteStore) and store.store is not None
    return {e.event_id: e for batch in store.store.replay() for e in batch}


def test_each_bad_record_is_rejected_alone_and_its_batch_mates_are_kept(receiver: ReceiverThread) -> None:
    run = "bad-run"
    good = [node("ok", C, t_s=1, run=run, eid="good-1"), node("ok2", C, t_s=1, run=run, eid="good-2")]
    records = [vfo_log_record(e) for e in good]

    unknown_state = vfo_log_record(node("x1", C, t_s=1, run=run, eid="bad-state"))
    _set(unknown_state, Key.STATE, common_pb2.AnyValue(string_value="on-fire"))
    no_run = vfo_log_record(node("x2", C, t_s=1, run=run, eid="bad-run-id"))
    _set(no_run, Key.RUN_ID, None)
    wrong_type = vfo_log_record(node("x3", C, t_s=1, run=run, eid="bad-type"))
    _set(wrong_type, Key.ATTEMPT_ID, common_pb2.AnyValue(string_value="1"))
    control = vfo_log_record(node("x\x074", C, t_s=1, run=run, eid="bad-control"))
    too_long = vfo_log_record(node("x" * 300, C, t_s=1, run=run, eid="bad-long"))
    bad_utf8 = vfo_log_record(node("UTF8MARK", C, t_s=1, run=run, eid="bad-utf8"))
    huge_detail = vfo_log_record(
        node("big", F, t_s=1, run=run, eid="big-detail", error=("Boom", "d" * (5 << 20)))
    )
    long_cmd = vfo_log_record(
        node("cmd", C, t_s=1, run=run, eid="long-command", command=ev.Command(command_line="c" * (200 << 10)))
    )
    batch = [
        records[0],
        unknown_state,
        no_run,
        wrong_type,
        control,
        too_long,
        bad_utf8,
        huge_detail,
        long_cmd,
        records[1],
    ]
    data = logs_request(batch).SerializeToString()
    assert data.count(b"UTF8MARK") >= 1
    data = data.replace(b"UTF8MARK", b"UTF\xff\xfeARK")  # invalid UTF-8: protobuf refuses the whole request
    with pytest.raises(Exception, match="UTF-8"):
        logs_service_pb2.ExportLogsServiceRequest.FromString(data)

    resp = logs_service_pb2.ExportLogsServiceResponse.FromString(_raw_export(receiver.grpc_port, LOGS, data))
    assert resp.partial_success.rejected_log_records == 6
    message = resp.partial_success.error_message
    assert message.startswith("rejected 6 vfo record(s); the rest of the batch was kept: ")
    assert "log record 1: unknown state 'on-fire'" in message
    assert "log record 2: missing attribute 'vfo.run.id'" in message
    assert "log record 3: attribute 'vfo.attempt.id' must be int, got str" in message
    assert "log record 4: node_id contains the control character U+0007" in message
    assert "log record 5: node_id is 300 characters, over the limit of 256" in message
    assert message.endswith("(+1 more)")  # the 6th reason (invalid UTF-8) is counted, not listed

    stored = _stored(receiver)
    assert set(stored) == {"good-1", "good-2", "big-detail", "long-command"}
    big = stored["big-detail"]
    assert len(big.error.detail) == 64 * 1024 and big.attributes["error_detail_original_length"] == str(
        5 << 20
    )
    cmd = stored["long-command"]
    assert len(cmd.command.command_line) == 16 * 1024
    assert cmd.attributes["command_line_original_length"] == str(200 << 10)
    assert receiver.server.receiver.stats.rejected == 6

    # The lone invalid record alone also names its reason.
    lone = logs_request([vfo_log_record(node("UTF8MARK", C, t_s=1, run=run, eid="x"))]).SerializeToString()
    resp = logs_service_pb2.ExportLogsServiceResponse.FromString(
        _raw_export(receiver.grpc_port, LOGS, lone.replace(b"UTF8MARK", b"UTF\xff\xfeARK"))
    )
    assert resp.partial_success.error_message == (
        "rejected 1 vfo record(s); the rest of the batch was kept: log record 0: "
        "log record 0 is not a valid protobuf message (a string field is not valid UTF-8)"
    )
    record_figures(
        "bad_input",
        records_sent=len(batch),
        rejected=6,
        kept=4,
        detail_bytes_sent=5 << 20,
        detail_kept=64 * 1024,
        command_sent=200 << 10,
        command_kept=16 * 1024,
    )


def test_invalid_utf8_in_one_span_rejects_that_span_only(receiver: ReceiverThread) -> None:
    t = in_memory_emitter()
    try:
        with t.emitter.run("span-run") as run, run.pipeline("p") as pipe, pipe.asset("a") as asset:
            with asset.node("SPANMARK", stage="s"):
                pass
            with asset.node("fine", stage="s"):
                pass
        spans = t.otlp_spans()
    finally:
        t.close()
    from opentelemetry.proto.trace.v1 import trace_pb2

    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
    )
    data = request.SerializeToString().replace(b"SPANMARK", b"SPAN\xc3\x28RK")
    resp = trace_service_pb2.ExportTraceServiceResponse.FromString(
        _raw_export(receiver.grpc_port, TRACES, data)
    )
    assert resp.partial_success.rejected_spans == 1
    snap = wait_revision(f"127.0.0.1:{receiver.grpc_port}", "span-run", 1)
    assert [n.node_id for n in snap.pipelines[0].workflow.nodes] == ["fine"]


def test_the_emitter_replaces_lone_surrogates_with_u_fffd(receiver: ReceiverThread) -> None:
    """Protobuf cannot encode a lone surrogate; the emitter escapes it instead of losing the event."""
    emitter = Emitter(
        endpoint=f"http://127.0.0.1:{receiver.grpc_port}",
        service_name="surrogates",
        heartbeat_interval_s=None,
        export_metrics_otlp=False,
    )
    name = os.fsdecode(b"clip-\xff.mov")  # a non-UTF-8 file name: 'clip-\udcff.mov'
    try:
        with emitter.run("run-" + name) as run, run.pipeline("p") as pipe, pipe.asset(name) as asset:
            with pytest.raises(OSError), asset.node("probe", stage="s") as n:
                n.add_output("/out/" + name)
                raise OSError(f"cannot open {name}")
        assert emitter.force_flush(10_000)
    finally:
        emitter.shutdown()
    assert emitter.stats.failures == {}
    snap = wait_revision(f"127.0.0.1:{receiver.grpc_port}", "run-clip-\ufffd.mov", 6)
    assert snap.pipelines[0].assets[0].asset_id == "clip-\ufffd.mov"
    stored = list(_stored(receiver).values())
    failed = next(e for e in stored if e.scope == ev.SCOPE_NODE and e.state == F)
    assert failed.error.detail == "cannot open clip-\ufffd.mov"
    assert failed.outputs[0].uri == "/out/clip-\ufffd.mov"


def test_an_export_over_the_size_limit_is_resource_exhausted_with_a_clear_message(
    receiver: ReceiverThread,
) -> None:
    big = logs_request([vfo_log_record(node("n", F, t_s=1, run="huge", error=("E", "x" * (9 << 20))))])
    with pytest.raises(grpc.RpcError) as info:
        _raw_export(receiver.grpc_port, LOGS, big.SerializeToString())
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details().startswith("SERVER: Received message larger than max (")
    assert info.value.details().endswith(f" vs. {8 * 1024 * 1024})")
    # nothing of it was stored, and the receiver goes on
    _raw_export(
        receiver.grpc_port,
        LOGS,
        logs_request([vfo_log_record(node("n", C, t_s=1, run="small"))]).SerializeToString(),
    )
    store = receiver.server.receiver.store
    assert store is not None
    assert receiver.call(store.run("huge")) is None and receiver.call(store.run("small")) is not None


# ---------------------------------------------------------------------------------------
# Fuzz: bounded, in CI
# ---------------------------------------------------------------------------------------

_VALID = logs_request(
    [vfo_log_record(node(f"n{i}", C if i % 2 else ev.STATE_RUNNING, t_s=i, run="fz")) for i in range(4)]
).SerializeToString()
LIMITS = Limits()


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


def _records_in(data: bytes, kind: str) -> int | None:
    """How many log records (or spans) protobuf's own parser finds in the request; None when it
    refuses the request as a whole (then the receiver splits it and judges record by record)."""
    try:
        if kind == "logs":
            req = logs_service_pb2.ExportLogsServiceRequest.FromString(data)
            return sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)
        treq = trace_service_pb2.ExportTraceServiceRequest.FromString(data)
        return sum(len(ss.spans) for rs in treq.resource_spans for ss in rs.scope_spans)
    except Exception:
        return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(data=st.one_of(_mutated(), st.binary(max_size=512)))
def test_fuzz_otlp_decode_and_fold_reject_cleanly(data: bytes) -> None:
    """Any bytes: the decoder raises nothing but RequestError (a broken framing); every record is
    accounted for (a log record is accepted, rejected or ignored; so is a span, and an accepted
    span gives at least one event); every accepted event is storable and readable back, and every
    snapshot of what it folds to builds."""
    fold = Fold()
    store = EventStore(":memory:")
    try:
        for kind, parse in (("logs", parse_logs), ("traces", parse_traces)):
            try:
                decoded = parse(data, LIMITS)
            except RequestError:
                continue  # a broken framing: the whole request is INVALID_ARGUMENT
            total = _records_in(data, kind)
            if total is not None and kind == "logs":
                assert len(decoded.records) + decoded.rejected + decoded.ignored == total
            elif total is not None:
                assert decoded.rejected + decoded.ignored <= total
                assert len(decoded.records) >= total - decoded.rejected - decoded.ignored
            assert decoded.rejected == 0 or decoded.message().startswith(f"rejected {decoded.rejected} ")
            stored = store.append(decoded.records)
            for record in stored:
                again = ev.RunEvent.FromString(record.event.SerializeToString())
                assert again == record.event and again.event_id and again.run_id
            fold.apply_records(stored)
        for run in fold.runs.values():
            run.snapshot(Selection(), 0, 1)
            for pid, pipe in run.pipelines.items():
                for aid in pipe.assets:
                    run.snapshot(Selection(pid, aid), 10**18, 10**9)
    finally:
        store.close()


def _fuzzed_requests() -> list[bytes]:
    """Deterministic mutations of a valid request: a byte set to 0xff at 30 places, and 10 cuts."""
    flips = [_VALID[: i * 37] + b"\xff" + _VALID[i * 37 + 1 :] for i in range(1, 31)]
    cuts = [_VALID[: len(_VALID) * i // 11] for i in range(1, 11)]
    return flips + cuts


def test_the_receiver_keeps_serving_after_fuzzed_requests(receiver: ReceiverThread) -> None:
    codes: dict[str, int] = {}
    for data in _fuzzed_requests():
        for method in (LOGS, TRACES):
            try:
                _raw_export(receiver.grpc_port, method, data)
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.RpcError as exc:
                codes[exc.code().name] = codes.get(exc.code().name, 0) + 1
    assert set(codes) <= {"OK", "INVALID_ARGUMENT"}, codes
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


# ---------------------------------------------------------------------------------------
# Inputs that must not amplify storage or memory, or make a run unreadable
# ---------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_1_mib_service_name_over_200_records_is_stored_cut_not_copied_200_times(tmp_path: Any) -> None:
    """One resource with a 1 MiB service.name and 200 records: once ~200 MB stored and ~600 MB of
    RSS. The origin's text is cut to the id limit (256 characters), so what is stored stays
    within twice the request, and memory does not grow by the copies."""
    store = tmp_path / "amplify.sqlite3"
    config = ReceiverConfig(
        grpc_address="127.0.0.1:0", http_address=None, store_path=str(store), max_request_bytes=4 << 20
    )
    records = [vfo_log_record(node(f"n{i}", C, t_s=i, run="big-origin")) for i in range(200)]
    request = logs_request(records, resource(service_name="s" * (1 << 20), host_name="h"))
    data = request.SerializeToString()
    with ReceiverThread(config) as thread:
        rss_before = _rss_bytes()
        _raw_export(thread.grpc_port, LOGS, data)
        rss_growth = _rss_bytes() - rss_before
        snap = wait_revision(f"127.0.0.1:{thread.grpc_port}", "big-origin", 200)
        assert snap.run.service_name == "s" * 256  # cut to Limits.max_id_length
    with sqlite3.connect(store) as db_:
        (stored,) = db_.execute("SELECT sum(length(payload)) FROM events").fetchone()
    assert stored <= 2 * len(data), (stored, len(data))
    assert stored < 200 * 1024  # 200 events of ~0.6 KB each, not 200 copies of 1 MiB
    assert rss_growth < 64 * 1024 * 1024, rss_growth  # the request itself is 1 MiB
    record_figures(
        "amplification", request_bytes=len(data), stored_payload_bytes=stored, rss_growth_bytes=rss_growth
    )


def test_over_the_caps_an_event_is_rejected_alone_or_cut(receiver: ReceiverThread) -> None:
    """Documented caps (docs/receiver.md, Limits): more than 256 upstream node ids, or an
    attribute key over 256 characters, rejects the event through partial_success; more than 128
    extra attributes keeps 127 (sorted) and records the count, as the emitter does."""
    too_many_ups = node("a", C, t_s=1, run="caps", upstream_node_ids=[f"u{i}" for i in range(257)])
    long_key = node("b", C, t_s=1, run="caps", attributes={"k" * 257: "v"})
    many_attrs = node("c", C, t_s=1, run="caps", attributes={f"k{i:03d}": "v" for i in range(200)})
    ok = node("d", C, t_s=1, run="caps", upstream_node_ids=[f"u{i}" for i in range(256)])
    request = logs_request([vfo_log_record(e) for e in (too_many_ups, long_key, many_attrs, ok)])
    resp = logs_service_pb2.ExportLogsServiceResponse.FromString(
        _raw_export(receiver.grpc_port, LOGS, request.SerializeToString())
    )
    assert resp.partial_success.rejected_log_records == 2
    message = resp.partial_success.error_message
    assert "log record 0: 257 upstream node ids, over the limit of 256" in message
    assert "log record 1: attribute key of 257 characters, over the limit of 256" in message
    snap = wait_revision(f"127.0.0.1:{receiver.grpc_port}", "caps", 2)
    with SnapshotClient(f"127.0.0.1:{receiver.grpc_port}") as client:
        snap = client.get_snapshot("caps", "p", "a")
    by_node = {d.node_id: d for d in snap.node_details}
    assert set(by_node) >= {"c", "d"} and "a" not in {d.node_id for d in snap.node_details if d.attempts}
    attrs = by_node["c"].attempts[0].attributes
    assert len(attrs) == 128 and attrs["attributes_original_count"] == "200"
    assert sorted(k for k in attrs if k != "attributes_original_count") == [f"k{i:03d}" for i in range(127)]
