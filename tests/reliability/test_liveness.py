"""Promise 4, liveness: stale nodes, the HeartbeatLost policy, and the emitter's heartbeat.

Real receivers on real gRPC (port 0) with short thresholds; event times are the real clock,
so the receiver's liveness task decides on its own; waits are watch streams and polls with
deadlines.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from tests.receiver import logs_request, vfo_log_record
from tests.receiver.test_integration import GrpcWatch, _http
from tests.reliability.support import DEADLINE_S, wait_until
from vfo_otel import Emitter
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.receiver import (
    HEARTBEAT_LOST,
    ActiveAttempt,
    ReceiverConfig,
    ReceiverThread,
    SqliteStore,
    heartbeat_lost_event,
)

R, C, F = ev.STATE_RUNNING, ev.STATE_COMPLETE, ev.STATE_FAILED


def _config(store: str = ":memory:", **kw: Any) -> ReceiverConfig:
    return ReceiverConfig(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", store_path=store, **kw)


def _node_event(run: str, state: int, event_id: str, t_ns: int | None = None, **kw: Any) -> ev.RunEvent:
    e = ev.RunEvent(
        event_id=event_id,
        scope=ev.SCOPE_NODE,
        state=state,
        run_id=run,
        pipeline_id="p",  # type: ignore[arg-type]
        asset_id="a",
        node_id="n",
        stage_id="encode",
        attempt_id=1,
        source_id="worker-1",
        **kw,
    )
    e.time.FromNanoseconds(t_ns or time.time_ns())
    return e


def _send(port: int, *events: ev.RunEvent) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            logs_request([vfo_log_record(e) for e in events]), timeout=DEADLINE_S
        )


def _attempt(snap: db.DashboardSnapshot) -> db.Attempt:
    return snap.node_details[0].attempts[0]


def test_silent_running_node_is_shown_stale_at_the_same_revision_and_fresh_again_after_an_event() -> None:
    with ReceiverThread(_config(stale_after_s=0.4)) as thread:
        _send(thread.grpc_port, _node_event("quiet-run", R, "q-1"))
        watch = GrpcWatch(thread.grpc_port, "quiet-run", pipeline_id="p", asset_id="a")
        try:
            first = watch.next()
            assert (first.revision, _attempt(first).stale, first.summary.stale_nodes) == (1, False, 0)
            stale = watch.next()  # woken by the liveness task: no new event, same revision
            assert (
                stale.revision == 1
                and stale.generated_time.ToNanoseconds() > first.generated_time.ToNanoseconds()
            )
            assert (
                _attempt(stale).stale
                and stale.pipelines[0].assets[0].stale
                and stale.summary.stale_nodes == 1
            )
            assert _attempt(stale).state == R  # a flag, not a state: the node is still running
            status, _, body = _http(thread.http_port, "/v1/runs/quiet-run/snapshot?pipeline_id=p&asset_id=a")
            assert status == 200 and body["summary"]["staleNodes"] == 1
            assert body["nodeDetails"][0]["attempts"][0]["stale"] is True
            runs = SnapshotClient(f"127.0.0.1:{thread.grpc_port}").list_runs()
            assert runs.runs[0].summary.stale_nodes == 1
            assert thread.server.receiver.stats.stale_nodes == 1

            _send(thread.grpc_port, _node_event("quiet-run", R, "q-2", heartbeat=True))  # the worker speaks
            fresh = watch.next()
            assert fresh.revision == 2 and not _attempt(fresh).stale and fresh.summary.stale_nodes == 0
        finally:
            watch.close()


def test_heartbeat_lost_policy_fails_the_node_synthetically_and_a_late_real_end_wins_once(
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "liveness.sqlite3")
    config = _config(store, stale_after_s=0.3, heartbeat_lost_after_s=0.6)
    started = time.time_ns()
    with ReceiverThread(config) as thread:
        address = f"127.0.0.1:{thread.grpc_port}"
        _send(thread.grpc_port, _node_event("lost-run", R, "l-1", t_ns=started))
        watch = GrpcWatch(thread.grpc_port, "lost-run", pipeline_id="p", asset_id="a")
        try:
            snap = watch.next()
            while snap.revision < 2:
                snap = watch.next()
        finally:
            watch.close()
        lost = _attempt(snap)
        assert (lost.state, lost.synthetic, lost.stale) == (F, True, False)
        assert lost.error.error_class == HEARTBEAT_LOST
        assert lost.error.detail.startswith("no event (heartbeat or transition) for 0.6 s")
        assert lost.end_time.ToNanoseconds() == started + 600_000_000  # last event + heartbeat_lost_after
        assert snap.run.state == F  # derived from the node
        receiver = thread.server.receiver
        assert receiver.stats.heartbeat_lost == 1 and receiver.stats.by_signal["liveness"] == 1

        # The worker was alive after all: its real terminal event arrives late and wins.
        _send(thread.grpc_port, _node_event("lost-run", C, "l-real-end"))
        with SnapshotClient(address) as c:
            snap = c.get_snapshot("lost-run", "p", "a")
        real = _attempt(snap)
        assert (snap.revision, real.state, real.synthetic) == (3, C, False)
        assert not real.HasField("error") and snap.summary.attempts == db.StateCounts(complete=1, total=1)
        # exactly once: another liveness pass, even far in the future, writes nothing more
        assert thread.call(receiver.check_liveness(now_ns=time.time_ns() + 10**12)) == 0
        _send(thread.grpc_port, _node_event("lost-run", C, "l-real-end"))  # and a retry of it is a duplicate
        with SnapshotClient(address) as c:
            assert c.get_snapshot("lost-run").revision == 3

    # A restarted receiver replays the synthetic event from the store and does not write another.
    with ReceiverThread(config) as again, SnapshotClient(f"127.0.0.1:{again.grpc_port}") as c:
        assert again.call(again.server.receiver.check_liveness()) == 0
        snap = c.get_snapshot("lost-run", "p", "a")
        assert (snap.revision, _attempt(snap).state, _attempt(snap).synthetic) == (3, C, False)


def test_two_replicas_decide_the_same_heartbeat_lost_event() -> None:
    """The synthetic event's id comes from the attempt and its last event time only."""
    t = time.time_ns()
    with (
        ReceiverThread(_config(stale_after_s=0.2, heartbeat_lost_after_s=0.3)) as a,
        ReceiverThread(_config(stale_after_s=0.2, heartbeat_lost_after_s=0.3)) as b,
    ):
        for thread in (a, b):
            _send(thread.grpc_port, _node_event("replica-run", R, "r-1", t_ns=t))
        ids = []
        for thread in (a, b):
            address = f"127.0.0.1:{thread.grpc_port}"
            wait_until(
                lambda address=address: SnapshotClient(address).get_snapshot("replica-run").revision == 2,
                what="synthetic event",
            )
            store = thread.server.receiver.store
            assert isinstance(store, SqliteStore) and store.store is not None
            ids.append(sorted(e.event_id for batch in store.store.replay() for e in batch if e.synthetic))
    assert ids[0] == ids[1] and len(ids[0]) == 1
    expected = heartbeat_lost_event(
        "replica-run", ActiveAttempt(("p", "a", "n", 1), "encode", t), 300_000_000
    )
    assert ids[0] == [expected.event_id]


def test_the_emitters_heartbeat_keeps_a_long_node_fresh() -> None:
    with ReceiverThread(_config(stale_after_s=0.5)) as thread:
        address = f"127.0.0.1:{thread.grpc_port}"
        emitter = Emitter(
            endpoint=f"http://{address}",
            service_name="hb",
            heartbeat_interval_s=0.05,
            export_metrics_otlp=False,
        )
        try:
            with emitter.run("hb-run") as run, run.pipeline("p") as pipe, pipe.asset("a") as asset:
                with asset.node("long", stage="encode"):
                    emitter.force_flush(10_000)
                    began = time.monotonic()

                    def long_enough() -> db.DashboardSnapshot | None:
                        emitter.force_flush(10_000)
                        with SnapshotClient(address) as c:
                            snap = c.get_snapshot("hb-run", "p", "a")
                        # well past stale_after, the node is still fresh thanks to its heartbeats
                        return snap if time.monotonic() - began > 1.0 else None

                    snap = wait_until(long_enough, what="a node open for 1 s")
                    assert snap.node_details[0].state == R and not _attempt(snap).stale
                    assert snap.summary.stale_nodes == 0
                    assert emitter.stats.heartbeats >= 5
        finally:
            emitter.shutdown()
        assert thread.call(thread.server.receiver.run_fold("hb-run")).active_attempts() == []  # it ended
