"""Smoke test of the benchmark harness: ``python -m bench --quick`` runs and reports every section.

It asserts the harness works (every section present, its figures positive numbers), never
timings: the quick sizes are too small to mean anything, and CI machines drift.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("ingest", "emitter", "snapshot", "memory", "growth", "restart")


def _positive(value: object, where: str) -> None:
    assert isinstance(value, int | float) and not isinstance(value, bool), where
    assert value > 0, f"{where} = {value}"


@pytest.mark.timeout(240)
def test_quick_bench_reports_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["mode"] == "quick"
    assert set(results["sections"]) == set(SECTIONS)
    s = results["sections"]

    for server in ("ceiling_parse", "ceiling_walk", "receiver"):
        for signal in ("logs", "traces"):
            row = s["ingest"]["servers"][server][signal]
            _positive(row["records_per_s"], f"ingest {server} {signal}")
            _positive(row["events_per_s"], f"ingest {server} {signal} events")
    for signal in ("logs", "traces"):
        _positive(s["ingest"]["servers"]["receiver"][signal]["x_ceiling_walk"], "ingest ratio")
    stats = s["ingest"]["receiver_stats"]["receiver"]
    assert stats["events_stored"] > 0 and stats["rejected"] == 0 and stats["duplicates"] == 0

    e = s["emitter"]
    for key in ("bare_sdk_us", "vfo_runner_api_us", "vfo_emit_us", "vfo_runner_api_x_bare"):
        _positive(e["no_op_exporters"][key], f"emitter {key}")
    assert e["no_op_exporters"]["emitter_failures"] == {}
    _positive(e["otlp_grpc_exporters"]["per_transition_us"], "emitter otlp")
    assert e["otlp_grpc_exporters"]["flushed"] is True
    stalled = e["stalled_exporter"]
    _positive(sum(stalled["dropped_by_sdk_queue"].values()), "drops counted with a stalled exporter")

    for case in ("grpc_no_selection", "grpc_selection", "json_no_selection", "json_selection"):
        row = s["snapshot"]["serving"][case]
        for key in ("cold_ms", "warm_ms", "bytes"):
            _positive(row[key], f"snapshot {case} {key}")
    _positive(s["snapshot"]["serving"]["watch_latency_ms"]["median"], "watch latency")

    _positive(s["memory"]["per_attempt"]["attempts"], "memory attempts")
    _positive(s["memory"]["per_attempt"]["rss_after_bytes"], "memory rss")
    assert len(s["memory"]["stream"]["series"]) >= 2

    rows = s["growth"]["rows"]
    assert len(rows) >= 2 and rows[0]["assets"] < rows[-1]["assets"]
    for row in rows:
        for key in (
            "events",
            "ingest_events_per_s",
            "emitter_us_per_transition",
            "json_selection_cold_ms",
            "json_selection_bytes",
        ):
            _positive(row[key], f"growth {row['assets']} {key}")
    restart, cold = s["restart"]["restart"], s["restart"]["cold"]
    for key in ("events_stored", "restart_to_serving_s", "rss_serving_mb", "rss_after_100_old_runs_mb"):
        _positive(restart[key], f"restart {key}")
    for key in ("events_per_run", "cold_json_selection_ms", "warm_json_selection_ms", "bytes"):
        _positive(cold[key], f"cold {key}")
    for section in SECTIONS:
        assert results["seconds"][section] >= 0
