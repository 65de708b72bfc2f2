"""7. PostgreSQL: ingest of one receiver against SQLite, and live updates across replicas.

Method. A temporary PostgreSQL cluster (Debian's server, as in the tests: ``tests/pgcluster.py``;
``fsync=on``, ``synchronous_commit=on``: a commit is durable before the export is answered) on
127.0.0.1.

* *ingest*: ``vfo-otel serve --store postgresql://...`` and ``vfo-otel serve --store FILE``
  (SQLite, default durability) run side by side; the client process of :mod:`bench.ingest`
  sends each the same kind of pre-serialized OTLP log batches (512 records, 4 in flight,
  fresh run and event ids each round); the server order alternates. Figure: events/s, median
  of the rounds; the ratio PostgreSQL / SQLite is taken per round and its median reported.
* *replicas*: three ``vfo-otel serve`` processes on the one database; a WatchSnapshot stream
  on replica B; one event at a time is exported to replica A, and the latency is from the start
  of that export to B's stream delivering its revision. p50 / p99 over the events.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import common

_SIZES = {"quick": (2, 2, 20), "full": (40, 5, 300)}  # (requests per round, rounds, watch events)


def _cluster() -> Any:
    sys.path.insert(0, str(common.ROOT))
    from tests.pgcluster import PgCluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("the postgres section needs PostgreSQL's initdb and pg_ctl (Debian: postgresql)")
    cluster = PgCluster(bindir, fsync=True)
    cluster.start()
    return cluster


def _files(tmpl: common.Template, work: Path, rnd: int, n_requests: int, tag: str) -> Path:
    want = n_requests * common.BATCH_RECORDS
    records: list[Any] = []
    k = 0
    while len(records) < want:
        records.extend(
            common.clone_log_records(
                tmpl.log_records, run_id=f"pg-{tag}{rnd}-{k}", event_suffix=f"-{tag}{rnd}-{k}"
            )
        )
        k += 1
    path = work / f"{tag}{rnd}.bin"
    common.write_requests(path, common.LOGS_METHOD, common.log_requests(tmpl, records[:want]))
    return path


def _ingest(work: Path, url: str, n_requests: int, rounds: int) -> dict[str, Any]:
    tmpl = common.make_template(10, 20)
    servers = {
        "postgresql": common.Receiver(work, name="pg", store=url, retention_runs=1_000_000),
        "sqlite": common.Receiver(work, name="sqlite", retention_runs=1_000_000),
    }
    rates: dict[str, list[float]] = {k: [] for k in servers}
    ratios: list[float] = []
    try:
        for rnd in range(rounds + 1):  # round 0 warms up
            order = list(servers) if rnd % 2 else list(reversed(servers))
            got: dict[str, float] = {}
            for name in order:
                path = _files(tmpl, work, rnd, n_requests, name)
                out = common.send(servers[name].grpc_target, path)
                path.unlink()
                if out["errors"] or out["rejected"]:
                    raise RuntimeError(f"{name}: {out}")
                got[name] = out["events"] / out["elapsed_s"]
            if rnd:
                for name, rate in got.items():
                    rates[name].append(rate)
                ratios.append(got["postgresql"] / got["sqlite"])
    finally:
        for s in servers.values():
            s.stop()
    return {
        "events_per_round": n_requests * common.BATCH_RECORDS,
        "postgresql_events_per_s": round(common.median(rates["postgresql"])),
        "sqlite_events_per_s": round(common.median(rates["sqlite"])),
        "postgresql_x_sqlite": round(common.median(ratios), 2),
        "postgresql_all": [round(r) for r in rates["postgresql"]],
        "sqlite_all": [round(r) for r in rates["sqlite"]],
    }


def _replicas(work: Path, url: str, n_events: int) -> dict[str, Any]:
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    from tests.receiver import event, logs_request, node, vfo_log_record
    from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
    from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2_grpc as db_grpc
    from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

    replicas = [common.Receiver(work, name=f"replica{i}", store=url) for i in range(3)]
    try:
        a, b = replicas[0], replicas[1]
        ch_a, ch_b = grpc.insecure_channel(a.grpc_target), grpc.insecure_channel(b.grpc_target)
        logs = logs_service_pb2_grpc.LogsServiceStub(ch_a)
        logs.Export(logs_request([vfo_log_record(event(ev.SCOPE_RUN, ev.STATE_RUNNING, t_s=0, run="live"))]))
        seen: dict[int, float] = {}
        cond = threading.Condition()
        call = db_grpc.SnapshotServiceStub(ch_b).WatchSnapshot(db.WatchSnapshotRequest(run_id="live"))

        def read() -> None:
            try:
                for resp in call:
                    with cond:
                        seen[resp.snapshot.revision] = time.perf_counter()
                        cond.notify_all()
            except grpc.RpcError:
                pass

        threading.Thread(target=read, daemon=True).start()
        lags = []
        for i in range(n_events):
            e = node("n", ev.STATE_RUNNING, t_s=1 + i, run="live", asset=f"a{i:05d}")
            t0 = time.perf_counter()
            logs.Export(logs_request([vfo_log_record(e)]))
            with cond:
                if not cond.wait_for(lambda i=i: max(seen, default=0) >= i + 2, 30):
                    raise RuntimeError(f"replica B never saw revision {i + 2}")
                lags.append(min(t for r, t in seen.items() if r >= i + 2) - t0)
        call.cancel()
        ch_a.close()
        ch_b.close()
    finally:
        for r in replicas:
            r.stop()
    return {
        "events": n_events,
        "p50_ms": round(common.percentile(lags, 0.5) * 1e3, 1),
        "p99_ms": round(common.percentile(lags, 0.99) * 1e3, 1),
        "max_ms": round(max(lags) * 1e3, 1),
    }


def run(quick: bool) -> dict[str, Any]:
    n_requests, rounds, n_events = _SIZES["quick" if quick else "full"]
    cluster = _cluster()
    try:
        with common.workdir() as work:
            ingest = _ingest(work, cluster.create_database("bench_ingest"), n_requests, rounds)
            live = _replicas(work, cluster.create_database("bench_replicas"), n_events)
    finally:
        cluster.destroy()
    return {
        "ingest": ingest,
        "replica_watch_latency": live,
        "targets": {
            "pg_ingest_ge_10k_events_s": ingest["postgresql_events_per_s"] >= 10_000,
            "replica_watch_p99_le_250ms": live["p99_ms"] <= 250,
        },
    }
