"""``vfo-otel demo``: a real pipeline of real commands over real files, observed end to end.

Two pipelines over files the demo creates in a work folder:

* ``media`` (5 assets ``clip-1`` .. ``clip-5``), a DAG with a fan-out and a fan-in::

      probe -> checksum ---+-> package -> publish
            -> thumbnail --+

  ``thumbnail`` of ``clip-2`` fails once (exit 75, a transient error) and succeeds on
  retry; ``checksum`` of ``clip-4`` fails for good (its manifest does not match), so its
  ``package`` and ``publish`` never run and end ``skipped``.
* ``report`` (1 asset ``daily``): ``collect -> summarize -> notify``; ``notify`` is
  skipped (no subscribers configured).

Expected outcome (asserted by tests/test_demo.py): pipelines 1 complete + 1 failed;
assets 5 complete + 1 failed; nodes (latest attempts) 24 complete, 1 failed, 3 skipped;
attempts 24 complete, 2 failed, 3 skipped; the run fails (``PipelineFailed``).

Events leave through the real OTLP gRPC exporters of the OTel SDK, to the embedded
receiver (default) or to ``--otlp-endpoint`` (e.g. a collector).
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel.app.report import format_summary
from vfo_otel.client import SnapshotClient
from vfo_otel.emitter import AssetHandle, Emitter, NodeSpec
from vfo_otel.receiver import ReceiverConfig, ReceiverThread

__all__ = ["MEDIA_ASSETS", "DemoResult", "run_demo"]

MEDIA_ASSETS = ("clip-1", "clip-2", "clip-3", "clip-4", "clip-5")
FLAKY_ASSET, BROKEN_ASSET = "clip-2", "clip-4"
MEDIA = {
    "probe": NodeSpec("analyze"),
    "checksum": NodeSpec("analyze", ("probe",)),
    "thumbnail": NodeSpec("encode", ("probe",)),
    "package": NodeSpec("package", ("checksum", "thumbnail")),
    "publish": NodeSpec("publish", ("package",)),
}
REPORT = {
    "collect": NodeSpec("analyze"),
    "summarize": NodeSpec("report", ("collect",)),
    "notify": NodeSpec("publish", ("summarize",)),
}
_MAX_ATTEMPTS = 3


@dataclass
class DemoResult:
    """What the demo did: run id, events emitted, the final snapshot, receiver addresses."""

    run_id: str
    events_emitted: int
    snapshot: db.DashboardSnapshot
    grpc_address: str
    http_url: str | None


def _sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def _make_inputs(work: Path) -> None:
    (work / "published").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(MEDIA_ASSETS, start=1):
        data = (f"{name} frame data\n" * (200 * i)).encode()
        (work / f"{name}.raw").write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        if name == BROKEN_ASSET:
            digest = "0" * 64  # the manifest does not match: checksum fails for good
        (work / f"{name}.sha256").write_text(f"{digest}  {name}.raw\n")


def _media_commands(work: Path, name: str) -> dict[str, list[str]]:
    q = shlex.quote
    raw = q(f"{name}.raw")
    flaky_marker = q(f".{name}.thumbnail-tried")
    thumb = f"head -c 256 {raw} > {q(name + '.thumb')}"
    if name == FLAKY_ASSET:  # fails the first time (a transient error), succeeds on retry
        busy = f"touch {flaky_marker}; echo 'encoder busy' >&2; exit 75"
        thumb = f"if [ ! -e {flaky_marker} ]; then {busy}; fi; {thumb}"
    return {
        "probe": _sh(f"wc -c {raw} > {q(name + '.probe')}"),
        "checksum": _sh(f"sha256sum -c {q(name + '.sha256')}"),
        "thumbnail": _sh(thumb),
        "package": _sh(f"tar -czf {q(name + '.tar.gz')} {raw} {q(name + '.thumb')} {q(name + '.probe')}"),
        "publish": _sh(f"cp {q(name + '.tar.gz')} published/"),
    }


def _run_node(
    asset: AssetHandle,
    node_id: str,
    argv: list[str],
    work: Path,
    log: Callable[[str], None],
    pace_s: float,
    output: str | None = None,
) -> bool:
    """Run one node with retries; True when its last attempt completed."""
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        with asset.node(node_id) as node:
            if pace_s:
                time.sleep(pace_s)  # lets a person watch the dashboard change; not synchronisation
            proc = node.run(argv, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if output and proc.returncode == 0:
                path = work / output
                node.add_output(
                    str(path), role="output", size_bytes=path.stat().st_size if path.exists() else None
                )
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        log(f"    {node_id:<10} attempt {attempt}: {status}")
        if proc.returncode == 0:
            return True
        if proc.returncode != 75:  # only the transient exit status is retried
            return False
    return False


def _emit_pipelines(
    emitter: Emitter, run_id: str, work: Path, log: Callable[[str], None], pace_s: float
) -> None:
    from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

    with emitter.run(run_id, command=[*sys.argv[:1], "demo"], attributes={"demo": "true"}) as run:
        with run.pipeline("media", MEDIA) as pipe:
            for name in MEDIA_ASSETS:
                log(f"  media/{name}")
                src = ev.AssetRef(
                    asset_id=name,
                    uri=str(work / f"{name}.raw"),
                    role="source",
                    size_bytes=(work / f"{name}.raw").stat().st_size,
                    media_type="text/plain",
                )
                with pipe.asset(name, inputs=[src]) as asset:
                    cmds = _media_commands(work, name)
                    outputs = {
                        "probe": f"{name}.probe",
                        "thumbnail": f"{name}.thumb",
                        "package": f"{name}.tar.gz",
                        "publish": f"published/{name}.tar.gz",
                    }
                    done: set[str] = set()
                    for node_id, spec in MEDIA.items():
                        if not all(u in done for u in spec.after):
                            continue  # an upstream node failed: left queued, skipped when the asset ends
                        if _run_node(asset, node_id, cmds[node_id], work, log, pace_s, outputs.get(node_id)):
                            done.add(node_id)
                for node_id, reason in asset.skipped.items():
                    log(f"    {node_id:<10} skipped ({reason})")
        with run.pipeline("report", REPORT) as pipe:
            log("  report/daily")
            with pipe.asset("daily") as asset:
                _run_node(asset, "collect", _sh("ls published > report.lst"), work, log, pace_s, "report.lst")
                _run_node(
                    asset, "summarize", _sh("wc -l report.lst > report.txt"), work, log, pace_s, "report.txt"
                )
                with asset.node("notify") as node:
                    node.skip("no subscribers configured")
                log("    notify     skipped (no subscribers configured)")


def _wait_for(
    client: SnapshotClient, run_id: str, events: int, timeout_s: float, log: Callable[[str], None]
) -> db.DashboardSnapshot:
    """Wait until the receiver has folded every emitted event (a collector delivers asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        revision = 0
        try:
            snap = client.get_snapshot(run_id)
            if snap.revision >= events:
                return snap
            revision = snap.revision
            status = f"{snap.revision} of {events} events folded"
        except grpc.RpcError as exc:
            status = f"{exc.code().name}: {exc.details()}"
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"receiver {client.address} did not fold run {run_id} in {timeout_s:.0f}s: {status}"
            )
        log(f"  waiting for the receiver: {status}")
        try:
            for _ in client.watch(run_id, after_revision=revision, timeout_s=2.0):
                break  # a new revision arrived: look again
        except grpc.RpcError:
            time.sleep(0.5)  # run not there yet (or watch deadline): back off before asking again


def run_demo(
    *,
    config: ReceiverConfig,
    run_id: str | None = None,
    workdir: str | None = None,
    otlp_endpoint: str | None = None,
    receiver_address: str | None = None,
    pace_s: float = 0.0,
    log: Callable[[str], None] = print,
    wait_timeout_s: float = 120.0,
    keep: Callable[[DemoResult], None] | None = None,
    keep_serving: bool = False,
) -> DemoResult:
    """Run the demo pipeline and return the final snapshot.

    Args:
        config: the embedded receiver's configuration (ignored with ``otlp_endpoint``).
        run_id: run id (default ``demo-<UTC timestamp>``).
        workdir: folder for the demo's files (default: a temporary folder, removed after).
        otlp_endpoint: send to this OTLP gRPC endpoint instead of an embedded receiver.
        receiver_address: ``host:port`` of the receiver to read the snapshot from
            (default: the embedded one).
        pace_s: pause inside each node attempt (seconds), to watch the dashboard live.
        log: progress output.
        keep: called with the result while the embedded receiver still runs (``--keep-serving``).
        keep_serving: ``keep`` blocks to keep serving (only changes the closing message).

    Raises:
        OSError, RuntimeError: the receiver could not start (e.g. port in use).
        TimeoutError: the receiver did not receive every event in ``wait_timeout_s``.
    """
    run_id = run_id or time.strftime("demo-%Y%m%dT%H%M%SZ", time.gmtime())
    thread: ReceiverThread | None = None
    if otlp_endpoint is None:
        thread = ReceiverThread(config).start()
        grpc_address = f"127.0.0.1:{thread.grpc_port}"
        otlp_endpoint = f"http://{grpc_address}"
        http_url = f"http://127.0.0.1:{thread.http_port}" if thread.http_port else None
        log(f"receiver: OTLP/gRPC {grpc_address}, HTTP {http_url}, store {config.store_path}")
    else:
        grpc_address = receiver_address or ""
        http_url = None
    try:
        with tempfile.TemporaryDirectory(prefix="vfo-demo-") as tmp:
            work = Path(workdir) if workdir else Path(tmp)
            _make_inputs(work)
            emitter = Emitter(endpoint=otlp_endpoint, service_name="vfo-demo", export_metrics_otlp=True)
            log(f"run {run_id}: running 2 pipelines over {len(MEDIA_ASSETS) + 1} assets in {work}")
            try:
                _emit_pipelines(emitter, run_id, work, log, pace_s)
            finally:
                if not emitter.force_flush(30_000):
                    log("warning: not every event could be exported (see the emitter's log)")
                emitter.shutdown()
            events = emitter.stats.events
        if not grpc_address:
            log(f"emitted {events} events to {otlp_endpoint}; pass --receiver to read the snapshot")
            return DemoResult(run_id, events, db.DashboardSnapshot(), "", None)
        with SnapshotClient(grpc_address) as client:
            snap = _wait_for(client, run_id, events, wait_timeout_s, log)
        log("")
        log(format_summary(snap))
        log("")
        stops = thread is not None and not keep_serving
        if not stops:  # the receiver still serves: these work now
            log(f"snapshot over gRPC: vfo-otel snapshot {run_id} --receiver {grpc_address}")
            if http_url:
                log(f"snapshot as JSON:   curl {http_url}/v1/runs/{run_id}/snapshot")
                log(f"live stream (SSE):  curl -N {http_url}/v1/runs/{run_id}/snapshot:watch")
                log(f"dashboard:          {http_url}/")
            log("")
        log(f"(The run fails on purpose: {BROKEN_ASSET}'s checksum does not match, so its package")
        log(f" and publish are skipped; {FLAKY_ASSET}'s thumbnail fails once and succeeds on retry.)")
        result = DemoResult(run_id, events, snap, grpc_address, http_url)
        if keep is not None:
            keep(result)
        if stops:
            default_store = config.store_path == ReceiverConfig().store_path
            store_flag = "" if default_store else f" --store {config.store_path}"
            log("")
            log(f"The demo's receiver has stopped; the run is kept in {config.store_path}.")
            log(f"Serve it again with `vfo-otel serve{store_flag}`, then read it with")
            log(f"`vfo-otel snapshot {run_id}` or open http://127.0.0.1:8686/ (the defaults of serve);")
            log("or rerun with `vfo-otel demo --keep-serving`.")
        return result
    finally:
        if thread is not None:
            thread.stop()
