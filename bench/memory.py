"""4. Memory: resident memory per node attempt held by the receiver, and RSS over a long stream.

Method. RSS is VmRSS of the ``vfo-otel serve`` process from /proc/PID/status.

* Per node attempt: a fresh receiver ingests one small run (warm-up: code paths, caches,
  SQLite page cache), then one run of N assets x 20 nodes (every 5th asset retries a node);
  (RSS after - RSS before) / node attempts. Measured again after one snapshot of the run
  was served (the receiver caches the built snapshot per revision).
* Stream: a receiver with ``--retention-runs R`` ingests E events spread over many runs
  (10 assets x 20 nodes each, ~630 events), in chunks; RSS is sampled after each chunk.
  Flat means: the RSS of the last chunk is within 10% of the RSS at the point where the
  retention limit was first exceeded.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from bench import common
from bench.snapshot import ingest_run

_SIZES = {"quick": (50, 20_000, 5, 4), "full": (1000, 1_000_000, 20, 10)}  # assets, events, retention, chunks


def per_attempt(
    receiver: common.Receiver, tmpl: common.Template, n_assets: int, work: Any, run_id: str = "mem"
) -> dict[str, Any]:
    """RSS delta per node attempt for one run of n_assets on a warmed-up receiver."""
    from vfo_otel.client import SnapshotClient

    ingest_run(receiver, tmpl, f"{run_id}-warm", tmpl.n_assets, work)
    before = receiver.rss()
    ingested = ingest_run(receiver, tmpl, run_id, n_assets, work)
    after = receiver.rss()
    with SnapshotClient(receiver.grpc_target) as client:
        client.get_snapshot(run_id)
    after_snap = receiver.rss()
    attempts = ingested["attempts"]
    return {
        "attempts": attempts,
        "events": ingested["events"],
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_attempt": round((after - before) / attempts),
        "bytes_per_attempt_with_cached_snapshot": round((after_snap - before) / attempts),
        "bytes_per_event": round((after - before) / ingested["events"]),
        "events_per_s": ingested["events_per_s"],
    }


def stream(quick: bool) -> dict[str, Any]:
    _, total_events, retention, chunks = _SIZES["quick" if quick else "full"]
    tmpl = common.make_template(10, 20)
    per_chunk_runs = max(1, total_events // chunks // tmpl.events)
    series = []
    sent = 0
    with common.workdir() as work:
        receiver = common.Receiver(work, retention_runs=retention)
        try:
            common.wait_grpc_ready(receiver.grpc_target)
            series.append({"events": 0, "runs": 0, "rss_bytes": receiver.rss()})
            run_no = 0
            for chunk in range(chunks):
                records: list[Any] = []
                for _ in range(per_chunk_runs):
                    records.extend(
                        common.clone_log_records(
                            tmpl.log_records, run_id=f"st-{run_no}", event_suffix=f"-st{run_no}"
                        )
                    )
                    run_no += 1
                path = work / f"stream-{chunk}.bin"
                common.write_requests(path, common.LOGS_METHOD, common.log_requests(tmpl, records))
                out = common.send(receiver.grpc_target, path, timeout_s=900)
                path.unlink()
                if out["errors"] or out["rejected"]:
                    raise RuntimeError(f"stream chunk {chunk}: {out}")
                sent += out["events"]
                series.append(
                    {
                        "events": sent,
                        "runs": run_no,
                        "rss_bytes": receiver.rss(),
                        "events_per_s": round(out["events"] / out["elapsed_s"]),
                    }
                )
            with urllib.request.urlopen(f"{receiver.http_base}/v1/runs?page_size=1000", timeout=30) as resp:
                runs_held = len(json.loads(resp.read()).get("runs", []))
            with urllib.request.urlopen(f"{receiver.http_base}/v1/stats", timeout=30) as resp:
                stats = json.loads(resp.read())
        finally:
            receiver.stop()
    # the point where retention should first apply
    first = next((p for p in series if p["runs"] > retention), series[-1])
    growth = series[-1]["rss_bytes"] / first["rss_bytes"] if first["rss_bytes"] else 0.0
    return {
        "events": sent,
        "retention_runs": retention,
        "runs_sent": series[-1]["runs"],
        "runs_held_after": runs_held,
        "runs_expired": stats.get("runs_expired", 0),
        "series": series,
        "rss_growth_after_retention_x": round(growth, 2),
        "flat": growth <= 1.10,
    }


def run(quick: bool) -> dict[str, Any]:
    n_assets = _SIZES["quick" if quick else "full"][0]
    tmpl = common.make_template(10, 20)
    with common.workdir() as work:
        receiver = common.Receiver(work)
        try:
            common.wait_grpc_ready(receiver.grpc_target)
            held = per_attempt(receiver, tmpl, n_assets, work)
        finally:
            receiver.stop()
    held["assets"] = n_assets
    held["x_target_2kb"] = round(held["bytes_per_attempt"] / 2048, 3)
    result = {"per_attempt": held, "stream": stream(quick)}
    result["targets"] = {
        "le_2kb_per_attempt": held["bytes_per_attempt"] <= 2048,
        "rss_flat_with_retention": result["stream"]["flat"],
    }
    return result
