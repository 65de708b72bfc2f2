"""1. Receiver ingest: canonical events/s accepted end to end, against two ceilings.

Method. Three server processes run side by side: ``vfo-otel serve`` with its real SQLite
store (WAL, ``synchronous=NORMAL``: a commit survives a crash of the process before the
export is answered), and the two ceilings of :mod:`bench.ceilings` (a: parse only; b: parse
and walk every attribute into a dict). A separate client process (:mod:`bench.client`)
sends the *same* pre-serialized requests to each: OTLP log batches of 512 records and trace
batches of 512 spans, as the emitter produces them (:mod:`bench.common`). Each round uses
fresh runs (new run and event ids), so the receiver stores and folds every event: nothing
is a duplicate. The order of the servers rotates each round; the figure of each is the
median over the rounds of (records or events) / (time from the first send to the last
answer). One warm-up round is not counted.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from bench import common

#: (requests per round per signal, rounds) by mode.
_SIZES = {"quick": (2, 2), "full": (40, 5)}


def _round_files(tmpl: common.Template, work: Path, rnd: int, n_requests: int) -> dict[str, Path]:
    """Request files of one round: fresh runs cloned from the template until n_requests are full."""
    want = n_requests * common.BATCH_RECORDS
    records: list[Any] = []
    k = 0
    while len(records) < want:
        records.extend(
            common.clone_log_records(tmpl.log_records, run_id=f"ing-l{rnd}-{k}", event_suffix=f"-l{rnd}-{k}")
        )
        k += 1
    spans: list[Any] = []
    k = 0
    while len(spans) < want // 2:  # a span carries ~3 events: half the spans, ~1.5x the events
        spans.extend(common.clone_spans(tmpl.spans, run_id=f"ing-t{rnd}-{k}", event_suffix=f"-t{rnd}-{k}"))
        k += 1
    files = {"logs": work / f"logs-{rnd}.bin", "traces": work / f"traces-{rnd}.bin"}
    common.write_requests(files["logs"], common.LOGS_METHOD, common.log_requests(tmpl, records[:want]))
    common.write_requests(
        files["traces"], common.TRACES_METHOD, common.trace_requests(tmpl, spans[: want // 2])
    )
    return files


def _stats(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/v1/stats", timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def run(quick: bool, profile: Path | None = None) -> dict[str, Any]:
    n_requests, rounds = _SIZES["quick" if quick else "full"]
    tmpl = common.make_template(10, 20)
    result: dict[str, Any] = {
        "method": "median over rounds of records/s from a separate client process, 4 requests in flight",
        "batch_records": common.BATCH_RECORDS,
        "avg_attributes_per_log_record": round(
            sum(len(r.attributes) for r in tmpl.log_records) / len(tmpl.log_records), 1
        ),
        "rounds": rounds,
        "requests_per_round": {"logs": n_requests, "traces": n_requests // 2 or 1},
    }
    with common.workdir() as work:
        servers: dict[str, Any] = {
            "ceiling_parse": common.Ceiling(work, "parse"),
            "ceiling_walk": common.Ceiling(work, "walk"),
            "receiver": common.Receiver(work, retention_runs=100_000),
        }
        if not quick:
            servers["receiver_fsync"] = common.Receiver(
                work, name="receiver-fsync", retention_runs=100_000, fsync=True
            )
        try:
            for s in servers.values():
                common.wait_grpc_ready(s.grpc_target)
            rates: dict[str, dict[str, list[float]]] = {}
            events_rates: dict[str, dict[str, list[float]]] = {}
            sent_events = {name: 0 for name in servers}
            names = list(servers)
            for rnd in range(rounds + 1):  # round 0 is the warm-up
                files = _round_files(tmpl, work, rnd, n_requests)
                order = names[rnd % len(names) :] + names[: rnd % len(names)]
                for signal, path in files.items():
                    for name in order:
                        out = common.send(servers[name].grpc_target, path)
                        if out["errors"] or out["rejected"] or out["ok"] != out["requests"]:
                            raise RuntimeError(f"{name} {signal}: not every request was accepted: {out}")
                        sent_events[name] += out["events"]
                        if rnd == 0:
                            continue
                        rates.setdefault(name, {}).setdefault(signal, []).append(
                            out["records"] / out["elapsed_s"]
                        )
                        events_rates.setdefault(name, {}).setdefault(signal, []).append(
                            out["events"] / out["elapsed_s"]
                        )
                    path.unlink()
            if profile is not None:
                result["profile"] = _profile(tmpl, work, servers["receiver"], n_requests, profile)
                sent_events["receiver"] += result["profile"]["events_sent"]
            stats = {name: _stats(s.http_base) for name, s in servers.items() if name.startswith("receiver")}
            rss = {name: s.rss() for name, s in servers.items()}
        finally:
            for s in servers.values():
                s.stop()
    for name, st in stats.items():  # end to end: every event sent was stored (and folded before the answer)
        if st["events_stored"] != sent_events[name]:
            raise RuntimeError(f"{name} stored {st['events_stored']} events, {sent_events[name]} were sent")
    table: dict[str, Any] = {}
    for name in servers:
        table[name] = {
            signal: {
                "records_per_s": round(common.median(v)),
                "events_per_s": round(common.median(events_rates[name][signal])),
            }
            for signal, v in rates[name].items()
        }
    for name in [n for n in servers if n.startswith("receiver")]:
        for signal in ("logs", "traces"):
            row = table[name][signal]
            row["x_ceiling_parse"] = round(
                row["records_per_s"] / table["ceiling_parse"][signal]["records_per_s"], 3
            )
            row["x_ceiling_walk"] = round(
                row["records_per_s"] / table["ceiling_walk"][signal]["records_per_s"], 3
            )
    result["servers"] = table
    result["receiver_stats"] = stats
    result["server_rss_bytes"] = rss
    recv = table["receiver"]
    result["targets"] = {
        "events_per_s_ge_20000": {s: recv[s]["events_per_s"] >= 20_000 for s in ("logs", "traces")},
        "ge_0_5x_ceiling_walk": {s: recv[s]["x_ceiling_walk"] >= 0.5 for s in ("logs", "traces")},
    }
    return result


def _profile(
    tmpl: common.Template, work: Path, receiver: common.Receiver, n_requests: int, out: Path
) -> dict[str, Any]:
    """Sample the receiver with py-spy while it ingests two more rounds; summarise the hot frames."""
    import shutil
    import subprocess
    import sys

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_suffix(".raw.txt")
    proc = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(receiver.pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
            "--threads",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import time

    time.sleep(1.0)
    sent = 0
    t0 = time.perf_counter()
    try:
        for rnd in (1000, 1001):
            files = _round_files(tmpl, work, rnd, n_requests)
            for path in files.values():
                sent += common.send(receiver.grpc_target, path)["events"]
    finally:
        proc.send_signal(2)
        proc.wait(30)
    seconds = time.perf_counter() - t0
    summary = summarise_profile(raw)
    # busy share of each thread: its (non-idle) samples / samples a fully busy thread would get
    summary["thread_busy_fraction"] = {
        k: round(v / (250 * seconds), 2) for k, v in summary.pop("threads").items()
    }
    out.write_text(json.dumps(summary, indent=1))
    return {"events_sent": sent, "raw": str(raw), **summary}


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Inclusive and self sample shares per function from py-spy's raw (collapsed) output."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [_short(f) for f in stack.split(";") if not f.startswith(("thread ", "process "))]
        thread = next((f for f in stack.split(";") if f.startswith("thread ")), "thread ?")
        threads[thread] = threads.get(thread, 0) + count
        if not frames:
            continue
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count

    def ranked(d: dict[str, int]) -> list[tuple[str, float]]:
        return (
            [(k, round(v / total, 3)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]
            if total
            else []
        )

    return {"samples": total, "inclusive": ranked(inclusive), "self": ranked(own), "threads": threads}


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: lines merged per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    tail = "/".join(parts[-2:]) if "vfo_otel" in parts or "bench" in parts else parts[-1]
    return f"{name} ({tail})"
