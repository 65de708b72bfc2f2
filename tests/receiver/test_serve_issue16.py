"""``vfo-otel serve`` with the issue 16 options, as a real process: OTLP/HTTP on its own port,
``/metrics`` on the HTTP port, OpenLineage to a file; and their start-up errors."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from tests.receiver import logs_request, node, vfo_log_record
from tests.receiver.test_cli import VFO_OTEL, _env
from tests.receiver.test_otlp_http import PB, _post
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.app.cli import main

DEADLINE_S = 60.0


def test_serve_takes_otlp_http_serves_metrics_and_writes_openlineage(tmp_path: Path) -> None:
    store, lineage = tmp_path / "serve.sqlite3", tmp_path / "lineage.jsonl"
    proc = subprocess.Popen(
        [
            VFO_OTEL,
            "serve",
            "--grpc-address",
            "127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
            "--otlp-http-address",
            "127.0.0.1:0",
            "--store",
            str(store),
            "--openlineage-file",
            str(lineage),
            "--openlineage-namespace",
            "studio",
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
            m = re.search(r", HTTP on 127\.0\.0\.1:(\d+), OTLP/HTTP on 127\.0\.0\.1:(\d+), store ", line)
            if m:
                break
        http_port, otlp_http_port = int(m.group(1)), int(m.group(2))
        records = [
            vfo_log_record(node("encode", s, t_s=i, run="cli-run"))
            for i, s in enumerate((ev.STATE_RUNNING, ev.STATE_COMPLETE))
        ]
        status, _, _ = _post(otlp_http_port, "/v1/logs", logs_request(records).SerializeToString(), PB)
        assert status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=20) as resp:
            text = resp.read().decode()
        assert 'vfo_receiver_events_stored_total{signal="logs"} 2.0' in text
        assert 'vfo_receiver_export_duration_seconds_count{signal="logs",transport="http"} 1.0' in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE_S) == 0  # the sink drains on stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE_S)
        reader.join(DEADLINE_S)
    events = [json.loads(line) for line in lineage.read_text().splitlines()]
    assert [(e["eventType"], e["job"]["namespace"], e["job"]["name"]) for e in events] == [
        ("START", "studio", "p.encode"),
        ("COMPLETE", "studio", "p.encode"),
    ]
    assert (tmp_path / "serve.sqlite3.openlineage-file").read_text().count("\n") == 2


def test_bad_issue16_options_fail_at_start_with_a_message(tmp_path: Path) -> None:
    runner = CliRunner()
    store = str(tmp_path / "s.sqlite3")
    result = runner.invoke(main, ["serve", "--store", store, "--otlp-http-address", "nonsense"])
    assert result.exit_code == 2 and "address 'nonsense' is not HOST:PORT" in result.output
    result = runner.invoke(
        main,
        [
            "serve",
            "--store",
            store,
            "--grpc-address",
            "127.0.0.1:0",
            "--no-http",
            "--openlineage-url",
            "not a url",
        ],
    )
    assert result.exit_code == 1 and "openlineage_url: Need valid url" in result.output
