"""3. Snapshot serving: GetSnapshot over gRPC and the JSON snapshot over HTTP, sizes, watch latency.

Method. A ``vfo-otel serve`` process ingests one run of N assets x 20 nodes (every 5th
asset retries a node once), sent as OTLP logs by the client process. Then, from this
process, each figure is the median over repeats of one request's wall time, client
decoding included (gRPC: the ``SnapshotClient``; HTTP: a keep-alive ``http.client``
connection reading the whole body):

* *cold*: right after a change (one new event is exported first), so the receiver's
  per-revision snapshot cache misses and the snapshot is built from the fold: what a live
  dashboard sees while a run is moving;
* *warm*: the same request again (cache hit).

"With selection" asks for one pipeline and asset (node details of that asset; the asset
sorts outside the first page of the asset list, so its row is the page's extra row);
"without" for none. Both get the default asset page (100 rows, schema 2); "all assets"
asks for the largest page (1,000 rows: the whole list of the 1,000-asset run, which is
what every snapshot carried before pages). The watch latency is from the start of an OTLP
export carrying one new event to a ``WatchSnapshot`` stream (gRPC, with a selection)
delivering the new revision. History bound: the run's every event is re-sent with new
event ids (the history doubles, the entities stay), and the payload with a selection is
measured again. Selection bound: a second run with a tenth of the assets is ingested and
the payload with a selection is compared with the big run's.
"""

from __future__ import annotations

import http.client
import itertools
import queue
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from bench import common

_SIZES = {"quick": (50, 3), "full": (1000, 9)}  # (assets, repeats)
PIPELINE = "media"


_POKES = itertools.count(1)


class Poker:
    """Sends one new event (a cloned log record with a fresh id) to make the run change."""

    def __init__(self, receiver: common.Receiver, tmpl: common.Template, run_id: str) -> None:
        self._channel = grpc.insecure_channel(receiver.grpc_target)
        self._call = self._channel.unary_unary(common.LOGS_METHOD)
        self._tmpl = tmpl
        self._record = next(
            r
            for r in tmpl.log_records
            if any(kv.key == "vfo.scope" and kv.value.string_value == "node" for kv in r.attributes)
        )
        self._run_id = run_id

    def poke(self) -> None:
        recs = common.clone_log_records(
            [self._record], run_id=self._run_id, asset_suffix="-0", event_suffix=f"-poke{next(_POKES)}"
        )
        body, _, _ = common.log_requests(self._tmpl, recs)[0]
        raw = self._call(body, timeout=30)
        assert not logs_service_pb2.ExportLogsServiceResponse.FromString(
            raw
        ).partial_success.rejected_log_records

    def close(self) -> None:
        self._channel.close()


def _http_get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
    return body


def ingest_run(
    receiver: common.Receiver, tmpl: common.Template, run_id: str, n_assets: int, work: Any, tag: str = ""
) -> dict[str, Any]:
    """Send a run of n_assets (cloned from the template) as OTLP logs; returns counts and rate."""
    records = common.big_run_log_records(tmpl, run_id, n_assets, tag)
    path = work / f"{run_id}{tag}.bin"
    common.write_requests(path, common.LOGS_METHOD, common.log_requests(tmpl, records))
    out = common.send(receiver.grpc_target, path)
    path.unlink()
    if out["errors"] or out["rejected"]:
        raise RuntimeError(f"ingest of {run_id} failed: {out}")
    return {
        "events": out["events"],
        "events_per_s": round(out["events"] / out["elapsed_s"]),
        "attempts": tmpl.attempts * n_assets // tmpl.n_assets,
    }


def pick_asset(n_assets: int, tmpl: common.Template) -> str:
    """A retried asset (two attempts of one node) that sorts in the middle of the asset list."""
    copies = -(-n_assets // tmpl.n_assets)
    k = (copies - 1) // 2
    if k < copies - 1 or n_assets - k * tmpl.n_assets > 5:
        return f"clip-00005-{k}"
    return "clip-00000-0"


def measure_serving(
    receiver: common.Receiver, tmpl: common.Template, run_id: str, repeats: int, asset: str
) -> dict[str, Any]:
    """Cold/warm serving times (ms) and payload sizes (bytes), with and without a selection."""
    from vfo_otel.client import SnapshotClient

    poker = Poker(receiver, tmpl, run_id)
    url = urlsplit(receiver.http_base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    client = SnapshotClient(receiver.grpc_target)
    out: dict[str, Any] = {}
    try:
        cases = {
            "grpc_no_selection": lambda: client.get_snapshot(run_id).ByteSize(),
            "grpc_selection": lambda: client.get_snapshot(run_id, PIPELINE, asset).ByteSize(),
            "json_no_selection": lambda: len(_http_get(conn, f"/v1/runs/{run_id}/snapshot")),
            "json_selection": lambda: len(
                _http_get(conn, f"/v1/runs/{run_id}/snapshot?pipeline_id={PIPELINE}&asset_id={asset}")
            ),
            "json_all_assets": lambda: len(
                _http_get(conn, f"/v1/runs/{run_id}/snapshot?asset_page_size=1000")
            ),
        }
        for fn in cases.values():  # connect, warm up code paths
            fn()
        times: dict[str, dict[str, list[float]]] = {k: {"cold": [], "warm": []} for k in cases}
        sizes: dict[str, int] = {}
        for _ in range(repeats):
            for name, fn in cases.items():
                poker.poke()
                t = time.perf_counter()
                sizes[name] = fn()
                times[name]["cold"].append(time.perf_counter() - t)
                t = time.perf_counter()
                fn()
                times[name]["warm"].append(time.perf_counter() - t)
        for name in cases:
            out[name] = {
                "cold_ms": round(common.median(times[name]["cold"]) * 1e3, 2),
                "warm_ms": round(common.median(times[name]["warm"]) * 1e3, 2),
                "bytes": sizes[name],
            }
        out["watch_latency_ms"] = _watch_latency(client, poker, run_id, asset, repeats)
    finally:
        client.close()
        conn.close()
        poker.close()
    return out


def _watch_latency(client: Any, poker: Poker, run_id: str, asset: str, repeats: int) -> dict[str, float]:
    from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db

    current = client.get_snapshot(run_id).revision
    got: queue.Queue[tuple[int, float]] = queue.Queue()
    stream = client._stub.WatchSnapshot(  # the raw call, so it can be cancelled
        db.WatchSnapshotRequest(run_id=run_id, after_revision=current, pipeline_id=PIPELINE, asset_id=asset)
    )

    def read() -> None:
        try:
            for resp in stream:
                got.put((resp.snapshot.revision, time.perf_counter()))
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    lat = []
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            poker.poke()
            while True:
                rev, when = got.get(timeout=30)
                if rev > current:
                    current = rev
                    break
            lat.append(when - t)
    finally:
        stream.cancel()
        reader.join(5)
    return {"median": round(common.median(lat) * 1e3, 2), "max": round(max(lat) * 1e3, 2)}


def run(quick: bool) -> dict[str, Any]:
    n_assets, repeats = _SIZES["quick" if quick else "full"]
    tmpl = common.make_template(10, 20)
    with common.workdir() as work:
        receiver = common.Receiver(work)
        try:
            common.wait_grpc_ready(receiver.grpc_target)
            asset = pick_asset(n_assets, tmpl)
            ingested = ingest_run(receiver, tmpl, "snap", n_assets, work)
            serving = measure_serving(receiver, tmpl, "snap", repeats, asset)
            # double the history: every event again under a new id (same entities, same outcome)
            ingest_run(receiver, tmpl, "snap", n_assets, work, tag="-again")
            again = measure_serving(receiver, tmpl, "snap", max(repeats // 3, 1), asset)
            # a run with a tenth of the assets: the payload with a selection must hardly change
            small_n = n_assets // 10
            ingest_run(receiver, tmpl, "snap-small", small_n, work)
            small = measure_serving(receiver, tmpl, "snap-small", 1, pick_asset(small_n, tmpl))
        finally:
            receiver.stop()
    sel = serving["json_selection"]
    result = {
        "run": {"assets": n_assets, "nodes_per_asset": 20, **ingested},
        "serving": serving,
        "after_history_doubled": {
            k: again[k] for k in ("json_selection", "grpc_selection", "json_no_selection")
        },
        "small_run": {"assets": small_n, "json_selection_bytes": small["json_selection"]["bytes"]},
        "json_selection_x_target_50ms": round(sel["cold_ms"] / 50.0, 3),
        "bytes_per_asset_json_selection": round(sel["bytes"] / n_assets, 1),
        "json_selection_bytes_x_small_run": round(sel["bytes"] / small["json_selection"]["bytes"], 3),
    }
    result["targets"] = {
        "json_selection_le_50ms": sel["cold_ms"] <= 50.0,
        "payload_not_bounded_by_history": again["json_selection"]["bytes"] <= sel["bytes"] * 1.01,
        "payload_bounded_by_selection": sel["bytes"] <= small["json_selection"]["bytes"] * 1.05,
    }
    return result
