"""Run state that never lies, end to end: the emitter (real OTLP exporters) -> a real receiver
(gRPC on port 0) -> its snapshot, and the spans the emitter ends (in-memory exporters).

The pure rules are tested in tests/receiver/test_run_state.py; here each scenario of the issue
runs through the real parts. Waits are polls of the receiver with deadlines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from tests.reliability.support import wait_revision, wait_until
from vfo_otel import Emitter, NodeSpec, RunEvent
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.receiver import ReceiverConfig, ReceiverThread
from vfo_otel.testing import in_memory_emitter

R, C, F = ev.STATE_RUNNING, ev.STATE_COMPLETE, ev.STATE_FAILED


@pytest.fixture
def receiver() -> Iterator[ReceiverThread]:
    config = ReceiverConfig(grpc_address="127.0.0.1:0", http_address=None, store_path=":memory:")
    with ReceiverThread(config) as thread:
        yield thread


def _emitter(receiver: ReceiverThread, **kw: Any) -> Emitter:
    return Emitter(
        endpoint=f"http://127.0.0.1:{receiver.grpc_port}",
        export_metrics_otlp=False,
        heartbeat_interval_s=None,
        **kw,
    )


def _event(scope: int, state: int, run: str, **kw: Any) -> RunEvent:
    ids = {"run_id": run}
    if scope >= ev.SCOPE_PIPELINE:
        ids["pipeline_id"] = "p"
    if scope >= ev.SCOPE_ASSET:
        ids["asset_id"] = "a"
    if scope == ev.SCOPE_NODE:
        kw.setdefault("node_id", "n")
        kw.setdefault("attempt_id", 1)
    return RunEvent(scope=scope, state=state, **ids, **kw)  # type: ignore[arg-type]


def _states(address: str, run: str, revision: int) -> tuple[int, int, int]:
    snap = wait_revision(address, run, revision)
    return snap.run.state, snap.pipelines[0].state, snap.pipelines[0].assets[0].state


def test_scenarios_1_and_2_complete_run_with_a_running_node_then_the_node_fails(
    receiver: ReceiverThread,
) -> None:
    address = f"127.0.0.1:{receiver.grpc_port}"
    emitter = _emitter(receiver)
    try:
        emitter.emit(_event(ev.SCOPE_RUN, R, "e2e-1"))
        emitter.emit(_event(ev.SCOPE_NODE, R, "e2e-1"))
        emitter.emit(_event(ev.SCOPE_RUN, C, "e2e-1"))  # held back: its node still runs
        assert emitter.force_flush()
        assert emitter.stats.deferred == 1
        assert _states(address, "e2e-1", 2) == (R, R, R)  # never complete while the node runs
        emitter.emit(_event(ev.SCOPE_NODE, F, "e2e-1", error=ev.Error(error_class="ExitCode")))
        assert emitter.force_flush()
        snap = wait_revision(address, "e2e-1", 4)
        assert (snap.run.state, snap.pipelines[0].state, snap.pipelines[0].assets[0].state) == (F, F, F)
        assert snap.run.error.error_class == "PipelineFailed"
        assert snap.pipelines[0].error.error_class == "AssetFailed"
        assert snap.pipelines[0].assets[0].error.error_class == "NodeFailed"
    finally:
        emitter.shutdown()


def test_scenario_2_the_run_s_root_span_ends_with_status_error() -> None:
    tel = in_memory_emitter(heartbeat_interval_s=None)
    try:
        tel.emitter.emit(_event(ev.SCOPE_RUN, R, "span-1"))
        tel.emitter.emit(_event(ev.SCOPE_NODE, R, "span-1"))
        tel.emitter.emit(_event(ev.SCOPE_RUN, C, "span-1"))
        assert [s.name for s in tel.spans.get_finished_spans()] == []  # the run waits for its node
        tel.emitter.emit(_event(ev.SCOPE_NODE, F, "span-1", error=ev.Error(error_class="ExitCode")))
        spans = {s.name: s for s in tel.spans.get_finished_spans()}
        run = spans["vfo.run"]
        assert run.status.status_code == StatusCode.ERROR
        assert run.attributes["error.type"] == "PipelineFailed"
        assert run.end_time >= spans["vfo.node n"].end_time  # a parent never ends before its child
    finally:
        tel.close()


def test_scenario_3_a_silent_run_is_ended_by_liveness(tmp_path: Any) -> None:
    config = ReceiverConfig(
        grpc_address="127.0.0.1:0",
        http_address=None,
        store_path=str(tmp_path / "s.sqlite3"),
        heartbeat_lost_after_s=0.5,
        stale_after_s=0.25,
    )
    with ReceiverThread(config) as receiver:
        address = f"127.0.0.1:{receiver.grpc_port}"
        emitter = _emitter(receiver)
        try:
            emitter.emit(_event(ev.SCOPE_RUN, R, "silent"))
            emitter.emit(_event(ev.SCOPE_NODE, R, "silent"))
            emitter.emit(_event(ev.SCOPE_NODE, F, "silent", error=ev.Error(error_class="ExitCode")))
            assert emitter.force_flush()

            def ended() -> Any:
                with SnapshotClient(address) as client:
                    snap = client.get_snapshot("silent", timeout_s=5)
                return snap if snap.run.state == F else None

            snap = wait_until(ended, what="the silent run ended by liveness")
            assert snap.run.error.error_class == "HeartbeatLost"
        finally:
            emitter.shutdown()


def test_scenario_4_the_run_block_waits_for_a_node_in_a_worker_thread(receiver: ReceiverThread) -> None:
    address = f"127.0.0.1:{receiver.grpc_port}"
    emitter = _emitter(receiver)
    started, release = threading.Event(), threading.Event()
    worker: threading.Thread | None = None
    try:
        with emitter.run("threads") as run, run.pipeline("p", {"n": NodeSpec("s")}) as pipeline:
            with pipeline.asset("a") as asset:
                node = asset.node("n")

                def work() -> None:
                    with node:
                        started.set()
                        release.wait(60)

                worker = threading.Thread(target=work)
                worker.start()
                assert started.wait(60)
        # every block has exited; the node still runs in its thread
        assert emitter.force_flush()
        snap = wait_until(
            lambda: _snapshot_with(address, "threads", lambda s: s.pipelines and s.pipelines[0].assets),
            what="the run's asset row",
        )
        assert snap.run.state == R and snap.pipelines[0].state == R
        release.set()
        worker.join(60)
        assert emitter.force_flush()
        done = wait_until(
            lambda: _snapshot_with(address, "threads", lambda s: s.run.state == C), what="run complete"
        )
        assert done.run.end_time.ToNanoseconds() >= done.pipelines[0].assets[0].end_time.ToNanoseconds()
    finally:
        release.set()
        if worker is not None:
            worker.join(60)
        emitter.shutdown()


def _snapshot_with(address: str, run: str, ok: Any) -> Any:
    with SnapshotClient(address) as client:
        try:
            snap = client.get_snapshot(run, timeout_s=5)
        except Exception:
            return None
    return snap if ok(snap) else None


def test_scenario_5_shutdown_ends_what_the_emitter_started_as_abandoned() -> None:
    tel = in_memory_emitter(heartbeat_interval_s=None)
    try:
        tel.emitter.emit(_event(ev.SCOPE_RUN, R, "left"))
        tel.emitter.emit(_event(ev.SCOPE_NODE, R, "left"))
        tel.emitter.shutdown()
        spans = {s.name: s for s in tel.spans.get_finished_spans()}
        assert set(spans) == {"vfo.run", "vfo.node n"}  # Tempo gets a root span for the run
        assert spans["vfo.node n"].attributes["error.type"] == "Abandoned"
        assert spans["vfo.run"].attributes["error.type"] == "Abandoned"
        assert spans["vfo.run"].status.status_code == StatusCode.ERROR
        assert tel.emitter.stats.abandoned == 2
    finally:
        tel.close()


def test_scenario_6_a_reused_run_id_is_counted_warned_once_and_flagged(
    receiver: ReceiverThread, caplog: pytest.LogCaptureFixture
) -> None:
    address = f"127.0.0.1:{receiver.grpc_port}"
    emitter = _emitter(receiver)
    try:
        t0 = time.time_ns()
        with caplog.at_level(logging.WARNING, logger="vfo_otel"):
            for i in range(3):  # three executions under one run id, one after the other
                for state, t_s in ((R, 2 * i), (C, 2 * i + 1)):
                    e = _event(ev.SCOPE_RUN, state, "reused")
                    e.time.FromNanoseconds(t0 + t_s * 10**9)
                    emitter.emit(e)
        assert emitter.stats.run_ids_reused == 2
        assert sum("must be unique per execution" in r.getMessage() for r in caplog.records) == 1
        assert emitter.force_flush()
        snap = wait_revision(address, "reused", 6)
        assert snap.run.conflict.startswith("RunIdReused:")
    finally:
        emitter.shutdown()


def test_the_emitter_s_live_entity_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runner that starts entities and never ends them cannot grow the emitter without bound."""
    import vfo_otel.emitter._emitter as emitter_module

    monkeypatch.setattr(emitter_module, "MAX_LIVE_ENTITIES", 3)
    tel = in_memory_emitter(heartbeat_interval_s=None)
    try:
        for i in range(5):
            tel.emitter.emit(_event(ev.SCOPE_NODE, R, "many", node_id=f"n{i}"))
        assert tel.emitter.stats.untracked == 2 and tel.emitter.stats.events == 5
        assert len(tel.otlp_log_records()) == 5  # every event still went out as a log record
        tel.emitter.emit(_event(ev.SCOPE_NODE, C, "many", node_id="n4"))  # an untracked one ends
        assert "vfo.node n4" in {s.name for s in tel.spans.get_finished_spans()}
    finally:
        tel.close()
