"""6. Restart and cold reads: the store is the source of truth, folds are built on demand.

Method.

* *restart*: a SQLite store of N stored events (full: 1,000,000 in 2,000 complete runs of 1
  pipeline x 25 assets x 10 nodes, two events per node attempt, every 5th asset retrying a node;
  quick: 20,000) is written by an in-process receiver (the same store code; list items folded).
  Then ``vfo-otel serve --store PATH --retention-runs 1000000000`` (no retention in effect) is
  started as its own process and the time is taken from ``Popen`` to: gRPC ready (the serve
  line printed) and the newest run's snapshot received (``ListRuns(page_size=1)`` then
  ``GetSnapshot``), interpreter start-up and imports included. RSS (``/proc/PID/status``) is
  read there, and again after ``GetSnapshot`` of 100 random older runs. Median of 3 starts.
* *cold*: two runs of 1,000 assets x 20 nodes (~42,000 events each, realistic fields: ffmpeg
  command lines, exit codes, outputs, durations) are stored the same way; the receiver serves
  with ``--fold-cache-events 1``, so reading one run evicts the other. Each *cold* figure is one
  HTTP JSON snapshot with a selection (``pipeline_id``, ``asset_id``) of the run not in the cache
  (read from the store, folded, snapshot built, encoded), alternating between the two runs;
  *warm* is the same request again. Medians of the repeats.
"""

from __future__ import annotations

import asyncio
import http.client
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import common

_SIZES = {"quick": (40, 3, 50, 3), "full": (2000, 3, 1000, 7)}  # (runs, starts, cold assets, repeats)
_ASSETS, _NODES = 25, 10


def _events(run_id: str, n_assets: int, n_nodes: int, t0_ns: int) -> list[Any]:
    """A complete run: every node attempt running then complete (every 5th asset retries one)."""
    from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

    out = []
    seq = 0

    def add(scope: int, state: int, t_ns: int, **kw: Any) -> Any:
        nonlocal seq
        seq += 1
        e = ev.RunEvent(event_id=f"{run_id}-{seq}", scope=scope, state=state, run_id=run_id, **kw)  # type: ignore[arg-type]
        e.time.FromNanoseconds(t_ns)
        out.append(e)
        return e

    add(ev.SCOPE_RUN, ev.STATE_RUNNING, t0_ns, source_id="bench")
    t = t0_ns
    for a in range(n_assets):
        aid = f"clip-{a:05d}"
        for n in range(n_nodes):
            nid = f"n{n:02d}"
            up = [f"n{n - 1:02d}"] if n else []
            attempts = 2 if a % 5 == 0 and n == 3 else 1
            for k in range(1, attempts + 1):
                t += 1_000_000
                common_kw = dict(
                    pipeline_id="media", asset_id=aid, node_id=nid, stage_id=f"stage{n % 4}",
                    attempt_id=k, upstream_node_ids=up,
                )
                add(
                    ev.SCOPE_NODE, ev.STATE_RUNNING, t,
                    command=ev.Command(argv=common.ffmpeg_argv(aid, nid)), **common_kw,
                )
                failed = k < attempts
                e = add(
                    ev.SCOPE_NODE, ev.STATE_FAILED if failed else ev.STATE_COMPLETE, t + 500_000,
                    exit_code=1 if failed else 0, **common_kw,
                )
                e.duration.FromNanoseconds(500_000)
                if not failed:
                    e.outputs.add(uri=f"/data/out/{aid}/{nid}.mp4", role="proxy")
    add(ev.SCOPE_RUN, ev.STATE_COMPLETE, t + 1_000_000)
    return out


async def _fill(path: Path, runs: list[tuple[str, int, int]]) -> int:
    """Store the runs (id, assets, nodes) through an in-process receiver; returns the events stored."""
    from vfo_otel.receiver import Receiver, ReceiverConfig, record_of

    receiver = Receiver(
        ReceiverConfig(store_path=str(path), retention_runs=None, fold_cache_events=50_000)
    )
    await receiver.start()
    stored = 0
    try:
        t0 = 1_767_225_600 * 10**9
        for i, (run_id, n_assets, n_nodes) in enumerate(runs):
            events = _events(run_id, n_assets, n_nodes, t0 + i * 10**10)
            for j in range(0, len(events), common.BATCH_RECORDS):
                stored += await receiver.ingest([record_of(e) for e in events[j : j + common.BATCH_RECORDS]])
    finally:
        await receiver.stop()
    return stored


def _serve(store: Path, workdir: Path, extra: list[str]) -> tuple[common.Receiver, float]:
    t = time.perf_counter()
    receiver = common.Receiver(workdir, store=str(store), retention_runs=1_000_000_000, extra=extra)
    return receiver, t


def _restart(work: Path, n_runs: int, starts: int) -> dict[str, Any]:
    from vfo_otel.client import SnapshotClient

    store = work / "restart.sqlite3"
    t = time.perf_counter()
    events = asyncio.run(_fill(store, [(f"run-{i:05d}", _ASSETS, _NODES) for i in range(n_runs)]))
    fill_s = time.perf_counter() - t
    serving, rss_serving, rss_after = [], [], []
    rng = random.Random(13)
    for k in range(starts):
        receiver, t0 = _serve(store, work, [])
        try:
            with SnapshotClient(receiver.grpc_target) as client:
                newest = client.list_runs(page_size=1).runs[0].run.run_id
                snap = client.get_snapshot(newest)
                serving.append(time.perf_counter() - t0)
                assert snap.revision > 0
                rss_serving.append(receiver.rss())
                for i in rng.sample(range(n_runs - 1), min(100, n_runs - 1)):
                    client.get_snapshot(f"run-{i:05d}")
                rss_after.append(receiver.rss())
        finally:
            receiver.stop()
        print(f"[bench] restart {k + 1}/{starts}: {serving[-1]:.2f} s", file=sys.stderr, flush=True)
    return {
        "events_stored": events,
        "runs": n_runs,
        "store_bytes": store.stat().st_size + sum(p.stat().st_size for p in work.glob("restart.sqlite3-*")),
        "fill_s": round(fill_s, 1),
        "restart_to_serving_s": round(common.median(serving), 2),
        "restart_to_serving_s_all": [round(s, 2) for s in serving],
        "rss_serving_mb": round(common.median(rss_serving) / 2**20, 1),
        "rss_after_100_old_runs_mb": round(common.median(rss_after) / 2**20, 1),
    }


def _get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
    return body


def _cold(work: Path, n_assets: int, repeats: int) -> dict[str, Any]:
    store = work / "cold.sqlite3"
    events = asyncio.run(_fill(store, [("big-a", n_assets, 20), ("big-b", n_assets, 20)]))
    receiver, _ = _serve(store, work, ["--fold-cache-events", "1"])
    cold, warm = [], []
    size = 0
    try:
        url = urlsplit(receiver.http_base)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        asset = f"clip-{n_assets // 2 + 3:05d}"
        query = f"pipeline_id=media&asset_id={asset}"
        for k in range(repeats + 1):
            run_id = ("big-a", "big-b")[k % 2]
            t = time.perf_counter()
            size = len(_get(conn, f"/v1/runs/{run_id}/snapshot?{query}"))
            took = time.perf_counter() - t
            t = time.perf_counter()
            _get(conn, f"/v1/runs/{run_id}/snapshot?{query}")
            if k:  # the first request also warms up code paths
                cold.append(took)
                warm.append(time.perf_counter() - t)
        conn.close()
    finally:
        receiver.stop()
    return {
        "events_per_run": events // 2,
        "assets": n_assets,
        "nodes": 20,
        "cold_json_selection_ms": round(common.median(cold) * 1e3, 1),
        "cold_ms_all": [round(c * 1e3, 1) for c in cold],
        "warm_json_selection_ms": round(common.median(warm) * 1e3, 2),
        "bytes": size,
    }


def run(quick: bool) -> dict[str, Any]:
    n_runs, starts, cold_assets, repeats = _SIZES["quick" if quick else "full"]
    with common.workdir() as work:
        restart = _restart(work, n_runs, starts)
        cold = _cold(work, cold_assets, repeats)
    targets = {
        "restart_le_2s": restart["restart_to_serving_s"] <= 2.0,
        "rss_le_200mb": max(restart["rss_serving_mb"], restart["rss_after_100_old_runs_mb"]) <= 200,
        "cold_le_500ms": cold["cold_json_selection_ms"] <= 500,
    }
    return {"restart": restart, "cold": cold, "targets": targets, "python": sys.version.split()[0],
            "sqlite": subprocess.run([sys.executable, "-c", "import sqlite3; print(sqlite3.sqlite_version)"],
                                     capture_output=True, text=True).stdout.strip()}
