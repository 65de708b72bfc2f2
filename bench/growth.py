"""5. Growth: how ingest, emitter cost, snapshot serving and memory grow from 10 to 10,000 assets per run.

Method. For each size a fresh ``vfo-otel serve`` process ingests one run of N assets x 5
nodes (every 5th asset retries a node; 5 nodes rather than 20 keeps the 10,000-asset run
within the time budget: ~160,000 events) sent as OTLP logs by the client process; then
the cold JSON snapshot with and without a selection, the cold gRPC snapshot, the watch
latency and the receiver's RSS per node attempt are measured as in sections 3 and 4. The
emitter's cost per transition (no-op exporters, runner API) is measured on a run of the same
shape in this process. "Linear or better" means: per-unit figures (per event, per
attempt, per asset) do not grow with N.
"""

from __future__ import annotations

import time
from typing import Any

from bench import common
from bench.emitter import _providers, vfo_runner_workload
from bench.memory import per_attempt
from bench.snapshot import measure_serving, pick_asset

_SIZES = {"quick": (10, 100), "full": (10, 100, 1000, 10_000)}
N_NODES = 5


def _emitter_us(n_assets: int) -> float:
    from vfo_otel import Emitter

    tp, lp, mp = _providers()
    emitter = Emitter(tracer_provider=tp, logger_provider=lp, meter_provider=mp)
    vfo_runner_workload(emitter, "warm", 1, N_NODES)
    t = time.perf_counter()
    n = vfo_runner_workload(emitter, "g", n_assets, N_NODES)
    for p in (tp, lp, mp):
        p.shutdown()
    return (time.perf_counter() - t) / n * 1e6


def run(quick: bool) -> dict[str, Any]:
    tmpl = common.make_template(10, N_NODES)
    rows = []
    for n_assets in _SIZES["quick" if quick else "full"]:
        with common.workdir() as work:
            receiver = common.Receiver(work)
            try:
                common.wait_grpc_ready(receiver.grpc_target)
                mem = per_attempt(receiver, tmpl, n_assets, work, run_id="g")
                serving = measure_serving(receiver, tmpl, "g", 3, pick_asset(n_assets, tmpl))
            finally:
                receiver.stop()
        rows.append(
            {
                "assets": n_assets,
                "attempts": mem["attempts"],
                "events": mem["events"],
                "ingest_events_per_s": mem["events_per_s"],
                "emitter_us_per_transition": round(_emitter_us(n_assets), 1),
                "json_selection_cold_ms": serving["json_selection"]["cold_ms"],
                "json_selection_bytes": serving["json_selection"]["bytes"],
                "json_no_selection_cold_ms": serving["json_no_selection"]["cold_ms"],
                "grpc_no_selection_cold_ms": serving["grpc_no_selection"]["cold_ms"],
                "grpc_no_selection_bytes": serving["grpc_no_selection"]["bytes"],
                "watch_latency_ms": serving["watch_latency_ms"]["median"],
                "rss_bytes_per_attempt": mem["bytes_per_attempt"],
            }
        )
    first, last = rows[0], rows[-1]
    scale = last["assets"] / first["assets"]
    return {
        "nodes_per_asset": N_NODES,
        "rows": rows,
        "last_over_first": {
            "assets_x": scale,
            "json_selection_ms_x": round(last["json_selection_cold_ms"] / first["json_selection_cold_ms"], 1),
            "json_selection_bytes_x": round(last["json_selection_bytes"] / first["json_selection_bytes"], 1),
            "ingest_rate_x": round(last["ingest_events_per_s"] / first["ingest_events_per_s"], 2),
            "emitter_cost_x": round(
                last["emitter_us_per_transition"] / first["emitter_us_per_transition"], 2
            ),
        },
    }
