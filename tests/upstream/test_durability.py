"""What the real collector promises about acknowledged data (docs/deploy.md "What the queues guarantee"):

- kill -9 of the collector while the receiver is down: after both start again, everything the collector
  acknowledged to the SDK reaches the receiver (the file_storage queues);
- memory_limiter refusal: the SDK retries, and nothing is lost.

Each test fans the same events out through the collector and straight to a second receiver: the
receiver behind the collector must end with the direct receiver's snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import _reference_scenario
from tests.upstream.support import Collector, FanOut, Receiver, log_has, wait_snapshots_equal, wait_until


def test_kill9_collector_while_receiver_down_loses_nothing_acknowledged(
    procs: Callable[..., Any], direct_receiver: Receiver
) -> None:
    receiver: Receiver = procs(Receiver, "receiver")  # not started: the receiver is down
    collector: Collector = procs(Collector, "otelcol", env={"VFO_RECEIVER_ENDPOINT": receiver.grpc_endpoint})
    collector.start()
    fan = FanOut(collector.grpc_endpoint, direct_receiver.grpc_endpoint)
    try:
        for i in range(3):
            _reference_scenario(fan.emitter, run_id=f"run-kill9-{i}")
        fan.flush()
        acknowledged = list(fan.acknowledged)
        assert fan.failed == [] and len(acknowledged) >= 3 * 20
        # The collector answered OK, so the data is in its persistent queues; it cannot have reached
        # the receiver, which is down. Now the crash: no shutdown code runs.
        collector.kill9()
        assert not receiver.store.exists()

        collector.start()  # same ports, same queue directory
        receiver.start()
        for i in range(3):
            wait_snapshots_equal(receiver.grpc_endpoint, direct_receiver.grpc_endpoint, f"run-kill9-{i}", 90)
    finally:
        fan.close()


def test_memory_limiter_refusal_sdk_retries_nothing_lost(
    procs: Callable[..., Any],
    receiver: Receiver,
    direct_receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A collector whose memory_limiter refuses everything: its soft limit (1 MiB) is below any heap.
    starved = [
        "processors.memory_limiter.limit_percentage=0",
        "processors.memory_limiter.spike_limit_percentage=0",
        "processors.memory_limiter.limit_mib=2",
        "processors.memory_limiter.spike_limit_mib=1",
    ]
    collector: Collector = procs(
        Collector, "otelcol", env={"VFO_RECEIVER_ENDPOINT": receiver.grpc_endpoint}, sets=starved
    )
    collector.start()
    wait_until(lambda: log_has(collector, r"above (soft|hard) limit"), 30, "memory_limiter over its limit")

    caplog.set_level(logging.WARNING, logger="opentelemetry.exporter.otlp.proto.grpc.exporter")
    fan = FanOut(collector.grpc_endpoint, direct_receiver.grpc_endpoint)
    try:
        _reference_scenario(fan.emitter, run_id="run-refused")
        flushed = threading.Thread(target=fan.flush, daemon=True)
        flushed.start()

        def sdk_retrying() -> bool:
            return any("retrying" in r.getMessage() for r in caplog.records)

        wait_until(sdk_retrying, 30, "the SDK's exporter retrying a refused export")
        assert fan.acknowledged == []  # refused, not acknowledged
        # The pressure goes away: the same collector (ports, queues) with the shipped limits.
        collector.stop()
        collector.sets = []
        collector.start()
        flushed.join(90)
        assert not flushed.is_alive()
        assert fan.failed == [] and len(fan.acknowledged) > 0
        wait_snapshots_equal(receiver.grpc_endpoint, direct_receiver.grpc_endpoint, "run-refused")
    finally:
        fan.close()
