"""Real upstream programs as local processes: the vfo-otelcol collector (built with ocb from
collector-config/builder-config.yaml), Prometheus 3 (native OTLP receiver) and the vfo-otel receiver
(`vfo-otel serve`, the CLI as a subprocess).

Every process listens on 127.0.0.1 only, on free ports, with its data in a pytest temp dir; readiness is
polled on its HTTP health/ready endpoint (or its "listening" line) with a deadline, never slept for.
The binaries come from the cache that `make upstream` (scripts/build_upstream.sh) fills: with CI set, a
missing binary FAILS the test; locally it skips with the command that builds it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from vfo_otel.client import SnapshotClient
from vfo_otel.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "collector-config"
OTELCOL_CONFIG = CONFIG_DIR / "otelcol.yaml"
BUILD_SCRIPT = ROOT / "scripts" / "build_upstream.sh"
DEADLINE_S = 60.0

T = TypeVar("T")


def upstream_binary(name: str) -> str:
    """The cached binary ``name`` (otelcol, prometheus, goclient) that `make upstream` built."""
    found = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--path", name], capture_output=True, text=True, cwd=ROOT
    )
    if found.returncode == 0:
        return found.stdout.strip()
    message = f"upstream binary {name!r} is not built: run `make upstream` ({found.stderr.strip()})"
    if os.environ.get("CI"):
        pytest.fail(message + " -- .ci/run builds it before the tests", pytrace=False)
    pytest.skip(message)


def vfo_otel_cli() -> str:
    """The `vfo-otel` console script of the interpreter running the tests."""
    candidate = Path(sys.executable).parent / "vfo-otel"
    if candidate.exists():
        return str(candidate)
    pytest.fail("vfo-otel console script not found beside the test interpreter (make setup)", pytrace=False)


def child_env(**extra: str) -> dict[str, str]:
    """A child's environment without the caller's OTEL_ / VFO_OTEL_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VFO_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def wait_until(
    predicate: Callable[[], T | None], timeout_s: float = DEADLINE_S, what: str = "condition"
) -> T:
    """Poll real external state (a server's API, a process) until ``predicate()`` is truthy."""
    deadline = time.monotonic() + timeout_s
    delay, last = 0.02, None
    while True:
        try:
            value = predicate()
        except (OSError, grpc.RpcError, ValueError) as exc:  # not up yet / transient
            value, last = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout_s} s (last error: {last!r})")
        time.sleep(delay)  # a poll of real external state, not a synchronisation sleep
        delay = min(delay * 2, 0.25)


def http_get(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Process:
    """A child process with its output in a log file; stop() is SIGTERM then SIGKILL; idempotent."""

    name = "process"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.name}.log"

    def _spawn(self, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env or child_env()), cwd=self.workdir
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(DEADLINE_S)
            self.proc = None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(DEADLINE_S)


class Collector(Process):
    """vfo-otelcol running a shipped config file unchanged; only listen addresses, the queue directory
    and the collector's own telemetry are overridden with --set, and the exporters' endpoints with the
    ${env:...} variables the config declares (docs/deploy.md)."""

    name = "otelcol"

    def __init__(
        self,
        workdir: Path,
        config: Path = OTELCOL_CONFIG,
        env: Mapping[str, str] | None = None,
        sets: Iterable[str] = (),
    ) -> None:
        super().__init__(workdir)
        self.binary = upstream_binary("otelcol")
        self.config = config
        self.grpc_port, self.http_port, self.health_port = free_port(), free_port(), free_port()
        # The metrics path's loopback second stage (otlp/metrics_merge) gets its own free port too.
        self.env = {"VFO_METRICS_MERGE_ENDPOINT": f"127.0.0.1:{free_port()}", **(env or {})}
        self.sets = list(sets)
        self.storage = workdir / "file_storage"
        self.storage.mkdir(exist_ok=True)

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def argv(self) -> list[str]:
        sets = [
            f"receivers.otlp.protocols.grpc.endpoint=127.0.0.1:{self.grpc_port}",
            f"receivers.otlp.protocols.http.endpoint=127.0.0.1:{self.http_port}",
            f"extensions.health_check.endpoint=127.0.0.1:{self.health_port}",
            f"extensions.file_storage/queue.directory={self.storage}",
            f"extensions.file_storage/queue.compaction.directory={self.storage}",
            "service.telemetry.metrics.level=none",
            *self.sets,
        ]
        return [self.binary, "--config", str(self.config), *(f"--set={s}" for s in sets)]

    def start(self, timeout_s: float = DEADLINE_S) -> Collector:
        self._spawn(self.argv(), child_env(**self.env))

        def ready() -> bool:
            self.check_alive()
            status, body = http_get(f"http://127.0.0.1:{self.health_port}/")
            return status == 200 and b"Server available" in body

        wait_until(ready, timeout_s, f"collector health_check on :{self.health_port}")
        return self


class Receiver(Process):
    """`vfo-otel serve` (the CLI) on 127.0.0.1; a restart keeps its ports and its SQLite store."""

    name = "receiver"

    def __init__(self, workdir: Path, grpc_port: int | None = None, args: Iterable[str] = ()) -> None:
        super().__init__(workdir)
        self.grpc_port = grpc_port or free_port()
        self.http_port = free_port()
        self.store = workdir / "events.sqlite3"
        self.args = list(args)

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout_s: float = DEADLINE_S) -> Receiver:
        argv = [
            vfo_otel_cli(),
            "serve",
            "--store",
            str(self.store),
            "--grpc-address",
            self.grpc_endpoint,
            "--http-address",
            f"127.0.0.1:{self.http_port}",
            *self.args,
        ]
        self._spawn(argv)

        def ready() -> bool:
            self.check_alive()
            return http_get(f"http://127.0.0.1:{self.http_port}/healthz")[0] == 200

        wait_until(ready, timeout_s, f"receiver /healthz on :{self.http_port}")
        return self


class Prometheus(Process):
    """Prometheus 3 with its native OTLP receiver (`--web.enable-otlp-receiver`): the metrics backend
    the tests run for real in place of Mimir (docs/deploy.md says why)."""

    name = "prometheus"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = upstream_binary("prometheus")
        self.port = free_port()
        self.config = ROOT / "deploy" / "prometheus" / "prometheus.yml"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def otlp_endpoint(self) -> str:
        """The base URL for an otlp_http exporter (it appends /v1/metrics)."""
        return f"{self.base}/api/v1/otlp"

    def start(self, timeout_s: float = DEADLINE_S) -> Prometheus:
        self._spawn(
            [
                self.binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-otlp-receiver",
            ]
        )

        def ready() -> bool:
            self.check_alive()
            return http_get(f"{self.base}/-/ready")[0] == 200

        wait_until(ready, timeout_s, f"prometheus /-/ready on :{self.port}")
        return self

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, body = http_get(url)
        data = json.loads(body)
        assert status == 200 and data["status"] == "success", (promql, data)
        return list(data["data"]["result"])

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None


def get_snapshot(address: str, run_id: str) -> Any:
    """The run's DashboardSnapshot without its generation time, or None while the run is unknown."""
    with SnapshotClient(address) as client:
        try:
            snap = client.get_snapshot(run_id, timeout_s=5)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                return None
            raise
    out = type(snap)()
    out.CopyFrom(snap)
    out.ClearField("generated_time")
    return out


def wait_snapshots_equal(via: str, direct: str, run_id: str, timeout_s: float = DEADLINE_S) -> Any:
    """Poll both receivers until the run's snapshots are equal (and the direct one exists)."""
    state: dict[str, Any] = {}

    def equal() -> bool:
        state["direct"] = get_snapshot(direct, run_id)
        state["via"] = get_snapshot(via, run_id)
        return state["direct"] is not None and state["via"] == state["direct"]

    try:
        wait_until(equal, timeout_s, f"snapshot of {run_id} via the collector == direct")
    except TimeoutError:
        via_rev = getattr(state.get("via"), "revision", None)
        direct_rev = getattr(state.get("direct"), "revision", None)
        raise AssertionError(
            f"snapshots differ: via collector revision {via_rev}, direct revision {direct_rev}"
        ) from None
    return state["direct"]


def log_has(process: Process, pattern: str) -> bool:
    try:
        return re.search(pattern, process.log.read_text(errors="replace")) is not None
    except OSError:
        return False


class FanOut:
    """An Emitter whose every span and log record goes to two OTLP/gRPC endpoints at once: through the
    collector, and straight to a second receiver (the direct path). Both paths carry the very same
    events (same ids, same timestamps), so the two receivers' snapshots must be equal.

    ``acknowledged`` / ``failed``: vfo event ids of log records whose export via the collector the
    collector acknowledged / that failed for good (vfo_otel.testing.CountingLogExporter).
    """

    def __init__(
        self, via: str, direct: str, *, service_name: str = "vfo-upstream-test", timeout_s: float = 60.0
    ) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from vfo_otel import Emitter
        from vfo_otel.testing import CountingLogExporter

        resource = Resource.create({"service.name": service_name})
        self.via_logs = CountingLogExporter(endpoint=f"http://{via}", insecure=True, timeout=timeout_s)
        direct_logs = CountingLogExporter(endpoint=f"http://{direct}", insecure=True, timeout=timeout_s)
        self.tp = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
        for endpoint in (via, direct):
            spans = OTLPSpanExporter(endpoint=f"http://{endpoint}", insecure=True, timeout=timeout_s)
            self.tp.add_span_processor(BatchSpanProcessor(spans, schedule_delay_millis=200))
        for logs in (self.via_logs, direct_logs):
            self.lp.add_log_record_processor(BatchLogRecordProcessor(logs, schedule_delay_millis=200))
        metrics = OTLPMetricExporter(endpoint=f"http://{via}", insecure=True, timeout=timeout_s)
        reader = PeriodicExportingMetricReader(metrics, export_interval_millis=600_000)
        self.mp = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
        self.emitter = Emitter(
            tracer_provider=self.tp,
            logger_provider=self.lp,
            meter_provider=self.mp,
            heartbeat_interval_s=None,
        )

    @property
    def acknowledged(self) -> list[str]:
        return self.via_logs.acknowledged

    @property
    def failed(self) -> list[str]:
        return self.via_logs.failed

    def flush(self, timeout_s: float = DEADLINE_S) -> None:
        ms = int(timeout_s * 1000)
        self.tp.force_flush(ms)
        self.lp.force_flush(ms)
        self.mp.force_flush(ms)

    def close(self) -> None:
        self.emitter.shutdown()
        for provider in (self.tp, self.lp, self.mp):
            provider.shutdown()


class HttpOtlpLogSink:
    """A stand-in for Loki's OTLP endpoint: an HTTP server on 127.0.0.1 that records every
    ExportLogsServiceRequest POSTed to <base>/v1/logs (protobuf, gzip or not) and answers 200."""

    def __init__(self) -> None:
        import gzip
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

        self.requests: list[Any] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = logs_service_pb2.ExportLogsServiceRequest()
                request.ParseFromString(body)
                sink.requests.append(request)
                reply = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        """The base URL an otlp_http exporter is given (it appends /v1/logs)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/otlp"

    def records(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, log record) of everything received so far."""
        out = []
        for request in list(self.requests):
            for rl in request.resource_logs:
                resource = {kv.key: kv.value.string_value for kv in rl.resource.attributes}
                out.extend((resource, r) for sl in rl.scope_logs for r in sl.log_records)
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_workers(endpoint: str, count: int, pipeline_id: str, parallel: int = 8) -> None:
    """tests/upstream/workers.py: ``count`` short-lived worker processes emitting to ``endpoint``."""
    argv = [sys.executable, "-m", "tests.upstream.workers", "--endpoint", endpoint]
    argv += ["--workers", str(count), "--parallel", str(parallel), "--pipeline", pipeline_id]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=child_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == {"workers": count, "failed": 0}
