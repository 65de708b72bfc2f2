"""The receiver over real sockets on port 0: real OTLP exporters in, gRPC and HTTP JSON/SSE out.

Every wait is on a queue or a stream with a deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.metrics.v1 import metrics_pb2

from tests.receiver import event, logs_request, node, vfo_log_record
from vfo_otel import Emitter
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2_grpc as db_grpc
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.contract.conventions import Key
from vfo_otel.receiver import ReceiverConfig, ReceiverThread, SqliteStore, asset_page_token

Q, R, C, F = ev.STATE_QUEUED, ev.STATE_RUNNING, ev.STATE_COMPLETE, ev.STATE_FAILED
DEADLINE_S = 20.0


def _config(store: str = ":memory:", **kw: Any) -> ReceiverConfig:
    return ReceiverConfig(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", store_path=store, **kw)


@pytest.fixture
def receiver() -> Iterator[ReceiverThread]:
    with ReceiverThread(_config()) as thread:
        yield thread


@pytest.fixture
def client(receiver: ReceiverThread) -> Iterator[SnapshotClient]:
    with SnapshotClient(f"127.0.0.1:{receiver.grpc_port}") as c:
        yield c


@pytest.fixture
def emitter(receiver: ReceiverThread) -> Iterator[Emitter]:
    e = Emitter(
        endpoint=f"http://127.0.0.1:{receiver.grpc_port}", service_name="it-runner", export_metrics_otlp=False
    )
    yield e
    e.shutdown()


def _http(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=DEADLINE_S) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def _http_snapshot(port: int, run_id: str, pipeline_id: str = "", asset_id: str = "") -> db.DashboardSnapshot:
    status, headers, body = _http(
        port, f"/v1/runs/{run_id}/snapshot?pipeline_id={pipeline_id}&asset_id={asset_id}"
    )
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    return json_format.ParseDict(body, db.DashboardSnapshot())


def _emit_flushed(emitter: Emitter, e: ev.RunEvent) -> None:
    emitter.emit(e)
    assert emitter.force_flush(10_000)


def _workflow_events(run_id: str) -> list[ev.RunEvent]:
    """A small run: a -> b over one asset; b fails once and succeeds on retry."""
    k = dict(run=run_id, pipeline="video", asset="clip")
    return [
        event(ev.SCOPE_RUN, R, t_s=0, run=run_id),
        event(ev.SCOPE_PIPELINE, R, t_s=0.1, run=run_id, pipeline="video"),
        event(ev.SCOPE_ASSET, R, t_s=0.2, **k),
        node("a", R, t_s=1, stage="analyze", **k),
        node(
            "a",
            C,
            t_s=2,
            stage="analyze",
            duration_s=1,
            exit_code=0,
            command=ev.Command(command_line="probe clip", argv=["probe", "clip"]),
            **k,
        ),
        node("b", R, t_s=2, stage="encode", upstream_node_ids=["a"], **k),
        node(
            "b",
            F,
            t_s=3,
            stage="encode",
            duration_s=1,
            exit_code=75,
            upstream_node_ids=["a"],
            error=("ExitCode", "exited with status 75"),
            **k,
        ),
        node("b", R, t_s=4, stage="encode", attempt=2, upstream_node_ids=["a"], **k),
        node(
            "b", C, t_s=5, stage="encode", attempt=2, duration_s=1, exit_code=0, upstream_node_ids=["a"], **k
        ),
        event(ev.SCOPE_ASSET, C, t_s=5, **k),
        event(ev.SCOPE_PIPELINE, C, t_s=5, run=run_id, pipeline="video"),
        event(ev.SCOPE_RUN, C, t_s=5, run=run_id),
    ]


def _wait_revision(client: SnapshotClient, run_id: str, revision: int) -> db.DashboardSnapshot:
    """Wait (watch stream, deadline) until the run reaches ``revision``."""
    try:
        snap = client.get_snapshot(run_id)
        if snap.revision >= revision:
            return snap
        after = snap.revision
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND
        raise
    for snap in client.watch(run_id, after_revision=after, timeout_s=DEADLINE_S):
        if snap.revision >= revision:
            return snap
    raise AssertionError("watch ended")


# ---------------------------------------------------------------------------
# Streams read on background threads into queues
# ---------------------------------------------------------------------------


class GrpcWatch:
    """A WatchSnapshot call whose snapshots land in a queue."""

    def __init__(self, port: int, run_id: str, **request: Any) -> None:
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = db_grpc.SnapshotServiceStub(self._channel)
        self.call = stub.WatchSnapshot(db.WatchSnapshotRequest(run_id=run_id, **request), timeout=60)
        self.queue: queue.Queue[db.DashboardSnapshot | Exception] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for resp in self.call:
                self.queue.put(resp.snapshot)
        except grpc.RpcError as exc:
            self.queue.put(exc)

    def next(self) -> db.DashboardSnapshot:
        item = self.queue.get(timeout=DEADLINE_S)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.call.cancel()
        self._thread.join(DEADLINE_S)
        self._channel.close()


class SseWatch:
    """An HTTP Server-Sent Events stream whose events land in a queue as (id, event, data)."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()
        self.queue: queue.Queue[tuple[str, str, str] | None] = queue.Queue()
        self.comments: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            while True:
                line = self.response.readline()
                if not line:
                    break
                text = line.decode().rstrip("\n")
                if not text:
                    if "data" in fields:
                        self.queue.put((fields.get("id", ""), fields.get("event", ""), fields["data"]))
                    fields = {}
                elif text.startswith(":"):
                    self.comments.append(text)
                else:
                    name, _, value = text.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            self.queue.put(None)

    def next(self) -> tuple[int, db.DashboardSnapshot]:
        item = self.queue.get(timeout=DEADLINE_S)
        assert item is not None, "SSE stream ended"
        event_id, event_name, data = item
        assert event_name == "snapshot"
        snap = json_format.Parse(data, db.DashboardSnapshot())
        assert int(event_id) == snap.revision
        return snap.revision, snap

    def close(self) -> None:
        """Shut the socket down (the reader sees EOF), wait for the reader, then close."""
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(DEADLINE_S)
        self.conn.close()


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_exporter_to_receiver_snapshot_same_over_grpc_and_http_json(
    receiver: ReceiverThread, client: SnapshotClient, emitter: Emitter
) -> None:
    events = _workflow_events("it-run")
    for e in events:
        emitter.emit(e)
    assert emitter.force_flush(10_000)
    snap = _wait_revision(client, "it-run", len(events))
    assert snap.revision == len(events)  # log records and span events of the same transitions count once
    assert (snap.run.state, snap.run.service_name) == (C, "it-runner")
    assert (snap.summary.nodes.complete, snap.summary.attempts.failed, snap.summary.attempts.total) == (
        2,
        1,
        3,
    )

    for sel in (("", ""), ("video", "clip")):
        over_grpc = client.get_snapshot("it-run", *sel)
        over_http = _http_snapshot(receiver.http_port, "it-run", *sel)
        assert over_http == over_grpc  # one message, two encodings
    detailed = client.get_snapshot("it-run", "video", "clip")
    b = next(d for d in detailed.node_details if d.node_id == "b")
    assert [(a.attempt_id, a.state, a.exit_code) for a in b.attempts] == [(1, F, 75), (2, C, 0)]
    assert b.attempts[0].error.error_class == "ExitCode"

    runs = client.list_runs()
    status, _, body = _http(receiver.http_port, "/v1/runs")
    assert status == 200 and json_format.ParseDict(body, db.ListRunsResponse()) == runs
    assert [item.run.run_id for item in runs.runs] == ["it-run"]

    status, _, stats = _http(receiver.http_port, "/v1/stats")
    assert status == 200
    assert stats["events_stored"] == len(events)
    assert stats["duplicates"] >= 1  # terminal transitions also arrived as span events
    assert stats["by_signal"]["logs"] + stats["by_signal"].get("traces", 0) == len(events)


def test_live_streams_deliver_a_new_revision_for_each_change(
    receiver: ReceiverThread, client: SnapshotClient, emitter: Emitter
) -> None:
    events = _workflow_events("live-run")
    _emit_flushed(emitter, events[0])
    _wait_revision(client, "live-run", 1)
    watch = GrpcWatch(receiver.grpc_port, "live-run")
    sse = SseWatch(receiver.http_port, "/v1/runs/live-run/snapshot:watch?pipeline_id=video&asset_id=clip")
    try:
        assert sse.response.status == 200
        assert sse.response.getheader("Content-Type") == "text/event-stream"
        assert watch.next().revision == 1  # the current snapshot at once
        rev, first = sse.next()
        assert rev == 1 and first.selection.asset_id == "clip"
        for n, e in enumerate(events[1:], start=2):
            _emit_flushed(emitter, e)
            g = watch.next()
            assert g.revision == n, f"gRPC watch: expected revision {n} after event {n}, got {g.revision}"
            rev, s = sse.next()
            assert rev == n, f"SSE: expected revision {n} after event {n}, got {rev}"
        assert g.run.state == C and s.run.state == C
        assert s.node_details and s.node_details[0].node_id == "a"
        assert watch.queue.empty() and sse.queue.empty()  # nothing but one revision per change
    finally:
        watch.close()
        sse.close()

    # An EventSource reconnecting with Last-Event-ID resumes after that revision.
    last = len(events)
    resumed = SseWatch(
        receiver.http_port, "/v1/runs/live-run/snapshot:watch", headers={"Last-Event-ID": str(last - 1)}
    )
    try:
        assert resumed.next()[0] == last
    finally:
        resumed.close()
    again = GrpcWatch(receiver.grpc_port, "live-run", after_revision=last - 2)
    try:
        assert again.next().revision == last  # coalesced: the newest, never an older one
    finally:
        again.close()


def test_restart_on_the_same_store_gives_the_same_snapshot(tmp_path: Path) -> None:
    store = str(tmp_path / "events.sqlite3")
    events = _workflow_events("durable-run")
    with ReceiverThread(_config(store)) as first:
        e = Emitter(
            endpoint=f"http://127.0.0.1:{first.grpc_port}", service_name="it", export_metrics_otlp=False
        )
        for x in events:
            e.emit(x)
        assert e.force_flush(10_000)
        e.shutdown()
        with SnapshotClient(f"127.0.0.1:{first.grpc_port}") as c:
            before = _wait_revision(c, "durable-run", len(events))
            before_sel = c.get_snapshot("durable-run", "video", "clip")
    # every export was answered after its commit: a new process folds the same snapshot
    with ReceiverThread(_config(store)) as second, SnapshotClient(f"127.0.0.1:{second.grpc_port}") as c:
        after = c.get_snapshot("durable-run")
        after_sel = c.get_snapshot("durable-run", "video", "clip")
        http_after = _http_snapshot(second.http_port, "durable-run")
    for snap in (before, after, before_sel, after_sel, http_after):
        snap.ClearField("generated_time")
    assert after == before and after_sel == before_sel and http_after == before
    assert after.revision == len(events)


def test_duplicates_sent_twice_count_once_and_partial_success(
    receiver: ReceiverThread, client: SnapshotClient
) -> None:
    events = [node("a", R, t_s=1, run="dup-run"), node("a", C, t_s=2, run="dup-run")]
    request = logs_request([vfo_log_record(e) for e in events])
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        for _ in range(2):
            resp = stub.Export(request, timeout=DEADLINE_S)
            assert not resp.HasField("partial_success")
        # answered only after the commit: readable at once, no waiting
        assert client.get_snapshot("dup-run").revision == 2

        bad = vfo_log_record(node("a", F, t_s=3, run="dup-run"))
        for kv in bad.attributes:
            if kv.key == Key.STATE:
                kv.value.string_value = "on-fire"
        good = vfo_log_record(node("b", C, t_s=3, run="dup-run"))
        resp = stub.Export(logs_request([bad, good]), timeout=DEADLINE_S)
    assert resp.partial_success.rejected_log_records == 1
    assert resp.partial_success.error_message == (
        "rejected 1 vfo record(s); the rest of the batch was kept: log record 0: unknown state 'on-fire'"
    )
    snap = client.get_snapshot("dup-run")
    assert snap.revision == 3 and snap.summary.nodes.complete == 2
    assert (snap.run.service_name, snap.run.host_name) == ("svc", "host-a")
    _, _, stats = _http(receiver.http_port, "/v1/stats")
    assert (stats["events_stored"], stats["duplicates"], stats["rejected"]) == (3, 2, 1)


def test_health_serving_over_grpc_and_http(receiver: ReceiverThread) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in (
            "",
            "vfo.dashboard.v1.SnapshotService",
            "opentelemetry.proto.collector.logs.v1.LogsService",
            "opentelemetry.proto.collector.trace.v1.TraceService",
        ):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE_S)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    assert _http(receiver.http_port, "/healthz")[::2] == (200, {"status": "SERVING"})


def test_unknown_run_is_not_found_with_a_json_error_body(
    receiver: ReceiverThread, client: SnapshotClient
) -> None:
    status, headers, body = _http(receiver.http_port, "/v1/runs/no-such-run/snapshot")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert body == {"code": grpc.StatusCode.NOT_FOUND.value[0], "message": "run 'no-such-run' not found"}
    status, _, body = _http(receiver.http_port, "/v1/runs/no-such-run/snapshot:watch")
    assert (status, body["code"]) == (404, 5)
    with pytest.raises(grpc.RpcError) as info:
        client.get_snapshot("no-such-run")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "run 'no-such-run' not found"
    with pytest.raises(grpc.RpcError) as info:
        next(iter(client.watch("no-such-run", timeout_s=DEADLINE_S)))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    status, _, body = _http(receiver.http_port, "/v1/runs?page_token=%25%25")
    assert status == 400 and body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    status, _, body = _http(receiver.http_port, "/v1/runs?state=exploded")
    expected = "unknown state 'exploded' (one of: queued, running, waiting, complete, failed, skipped)"
    assert (status, body["message"]) == (400, expected)


def test_list_runs_paging_and_state_filter(receiver: ReceiverThread, client: SnapshotClient) -> None:
    states = {"run-a": C, "run-b": F, "run-c": C, "run-d": R}
    events = []
    for i, (run_id, state) in enumerate(states.items()):
        events.append(event(ev.SCOPE_RUN, R, t_s=i, run=run_id))  # run-d starts last: newest
        if state != R:
            events.append(event(ev.SCOPE_RUN, state, t_s=i + 10, run=run_id))
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            logs_request([vfo_log_record(e) for e in events]), timeout=DEADLINE_S
        )
    page1 = client.list_runs(page_size=3)
    assert [r.run.run_id for r in page1.runs] == ["run-d", "run-c", "run-b"]
    assert page1.next_page_token
    page2 = client.list_runs(page_size=3, page_token=page1.next_page_token)
    assert [r.run.run_id for r in page2.runs] == ["run-a"] and not page2.next_page_token
    assert page2.runs[0].revision == 2 and page2.runs[0].run.state == C
    complete = client.list_runs(state=C)
    assert [r.run.run_id for r in complete.runs] == ["run-c", "run-a"]

    _, _, body = _http(receiver.http_port, "/v1/runs?page_size=3")
    assert json_format.ParseDict(body, db.ListRunsResponse()) == page1
    _, _, body = _http(receiver.http_port, f"/v1/runs?page_size=3&page_token={page1.next_page_token}")
    assert json_format.ParseDict(body, db.ListRunsResponse()) == page2
    for state in ("failed", "STATE_FAILED"):
        _, _, body = _http(receiver.http_port, f"/v1/runs?state={state}")
        assert [r["run"]["runId"] for r in body["runs"]] == ["run-b"]
    with pytest.raises(grpc.RpcError) as info:
        client.list_runs(page_size=1001)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_bearer_token_is_required_when_configured() -> None:
    token = "s3cret-token"
    with ReceiverThread(_config(auth_token=token, cors_origins=["http://dash.example"])) as thread:
        status, _, body = _http(thread.http_port, "/v1/runs")
        assert (status, body["code"]) == (401, grpc.StatusCode.UNAUTHENTICATED.value[0])
        status, headers, _ = _http(
            thread.http_port,
            "/v1/runs",
            {"Authorization": f"Bearer {token}", "Origin": "http://dash.example"},
        )
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "http://dash.example"
        status, headers, _ = _http(
            thread.http_port,
            "/v1/runs",
            {"Authorization": f"Bearer {token}", "Origin": "http://evil.example"},
        )
        assert status == 200 and "Access-Control-Allow-Origin" not in headers
        assert _http(thread.http_port, "/healthz")[0] == 200  # health stays open
        address = f"127.0.0.1:{thread.grpc_port}"
        with SnapshotClient(address) as anonymous, pytest.raises(grpc.RpcError) as info:
            anonymous.list_runs()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(address) as channel:
            stub = logs_service_pb2_grpc.LogsServiceStub(channel)
            request = logs_request([vfo_log_record(node("a", C, t_s=1, run="auth-run"))])
            with pytest.raises(grpc.RpcError) as info:
                stub.Export(request, timeout=DEADLINE_S)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            stub.Export(request, timeout=DEADLINE_S, metadata=(("authorization", f"Bearer {token}"),))
        with SnapshotClient(address, token=token) as c:
            assert [r.run.run_id for r in c.list_runs().runs] == ["auth-run"]


def test_metrics_are_accepted_and_counted_not_folded(receiver: ReceiverThread) -> None:
    gauge = metrics_pb2.Metric(
        name="queue.depth",
        gauge=metrics_pb2.Gauge(
            data_points=[metrics_pb2.NumberDataPoint(as_int=1), metrics_pb2.NumberDataPoint(as_int=2)]
        ),
    )
    request = metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[gauge, metrics_pb2.Metric(name="empty")])]
            )
        ]
    )
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(request, timeout=DEADLINE_S)
    _, _, stats = _http(receiver.http_port, "/v1/stats")
    assert stats["metrics_points_ignored"] == 2
    assert _http(receiver.http_port, "/v1/runs")[2] == {}


def test_a_failing_store_answers_unavailable_and_the_receiver_keeps_serving(receiver: ReceiverThread) -> None:
    store = receiver.server.receiver.store
    assert isinstance(store, SqliteStore) and store.store is not None
    store.store._db.close()  # every write now fails inside SQLite
    request = logs_request([vfo_log_record(node("a", C, t_s=1, run="lost-run"))])
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=DEADLINE_S)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # retryable: the exporter sends it again
        assert info.value.details().startswith("event store unavailable: cannot write to event store")
        resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    # the store is the source of truth: reads say UNAVAILABLE (retryable) while it is broken
    status, _, body = _http(receiver.http_port, "/v1/runs/lost-run/snapshot")
    assert status == 503 and body["message"].startswith("event store unavailable: cannot read event store")


def test_asset_pages_over_grpc_and_http_and_bad_page_arguments(
    receiver: ReceiverThread, client: SnapshotClient
) -> None:
    events = [node("n", C, t_s=1, run="paged", asset=f"a{i:03d}") for i in range(25)]
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            logs_request([vfo_log_record(e) for e in events]), timeout=DEADLINE_S
        )
    first = client.get_snapshot("paged", "p", "a020", asset_page_size=10)
    (pipe,) = first.pipelines
    assert [a.asset_id for a in pipe.assets] == [f"a{i:03d}" for i in range(10)] + ["a020"]
    token = pipe.asset_page.next_page_token
    second = client.get_snapshot("paged", asset_page_size=10, asset_page_token=token)
    assert [a.asset_id for a in second.pipelines[0].assets] == [f"a{i:03d}" for i in range(10, 20)]
    assert second.pipelines[0].asset_page.offset == 10
    query = f"asset_page_size=10&asset_page_token={token}"
    _, _, body = _http(receiver.http_port, f"/v1/runs/paged/snapshot?{query}")
    over_http = json_format.ParseDict(body, db.DashboardSnapshot())
    over_http.generated_time.Clear()
    second.generated_time.Clear()
    assert over_http == second
    stream = client.watch("paged", asset_page_size=10, asset_page_token=token, timeout_s=DEADLINE_S)
    watched = next(iter(stream))
    assert watched.pipelines[0].assets == second.pipelines[0].assets

    for query, message in [
        ("asset_page_token=%25%25", "malformed asset_page_token '%%'"),
        ("asset_page_size=5000", "asset_page_size must be between 0"),
        ("asset_id=a001", "asset_id needs pipeline_id"),
        ("asset_page_token=" + asset_page_token("nosuch", "x"), "asset_page_token names pipeline 'nosuch'"),
    ]:
        for path in ("/v1/runs/paged/snapshot", "/v1/runs/paged/snapshot:watch"):
            status, _, body = _http(receiver.http_port, f"{path}?{query}")
            assert status == 400 and body["message"].startswith(message), (path, body)
    with pytest.raises(grpc.RpcError) as info:
        client.get_snapshot("paged", asset_page_token="%%")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed asset_page_token" in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        next(iter(client.watch("paged", asset_page_size=5000, timeout_s=DEADLINE_S)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
