"""A Go program on the upstream OpenTelemetry Go SDK (tests/upstream/goclient: sdk/log + otlploggrpc,
built by scripts/build_upstream.sh from the Go module proxy) exports to an overloaded receiver.

The receiver admits one export at a time (max_pending_events=1, fsync on: every commit is slow), and 8
exporters send at once, so exports are refused with UNAVAILABLE + google.rpc.RetryInfo (1 s). The Go
SDK's own backoff is 50 ms; a retry about 1 s after a refusal therefore shows that the exporter honoured
the receiver's RetryInfo. Nothing is lost: every record is acknowledged and folded.

`vfo-otel serve` has no option for max_pending_events, so this receiver runs in-process
(vfo_otel.server.ReceiverThread, as tests/reliability/test_overload.py does).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.upstream.support import get_snapshot, upstream_binary, wait_until
from vfo_otel.receiver import ReceiverConfig, ReceiverThread

ASSETS = 400
RETRY_INFO_S = 1.0  # what the receiver puts in RetryInfo (docs/receiver.md)


@pytest.fixture
def overloaded_receiver(tmp_path: Path) -> Iterator[ReceiverThread]:
    config = ReceiverConfig(
        grpc_address="127.0.0.1:0",
        http_address=None,
        store_path=str(tmp_path / "events.sqlite3"),
        fsync=True,
        max_pending_events=1,
    )
    with ReceiverThread(config) as thread:
        yield thread


def test_go_sdk_client_honours_retry_info_and_loses_nothing(overloaded_receiver: ReceiverThread) -> None:
    binary = upstream_binary("goclient")
    endpoint = f"127.0.0.1:{overloaded_receiver.grpc_port}"
    out = subprocess.run(
        [binary, "-endpoint", endpoint, "-run", "go-run", "-assets", str(ASSETS), "-parallel", "8"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.splitlines()[-1])
    print(
        {k: v for k, v in report.items() if k != "retry_gaps_ms"},
        "min gap ms",
        min(report["retry_gaps_ms"] or [0]),
    )

    assert report["failed"] == 0 and report["acknowledged"] == ASSETS, report
    assert report["unavailable"] > 0, f"the receiver was never overloaded: {report}"
    gaps = report["retry_gaps_ms"]
    assert len(gaps) == report["unavailable"]  # every refusal was followed by a retry
    # The SDK backoff alone would retry after ~50 ms; RetryInfo says 1 s (timer slack allowed below).
    assert min(gaps) >= RETRY_INFO_S * 1000 * 0.95, gaps

    snap = wait_until(
        lambda: (s := get_snapshot(endpoint, "go-run")) is not None and s.revision == ASSETS and s,
        30,
        f"all {ASSETS} events folded",
    )
    assert snap.summary.assets.ListFields(), snap.summary
