"""The ``vfo-otel`` command line: help, runs, snapshot, exec (real subprocesses), serve."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from tests.receiver import event, logs_request, node, vfo_log_record
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.app.cli import main
from vfo_otel.client import SnapshotClient
from vfo_otel.receiver import ReceiverConfig, ReceiverThread

VFO_OTEL = str(Path(sys.executable).with_name("vfo-otel"))
DEADLINE_S = 60.0


@pytest.fixture
def receiver() -> Iterator[ReceiverThread]:
    config = ReceiverConfig(grpc_address="127.0.0.1:0", http_address=None, store_path=":memory:")
    with ReceiverThread(config) as thread:
        yield thread


def _address(receiver: ReceiverThread) -> str:
    return f"127.0.0.1:{receiver.grpc_port}"


def _ingest(receiver: ReceiverThread, events: list[ev.RunEvent]) -> None:
    with grpc.insecure_channel(_address(receiver)) as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(
            logs_request([vfo_log_record(e) for e in events]), timeout=DEADLINE_S
        )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VFO_OTEL_"))}
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "600000"
    return env


def test_help() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "serve", "exec", "runs", "snapshot"):
        assert f"vfo-otel {command}" in result.output
    result = runner.invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in (
        "--grpc-address",
        "--http-address",
        "--store",
        "--retention-runs",
        "--retention-days",
        "--fsync",
        "--auth-token-file",
        "--tls-cert",
        "--cors-origin",
        "127.0.0.1:4317",
        "127.0.0.1:8686",
    ):
        assert option in result.output
    assert (
        subprocess.run(
            [VFO_OTEL, "--help"], capture_output=True, text=True, env=_env(), timeout=DEADLINE_S
        ).returncode
        == 0
    )


def test_bad_serve_options_are_usage_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["serve", "--grpc-address", "nonsense"])
    assert result.exit_code == 2 and "is not HOST:PORT" in result.output
    result = runner.invoke(main, ["serve", "--retention-runs", "0"])
    assert result.exit_code == 2


def test_runs_and_snapshot(receiver: ReceiverThread) -> None:
    _ingest(
        receiver,
        [
            event(ev.SCOPE_RUN, ev.STATE_RUNNING, t_s=0, run="cli-run"),
            node(
                "probe",
                ev.STATE_COMPLETE,
                t_s=1,
                run="cli-run",
                pipeline="media",
                asset="clip-1",
                stage="analyze",
                duration_s=1,
            ),
            node(
                "encode",
                ev.STATE_FAILED,
                t_s=2,
                run="cli-run",
                pipeline="media",
                asset="clip-1",
                stage="encode",
                duration_s=1,
                exit_code=3,
                error=("ExitCode", "exited with status 3"),
            ),
            event(ev.SCOPE_RUN, ev.STATE_FAILED, t_s=3, run="cli-run", error=("PipelineFailed", "media")),
            event(ev.SCOPE_RUN, ev.STATE_COMPLETE, t_s=-5, run="other-run"),  # started earlier
        ],
    )
    runner = CliRunner()
    result = runner.invoke(main, ["runs", "--receiver", _address(receiver)])
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.split() == ["RUN", "STATE", "STARTED", "(UTC)", "DURATION", "NODES"]
    assert len(lines) == 2 and lines[0].startswith("cli-run") and lines[1].startswith("other-run")
    assert re.search(r"cli-run\s+failed\s+2026-01-01T00:00:00\s+3\.00s\s+1 complete, 1 failed", lines[0])
    result = runner.invoke(main, ["runs", "--receiver", _address(receiver), "--state", "complete", "--json"])
    assert result.exit_code == 0
    listed = json_format.Parse(result.output, db.ListRunsResponse())
    assert [r.run.run_id for r in listed.runs] == ["other-run"]

    result = runner.invoke(main, ["snapshot", "cli-run", "--receiver", _address(receiver)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("run cli-run: failed (revision 4, schema v2) in 3.00s\n")
    assert "error: PipelineFailed: media" in result.output
    assert re.search(r"nodes\s+0\s+0\s+0\s+1\s+1\s+0\s+2", result.output)
    assert re.search(r"encode\s+1\s+0\s+1\s+0\s+1\.00s\s+1\.00s", result.output)
    assert "pipeline media: failed, 1 asset (failed: clip-1)" in result.output
    assert "nodes of" not in result.output  # no selection: no node details

    result = runner.invoke(
        main,
        ["snapshot", "cli-run", "--receiver", _address(receiver), "--pipeline", "media", "--asset", "clip-1"],
    )
    assert result.exit_code == 0, result.output
    assert "  nodes of media/clip-1:" in result.output
    assert "    encode (encode): failed" in result.output
    assert "      attempt 1: failed in 1.00s, exit 3, ExitCode: exited with status 3" in result.output
    result = runner.invoke(
        main, ["snapshot", "cli-run", "--receiver", _address(receiver), "--asset", "clip-1"]
    )
    assert result.exit_code == 2 and "--asset needs --pipeline" in result.output

    result = runner.invoke(
        main,
        [
            "snapshot",
            "cli-run",
            "--receiver",
            _address(receiver),
            "--json",
            "--pipeline",
            "media",
            "--asset",
            "clip-1",
        ],
    )
    assert result.exit_code == 0
    snap = json_format.Parse(result.output, db.DashboardSnapshot())
    with SnapshotClient(_address(receiver)) as client:
        assert snap == client.get_snapshot("cli-run", "media", "clip-1")
    assert [d.node_id for d in snap.node_details] == ["encode", "probe"]

    result = runner.invoke(main, ["snapshot", "missing-run", "--receiver", _address(receiver)])
    assert result.exit_code == 1
    assert f"receiver {_address(receiver)}: NOT_FOUND: run 'missing-run' not found" in result.output


def _exec(receiver: ReceiverThread, node_id: str, *command: str) -> subprocess.CompletedProcess[str]:
    argv = [
        VFO_OTEL,
        "exec",
        "--run-id",
        "exec-run",
        "--pipeline",
        "shell",
        "--asset",
        "file-1",
        "--node",
        node_id,
        "--stage",
        "encode",
        "--after",
        "fetch",
        "--otlp-endpoint",
        f"http://{_address(receiver)}",
        "--",
        *command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=DEADLINE_S)


def _attempt(receiver: ReceiverThread, node_id: str) -> db.NodeDetail:
    # exec flushes and waits for the export's answer before it exits, and the receiver answers
    # after its commit: the snapshot already holds the events.
    with SnapshotClient(_address(receiver)) as client:
        snap = client.get_snapshot("exec-run", "shell", "file-1")
    return next(d for d in snap.node_details if d.node_id == node_id)


def test_exec_records_a_failing_command(receiver: ReceiverThread) -> None:
    proc = _exec(receiver, "encode", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
    assert proc.returncode == 3
    assert proc.stdout == "to-stdout\n"
    assert "to-stderr\n" in proc.stderr
    d = _attempt(receiver, "encode")
    assert (d.stage_id, list(d.upstream_node_ids)) == ("encode", ["fetch"])
    (a,) = d.attempts
    assert (a.state, a.exit_code) == (ev.STATE_FAILED, 3)
    assert (a.error.error_class, a.error.detail) == ("ExitCode", "exited with status 3")
    assert list(a.command.argv) == ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"]
    assert a.command.command_line.startswith("sh -c ")
    assert a.HasField("duration") and a.duration.ToNanoseconds() > 0


def test_exec_records_a_successful_command(receiver: ReceiverThread) -> None:
    proc = _exec(receiver, "ok", "true")
    assert proc.returncode == 0
    (a,) = _attempt(receiver, "ok").attempts
    assert (a.state, a.exit_code, a.HasField("error")) == (ev.STATE_COMPLETE, 0, False)


def test_exec_records_a_command_killed_by_a_signal(receiver: ReceiverThread) -> None:
    proc = _exec(receiver, "killed", "sh", "-c", "kill -TERM $$")
    assert proc.returncode == 128 + signal.SIGTERM
    (a,) = _attempt(receiver, "killed").attempts
    assert (a.state, a.exit_code) == (ev.STATE_FAILED, -signal.SIGTERM)
    assert (a.error.error_class, a.error.detail) == ("Signal", "killed by SIGTERM")


def test_exec_of_a_missing_command_returns_127(receiver: ReceiverThread) -> None:
    proc = _exec(receiver, "missing", "vfo-no-such-command-42")
    assert proc.returncode == 127
    assert "cannot start 'vfo-no-such-command-42'" in proc.stderr
    (a,) = _attempt(receiver, "missing").attempts
    assert a.state == ev.STATE_FAILED
    assert a.error.error_class == "FileNotFoundError"
    assert a.error.detail.startswith("cannot start 'vfo-no-such-command-42'")


def test_serve_runs_until_sigterm(tmp_path: Path) -> None:
    store = tmp_path / "serve.sqlite3"
    proc = subprocess.Popen(
        [
            VFO_OTEL,
            "serve",
            "--grpc-address",
            "127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
            "--store",
            str(store),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        while True:
            line = lines.get(timeout=DEADLINE_S)
            m = re.search(r"OTLP/gRPC on 127\.0\.0\.1:(\d+), HTTP on 127\.0\.0\.1:(\d+), store (.+)$", line)
            if m:
                break
        grpc_port = int(m.group(1))
        assert grpc_port > 0 and int(m.group(2)) > 0 and m.group(3) == str(store)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=DEADLINE_S
            )
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE_S)
        reader.join(DEADLINE_S)
    assert store.exists()


def test_exec_without_a_receiver_says_so_in_one_line_and_passes_the_status_through() -> None:
    """No receiver at the endpoint: one warning line (not the SDK's retry log), the command's own
    output, and its exit status; the time it takes is measured in bench, not here."""
    from vfo_otel.testing import free_port

    port = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VFO_OTEL_"))}
    proc = subprocess.run(
        [VFO_OTEL, "exec", "--run-id", "lonely", "--pipeline", "p", "--asset", "a", "--node", "n",
         "--stage", "s", "--otlp-endpoint", f"http://127.0.0.1:{port}", "--", "sh", "-c", "echo out; exit 3"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 3 and proc.stdout == "out\n"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"vfo-otel exec: warning: http://127.0.0.1:{port} did not take")
    assert "is `vfo-otel serve` or a collector running there?" in lines[0]
def test_serve_on_a_postgresql_store_prints_its_url_without_the_password(pg_cluster: object) -> None:
    url = str(pg_cluster.create_database("cli_serve"))  # type: ignore[attr-defined]
    url = url.replace("postgres@", "postgres:hunter2@")  # trust auth: any password will do
    proc = subprocess.Popen(
        [VFO_OTEL, "serve", "--grpc-address", "127.0.0.1:0", "--no-http", "--store", url],
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stderr is not None
        seen = []
        while not seen or "OTLP/gRPC on" not in seen[-1]:  # after the log line of the schema's creation
            seen.append(proc.stderr.readline())
            assert seen[-1], "".join(seen)
        assert "store postgresql://postgres:***@127.0.0.1:" in seen[-1]
        assert "hunter2" not in "".join(seen)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE_S)


def test_serve_fails_fast_with_a_clear_message_when_postgresql_is_unreachable() -> None:
    from vfo_otel.testing import free_port

    url = f"postgresql://vfo:secret@127.0.0.1:{free_port()}/vfo"
    proc = subprocess.run(
        [VFO_OTEL, "serve", "--grpc-address", "127.0.0.1:0", "--no-http", "--store", url],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=DEADLINE_S,
    )
    assert proc.returncode != 0
    assert "cannot connect to event store postgresql://vfo:***@127.0.0.1:" in proc.stderr
    assert "secret" not in proc.stderr
