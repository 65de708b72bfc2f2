"""Promise 3, runner faults: SIGTERM mid-node, a forked worker pool, and a receiver that is down.

Each runner is a real process with the real OTLP exporters; the receiver runs in this process
on real gRPC (port 0).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.reliability.support import DEADLINE_S, ROOT, child_env, record_figures, wait_revision, wait_until
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.receiver import ReceiverConfig, ReceiverThread
from vfo_otel.testing import free_port


@pytest.fixture
def receiver() -> Iterator[ReceiverThread]:
    config = ReceiverConfig(grpc_address="127.0.0.1:0", http_address=None, store_path=":memory:")
    with ReceiverThread(config) as thread:
        yield thread


def _worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.workers", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=child_env(),
    )


def test_sigterm_mid_node_fails_it_cancelled_flushes_fast_and_exits_143(receiver: ReceiverThread) -> None:
    address = f"127.0.0.1:{receiver.grpc_port}"
    proc = _worker("sigterm-runner", f"http://{address}")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "RUNNING"
        wait_revision(address, "sigterm-run", 4)  # run, pipeline, asset, node: running
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        def node_failed() -> ev.RunEvent | None:
            with SnapshotClient(address) as c:
                snap = c.get_snapshot("sigterm-run", "p", "a")
            done = snap.run.state == ev.STATE_FAILED and snap.node_details[0].state == ev.STATE_FAILED
            return snap if done else None

        snap = wait_until(node_failed, 10.0, "node failed after SIGTERM")
        flush_s = time.monotonic() - sent_at
        status = proc.wait(DEADLINE_S)
        exit_s = time.monotonic() - sent_at
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status == 143  # 128 + SIGTERM, as a shell reports a process killed by it
    attempt = snap.node_details[0].attempts[0]
    assert (attempt.error.error_class, attempt.error.detail) == ("Cancelled", "received SIGTERM")
    assert snap.run.error.error_class == "Cancelled" and snap.revision == 8
    assert flush_s < 5.0  # the atexit flush is bounded by 5 s; in practice well under a second
    record_figures(
        "sigterm", sigterm_to_events_in_receiver_s=round(flush_s, 3), sigterm_to_exit_s=round(exit_s, 3)
    )


def test_forked_pool_of_10_children_exiting_at_once_loses_no_event(receiver: ReceiverThread) -> None:
    address = f"127.0.0.1:{receiver.grpc_port}"
    proc = _worker("fork-pool", f"http://{address}", "10")
    out, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err
    assert json.loads(out)["child_exit_codes"] == [0] * 10
    snap = wait_revision(address, "fork-run", 4 + 2 * 10)
    assert snap.revision == 24  # 2 events per child + run and pipeline start and end
    assert snap.summary.nodes.complete == 10 and snap.summary.nodes.total == 10
    assert snap.run.state == ev.STATE_COMPLETE
    assert receiver.server.receiver.stats.events_stored == 24
    record_figures("fork_pool", children=10, events_expected=24, events_stored=24)


def test_receiver_down_never_raises_into_the_runner_and_counts_drops() -> None:
    port = free_port()  # nobody listens there
    proc = _worker("receiver-down", str(port))
    out, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["raised"] == []
    assert result["events"] == 16  # run, pipeline, asset: start and end; 5 nodes x 2
    assert result["emit_s"] < 1.0  # emit never waits on the network
    assert result["failures"] == {}
    assert result["exported"] == {}
    # nothing got through, and the emitter knows it: every log record and span is counted as dropped
    assert result["dropped"] == {"logs": 16, "spans": 8}
    record_figures("receiver_down", events=16, dropped=result["dropped"], emit_s=round(result["emit_s"], 4))
