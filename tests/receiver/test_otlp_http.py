"""OTLP/HTTP ingest (issue 16): protobuf, OTLP/JSON and gzip give what OTLP/gRPC gives.

The same records through gRPC, HTTP/protobuf, HTTP/JSON and gzip give identical snapshots; the
SDK's own OTLP/HTTP exporters, the Emitter over ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`` and
the hand-written ``curl`` of docs/receiver.md (run as written) land there too. Bad bodies, limits,
auth and overload answer as the OTLP specification says. Real servers on port 0; every export is
answered after its commit, so reads need no waiting.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import re
import shutil
import subprocess
import threading
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.metrics.v1 import metrics_pb2

from tests.receiver import logs_request, node, vfo_log_record
from tests.reliability.support import wait_until
from tests.reliability.test_overload import GatedStore
from vfo_otel import Emitter
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.contract import Limits
from vfo_otel.receiver import (
    ReceiverConfig,
    ReceiverThread,
    RequestError,
    parse_logs,
    parse_logs_json,
    parse_traces,
    parse_traces_json,
)
from vfo_otel.testing import InMemoryTelemetry

C, F, R = ev.STATE_COMPLETE, ev.STATE_FAILED, ev.STATE_RUNNING
DEADLINE_S = 20.0
PB, JSON = "application/x-protobuf", "application/json"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "receiver.md"
_HEX_KEYS = {"traceId", "spanId", "parentSpanId"}


def _config(**kw: Any) -> ReceiverConfig:
    base: dict[str, Any] = {
        "grpc_address": "127.0.0.1:0",
        "http_address": None,
        "otlp_http_address": "127.0.0.1:0",
        "store_path": ":memory:",
    }
    return ReceiverConfig(**{**base, **kw})


@pytest.fixture
def receiver() -> Iterator[ReceiverThread]:
    with ReceiverThread(_config()) as thread:
        yield thread


def _post(
    port: int, path: str, body: bytes, ctype: str = PB, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": ctype, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def otlp_json(msg: Message) -> bytes:
    """A message as OTLP/JSON: the protobuf JSON mapping with hex trace and span ids (test-side encoder)."""

    def hexify(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: base64.b64decode(v).hex() if k in _HEX_KEYS and isinstance(v, str) else hexify(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [hexify(v) for v in value]
        return value

    return json.dumps(hexify(json_format.MessageToDict(msg))).encode()


def from_otlp_json(body: bytes, msg: Message) -> Message:
    """OTLP/JSON -> message (test-side decoder: hex ids back to base64, then json_format)."""

    def unhex(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: base64.b64encode(bytes.fromhex(v)).decode()
                if k in _HEX_KEYS and isinstance(v, str)
                else unhex(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [unhex(v) for v in value]
        return value

    return json_format.ParseDict(unhex(json.loads(body)), msg)


def _snapshots(thread: ReceiverThread, run_id: str, selections: Sequence[tuple[str, str]]) -> list[Any]:
    out = []
    with SnapshotClient(f"127.0.0.1:{thread.grpc_port}") as client:
        for pipeline_id, asset_id in selections:
            snap = client.get_snapshot(run_id, pipeline_id, asset_id)
            snap.ClearField("generated_time")
            out.append(snap)
    return out


def _requests(telemetry: InMemoryTelemetry) -> tuple[Message, Message]:
    return encode_logs(telemetry.logs.get_finished_logs()), encode_spans(telemetry.spans.get_finished_spans())


SELECTIONS = [("", ""), ("video", "clip-1"), ("video", "clip-2")]


def _send_grpc(thread: ReceiverThread, logs: Message, spans: Message) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{thread.grpc_port}") as channel:
        assert (
            not logs_service_pb2_grpc.LogsServiceStub(channel)
            .Export(logs, timeout=DEADLINE_S)
            .HasField("partial_success")
        )
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(spans, timeout=DEADLINE_S)


def _send_http(thread: ReceiverThread, logs: Message, spans: Message, ctype: str, gz: bool) -> None:
    for path, msg, response in (
        ("/v1/logs", logs, logs_service_pb2.ExportLogsServiceResponse()),
        ("/v1/traces", spans, trace_service_pb2.ExportTraceServiceResponse()),
    ):
        body = otlp_json(msg) if ctype == JSON else msg.SerializeToString()
        headers = {"Content-Encoding": "gzip"} if gz else {}
        status, resp_headers, data = _post(
            thread.otlp_http_port, path, gzip.compress(body) if gz else body, ctype, headers
        )
        assert status == 200, data
        assert resp_headers["Content-Type"].startswith(ctype)  # answered in the request's encoding
        if ctype == JSON:
            json_format.Parse(data, response)
        else:
            response.ParseFromString(data)
        assert not response.HasField("partial_success")  # type: ignore[attr-defined]


def test_grpc_http_protobuf_http_json_and_gzip_give_identical_snapshots(
    telemetry: InMemoryTelemetry, reference_scenario: Callable[..., None]
) -> None:
    reference_scenario(telemetry.emitter, run_id="same-run")
    logs, spans = _requests(telemetry)
    senders: dict[str, Callable[[ReceiverThread], None]] = {
        "grpc": lambda t: _send_grpc(t, logs, spans),
        "http/protobuf": lambda t: _send_http(t, logs, spans, PB, gz=False),
        "http/json": lambda t: _send_http(t, logs, spans, JSON, gz=False),
        "http/protobuf+gzip": lambda t: _send_http(t, logs, spans, PB, gz=True),
        "http/json+gzip": lambda t: _send_http(t, logs, spans, JSON, gz=True),
    }
    results = {}
    for name, send in senders.items():
        with ReceiverThread(_config()) as thread:
            send(thread)
            stats = thread.server.receiver.stats
            results[name] = (
                _snapshots(thread, "same-run", SELECTIONS),
                (stats.events_stored, stats.duplicates, stats.rejected, stats.ignored, dict(stats.by_signal)),
            )
    reference = results["grpc"]
    assert reference[0][0].revision > 0 and reference[0][0].summary.attempts.failed == 1
    for name, got in results.items():
        assert got == reference, name


def test_the_sdk_otlp_http_exporters_give_the_snapshot_the_grpc_exporters_give(
    telemetry: InMemoryTelemetry, reference_scenario: Callable[..., None]
) -> None:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
    from opentelemetry.sdk._logs.export import LogRecordExportResult
    from opentelemetry.sdk.trace.export import SpanExportResult

    reference_scenario(telemetry.emitter, run_id="sdk-run")
    logs, spans = telemetry.logs.get_finished_logs(), telemetry.spans.get_finished_spans()
    got = []
    with ReceiverThread(_config()) as a, ReceiverThread(_config()) as b:
        for log_exporter, span_exporter in (
            (
                HttpLogs(endpoint=f"http://127.0.0.1:{a.otlp_http_port}/v1/logs"),
                HttpSpans(endpoint=f"http://127.0.0.1:{a.otlp_http_port}/v1/traces"),
            ),
            (
                GrpcLogs(endpoint=f"http://127.0.0.1:{b.grpc_port}", insecure=True),
                GrpcSpans(endpoint=f"http://127.0.0.1:{b.grpc_port}", insecure=True),
            ),
        ):
            assert log_exporter.export(logs) == LogRecordExportResult.SUCCESS
            assert span_exporter.export(spans) == SpanExportResult.SUCCESS
            log_exporter.shutdown()
            span_exporter.shutdown()
        got = [_snapshots(t, "sdk-run", SELECTIONS) for t in (a, b)]
        assert a.server.receiver.stats.by_signal == b.server.receiver.stats.by_signal
    assert got[0] == got[1]
    assert got[0][0].summary.nodes.complete == 6


def test_the_emitter_exports_over_http_protobuf_from_the_standard_variable(
    monkeypatch: pytest.MonkeyPatch, reference_scenario: Callable[..., None]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    with ReceiverThread(_config()) as thread:
        emitter = Emitter(
            endpoint=f"http://127.0.0.1:{thread.otlp_http_port}",  # the OTLP/HTTP port: gRPC would fail
            service_name="http-runner",
            export_metrics_otlp=True,
            metric_export_interval_ms=60_000,
        )
        reference_scenario(emitter, run_id="http-emitter-run")
        emitter.shutdown()  # flushes logs, spans and metrics; each export answered after its commit
        assert emitter.stats.failures == {} and emitter.stats.dropped == {}
        (snap,) = _snapshots(thread, "http-emitter-run", [("", "")])
        stats = thread.server.receiver.stats
        assert sum(stats.by_signal.values()) == snap.revision
        assert stats.metrics_points_ignored > 0  # /v1/metrics: accepted and counted
    assert (snap.run.state, snap.run.service_name) == (C, "http-runner")
    assert (snap.summary.nodes.complete, snap.summary.attempts.failed) == (6, 1)


@pytest.mark.parametrize(
    ("value", "message"),
    [("http/json", "no exporter in the OpenTelemetry Python SDK"), ("udp", "unknown OTLP protocol")],
)
def test_an_unsupported_protocol_is_refused_when_the_emitter_is_built(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Emitter(protocol=value, export_metrics_otlp=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", value)
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        Emitter(export_metrics_otlp=False)


def test_a_per_signal_protocol_variable_wins_for_its_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

    from vfo_otel.emitter._otlp import build_otlp_exporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/protobuf")
    logs = build_otlp_exporter("logs", None, "http://127.0.0.1:9", 1.0)
    spans = build_otlp_exporter("traces", None, "http://127.0.0.1:9", 1.0)
    try:
        assert isinstance(logs, HttpLogs) and logs._endpoint == "http://127.0.0.1:9/v1/logs"
        assert isinstance(spans, GrpcSpans)
    finally:
        logs.shutdown()
        spans.shutdown()


def _curl_command() -> str:
    text = DOCS.read_text(encoding="utf-8")
    m = re.search(r"<!-- otlp-http-curl:begin -->\n```\n(.*?)```\n<!-- otlp-http-curl:end -->", text, re.S)
    assert m, "docs/receiver.md lost its curl example"
    return m.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_of_the_docs_exports_and_gives_the_grpc_snapshot() -> None:
    command = _curl_command()
    assert "127.0.0.1:4318" in command
    body = command.split("<<'EOF'\n", 1)[1].rsplit("EOF\n", 1)[0]
    with ReceiverThread(_config()) as over_http, ReceiverThread(_config()) as over_grpc:
        proc = subprocess.run(
            ["bash", "-c", command.replace("127.0.0.1:4318", f"127.0.0.1:{over_http.otlp_http_port}")],
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert json.loads(proc.stdout) == {}
        request = from_otlp_json(body.encode(), logs_service_pb2.ExportLogsServiceRequest())
        with grpc.insecure_channel(f"127.0.0.1:{over_grpc.grpc_port}") as channel:
            logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=DEADLINE_S)
        got = [_snapshots(t, "curl-run", [("", ""), ("video", "clip-1")]) for t in (over_http, over_grpc)]
    assert got[0] == got[1]
    (a,) = got[0][1].node_details[0].attempts
    assert (a.state, a.duration.ToNanoseconds(), got[0][0].run.service_name) == (
        C,
        2_500_000_000,
        "shell-runner",
    )


# -- the pure OTLP/JSON decode ------------------------------------------------------------


def test_otlp_json_decodes_to_the_events_protobuf_decodes_to(
    telemetry: InMemoryTelemetry, reference_scenario: Callable[..., None]
) -> None:
    reference_scenario(telemetry.emitter, run_id="pure-run")
    logs, spans = _requests(telemetry)
    limits = Limits()
    for parse_pb, parse_json, msg in (
        (parse_logs, parse_logs_json, logs),
        (parse_traces, parse_traces_json, spans),
    ):
        want, got = parse_pb(msg.SerializeToString(), limits), parse_json(otlp_json(msg), limits)
        assert got.events == want.events and got.events
        assert (got.rejected, got.ignored) == (want.rejected, want.ignored)


def _json_record(event: ev.RunEvent, **extra: Any) -> dict[str, Any]:
    doc = json.loads(otlp_json(vfo_log_record(event)))
    doc.update(extra)
    return doc


def test_a_bad_json_record_is_rejected_alone_with_its_index() -> None:
    good = [node(f"n{i}", C, t_s=i, run="json-run") for i in range(3)]
    records = [
        _json_record(good[0]),
        _json_record(node("x", C, t_s=9, run="json-run"), traceId="not-hex"),
        _json_record(good[1]),
        _json_record(node("y", C, t_s=9, run="json-run"), body={"stringValue": "\udc80"}),
        _json_record(node("z", C, t_s=9, run="json-run"), timeUnixNano={"no": "object"}),
        _json_record(good[2]),
        {"body": {"stringValue": "another application's log line"}},
    ]
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}).encode()
    decoded = parse_logs_json(body, Limits())
    assert [e.node_id for e in decoded.events] == ["n0", "n1", "n2"]
    assert (decoded.rejected, decoded.ignored) == (3, 1)
    message = decoded.message()
    assert message.startswith("rejected 3 vfo record(s); the rest of the batch was kept: log record 1: ")
    assert "traceId 'not-hex' is not a hex string" in message
    assert "log record 3: not a valid OTLP/JSON log record" in message and "surrogate" in message
    assert "log record 4: " in message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"[1, 2]", "an OTLP/JSON request is a JSON object"),
        (b'{"resourceLogs": {"a": 1}}', "request.resourceLogs is not a list of objects"),
        (b'{"resourceLogs": [{"scopeLogs": [1]}]}', "resourceLogs[0].scopeLogs is not a list of objects"),
    ],
)
def test_a_body_that_is_not_an_otlp_json_request_is_refused_whole(body: bytes, message: str) -> None:
    with pytest.raises(RequestError, match=re.escape(message)):
        parse_logs_json(body, Limits())


def test_hex_ids_are_case_insensitive_and_keys_named_like_ids_in_attributes_are_left_alone() -> None:
    e = node("n", C, t_s=1, run="hex-run")
    record = _json_record(e, traceId="5B8EFFF798038103D269B633813FC60C", spanId="eee19b7ec3c1b174")
    record["attributes"].append({"key": "vfo.attr.traceId", "value": {"stringValue": "zz"}})
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}).encode()
    decoded = parse_logs_json(body, Limits())
    assert decoded.rejected == 0 and [x.node_id for x in decoded.events] == ["n"]
    assert decoded.events[0].attributes["traceId"] == "zz"


# -- the HTTP answers ----------------------------------------------------------------------


def _status(data: bytes, ctype: str) -> status_pb2.Status:
    status = status_pb2.Status()
    if ctype == JSON:
        json_format.Parse(data, status)
    else:
        status.ParseFromString(data)
    return status


def test_partial_success_over_http_protobuf_and_json(receiver: ReceiverThread) -> None:
    bad = vfo_log_record(node("bad", C, t_s=1, run="partial"))
    for kv in bad.attributes:
        if kv.key == "vfo.state":
            kv.value.string_value = "on-fire"
    request = logs_request([vfo_log_record(node("ok", C, t_s=1, run="partial")), bad])
    for ctype, body in ((PB, request.SerializeToString()), (JSON, otlp_json(request))):
        status, _, data = _post(receiver.otlp_http_port, "/v1/logs", body, ctype)
        assert status == 200
        resp = logs_service_pb2.ExportLogsServiceResponse()
        if ctype == JSON:
            assert json.loads(data)["partialSuccess"]["rejectedLogRecords"] == "1"
            json_format.Parse(data, resp)
        else:
            resp.ParseFromString(data)
        assert resp.partial_success.rejected_log_records == 1
        assert resp.partial_success.error_message == (
            "rejected 1 vfo record(s); the rest of the batch was kept: log record 1: unknown state 'on-fire'"
        )
    stats = receiver.server.receiver.stats
    assert (stats.rejected, stats.events_stored, stats.duplicates) == (2, 1, 1)


@pytest.mark.parametrize("ctype", [PB, JSON])
def test_malformed_bodies_are_400_with_a_status_in_the_request_encoding(
    receiver: ReceiverThread, ctype: str
) -> None:
    for path, body, headers in (
        ("/v1/logs", b"\x0a\xff\xff\xff\xff\x0f" if ctype == PB else b"{", {}),
        ("/v1/traces", b"\x0a\x05ab" if ctype == PB else b"[]", {}),
        ("/v1/metrics", b"\x0a\x05ab" if ctype == PB else b'{"resourceMetrics": 3}', {}),
        ("/v1/logs", b"not gzip at all", {"Content-Encoding": "gzip"}),
        ("/v1/logs", gzip.compress(b"{}")[:-6], {"Content-Encoding": "gzip"}),
    ):
        status, headers_out, data = _post(receiver.otlp_http_port, path, body, ctype, headers)
        assert status == 400, (path, body, data)
        assert headers_out["Content-Type"].startswith(ctype)
        got = _status(data, ctype)
        assert got.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and got.message, got
    assert receiver.server.receiver.stats.events_received == 0


def test_wrong_media_type_encoding_and_method(receiver: ReceiverThread) -> None:
    port = receiver.otlp_http_port
    status, _, data = _post(port, "/v1/logs", b"x", "text/plain")
    assert status == 415 and b"unsupported Content-Type 'text/plain'" in data
    status, _, data = _post(port, "/v1/logs", b"x", PB, {"Content-Encoding": "br"})
    assert status == 415 and "unsupported Content-Encoding 'br'" in _status(data, PB).message
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
    conn.request("GET", "/v1/logs")
    assert conn.getresponse().status == 405
    conn.close()


def test_bodies_over_the_limit_are_413_on_the_wire_and_after_gzip_without_memory_growth() -> None:
    limit = 1 << 20
    with ReceiverThread(_config(max_request_bytes=limit)) as thread:
        port = thread.otlp_http_port
        status, _, data = _post(port, "/v1/logs", b"\0" * (limit + 1), PB)
        assert status == 413 and "larger than max_request_bytes (1048576 bytes" in _status(data, PB).message
        bomb = gzip.compress(b"\0" * (256 << 20), compresslevel=9)  # 256 MiB of zeros in ~250 KiB
        assert len(bomb) < limit
        tracemalloc.start()
        try:
            status, _, data = _post(port, "/v1/logs", bomb, PB, {"Content-Encoding": "gzip"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert status == 413, data
        assert peak < 16 * limit, f"inflating the bomb held {peak} bytes"
        fits = logs_request([vfo_log_record(node("n", C, t_s=1, run="fits"))]).SerializeToString()
        status, _, _ = _post(port, "/v1/logs", gzip.compress(fits), PB, {"Content-Encoding": "gzip"})
        assert status == 200
        assert thread.server.receiver.stats.events_stored == 1


def test_a_gzip_body_of_several_members_split_across_reads_is_read_whole(receiver: ReceiverThread) -> None:
    events = [node(f"n{i}", C, t_s=i, run="gz-run") for i in range(40)]
    body = logs_request([vfo_log_record(e) for e in events]).SerializeToString()
    third = len(body) // 3
    members = b"".join(
        gzip.compress(part) for part in (body[:third], body[third : 2 * third], body[2 * third :])
    )
    status, _, data = _post(receiver.otlp_http_port, "/v1/logs", members, PB, {"Content-Encoding": "gzip"})
    assert status == 200, data
    assert receiver.server.receiver.stats.events_stored == 40


def test_a_bearer_token_is_required_when_configured() -> None:
    body = logs_request([vfo_log_record(node("n", C, t_s=1, run="auth-run"))]).SerializeToString()
    with ReceiverThread(_config(auth_token="s3cret")) as thread:
        port = thread.otlp_http_port
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, _, data = _post(port, "/v1/logs", body, PB, headers)
            assert status == 401
            assert _status(data, PB).message == "missing or invalid bearer token"
        assert thread.server.receiver.stats.events_received == 0
        status, _, _ = _post(port, "/v1/logs", body, PB, {"Authorization": "Bearer s3cret"})
        assert status == 200


def test_overload_is_503_with_retry_after_and_retry_info() -> None:
    with ReceiverThread(_config(max_pending_events=10)) as thread:
        receiver = thread.server.receiver
        assert receiver._store is not None
        store = GatedStore(receiver._store)
        receiver._store = store  # type: ignore[assignment]
        held = logs_request([vfo_log_record(node(f"n{i}", C, t_s=i, run="held")) for i in range(8)])
        refused = logs_request([vfo_log_record(node(f"n{i}", C, t_s=i, run="refused")) for i in range(8)])
        result: list[int] = []
        first = threading.Thread(
            target=lambda: result.append(
                _post(thread.otlp_http_port, "/v1/logs", held.SerializeToString())[0]
            )
        )
        first.start()
        try:
            wait_until(lambda: receiver.pending_events == 8, what="8 events pending")
            for ctype, body in ((PB, refused.SerializeToString()), (JSON, otlp_json(refused))):
                status, headers, data = _post(thread.otlp_http_port, "/v1/logs", body, ctype)
                assert status == 503 and headers["Retry-After"] == "1"
                got = _status(data, ctype)
                assert got.message == "ingest queue full (8 events pending); retry later"
                info = error_details_pb2.RetryInfo()
                assert got.details[0].Unpack(info) and info.retry_delay.ToNanoseconds() == 1_000_000_000
        finally:
            store.gate.set()
            first.join(DEADLINE_S)
        assert result == [200]
        assert thread.call(receiver.store.count("refused")) == 0
        assert thread.call(receiver.store.count("held")) == 8


def test_metrics_are_accepted_and_counted_in_both_encodings(receiver: ReceiverThread) -> None:
    exemplar = metrics_pb2.Exemplar(as_int=1, trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    gauge = metrics_pb2.Metric(
        name="m",
        gauge=metrics_pb2.Gauge(
            data_points=[metrics_pb2.NumberDataPoint(as_int=i, exemplars=[exemplar]) for i in range(3)]
        ),
    )
    request = metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[gauge])])
        ]
    )
    assert '"traceId": "01010101' in otlp_json(request).decode()
    for ctype, body in ((PB, request.SerializeToString()), (JSON, otlp_json(request))):
        status, _, _ = _post(receiver.otlp_http_port, "/v1/metrics", body, ctype)
        assert status == 200
    assert receiver.server.receiver.stats.metrics_points_ignored == 6


def test_cors_preflight_for_browser_senders_from_allowed_origins_only() -> None:
    with ReceiverThread(_config(cors_origins=["https://app.example"])) as thread:
        for origin, want in (("https://app.example", 204), ("https://evil.example", 403)):
            conn = http.client.HTTPConnection("127.0.0.1", thread.otlp_http_port, timeout=DEADLINE_S)
            conn.request(
                "OPTIONS",
                "/v1/traces",
                headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            )
            resp = conn.getresponse()
            assert resp.status == want
            if want == 204:
                assert resp.getheader("Access-Control-Allow-Origin") == origin
                assert "Content-Type" in (resp.getheader("Access-Control-Allow-Headers") or "")
            conn.close()


def test_tls_and_token_together_over_the_sdk_http_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS on the OTLP/HTTP port (the servers' one --tls-cert/--tls-key) with a bearer token, from
    the SDK's OTLP/HTTP exporter given the CA and the header, as OTEL_EXPORTER_OTLP_* would."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests lets these win over the exporter's CA
        monkeypatch.delenv(name, raising=False)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
    from opentelemetry.sdk.trace.export import SpanExportResult

    from vfo_otel.receiver import TlsFiles
    from vfo_otel.testing import in_memory_emitter

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
            ),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=DEADLINE_S,
    )
    telemetry = in_memory_emitter()
    try:
        with telemetry.emitter.run("tls-run") as run, run.pipeline("video", {"a": _spec()}) as p:
            with p.asset("clip-1") as asset, asset.node("a"):
                pass
        spans = telemetry.spans.get_finished_spans()
    finally:
        telemetry.close()
    with ReceiverThread(_config(auth_token="tok"), TlsFiles(str(cert), str(key))) as thread:
        url = f"https://127.0.0.1:{thread.otlp_http_port}/v1/traces"
        refused = HttpSpans(endpoint=url, certificate_file=str(cert), timeout=5)
        assert refused.export(spans) == SpanExportResult.FAILURE  # 401: not retried
        refused.shutdown()
        exporter = HttpSpans(
            endpoint=url, certificate_file=str(cert), headers={"authorization": "Bearer tok"}, timeout=5
        )
        assert exporter.export(spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
        stats = thread.server.receiver.stats
        assert stats.events_stored > 0 and stats.by_signal == {"traces": stats.events_stored}


def _spec() -> Any:
    from vfo_otel import NodeSpec

    return NodeSpec("analyze")
