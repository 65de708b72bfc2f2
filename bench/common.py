"""Shared pieces of the benchmark harness: realistic OTLP corpora, processes, medians, RSS.

Realism: every OTLP record the benchmarks send is produced by vfo-otel's own emitter
(:func:`vfo_otel.testing.in_memory_emitter` driven through the runner API: commands,
exit codes, inputs/outputs, retries, failures) and encoded by the OpenTelemetry SDK's own
OTLP encoder, so attribute sets are exactly what a runner sends. To get many distinct
events cheaply, a small emitted template run is *cloned*: each copy rewrites the run id,
asset id and event id attributes (the only values the receiver de-duplicates or keys on).

Processes: the receiver under test is ``vfo-otel serve`` in its own process (its bound
ports are read from its start-up line on stderr), the ceiling servers are
``python -m bench.ceilings``, and the sending client is ``python -m bench.client``.
All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
BATCH_RECORDS = 512  # the SDK batch processors' default max_export_batch_size

ROOT = Path(__file__).resolve().parent.parent
_SERVE_LINE = re.compile(
    r"OTLP/gRPC on (?P<grpc>\S+?):(?P<gport>\d+)(?:, HTTP on (?P<http>\S+?):(?P<hport>\d+))?"
)


# ---------------------------------------------------------------------------
# Statistics and machine facts
# ---------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    """Median of the values (0.0 for none)."""
    vals = list(values)
    return statistics.median(vals) if vals else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank (0.0 for none)."""
    if not values:
        return 0.0
    vals = sorted(values)
    return vals[min(len(vals) - 1, max(0, round(q * (len(vals) - 1))))]


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (default: this one) from /proc/PID/status (VmRSS)."""
    path = f"/proc/{pid or 'self'}/status"
    with open(path, encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in {path}")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
                break
    import google.protobuf
    import grpc
    import opentelemetry.sdk.version

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "mem_bytes": mem,
        "python": sys.version.split()[0],
        "grpcio": grpc.__version__,
        "protobuf": google.protobuf.__version__,
        "opentelemetry_sdk": opentelemetry.sdk.version.__version__,
        "protobuf_backend": _protobuf_backend(),
    }


def _protobuf_backend() -> str:
    from google.protobuf.internal import api_implementation

    return api_implementation.Type()


# ---------------------------------------------------------------------------
# A realistic run, emitted by vfo-otel's emitter
# ---------------------------------------------------------------------------


STAGES = ("analyze", "encode", "package")


def workflow(n_nodes: int) -> dict[str, Any]:
    """A DAG of ``n_nodes``: a probe, then a fan-out of chains, then a fan-in (stages cycle)."""
    from vfo_otel import NodeSpec

    wf: dict[str, Any] = {"n00": NodeSpec("analyze")}
    for i in range(1, n_nodes):
        after = ("n00",) if i <= 3 else (f"n{i - 3:02d}",)
        if i == n_nodes - 1 and n_nodes > 4:
            after = tuple(f"n{j:02d}" for j in range(max(1, i - 3), i))
        wf[f"n{i:02d}"] = NodeSpec(STAGES[i % 3], after)
    return wf


def emit_run(
    emitter: Any,
    run_id: str,
    n_assets: int,
    n_nodes: int,
    *,
    retry_every: int = 5,
    fail_every: int = 0,
    pipeline_id: str = "media",
) -> None:
    """Drive a real run through the runner API: commands, exit codes, outputs and retries.

    Every ``retry_every``-th asset has one node fail once (exit code 1) and succeed on attempt 2;
    every ``fail_every``-th asset (0: none) has a node fail for good (the rest are skipped).
    """
    from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

    wf = workflow(n_nodes)
    with (
        emitter.run(run_id, command=["vfo", "run", "nightly.toml"], action="nightly") as run,
        run.pipeline(pipeline_id, wf) as pipeline,
    ):
        for a in range(n_assets):
            asset_id = f"clip-{a:05d}"
            src = ev.AssetRef(
                asset_id=asset_id,
                uri=f"/data/in/{asset_id}.mov",
                role="source",
                size_bytes=734003200,
                media_type="video/quicktime",
            )
            with contextlib.suppress(RuntimeError), pipeline.asset(asset_id, inputs=[src]) as asset:
                for i, node_id in enumerate(wf):
                    flaky = retry_every and a % retry_every == 0 and i == n_nodes // 2
                    doomed = fail_every and a % fail_every == fail_every - 1 and i == n_nodes - 2
                    for attempt in range(2 if flaky else 1):
                        with asset.node(node_id) as node:
                            out = f"/data/out/{asset_id}/{node_id}.mp4"
                            node.set_command(ffmpeg_argv(asset_id, node_id))
                            failed = (flaky and attempt == 0) or doomed
                            node.set_exit_code(1 if failed else 0)
                            if not failed:
                                node.add_output(
                                    out, role="proxy", size_bytes=52428800, media_type="video/mp4"
                                )
                    if doomed:
                        break


@dataclass
class Template:
    """One emitted run as OTLP protobuf: the records of the SDK's own encoder.

    Attributes:
        resource, scope: of the emitter (service/host identity; the vfo_otel scope).
        log_records: every log record (one per canonical event).
        spans: every finished span (its ``vfo.transition`` span events are the events).
        n_assets, n_nodes: the run's shape; attempts: node attempts in it.
    """

    resource: resource_pb2.Resource
    scope: common_pb2.InstrumentationScope
    log_records: list[logs_pb2.LogRecord]
    spans: list[trace_pb2.Span]
    n_assets: int
    n_nodes: int
    attempts: int

    @property
    def events(self) -> int:
        return len(self.log_records)

    def per_asset_log_records(self) -> tuple[list[logs_pb2.LogRecord], list[logs_pb2.LogRecord]]:
        """(records of run/pipeline scope, records of asset/node scope)."""
        run_level, asset_level = [], []
        for r in self.log_records:
            scope = next(kv.value.string_value for kv in r.attributes if kv.key == "vfo.scope")
            (asset_level if scope in ("asset", "node") else run_level).append(r)
        return run_level, asset_level


def make_template(
    n_assets: int = 10, n_nodes: int = 20, *, retry_every: int = 5, fail_every: int = 0, run_id: str = "tmpl"
) -> Template:
    """Emit one run through the real emitter (in-memory exporters) and encode it with the SDK."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from vfo_otel.testing import in_memory_emitter

    t = in_memory_emitter(service_name="vfo-bench")
    try:
        emit_run(t.emitter, run_id, n_assets, n_nodes, retry_every=retry_every, fail_every=fail_every)
        logs = encode_logs(t.logs.get_finished_logs())
        spans = encode_spans(t.spans.get_finished_spans())
    finally:
        t.close()
    rl = logs.resource_logs[0]
    records = [r for sl in rl.scope_logs for r in sl.log_records]
    span_list = [s for rs in spans.resource_spans for ss in rs.scope_spans for s in ss.spans]
    attempts = sum(1 for s in span_list if any(kv.key == "vfo.attempt.id" for kv in s.attributes))
    return Template(rl.resource, rl.scope_logs[0].scope, records, span_list, n_assets, n_nodes, attempts)


def _relabel(attrs: Any, run_id: str | None, asset_suffix: str, event_suffix: str) -> None:
    for kv in attrs:
        key = kv.key
        if key == "vfo.event.id":
            kv.value.string_value += event_suffix
        elif key == "vfo.run.id" and run_id is not None:
            kv.value.string_value = run_id
        elif key == "vfo.asset.id" and asset_suffix:
            kv.value.string_value += asset_suffix


def clone_log_records(
    records: Sequence[logs_pb2.LogRecord],
    *,
    run_id: str | None = None,
    asset_suffix: str = "",
    event_suffix: str = "",
) -> list[logs_pb2.LogRecord]:
    """Copies of log records with the run id replaced and suffixes on asset and event ids."""
    out = []
    for r in records:
        c = logs_pb2.LogRecord()
        c.CopyFrom(r)
        _relabel(c.attributes, run_id, asset_suffix, event_suffix)
        out.append(c)
    return out


def clone_spans(
    spans: Sequence[trace_pb2.Span],
    *,
    run_id: str | None = None,
    asset_suffix: str = "",
    event_suffix: str = "",
) -> list[trace_pb2.Span]:
    """Copies of spans with the run id replaced and suffixes on asset and event ids."""
    out = []
    for s in spans:
        c = trace_pb2.Span()
        c.CopyFrom(s)
        _relabel(c.attributes, run_id, asset_suffix, event_suffix)
        for e in c.events:
            _relabel(e.attributes, run_id, asset_suffix, event_suffix)
        out.append(c)
    return out


def big_run_log_records(
    tmpl: Template, run_id: str, n_assets: int, tag: str = ""
) -> list[logs_pb2.LogRecord]:
    """A run of ``n_assets`` assets: the template's assets cloned (asset ids made unique), one run header."""
    run_level, asset_level = tmpl.per_asset_log_records()
    out = clone_log_records(run_level, run_id=run_id, event_suffix=f"-{run_id}{tag}")
    copies = -(-n_assets // tmpl.n_assets)
    for k in range(copies):
        part = asset_level
        left = n_assets - k * tmpl.n_assets
        if left < tmpl.n_assets:  # the last copy keeps only the first `left` template assets
            keep = {f"clip-{a:05d}" for a in range(left)}
            part = [
                r
                for r in asset_level
                if next(kv.value.string_value for kv in r.attributes if kv.key == "vfo.asset.id") in keep
            ]
        out.extend(
            clone_log_records(part, run_id=run_id, asset_suffix=f"-{k}", event_suffix=f"-{run_id}{tag}-{k}")
        )
    return out


def log_requests(
    tmpl: Template, records: Sequence[logs_pb2.LogRecord], batch: int = BATCH_RECORDS
) -> list[tuple[bytes, int, int]]:
    """Serialized ExportLogsServiceRequests of ``batch`` records: (bytes, records, events)."""
    out = []
    for i in range(0, len(records), batch):
        part = records[i : i + batch]
        req = logs_service_pb2.ExportLogsServiceRequest()
        rl = req.resource_logs.add()
        rl.resource.CopyFrom(tmpl.resource)
        sl = rl.scope_logs.add()
        sl.scope.CopyFrom(tmpl.scope)
        sl.log_records.extend(part)
        out.append((req.SerializeToString(), len(part), len(part)))
    return out


def trace_requests(
    tmpl: Template, spans: Sequence[trace_pb2.Span], batch: int = BATCH_RECORDS
) -> list[tuple[bytes, int, int]]:
    """Serialized ExportTraceServiceRequests of ``batch`` spans: (bytes, spans, span events)."""
    out = []
    for i in range(0, len(spans), batch):
        part = spans[i : i + batch]
        req = trace_service_pb2.ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.CopyFrom(tmpl.resource)
        ss = rs.scope_spans.add()
        ss.scope.CopyFrom(tmpl.scope)
        ss.spans.extend(part)
        out.append((req.SerializeToString(), len(part), sum(len(s.events) for s in part)))
    return out


# ---------------------------------------------------------------------------
# Request files for the client process
# ---------------------------------------------------------------------------


def write_requests(path: Path, method: str, requests: Sequence[tuple[bytes, int, int]]) -> None:
    """Write requests for ``bench.client``: a JSON header line, then length-prefixed bodies."""
    with open(path, "wb") as f:
        header = {"method": method, "counts": [[r, e] for _, r, e in requests]}
        f.write(json.dumps(header).encode() + b"\n")
        for body, _, _ in requests:
            f.write(len(body).to_bytes(4, "big"))
            f.write(body)


def read_requests(path: Path) -> tuple[str, list[bytes], list[tuple[int, int]]]:
    """Read a file written by :func:`write_requests`: (method, bodies, (records, events) each)."""
    with open(path, "rb") as f:
        header = json.loads(f.readline())
        bodies = []
        for _ in header["counts"]:
            n = int.from_bytes(f.read(4), "big")
            bodies.append(f.read(n))
    return header["method"], bodies, [tuple(c) for c in header["counts"]]  # type: ignore[misc]


def send(target: str, path: Path, concurrency: int = 4, timeout_s: float = 300.0) -> dict[str, Any]:
    """Send a request file from a separate client process; returns its JSON result."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.client",
            "--target",
            target,
            "--requests",
            str(path),
            "--concurrency",
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench.client failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# Server processes
# ---------------------------------------------------------------------------


class Proc:
    """A server subprocess with its stderr in a file; stopped with SIGINT, then SIGKILL."""

    def __init__(self, argv: list[str], workdir: Path, name: str) -> None:
        self.log_path = workdir / f"{name}.stderr"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.pid = self.proc.pid

    def wait_for_stderr(self, pattern: re.Pattern[str], timeout_s: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            m = pattern.search(text)
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.proc.args} did not start: {self.log_path.read_text(errors='replace')[-2000:]}"
        )

    def read_json_line(self, timeout_s: float = 30.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            raise RuntimeError(f"{self.proc.args}: no start-up line: {self.log_path.read_text()[-2000:]}")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.proc.args} exited: {self.log_path.read_text()[-2000:]}")
        return json.loads(line)  # type: ignore[no-any-return]

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class Receiver(Proc):
    """``vfo-otel serve`` on ephemeral loopback ports with its real SQLite store.

    Attributes:
        grpc_target: ``127.0.0.1:PORT``; http_base: ``http://127.0.0.1:PORT``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "receiver",
        retention_runs: int = 1000,
        fsync: bool = False,
        extra: Sequence[str] = (),
        store: str | None = None,
    ) -> None:
        store = store or str(workdir / f"{name}.sqlite3")
        argv = [
            str(Path(sys.executable).parent / "vfo-otel"),
            "--log-level",
            "warning",
            "serve",
            "--grpc-address",
            "127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
            "--store",
            store,
            "--retention-runs",
            str(retention_runs),
            "--max-request-bytes",
            str(64 * 1024 * 1024),
            *(["--fsync"] if fsync else []),
            *extra,
        ]
        if not Path(argv[0]).exists():
            argv = [sys.executable, "-m", "vfo_otel.app.cli", *argv[1:]]
        super().__init__(argv, workdir, name)
        self.store_path = store
        m = self.wait_for_stderr(_SERVE_LINE, 120.0)
        self.grpc_target = f"127.0.0.1:{m['gport']}"
        self.http_base = f"http://127.0.0.1:{m['hport']}"


class Ceiling(Proc):
    """A ceiling server of :mod:`bench.ceilings` (``parse``, ``walk`` or ``stall``)."""

    def __init__(self, workdir: Path, mode: str) -> None:
        super().__init__([sys.executable, "-m", "bench.ceilings", "--mode", mode], workdir, f"ceiling-{mode}")
        self.grpc_target = f"127.0.0.1:{self.read_json_line()['port']}"


@contextlib.contextmanager
def workdir(prefix: str = "vfo-bench-") -> Iterator[Path]:
    """A temporary folder for stores, request files and server logs (removed afterwards)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def wait_grpc_ready(target: str, timeout_s: float = 10.0) -> None:
    import grpc

    with grpc.insecure_channel(target) as ch:
        grpc.channel_ready_future(ch).result(timeout_s)


def ffmpeg_argv(asset_id: str, node_id: str) -> list[str]:
    """The realistic command line every benchmark node attempt records."""
    return [
        "ffmpeg",
        "-hide_banner",
        "-i",
        f"/data/in/{asset_id}.mov",
        "-c:v",
        "libx264",
        "-crf",
        "23",
        f"/data/out/{asset_id}/{node_id}.mp4",
    ]
