"""Bad request arguments get 400 / INVALID_ARGUMENT with a clear message, and a fault of the
receiver itself reaches clients as INTERNAL / 500 without its Python details (logged and
counted once, in one place). Real gRPC and HTTP servers on port 0."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import grpc
import pytest

from tests.receiver import logs_request, node, vfo_log_record
from tests.receiver.test_integration import GrpcWatch, _http
from tests.reliability.support import wait_until
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.receiver import ReceiverConfig, ReceiverThread


@pytest.fixture
def receiver() -> Iterator[ReceiverThread]:
    config = ReceiverConfig(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", store_path=":memory:")
    with ReceiverThread(config) as thread:
        with grpc.insecure_channel(f"127.0.0.1:{thread.grpc_port}") as ch:
            from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

            request = logs_request([vfo_log_record(node("n", ev.STATE_RUNNING, t_s=1, run="bad-args"))])
            logs_service_pb2_grpc.LogsServiceStub(ch).Export(request, timeout=30)
        yield thread


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize("last_event_id", ["²", "-1", "1e9", "9" * 30, "abc"])
def test_a_last_event_id_that_is_not_a_revision_is_a_400(
    receiver: ReceiverThread, last_event_id: str
) -> None:
    header = {"Last-Event-ID": last_event_id.encode().decode("latin-1")}  # as the bytes go on the wire
    status, _, body = _http(receiver.http_port, "/v1/runs/bad-args/snapshot:watch", header)
    assert status == 400
    assert body["message"].startswith("Last-Event-ID must be a snapshot revision (a decimal number)")


@pytest.mark.parametrize("token", [_token("-1"), _token("-50"), _token("1" * 40), "%%%", _token("²")])
def test_a_list_runs_page_token_not_made_by_the_receiver_is_invalid(
    receiver: ReceiverThread, token: str
) -> None:
    with SnapshotClient(f"127.0.0.1:{receiver.grpc_port}") as client, pytest.raises(grpc.RpcError) as info:
        client.list_runs(page_token=token)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed page_token" in (info.value.details() or "")
    status, _, body = _http(receiver.http_port, f"/v1/runs?page_token={token}")
    assert status == 400 and "malformed page_token" in body["message"]


def test_a_negative_page_size_is_invalid(receiver: ReceiverThread) -> None:
    status, _, body = _http(receiver.http_port, "/v1/runs?page_size=-3")
    assert status == 400 and "page_size" in body["message"]


def test_a_fault_of_the_receiver_is_internal_logged_and_counted_without_python_details(
    receiver: ReceiverThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    core = receiver.server.receiver

    def broken(*args: object, **kwargs: object) -> db.ListRunsResponse:
        raise KeyError("secret-internal-name")

    monkeypatch.setattr(core, "list_runs", broken)
    with caplog.at_level(logging.ERROR, logger="vfo_otel.receiver"):
        with (
            SnapshotClient(f"127.0.0.1:{receiver.grpc_port}") as client,
            pytest.raises(grpc.RpcError) as info,
        ):
            client.list_runs()
        status, _, body = _http(receiver.http_port, "/v1/runs")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    details = info.value.details() or ""
    assert "KeyError" not in details and "secret-internal-name" not in details
    assert details == "internal error in SnapshotService; the receiver logged it"
    assert status == 500
    assert body == {"code": 13, "message": "internal error in HTTP GET /v1/runs; the receiver logged it"}
    assert core.stats.internal_errors == 2
    logged = [r for r in caplog.records if r.getMessage().startswith("internal error in")]
    assert len(logged) == 2 and all(r.exc_info and r.exc_info[0] is KeyError for r in logged)


def test_the_watcher_table_holds_only_runs_someone_watches(receiver: ReceiverThread) -> None:
    """Unbounded state: a watch that ends leaves nothing behind in the receiver."""
    core = receiver.server.receiver
    watches = [GrpcWatch(receiver.grpc_port, "bad-args") for _ in range(3)]
    for w in watches:
        assert w.next().run.run_id == "bad-args"
    assert core.watched_runs == 1  # three watchers of one run: one entry
    for w in watches:
        w.close()
    wait_until(lambda: core.watched_runs == 0, what="the watcher table emptied")


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/runs/bad-args/snapshot?pipeline_id=p&asset_id=a"])
def test_conditional_requests_answer_304_until_the_body_changes(receiver: ReceiverThread, path: str) -> None:
    """Issue 15, item 6: 20 pollers every 0.5 s no longer pull unchanged bodies."""
    status, headers, body = _get(receiver.http_port, path)
    assert status == 200 and body and headers["ETag"].startswith('"')
    etag = headers["ETag"]
    status, again, body = _get(receiver.http_port, path, {"If-None-Match": etag})
    assert (status, body, again["ETag"]) == (304, b"", etag)
    assert _get(receiver.http_port, path, {"If-None-Match": '"other", ' + etag})[0] == 304
    assert _get(receiver.http_port, path, {"If-None-Match": '"other"'})[0] == 200
    # a new event changes the body: a poller holding the old tag gets the new body and tag
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as ch:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

        request = logs_request([vfo_log_record(node("n", ev.STATE_COMPLETE, t_s=2, run="bad-args"))])
        logs_service_pb2_grpc.LogsServiceStub(ch).Export(request, timeout=30)
    status, headers, body = _get(receiver.http_port, path, {"If-None-Match": etag})
    assert status == 200 and body and headers["ETag"] != etag
