"""Run the benchmarks: ``python -m bench [--quick] [--only ingest,emitter,...] [--json OUT] [--profile]``.

Sections (docs/benchmarks.md describes the method of each): ingest, emitter, snapshot,
memory, growth. ``--quick`` uses tiny sizes (a smoke run of the harness: its timings mean
nothing). ``--profile`` samples the receiver with py-spy during two extra ingest rounds and
writes the summary to build/bench/ingest-profile.json. The JSON result (machine, every
figure, which targets are met) goes to ``--json`` (default build/bench/results[-quick].json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import common

SECTIONS = ("ingest", "emitter", "snapshot", "memory", "growth", "restart")
#: Sections run only when named in --only (they need a PostgreSQL server: initdb/pg_ctl).
OPTIONAL = ("postgres", "live")


def _run_section(name: str, quick: bool, profile: bool) -> dict[str, Any]:
    if name == "ingest":
        from bench import ingest

        return ingest.run(quick, common.ROOT / "build/bench/ingest-profile.json" if profile else None)
    module = __import__(f"bench.{name}", fromlist=["run"])
    return module.run(quick)  # type: ignore[no-any-return]


def _summary(results: dict[str, Any]) -> list[str]:
    lines = []
    s = results["sections"]
    if "ingest" in s:
        for name, row in s["ingest"]["servers"].items():
            for signal, v in row.items():
                extra = (
                    f"  x(a)={v['x_ceiling_parse']}  x(b)={v['x_ceiling_walk']}"
                    if "x_ceiling_walk" in v
                    else ""
                )
                lines.append(
                    f"ingest   {name:15s} {signal:6s} {v['records_per_s']:>8} rec/s "
                    f"{v['events_per_s']:>8} ev/s{extra}"
                )
    if "emitter" in s:
        e = s["emitter"]["no_op_exporters"]
        lines.append(
            f"emitter  bare {e['bare_sdk_us']} us  vfo runner {e['vfo_runner_api_us']} us "
            f"(x{e['vfo_runner_api_x_bare']})  vfo emit {e['vfo_emit_us']} us (x{e['vfo_emit_x_bare']})"
        )
        o, st = s["emitter"]["otlp_grpc_exporters"], s["emitter"]["stalled_exporter"]
        lines.append(
            f"emitter  otlp {o['per_transition_us']} us; stalled {st['per_transition_us']} us, "
            f"max emit {st['emit_latency_us']['max']} us, dropped {st['dropped_by_sdk_queue']}"
        )
    if "snapshot" in s:
        for k, v in s["snapshot"]["serving"].items():
            lines.append(f"snapshot {k:18s} {v}")
    if "memory" in s:
        m = s["memory"]
        lines.append(
            f"memory   {m['per_attempt']['bytes_per_attempt']} B/attempt; stream "
            f"x{m['stream']['rss_growth_after_retention_x']} after retention (flat={m['stream']['flat']})"
        )
    if "growth" in s:
        for row in s["growth"]["rows"]:
            lines.append(f"growth   {row}")
    if "restart" in s:
        lines.append(f"restart  {s['restart']['restart']}")
        lines.append(f"cold     {s['restart']['cold']}")
    if "postgres" in s:
        for k, v in s["postgres"].items():
            lines.append(f"postgres {k}: {v}")
    for name, sec in s.items():
        if "targets" in sec:
            lines.append(f"targets  {name}: {sec['targets']}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, not timings")
    sections = ",".join(SECTIONS)
    parser.add_argument(
        "--only",
        default=sections,
        help=f"comma-separated sections to run, of: {sections} (default: all of them), {','.join(OPTIONAL)}",
    )
    parser.add_argument("--json", type=Path, help="where to write the JSON results")
    parser.add_argument("--profile", action="store_true", help="py-spy profile of the receiver during ingest")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS + OPTIONAL]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS + OPTIONAL)}")
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "machine": common.machine(),
        "sections": {},
        "seconds": {},
    }
    for name in only:
        t = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        results["sections"][name] = _run_section(name, args.quick, args.profile)
        results["seconds"][name] = round(time.perf_counter() - t, 1)
        print(f"[bench] {name} done in {results['seconds'][name]} s", file=sys.stderr, flush=True)
    out = args.json or common.ROOT / "build/bench" / ("results-quick.json" if args.quick else "results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(_summary(results)))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
