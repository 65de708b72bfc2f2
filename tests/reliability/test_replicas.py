"""N receivers on one PostgreSQL (issue 13): any replica ingests any event and serves any run,
live across replicas; liveness stays idempotent; a replica killed with SIGKILL loses nothing
it acknowledged; a PostgreSQL restart loses nothing acknowledged and nobody restarts.

Every test runs against a real PostgreSQL server (``pg_cluster``: tests/pgcluster.py); waits
poll with deadlines, never sleep to synchronise.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from tests.receiver import event, logs_request, node, vfo_log_record
from tests.reliability.support import (
    DEADLINE_S,
    ReceiverProcess,
    record_figures,
    wait_revision,
    wait_until,
    without_generated_time,
)
from vfo_otel import Emitter
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2_grpc as db_grpc
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.emitter import build_resource
from vfo_otel.receiver import ReceiverConfig, ReceiverThread
from vfo_otel.testing import CountingLogExporter

R, C, F = ev.STATE_RUNNING, ev.STATE_COMPLETE, ev.STATE_FAILED


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 1)


def _config(url: str, **kw: Any) -> ReceiverConfig:
    return ReceiverConfig(grpc_address="127.0.0.1:0", http_address=None, store_path=url, **kw)


def _export(port: int, events: list[ev.RunEvent]) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            logs_request([vfo_log_record(e) for e in events]), timeout=DEADLINE_S
        )


def _run_events(run_id: str) -> list[ev.RunEvent]:
    out = [event(ev.SCOPE_RUN, R, t_s=0, run=run_id)]
    for a in range(12):
        for k, nid in enumerate(("probe", "encode", "package")):
            out.append(node(nid, R, t_s=a + k, run=run_id, asset=f"a{a:02d}"))
            end = F if (a, k) == (3, 1) else C
            out.append(node(nid, end, t_s=a + k + 0.5, run=run_id, asset=f"a{a:02d}"))
    return out


class _Watch:
    """A WatchSnapshot stream whose snapshots are timestamped on arrival."""

    def __init__(self, port: int, run_id: str) -> None:
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = db_grpc.SnapshotServiceStub(self._channel)
        self.call = stub.WatchSnapshot(db.WatchSnapshotRequest(run_id=run_id), timeout=120)
        self.seen: list[tuple[float, int]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for resp in self.call:
                with self._cond:
                    self.seen.append((time.perf_counter(), resp.snapshot.revision))
                    self._cond.notify_all()
        except grpc.RpcError:
            pass

    def arrival(self, revision: int) -> float:
        """When a snapshot of at least ``revision`` arrived (waits up to the deadline)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: any(r >= revision for _, r in self.seen), DEADLINE_S)
            assert ok, f"no snapshot of revision {revision} within {DEADLINE_S} s: {self.seen[-3:]}"
            return next(t for t, r in self.seen if r >= revision)

    def close(self) -> None:
        self.call.cancel()
        self._channel.close()


def test_three_replicas_serve_one_run_split_across_them_as_one_receiver_would(pg_url: str) -> None:
    events = _run_events("split-run")
    rng = random.Random(13)
    sent = events + rng.sample(events, 25)  # duplicates
    rng.shuffle(sent)  # disorder
    batches, i = [], 0
    while i < len(sent):  # batches of 1 to 9 events
        n = rng.randint(1, 9)
        batches.append(sent[i : i + n])
        i += n
    replicas = [ReceiverThread(_config(pg_url)).start() for _ in range(3)]
    try:
        with ThreadPoolExecutor(6) as pool:  # concurrent exports, each to a random replica
            list(pool.map(lambda b: _export(rng.choice(replicas).grpc_port, b), batches))
        with ReceiverThread(_config(":memory:")) as single:  # one receiver, everything in order
            _export(single.grpc_port, events)
            want = without_generated_time(wait_revision(f"127.0.0.1:{single.grpc_port}", "split-run", 1))
        listed = []
        for r in replicas:
            snap = wait_revision(f"127.0.0.1:{r.grpc_port}", "split-run", len(events))
            assert without_generated_time(snap) == want  # revision included: distinct events
            with SnapshotClient(f"127.0.0.1:{r.grpc_port}") as c:
                listed.append(
                    wait_until(
                        lambda c=c: (rs := c.list_runs()).runs and rs.runs[0].revision == len(events) and rs,
                        what="the run listed at its revision",
                    )
                )
        assert listed[0] == listed[1] == listed[2]

        # live across replicas: a watcher on B sees each event ingested by A
        a, b = replicas[0], replicas[1]
        watch = _Watch(b.grpc_port, "split-run")
        try:
            watch.arrival(len(events))
            lags = []
            for i in range(30):
                e = node("late", R, t_s=100 + i, run="split-run", asset=f"x{i:02d}")
                t0 = time.perf_counter()
                _export(a.grpc_port, [e])
                lags.append(watch.arrival(len(events) + i + 1) - t0)
        finally:
            watch.close()
        record_figures(
            "replica_watch_latency",
            events=len(lags),
            p50_ms=percentile_ms(lags, 0.5),
            p99_ms=percentile_ms(lags, 0.99),
            note="in-process replicas sharing one interpreter; see bench --only postgres for processes",
        )
    finally:
        for r in replicas:
            r.stop()


def test_liveness_on_every_replica_ends_a_silent_node_once(pg_url: str) -> None:
    config = _config(pg_url, stale_after_s=0.2, heartbeat_lost_after_s=0.3)
    replicas = [ReceiverThread(config).start() for _ in range(3)]
    try:
        t = time.time_ns()
        running = node("n", R, t_s=0, run="silent-run")
        running.time.FromNanoseconds(t)
        _export(replicas[2].grpc_port, [running])
        for r in replicas:
            snap = wait_revision(f"127.0.0.1:{r.grpc_port}", "silent-run", 2)
            assert snap.revision == 2 and snap.summary.nodes.failed == 1
    finally:
        for r in replicas:
            r.stop()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT event_id FROM vfo_events WHERE run_id = 'silent-run'").fetchall()
    assert len(rows) == 2 and sum(r[0].startswith("hbl-") for r in rows) == 1


def _stored_ids(url: str, run_id: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT event_id FROM vfo_events WHERE run_id = %s", (run_id,))}


def test_kill_9_of_one_replica_mid_stream_loses_no_acknowledged_event(pg_url: str) -> None:
    a = ReceiverProcess(pg_url).start()  # type: ignore[arg-type]  # a URL is a store too
    b = ReceiverProcess(pg_url).start()  # type: ignore[arg-type]  # a URL is a store too
    acked: list[str] = []
    stop = threading.Event()
    try:

        def stream() -> None:
            i = 0
            while not stop.is_set():
                batch = [node(f"n{i}-{j}", C, t_s=i, run="killed-run", asset=f"a{i}") for j in range(20)]
                try:
                    _export(a.grpc_port, batch)
                except grpc.RpcError:
                    return  # the replica is gone: nothing of this batch was acknowledged
                acked.extend(e.event_id for e in batch)
                i += 1

        sender = threading.Thread(target=stream, daemon=True)
        sender.start()
        wait_until(lambda: len(acked) >= 400, what="a stream under way")
        a.kill9()
        sender.join(DEADLINE_S)
        assert not sender.is_alive()
        assert set(acked) <= _stored_ids(pg_url, "killed-run")  # every acknowledged event is stored
        snap = wait_revision(f"127.0.0.1:{b.grpc_port}", "killed-run", len(acked))
        assert snap.revision >= len(acked)  # and served by the replica that stayed
        assert snap.summary.nodes.complete >= len(acked)
    finally:
        stop.set()
        a.stop()
        b.stop()


def test_a_postgresql_restart_mid_stream_loses_nothing_and_the_receiver_recovers(
    pg_cluster: Any, pg_url: str
) -> None:
    receiver = ReceiverThread(_config(pg_url)).start()
    address = f"127.0.0.1:{receiver.grpc_port}"
    exporter = CountingLogExporter(endpoint=f"http://{address}", timeout=60)
    lp = LoggerProvider(resource=build_resource("pg-restart"), shutdown_on_exit=False)
    lp.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=50))
    emitter = Emitter(
        endpoint=f"http://{address}",
        service_name="pg-restart",
        logger_provider=lp,
        heartbeat_interval_s=None,
        export_metrics_otlp=False,
    )
    unavailable = 0
    try:
        with emitter.run("restart-run") as run, run.pipeline("p") as pipe:
            for i in range(40):
                with pipe.asset(f"a{i:02d}") as asset, asset.node("n", stage="s"):
                    pass
                if i == 10:
                    emitter.force_flush(30_000)
                    pg_cluster.stop()  # the database goes away mid-stream
                if i == 25:
                    with SnapshotClient(address) as c:  # reads of the store say UNAVAILABLE meanwhile
                        for read in (c.list_runs, lambda: c.get_snapshot("not-cached-run", timeout_s=10)):
                            try:
                                read()
                            except grpc.RpcError as exc:
                                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                                unavailable += 1
                    pg_cluster.start()  # ... and comes back
        assert emitter.force_flush(60_000)
    finally:
        emitter.shutdown()
        lp.shutdown()
        try:
            assert not exporter.failed, f"{len(exporter.failed)} events failed for good"
            stored = _stored_ids(pg_url, "restart-run")
            assert set(exporter.acknowledged) <= stored
            snap = wait_revision(address, "restart-run", len(stored))  # the receiver serves again
            assert snap.run.state == C and snap.summary.assets.complete == 40
        finally:
            receiver.stop()
    assert unavailable == 2


@pytest.fixture(autouse=True)
def _cluster_is_up(pg_cluster: Any) -> Any:
    """A test that stopped the server must not leave it down for the next one."""
    yield
    try:
        pg_cluster.wait_ready(1.0)
    except psycopg.OperationalError:
        pg_cluster.start()
