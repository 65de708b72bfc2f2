"""Promise 7, security: loopback by default, bearer tokens on ingest and reads (gRPC metadata,
HTTP header or RFC 6750 ``access_token``), TLS on both servers, CORS closed by default, and
nothing but OTLP ingest writes to the store.
"""

from __future__ import annotations

import hmac
import http.client
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.receiver import logs_request, node, vfo_log_record
from tests.reliability.support import DEADLINE_S, ROOT, child_env
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.receiver import (
    DEFAULT_GRPC_ADDRESS,
    DEFAULT_HTTP_ADDRESS,
    ReceiverConfig,
    ReceiverThread,
    TlsFiles,
)

TOKEN = "s3cret-T0ken"
ORIGIN = "https://dash.example"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for 127.0.0.1 and localhost, made by the openssl CLI."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
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
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=DEADLINE_S,
    )
    return TlsFiles(str(cert), str(key))


@pytest.fixture(scope="module")
def secured(tls_files: TlsFiles) -> Iterator[ReceiverThread]:
    config = ReceiverConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        store_path=":memory:",
        auth_token=TOKEN,
        cors_origins=[ORIGIN],
    )
    with ReceiverThread(config, tls_files) as thread:
        yield thread


def _channel(thread: ReceiverThread, tls: TlsFiles) -> grpc.Channel:
    return grpc.secure_channel(f"127.0.0.1:{thread.grpc_port}", grpc.ssl_channel_credentials(tls.cert))


def _https(
    thread: ReceiverThread,
    tls: TlsFiles,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    ctx = ssl.create_default_context(cafile=tls.cert_file)
    req = urllib.request.Request(
        f"https://127.0.0.1:{thread.http_port}{path}", method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(req, timeout=DEADLINE_S, context=ctx) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _meta(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token is not None else ()


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN[:-1], TOKEN + "x", ""])
def test_grpc_ingest_and_reads_refuse_a_missing_or_wrong_token_over_tls(
    secured: ReceiverThread, tls_files: TlsFiles, token: str | None
) -> None:
    meta = _meta(token) if token != "" else (("authorization", "Basic " + TOKEN),)
    request = logs_request([vfo_log_record(node("a", ev.STATE_COMPLETE, t_s=1, run="intruder"))])
    with _channel(secured, tls_files) as channel:
        calls = [
            lambda: logs_service_pb2_grpc.LogsServiceStub(channel).Export(
                request, timeout=DEADLINE_S, metadata=meta
            ),
            lambda: trace_service_pb2_grpc.TraceServiceStub(channel).Export(
                trace_service_pb2.ExportTraceServiceRequest(), timeout=DEADLINE_S, metadata=meta
            ),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert info.value.details() == "missing or invalid bearer token"
    with SnapshotClient(
        f"127.0.0.1:{secured.grpc_port}", token=token or None, root_certificates=tls_files.cert
    ) as client:
        for read in (
            lambda: client.list_runs(),
            lambda: client.get_snapshot("x"),
            lambda: next(iter(client.watch("x", timeout_s=DEADLINE_S))),
        ):
            with pytest.raises(grpc.RpcError) as info:
                read()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    store = secured.server.receiver.store
    assert store is not None and secured.call(store.run("intruder")) is None


def test_the_right_token_is_accepted_on_grpc_ingest_and_reads_over_tls(
    secured: ReceiverThread, tls_files: TlsFiles
) -> None:
    request = logs_request([vfo_log_record(node("a", ev.STATE_COMPLETE, t_s=1, run="tls-run"))])
    with _channel(secured, tls_files) as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            request, timeout=DEADLINE_S, metadata=_meta(TOKEN)
        )
    with SnapshotClient(f"127.0.0.1:{secured.grpc_port}", token=TOKEN, root_certificates=tls_files.cert) as c:
        assert "tls-run" in [r.run.run_id for r in c.list_runs().runs]
        assert c.get_snapshot("tls-run").revision == 1
        assert next(iter(c.watch("tls-run", timeout_s=DEADLINE_S))).revision == 1
    # plaintext against the TLS port does not get in at all
    with (
        grpc.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as plain,
        pytest.raises(grpc.RpcError) as info,
    ):
        logs_service_pb2_grpc.LogsServiceStub(plain).Export(request, timeout=5, metadata=_meta(TOKEN))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_https_reads_need_the_token_in_the_header_or_the_session_cookie_never_in_the_url(
    secured: ReceiverThread, tls_files: TlsFiles
) -> None:
    with _channel(secured, tls_files) as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            logs_request([vfo_log_record(node("a", ev.STATE_COMPLETE, t_s=1, run="http-run"))]),
            timeout=DEADLINE_S,
            metadata=_meta(TOKEN),
        )
    routes = ["/v1/runs", "/v1/runs/http-run/snapshot", "/v1/stats"]
    for path in routes:
        for headers, query in [
            ({}, ""),
            ({"Authorization": "Bearer nope"}, ""),
            ({}, "?access_token=nope"),
            ({}, f"?access_token={TOKEN}"),  # a token in a URL ends up in logs: never accepted
            ({"Authorization": TOKEN}, ""),
            ({"Cookie": "vfo_otel_session=nope"}, ""),
        ]:
            status, _, body = _https(secured, tls_files, path + query, headers=headers)
            assert (status, json.loads(body)) == (
                401,
                {"code": 16, "message": "missing or invalid bearer token"},
            )
        assert _https(secured, tls_files, path, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
    # the dashboard's sign-in: POST /v1/session with the header sets an HttpOnly same-site cookie
    assert _https(secured, tls_files, "/v1/session", "POST")[0] == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, headers, _ = _https(secured, tls_files, "/v1/session", "POST", auth)
    assert status == 204
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("vfo_otel_session=") and TOKEN not in cookie
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/v1/", "Secure"):
        assert attribute in cookie, cookie
    session = cookie.split(";")[0]
    for path in routes:
        assert _https(secured, tls_files, path, headers={"Cookie": session})[0] == 200
    # the live stream, as a browser EventSource opens it: no header, the session cookie
    ctx = ssl.create_default_context(cafile=tls_files.cert_file)
    conn = http.client.HTTPSConnection("127.0.0.1", secured.http_port, timeout=DEADLINE_S, context=ctx)
    try:
        conn.request(
            "GET", "/v1/runs/http-run/snapshot:watch", headers={"Origin": ORIGIN, "Cookie": session}
        )
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
        assert resp.getheader("Access-Control-Allow-Origin") == ORIGIN  # CORS on the stream too
        assert resp.readline() == b"retry: 2000\n"
    finally:
        conn.close()
    assert _https(secured, tls_files, "/healthz")[0] == 200  # health stays open
    assert _https(secured, tls_files, "/")[0] == 200  # so does the page (it holds no data)


def test_every_token_check_goes_through_hmac_compare_digest_on_bytes(
    secured: ReceiverThread, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    _https(secured, tls_files, "/v1/runs", headers={"Authorization": "Bearer nope"})
    with SnapshotClient(
        f"127.0.0.1:{secured.grpc_port}", token="nope", root_certificates=tls_files.cert
    ) as c:
        with pytest.raises(grpc.RpcError):
            c.list_runs()
    assert len(calls) >= 2 and all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


def test_cors_is_closed_by_default_and_preflight_is_answered_for_allowed_origins_only(
    secured: ReceiverThread, tls_files: TlsFiles
) -> None:
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    status, headers, _ = _https(secured, tls_files, "/v1/runs", "OPTIONS", preflight)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Access-Control-Allow-Methods"] == "GET"
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, _ = _https(
        secured, tls_files, "/v1/runs", "OPTIONS", {**preflight, "Origin": "https://evil.example"}
    )
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = _https(
        secured,
        tls_files,
        "/v1/runs",
        headers={"Origin": "https://evil.example", "Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    # and with no --cors-origin at all, nobody is allowed
    config = ReceiverConfig(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", store_path=":memory:")
    assert config.cors_origins == []
    with ReceiverThread(config) as open_receiver:
        conn = http.client.HTTPConnection("127.0.0.1", open_receiver.http_port, timeout=DEADLINE_S)
        conn.request("OPTIONS", "/v1/runs", headers=preflight)
        resp = conn.getresponse()
        assert resp.status == 403 and resp.getheader("Access-Control-Allow-Origin") is None
        conn.close()


def test_loopback_by_default_and_serve_help_says_so() -> None:
    config = ReceiverConfig()
    assert config.grpc_address == DEFAULT_GRPC_ADDRESS == "127.0.0.1:4317"
    assert config.http_address == DEFAULT_HTTP_ADDRESS == "127.0.0.1:8686"
    out = subprocess.run(
        [sys.executable, "-m", "vfo_otel.app.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=DEADLINE_S,
        check=True,
    ).stdout
    flat = " ".join(out.split())
    assert "Binds to loopback (127.0.0.1) by default; any other address must be given explicitly." in flat
    assert "[default: 127.0.0.1:4317]" in flat and "[default: 127.0.0.1:8686]" in flat
    # limits exist by default: request size, string length, runs retained
    assert (config.max_request_bytes, config.limits.max_id_length, config.retention_runs) == (
        16 << 20,
        256,
        1000,
    )


def test_nothing_but_ingest_writes_to_the_store(secured: ReceiverThread, tls_files: TlsFiles) -> None:
    names = {m.name for m in db.DESCRIPTOR.services_by_name["SnapshotService"].methods}
    assert names == {"ListRuns", "GetSnapshot", "WatchSnapshot"}  # no write RPC exists
    with _channel(secured, tls_files) as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            logs_request([vfo_log_record(node("a", ev.STATE_COMPLETE, t_s=1, run="ro-run"))]),
            timeout=DEADLINE_S,
            metadata=_meta(TOKEN),
        )
    store = secured.server.receiver.store
    assert store is not None
    before = secured.call(store.count())
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for path in [
        "/v1/runs",
        "/v1/runs/ro-run/snapshot",
        "/v1/runs/ro-run/snapshot?pipeline_id=p&asset_id=a",
        "/v1/stats",
        "/healthz",
        "/",
    ]:
        assert _https(secured, tls_files, path, headers=auth)[0] == 200
        for method in ("POST", "PUT", "PATCH", "DELETE") if path != "/v1/session" else ():
            status, _, _ = _https(
                secured, tls_files, path, method, {**auth, "Content-Type": "application/json"}
            )
            assert status == 405, (method, path)
    with SnapshotClient(f"127.0.0.1:{secured.grpc_port}", token=TOKEN, root_certificates=tls_files.cert) as c:
        c.list_runs()
        c.get_snapshot("ro-run", "p", "a")
        next(iter(c.watch("ro-run", timeout_s=DEADLINE_S)))
    assert secured.call(store.count()) == before
