"""9. Live latency and the cost of ``vfo-otel exec`` (issue 15, items 7 and 8).

Method.

* *live*: ``vfo-otel serve`` as its own process; one client reads its Server-Sent Events
  stream of a run (``GET /v1/runs/{run}/snapshot:watch``) on a thread of this process; an
  ``Emitter`` here (its default exporters, real OTLP/gRPC) emits one node transition every
  ``interval`` and the time is taken from just before ``emit()`` to the SSE frame whose
  revision includes that event (each event raises the revision by one). p50 and p99 over
  ``n`` transitions (full: 200 at 200 ms apart; quick: 20).
* *exec*: ``vfo-otel exec ... -- true`` against that receiver, and the bare ``true``, each
  run ``n`` times alternately (full: 15); the overhead is the median difference. With no
  receiver at the endpoint, the median time of ``exec -- true`` too (the export window).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import common

_SIZES = {"quick": (20, 0.05, 3), "full": (200, 0.2, 15)}  # (transitions, interval s, exec repeats)


def _sse_revisions(base: str, run_id: str, seen: dict[int, float], stop: threading.Event) -> None:
    """Record the monotonic time each revision's frame arrived (until ``stop``)."""
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("GET", f"/v1/runs/{run_id}/snapshot:watch", headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()
    try:
        while not stop.is_set():
            line = resp.readline()
            if not line:
                return
            if line.startswith(b"data:"):
                snap = json.loads(line[5:])
                seen.setdefault(int(snap["revision"]), time.monotonic())
    finally:
        conn.close()


def _live(receiver: common.Receiver, n: int, interval_s: float) -> dict[str, Any]:
    from vfo_otel import Emitter, RunEvent
    from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

    emitter = Emitter(endpoint=f"http://{receiver.grpc_target}", export_metrics_otlp=False,
                      heartbeat_interval_s=None, service_name="bench-live")
    run_id = f"live-{time.time_ns()}"
    seen: dict[int, float] = {}
    stop = threading.Event()
    try:
        emitter.emit(RunEvent(scope=ev.SCOPE_RUN, state=ev.STATE_RUNNING, run_id=run_id))
        emitter.force_flush()
        deadline = time.monotonic() + 30
        reader = threading.Thread(
            target=_sse_revisions, args=(receiver.http_base, run_id, seen, stop), daemon=True
        )
        reader.start()
        while 1 not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
        sent: dict[int, float] = {}
        for i in range(n):
            state = ev.STATE_RUNNING if i % 2 == 0 else ev.STATE_COMPLETE
            event = RunEvent(scope=ev.SCOPE_NODE, state=state, run_id=run_id, pipeline_id="p",
                             asset_id=f"a{i // 2}", node_id="n", attempt_id=1, stage_id="s")
            sent[i + 2] = time.monotonic()  # revision 1 was the run's running
            emitter.emit(event)
            time.sleep(interval_s)
        deadline = time.monotonic() + 30
        while max(seen, default=0) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        emitter.shutdown()
    # a frame may carry several revisions (coalesced): a revision arrived with the first frame at or past it
    arrivals = sorted(seen.items())
    lat_ms = []
    for rev, t_sent in sent.items():
        t_seen = next((t for r, t in arrivals if r >= rev), None)
        if t_seen is not None:
            lat_ms.append((t_seen - t_sent) * 1000)
    return {
        "transitions": n,
        "seen": len(lat_ms),
        "p50_ms": round(common.percentile(lat_ms, 0.5), 1),
        "p99_ms": round(common.percentile(lat_ms, 0.99), 1),
        "targets": {"p50_le_150_ms": common.percentile(lat_ms, 0.5) <= 150,
                    "p99_le_300_ms": common.percentile(lat_ms, 0.99) <= 300},
    }


def _timed(argv: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.monotonic() - t0


def _exec(receiver: common.Receiver, repeats: int) -> dict[str, Any]:
    cli = str(Path(sys.executable).parent / "vfo-otel")

    def argv(endpoint: str, i: int) -> list[str]:
        return [cli, "exec", "--run-id", "bench-exec", "--pipeline", "p", "--asset", f"a{i}", "--node", "n",
                "--stage", "s", "--otlp-endpoint", endpoint, "--", "true"]

    bare, wrapped, lonely = [], [], []
    for i in range(repeats):
        bare.append(_timed(["true"]))
        wrapped.append(_timed(argv(f"http://{receiver.grpc_target}", i)))
        lonely.append(_timed(argv("http://127.0.0.1:9", i)))  # discard port: nothing listens
    overhead_ms = (common.median(wrapped) - common.median(bare)) * 1000
    return {
        "repeats": repeats,
        "bare_ms": round(common.median(bare) * 1000, 1),
        "exec_ms": round(common.median(wrapped) * 1000, 1),
        "overhead_ms": round(overhead_ms, 1),
        "no_receiver_ms": round(common.median(lonely) * 1000, 1),
        "targets": {"overhead_le_150_ms": overhead_ms <= 150,
                    "no_receiver_le_2500_ms": common.median(lonely) <= 2.5},
    }


def run(quick: bool) -> dict[str, Any]:
    n, interval_s, repeats = _SIZES["quick" if quick else "full"]
    with common.workdir("vfo-bench-live-") as wd:
        receiver = common.Receiver(wd)
        try:
            return {"live": _live(receiver, n, interval_s), "exec": _exec(receiver, repeats)}
        finally:
            receiver.stop()
