"""Promise 6, overload: a bounded ingest queue answers UNAVAILABLE with retry information that
the OTLP clients honour, memory stays bounded under a flood, and reads are served meanwhile.

The deterministic part blocks the receiver's store with a gate the test holds, so the queue
fills for certain. The flood runs a real receiver process and a real sender process; its size
is ``VFO_OTEL_FLOOD_EVENTS`` (default 100 000 in CI; docs/reliability.md quotes a 1 000 000 run).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from tests.receiver import logs_request, node, vfo_log_record
from tests.reliability.support import (
    DEADLINE_S,
    ROOT,
    ReceiverProcess,
    child_env,
    record_figures,
    stored_event_ids,
    wait_until,
)
from vfo_otel import Emitter
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.emitter import build_resource
from vfo_otel.receiver import EventRecord, ReceiverConfig, ReceiverThread, Store
from vfo_otel.testing import CountingLogExporter

C = ev.STATE_COMPLETE


class GatedStore:
    """A store whose ``append`` waits until the test opens the gate (the injected fault)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.gate = threading.Event()

    async def append(self, events: Sequence[EventRecord]) -> Any:
        opened = await asyncio.to_thread(self.gate.wait, DEADLINE_S)
        assert opened, "gate never opened"
        return await self.inner.append(events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def gated() -> Iterator[tuple[ReceiverThread, GatedStore]]:
    config = ReceiverConfig(
        grpc_address="127.0.0.1:0", http_address=None, store_path=":memory:", max_pending_events=10
    )
    with ReceiverThread(config) as thread:
        receiver = thread.server.receiver
        assert receiver._store is not None
        store = GatedStore(receiver._store)
        receiver._store = store  # type: ignore[assignment]
        try:
            yield thread, store
        finally:
            store.gate.set()


def _request(run: str, n: int) -> Any:
    return logs_request([vfo_log_record(node(f"n{i}", C, t_s=i, run=run)) for i in range(n)])


def test_full_queue_answers_unavailable_with_retry_info_in_both_trailers(
    gated: tuple[ReceiverThread, GatedStore],
) -> None:
    thread, store = gated
    receiver = thread.server.receiver
    with grpc.insecure_channel(f"127.0.0.1:{thread.grpc_port}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        first = stub.Export.future(_request("held", 8), timeout=DEADLINE_S)  # held in the store
        wait_until(lambda: receiver.pending_events == 8, what="8 events pending")
        with pytest.raises(grpc.RpcError) as info:
            stub.Export(_request("refused", 8), timeout=DEADLINE_S)  # 8 + 8 > max_pending_events
        store.gate.set()
        first.result(DEADLINE_S)
    err = info.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert err.details() == "ingest queue full (8 events pending); retry later"
    trailers = dict(err.trailing_metadata())  # type: ignore[attr-defined]
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])  # what Go's exporter reads
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0] and status.message == err.details()
    info_in_status = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info_in_status)
    retry = error_details_pb2.RetryInfo.FromString(
        trailers["google.rpc.retryinfo-bin"]
    )  # what Python's reads
    assert info_in_status == retry and retry.retry_delay.ToNanoseconds() == 1_000_000_000
    assert receiver.stats.overloaded == 1
    assert thread.call(store.run("refused")) is None  # nothing of it stored
    assert thread.call(store.run("held")) is not None


def test_the_python_otlp_exporter_retries_after_the_delay_and_its_events_are_stored(
    gated: tuple[ReceiverThread, GatedStore],
) -> None:
    thread, store = gated
    receiver = thread.server.receiver
    endpoint = f"http://127.0.0.1:{thread.grpc_port}"
    with grpc.insecure_channel(f"127.0.0.1:{thread.grpc_port}") as channel:
        held = logs_service_pb2_grpc.LogsServiceStub(channel).Export.future(
            _request("held", 8), timeout=DEADLINE_S
        )
        wait_until(lambda: receiver.pending_events == 8, what="8 events pending")

        exporter = CountingLogExporter(endpoint=endpoint, timeout=30)
        lp = LoggerProvider(resource=build_resource("overload"), shutdown_on_exit=False)
        lp.add_log_record_processor(BatchLogRecordProcessor(exporter, max_export_batch_size=512))
        emitter = Emitter(
            endpoint=endpoint,
            service_name="overload",
            logger_provider=lp,
            heartbeat_interval_s=None,
            export_metrics_otlp=False,
        )
        try:
            with emitter.run("retried") as run, run.pipeline("p") as pipe, pipe.asset("a") as asset:
                for i in range(3):
                    with asset.node(f"n{i}", stage="s"):
                        pass
            flushed: list[bool] = []
            t0 = time.monotonic()
            flusher = threading.Thread(target=lambda: flushed.append(lp.force_flush(30_000)))
            flusher.start()
            wait_until(lambda: receiver.stats.overloaded >= 1, what="the exporter refused once")
            refused_at = time.monotonic()
            store.gate.set()  # the store drains; the exporter's retry, after RetryInfo's 1 s, gets in
            flusher.join(DEADLINE_S)
            took = time.monotonic() - t0
        finally:
            emitter.shutdown()
            lp.shutdown()
        held.result(DEADLINE_S)
    assert flushed == [True]
    assert not exporter.failed and len(exporter.acknowledged) == 12
    assert (
        took >= 0.75 and time.monotonic() - refused_at >= 0.75
    )  # it waited the delay the server asked for (1 s)
    sqlite = receiver.store.inner.store  # type: ignore[union-attr]
    stored = {e.event_id for batch in sqlite.replay() for e in batch}
    assert set(exporter.acknowledged) <= stored
    assert thread.call(receiver.run_fold("retried")).revision == 12
    record_figures(
        "overload_retry",
        refused_exports=receiver.stats.overloaded,
        retry_after_s=1.0,
        export_to_ack_s=round(took, 2),
    )


# ---------------------------------------------------------------------------------------
# The flood
# ---------------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_flood_memory_stays_bounded_and_reads_are_served(tmp_path: Path) -> None:
    total = int(os.environ.get("VFO_OTEL_FLOOD_EVENTS", "100000"))
    per_request = 512
    store = tmp_path / "flood.sqlite3"
    receiver = ReceiverProcess(store, args=["--retention-runs", "20"]).start()
    samples: list[tuple[float, int]] = []
    reads: list[float] = []
    read_errors: list[str] = []
    expired_reads: list[int] = []
    stop = threading.Event()
    address = f"127.0.0.1:{receiver.grpc_port}"

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), _rss_kib(receiver.pid)))
            stop.wait(0.05)  # the sampling period of a measurement, not a synchronisation

    def read() -> None:
        with SnapshotClient(address) as client:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    runs = client.list_runs(page_size=5, timeout_s=5)
                    if runs.runs:
                        client.get_snapshot(runs.runs[0].run.run_id, timeout_s=5)
                    reads.append(time.monotonic() - t0)
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.NOT_FOUND:  # expired between the two calls: served
                        reads.append(time.monotonic() - t0)
                        expired_reads.append(1)
                    else:
                        read_errors.append(f"{exc.code().name}: {exc.details()}")
                stop.wait(0.05)

    try:
        baseline_kib = _rss_kib(receiver.pid)
        threads = [threading.Thread(target=sample), threading.Thread(target=read)]
        for t in threads:
            t.start()
        sender = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.reliability.workers",
                "flood",
                address,
                str(total),
                str(per_request),
                "4",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=child_env(),
            timeout=1800,
        )
        stop.set()
        for t in threads:
            t.join(DEADLINE_S)
        assert sender.returncode == 0, sender.stderr
        counts = json.loads(sender.stdout)
        bound = 20 + max(20 // 10, 1)  # retention keeps the newest 20 runs, sweeping past 22

        def settled() -> db.ListRunsResponse | None:
            # a sweep may still be running when the flood ends: wait for it (the receiver
            # sweeps again until it is under the bound), however loaded the machine is
            with SnapshotClient(address) as client:
                resp = client.list_runs(page_size=1000, timeout_s=10)
            return resp if len(resp.runs) <= bound else None

        listed = wait_until(settled, what="retention brought the runs under the bound")
        final_kib = _rss_kib(receiver.pid)
    finally:
        stop.set()
        receiver.stop()
    assert counts["sent_events"] == counts["acknowledged_events"] == total
    stored = len(stored_event_ids(store))
    runs = (total + per_request - 1) // per_request
    assert len(listed.runs) <= bound
    assert stored <= len(listed.runs) * per_request  # expired runs' events are deleted from the store too
    assert not read_errors, read_errors[:3]
    assert len(reads) >= 5 and max(reads) < 5.0
    rss = [kib for _, kib in samples]
    half = len(rss) // 2
    first_half_peak, second_half_peak = max(rss[: half or 1]), max(rss[half:] or rss)
    peak = max(rss)
    # Flat: the second half of the flood adds (almost) nothing to the first half's peak.
    assert second_half_peak - first_half_peak < 64 * 1024, (first_half_peak, second_half_peak)
    assert peak - baseline_kib < 512 * 1024
    reads_sorted = sorted(reads)
    record_figures(
        "flood",
        events_sent=counts["sent_events"],
        events_acknowledged=counts["acknowledged_events"],
        unavailable_answers=counts["unavailable"],
        runs=runs,
        runs_retained=len(listed.runs),
        events_stored_at_end=stored,
        seconds=counts["seconds"],
        events_per_s=round(total / counts["seconds"]),
        rss_baseline_mib=round(baseline_kib / 1024, 1),
        rss_peak_first_half_mib=round(first_half_peak / 1024, 1),
        rss_peak_second_half_mib=round(second_half_peak / 1024, 1),
        rss_peak_mib=round(peak / 1024, 1),
        rss_final_mib=round(final_kib / 1024, 1),
        reads_during_flood=len(reads),
        reads_of_a_run_just_expired=len(expired_reads),
        read_latency_p50_ms=round(reads_sorted[len(reads) // 2] * 1000, 1),
        read_latency_max_ms=round(max(reads) * 1000, 1),
    )
