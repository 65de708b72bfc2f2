"""Records the SDK's batch processors drop at a full queue show in ``EmitterStats``.

Real parts only: the emitter's own OTLP/gRPC exporters and batch processors, and a real OTLP
gRPC server (``vfo_otel.testing.OtlpSink``) that holds its first log export until the test
releases it, so the log queue fills up while the runner keeps emitting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from vfo_otel import Emitter, RunEvent
from vfo_otel.testing import OtlpSink

RUNNING, COMPLETE = 2, 4
QUEUE, BATCH = 2048, 512  # the SDK's default log queue and export batch sizes (set below)


class StallingSink(OtlpSink):
    """An OtlpSink that answers its first log export only once :attr:`release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.stalled = threading.Event()

    def _record(self, signal: str, request: Any) -> None:
        super()._record(signal, request)
        if signal == "logs" and not self.release.is_set():
            self.stalled.set()
            self.release.wait(60)


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[StallingSink]:
    for name in (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_INSECURE",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_TRACES_SAMPLER",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", str(QUEUE))
    monkeypatch.setenv("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", str(BATCH))
    server = StallingSink()
    server.start()
    yield server
    server.release.set()
    server.stop()


def test_full_log_queue_drops_are_counted(sink: StallingSink) -> None:
    emitter = Emitter(
        endpoint=sink.endpoint, export_metrics_otlp=False, heartbeat_interval_s=None, export_timeout_s=30
    )
    try:
        n = 3 * QUEUE
        for _ in range(n - 1):  # one run's span stays open: log records only
            emitter.emit(RunEvent(scope=1, state=RUNNING, run_id="r"))
        emitter.emit(RunEvent(scope=1, state=COMPLETE, run_id="r"))  # ends the span
        stats = emitter.stats
        assert stats.events == n and stats.failures == {}
        assert stats.enqueued == {"logs": n, "spans": 1}
        assert sink.stalled.wait(10)  # the first batch is stuck in the exporter
        assert stats.queue_dropped == {}  # no flush yet: not settled

        sink.release.set()
        assert emitter.force_flush(30_000)
        received = len(sink.log_records())
        assert stats.exported["logs"] == received and "logs" not in stats.dropped
        # Every record enqueued was exported or dropped by the full queue, never both.
        assert stats.queue_dropped["logs"] == n - received == n - stats.exported["logs"]
        # The queue held QUEUE records and one batch was in the exporter: the rest was dropped.
        assert stats.queue_dropped["logs"] >= n - QUEUE - BATCH
        assert stats.queue_dropped["spans"] == 0 and stats.exported["spans"] == len(sink.spans()) == 1

        emitter.emit(RunEvent(scope=1, state=RUNNING, run_id="r2"))  # the figure stays until settled again
        assert stats.enqueued["logs"] == n + 1 and stats.queue_dropped["logs"] == n - received
        assert emitter.force_flush(30_000)
        assert stats.queue_dropped["logs"] == n - received  # nothing more was dropped
        assert stats.exported["logs"] == received + 1
    finally:
        emitter.shutdown(timeout_millis=5_000)


def test_no_queue_counts_for_providers_the_application_owns() -> None:
    from vfo_otel.testing import in_memory_emitter

    tel = in_memory_emitter(heartbeat_interval_s=None)
    try:
        tel.emitter.emit(RunEvent(scope=1, state=COMPLETE, run_id="r"))
        assert tel.emitter.force_flush()
        assert tel.emitter.stats.enqueued == {} and tel.emitter.stats.queue_dropped == {}
    finally:
        tel.close()
