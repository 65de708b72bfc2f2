"""Promise 1, crash safety: kill -9 the receiver while an emitter streams; nothing acknowledged is lost.

A real ``vfo-otel serve`` process and a real emitter process (the SDK's OTLP exporters, with a
counting wrapper): the receiver is killed with SIGKILL in the middle of the stream and
restarted on the same store and port; the exporter's retries deliver the rest.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

from tests.reliability.support import (
    DEADLINE_S,
    ROOT,
    ReceiverProcess,
    child_env,
    record_figures,
    stored_event_ids,
    wait_revision,
    wait_until,
    with_origin,
    without_generated_time,
)
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.receiver import Selection, snapshot_of
from vfo_otel.testing import free_port

ASSETS = 200  # 6 events per asset + 4: 1204 events


def test_kill_9_mid_stream_then_restart_loses_nothing_acknowledged(tmp_path: Path) -> None:
    store = tmp_path / "crash.sqlite3"
    port = free_port()
    receiver = ReceiverProcess(store, port).start()
    out = tmp_path / "emitter.json"
    emitter = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability.workers",
            "crash-emitter",
            f"http://127.0.0.1:{port}",
            str(out),
            str(ASSETS),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=child_env(),
    )
    try:
        # Kill while the first half streams in: once some events are committed.
        wait_until(lambda: len(stored_event_ids(store)) >= 100, what="first events stored")
        receiver.kill9()
        at_kill = len(stored_event_ids(store))
        assert emitter.stdout is not None and emitter.stdin is not None
        assert emitter.stdout.readline().strip() == "HALF"
        emitter.stdin.write("go\n")  # the second half is emitted while the receiver is down
        emitter.stdin.flush()
        down_at = time.monotonic()
        receiver = ReceiverProcess(store, port).start()  # same store, same port
        restart_s = time.monotonic() - down_at
        assert emitter.wait(DEADLINE_S * 2) == 0
    finally:
        if emitter.poll() is None:
            emitter.kill()
        receiver.stop()

    result = json.loads(out.read_text())
    sent = [ev.RunEvent.FromString(base64.b64decode(b)) for b in result["events"]]
    acknowledged = set(result["acknowledged"])
    stored = stored_event_ids(store, "crash-run")
    sent_ids = {e.event_id for e in sent}
    assert len(sent_ids) == len(sent) == 4 + 6 * ASSETS
    assert 0 < at_kill < len(sent), "the kill landed mid-stream"
    assert acknowledged <= stored, f"acknowledged but not stored: {sorted(acknowledged - stored)[:5]}"
    assert stored == sent_ids  # the retries delivered everything, once
    assert not result["failed"] and not result["stats"]["dropped"]

    # The snapshot after the crash equals the fold of the same events with no crash at all.
    origin = ev.Origin(
        service_name=result["origin"][0], service_version=result["origin"][1], host_name=result["origin"][2]
    )
    restarted = ReceiverProcess(store, 0).start()
    try:
        address = f"127.0.0.1:{restarted.grpc_port}"
        got = wait_revision(address, "crash-run", len(sent))
        with SnapshotClient(address) as c:
            got_sel = c.get_snapshot("crash-run", "p", "a0150")
    finally:
        restarted.stop()
    expected = snapshot_of(with_origin(sent, origin), "crash-run")
    expected_sel = snapshot_of(with_origin(sent, origin), "crash-run", Selection("p", "a0150"))
    assert expected is not None and expected_sel is not None
    assert without_generated_time(got) == without_generated_time(expected)
    assert without_generated_time(got_sel) == without_generated_time(expected_sel)
    assert got.run.state == ev.STATE_COMPLETE and got.summary.nodes.complete == 2 * ASSETS
    record_figures(
        "crash_safety",
        events_sent=len(sent),
        events_acknowledged=len(acknowledged),
        events_stored=len(stored),
        stored_when_killed=at_kill,
        receiver_restart_s=round(restart_s, 2),
    )
