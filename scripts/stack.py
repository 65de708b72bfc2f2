"""`make stack`: the deployment of docs/deploy.md as local processes, for users with Go but no Docker.

Starts, from the builds `make upstream` cached (scripts/build_upstream.sh):
  - Prometheus 3 with its native OTLP receiver (deploy/prometheus/prometheus.yml), the metrics backend,
  - the vfo-otel receiver (`vfo-otel serve`),
  - vfo-otelcol with collector-config/otelcol.yaml, the same file the compose stack mounts; only its
    listen addresses (loopback) and queue directory are overridden, its exporters are pointed at the
    processes above through the ${env:...} variables the file declares.
Tempo and Loki are not built here (docs/deploy.md says why): set TEMPO_OTLP_GRPC_ENDPOINT and
LOKI_OTLP_ENDPOINT to your own; otherwise their exporters keep their data queued and retry.

Prints the URLs and runs until Ctrl-C (or SIGTERM), then stops every process it started.
Data lives under build/stack/ (queues, TSDB, receiver store) and survives a restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "build" / "stack"
PORTS = {
    "collector_grpc": 4317,
    "collector_http": 4318,
    "collector_health": 13133,
    "merge": 4319,
    "receiver_grpc": 5317,
    "receiver_http": 8686,
    "prometheus": 9090,
}


def binary(name: str) -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_upstream.sh"), "--path", name], capture_output=True, text=True
    )
    if out.returncode != 0:
        sys.exit(f"stack: {name} is not built; run `make upstream` first ({out.stderr.strip()})")
    return out.stdout.strip()


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see its log under {DATA}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling a server's readiness endpoint
    raise RuntimeError(f"{what} not ready at {url} within {timeout_s} s")


def main() -> int:
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "otelcol").mkdir(exist_ok=True)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (DATA / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        procs.append((name, proc))
        return proc

    def stop(*_: object) -> None:
        for _name, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            print(f"stopped {name}")

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    # Explicitly: a shell starts background jobs with SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    p = PORTS
    try:
        prom = start(
            "prometheus",
            [
                binary("prometheus"),
                f"--config.file={ROOT / 'deploy' / 'prometheus' / 'prometheus.yml'}",
                f"--storage.tsdb.path={DATA / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{p['prometheus']}",
                "--web.enable-otlp-receiver",
            ],
        )
        wait_http(f"http://127.0.0.1:{p['prometheus']}/-/ready", prom, "prometheus")
        vfo = str(Path(sys.executable).parent / "vfo-otel")
        receiver = start(
            "receiver",
            [
                vfo,
                "serve",
                "--store",
                str(DATA / "vfo-otel.sqlite3"),
                "--grpc-address",
                f"127.0.0.1:{p['receiver_grpc']}",
                "--http-address",
                f"127.0.0.1:{p['receiver_http']}",
            ],
        )
        wait_http(f"http://127.0.0.1:{p['receiver_http']}/healthz", receiver, "receiver")
        storage = DATA / "otelcol"
        sets = [
            f"receivers.otlp.protocols.grpc.endpoint=127.0.0.1:{p['collector_grpc']}",
            f"receivers.otlp.protocols.http.endpoint=127.0.0.1:{p['collector_http']}",
            f"extensions.health_check.endpoint=127.0.0.1:{p['collector_health']}",
            f"extensions.file_storage/queue.directory={storage}",
            f"extensions.file_storage/queue.compaction.directory={storage}",
            "service.telemetry.metrics.level=none",
        ]
        env = {
            "MIMIR_OTLP_ENDPOINT": f"http://127.0.0.1:{p['prometheus']}/api/v1/otlp",
            "VFO_RECEIVER_ENDPOINT": f"127.0.0.1:{p['receiver_grpc']}",
            "VFO_METRICS_MERGE_ENDPOINT": f"127.0.0.1:{p['merge']}",
            "TEMPO_OTLP_GRPC_ENDPOINT": os.environ.get("TEMPO_OTLP_GRPC_ENDPOINT", "127.0.0.1:3217"),
            "LOKI_OTLP_ENDPOINT": os.environ.get("LOKI_OTLP_ENDPOINT", "http://127.0.0.1:3100/otlp"),
        }
        collector = start(
            "otelcol",
            [binary("otelcol"), "--config", str(ROOT / "collector-config" / "otelcol.yaml")]
            + [f"--set={s}" for s in sets],
            env,
        )
        wait_http(f"http://127.0.0.1:{p['collector_health']}/", collector, "vfo-otelcol")
        print(
            f"""vfo-otel stack is up (logs and data under {DATA}):
  collector OTLP    grpc 127.0.0.1:{p["collector_grpc"]}   http 127.0.0.1:{p["collector_http"]}
                    (point emitters here: Emitter(endpoint="http://127.0.0.1:{p["collector_grpc"]}"))
  receiver          dashboard http://127.0.0.1:{p["receiver_http"]}/   gRPC 127.0.0.1:{p["receiver_grpc"]}
  prometheus        http://127.0.0.1:{p["prometheus"]}/  (PromQL: sum(vfo_transitions_total))
  Tempo -> {env["TEMPO_OTLP_GRPC_ENDPOINT"]}, Loki -> {env["LOKI_OTLP_ENDPOINT"]} (not started here)
Try: vfo-otel demo --otlp-endpoint http://127.0.0.1:{p["collector_grpc"]} \\
       --receiver 127.0.0.1:{p["receiver_grpc"]}
Ctrl-C stops everything.""",
            flush=True,
        )
        while all(proc.poll() is None for _, proc in procs):
            time.sleep(1)  # supervising: report if a process dies
        dead = [name for name, proc in procs if proc.poll() is not None]
        print(f"stack: {', '.join(dead)} exited; see {DATA}/<name>.log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
