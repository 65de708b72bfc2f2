"""Helpers of the reliability suite: receiver subprocesses, store reads, waits with deadlines, figures."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0
FIGURES = ROOT / "build" / "reliability" / "figures.json"

T = TypeVar("T")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: no OTEL_/VFO_OTEL_ settings of the caller, repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VFO_OTEL_"))}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "600000"
    env.update(extra)
    return env


def wait_until(predicate: Callable[[], T], timeout_s: float = DEADLINE_S, what: str = "condition") -> T:
    """Poll external state (a store, a process) until ``predicate()`` is truthy; returns its value.

    Raises:
        TimeoutError: not true within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout_s} s")
        time.sleep(delay)  # a poll of real external state, not a synchronisation sleep
        delay = min(delay * 2, 0.1)


def record_figures(section: str, **figures: Any) -> None:
    """Merge measured figures into build/reliability/figures.json (docs/reliability.md quotes them)."""
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if FIGURES.exists():
        try:
            data = json.loads(FIGURES.read_text())
        except ValueError:
            data = {}
    data[section] = figures
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


class ReceiverProcess:
    """``vfo-otel serve`` as a real subprocess; ``start()`` waits for its "listening" line.

    Args:
        store: SQLite store path.
        grpc_port: fixed port (for a restart on the same port) or 0 for any.
        http: also start HTTP on a free port.
        args: extra ``serve`` options.
    """

    def __init__(
        self, store: Path, grpc_port: int = 0, *, http: bool = False, args: Iterable[str] = ()
    ) -> None:
        self.store, self.grpc_port, self.http_port = store, grpc_port, 0
        self._http = http
        self._args = list(args)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._ready: queue.Queue[str] = queue.Queue()

    def start(self, timeout_s: float = DEADLINE_S) -> ReceiverProcess:
        cmd = [
            sys.executable,
            "-m",
            "vfo_otel.app.cli",
            "serve",
            "--store",
            str(self.store),
            "--grpc-address",
            f"127.0.0.1:{self.grpc_port}",
            *(["--http-address", "127.0.0.1:0"] if self._http else ["--no-http"]),
            *self._args,
        ]
        self.lines = []
        self._ready = queue.Queue()
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._ready.get(timeout=max(deadline - time.monotonic(), 0.001))
            if line == "":
                raise RuntimeError("receiver exited during start-up:\n" + "".join(self.lines))
            m = re.search(r"OTLP/gRPC on 127\.0\.0\.1:(\d+)(?:, HTTP on 127\.0\.0\.1:(\d+))?", line)
            if m:
                self.grpc_port = int(m.group(1))
                self.http_port = int(m.group(2) or 0)
                return self

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)
            self._ready.put(line)
        self._ready.put("")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(DEADLINE_S)

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status (idempotent)."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(DEADLINE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait(DEADLINE_S)
        return proc.returncode

    def __enter__(self) -> ReceiverProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stored_event_ids(store: Path, run_id: str | None = None) -> set[str]:
    """Event ids committed to a receiver's SQLite store (read-only; works while it runs: WAL)."""
    if not store.exists():
        return set()
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
    try:
        if run_id is None:
            rows = con.execute("SELECT event_id FROM events").fetchall()
        else:
            rows = con.execute("SELECT event_id FROM events WHERE run_id = ?", (run_id,)).fetchall()
    except sqlite3.OperationalError:  # the receiver has not created the schema yet
        return set()
    finally:
        con.close()
    return {r[0] for r in rows}


def stored_count(store: Path) -> int:
    return len(stored_event_ids(store))


def wait_revision(
    address: str, run_id: str, revision: int, timeout_s: float = DEADLINE_S, **kw: Any
) -> db.DashboardSnapshot:
    """Poll GetSnapshot (deadline) until the run reaches ``revision``; returns that snapshot."""

    def probe() -> db.DashboardSnapshot | None:
        with SnapshotClient(address, **kw) as c:
            try:
                snap = c.get_snapshot(run_id, timeout_s=5)
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    return None
                raise
        return snap if snap.revision >= revision else None

    return wait_until(probe, timeout_s, f"run {run_id} at revision {revision}")


def without_generated_time(snap: db.DashboardSnapshot) -> db.DashboardSnapshot:
    out = db.DashboardSnapshot()
    out.CopyFrom(snap)
    out.ClearField("generated_time")
    return out


def durations(message: Message) -> Iterator[tuple[str, int]]:
    """Every google.protobuf.Duration in a message tree, as (field path, ns)."""
    for desc, value in message.ListFields():
        items = value if desc.is_repeated else [value]
        if desc.message_type is None:
            continue
        if desc.message_type.GetOptions().map_entry:
            continue
        for i, item in enumerate(items):
            if isinstance(item, Duration):
                yield f"{desc.name}[{i}]", item.ToNanoseconds()
            elif isinstance(item, Message):
                for path, ns in durations(item):
                    yield f"{desc.name}[{i}].{path}", ns


def with_origin(events: Iterable[ev.RunEvent], origin: ev.Origin) -> list[ev.RunEvent]:
    out = []
    for e in events:
        c = ev.RunEvent()
        c.CopyFrom(e)
        c.origin.CopyFrom(origin)
        out.append(c)
    return out
