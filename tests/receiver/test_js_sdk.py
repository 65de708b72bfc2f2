"""The OpenTelemetry JS SDK's OTLP/HTTP log exporters (JSON and protobuf, from npm) give the
snapshot that the same records give over OTLP/gRPC (issue 16).

``tests/js`` pins the SDK packages (package.json + package-lock.json); ``.ci/run`` installs them
with ``npm ci --prefix tests/js`` (node_modules is not committed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.logs.v1 import logs_pb2

from tests.receiver import logs_request, node, resource, vfo_log_record
from tests.receiver.test_otlp_http import _config, _snapshots
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.receiver import ReceiverThread

JS = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")
if NODE is None or not (JS / "node_modules" / "@opentelemetry" / "sdk-logs").is_dir():
    if os.environ.get("CI"):
        pytest.fail("node and `npm ci --prefix tests/js` are required in CI (.ci/run does it)", pytrace=False)
    pytest.skip("the JS SDK is not installed (npm ci --prefix tests/js)", allow_module_level=True)

R, C, F = ev.STATE_RUNNING, ev.STATE_COMPLETE, ev.STATE_FAILED
SERVICE = "js-runner"


def _events() -> list[ev.RunEvent]:
    run = "js-run"
    out = [
        node("probe", R, t_s=1, run=run, pipeline="video", asset="clip-1"),
        node("probe", C, t_s=2.5, run=run, pipeline="video", asset="clip-1", duration_s=1.5, exit_code=0),
        node("encode", R, t_s=3, run=run, pipeline="video", asset="clip-1", upstream_node_ids=["probe"]),
        node(
            "encode",
            F,
            t_s=4,
            run=run,
            pipeline="video",
            asset="clip-1",
            error=("ExitCode", "ffmpeg: exit 1"),
            exit_code=1,
        ),
    ]
    return out


def _describe(record: logs_pb2.LogRecord) -> dict[str, Any]:
    """A log record as the node script's input (integers marked, so they stay OTLP intValue)."""
    attrs: dict[str, Any] = {}
    for kv in record.attributes:
        kind = kv.value.WhichOneof("value")
        if kind == "int_value":
            attrs[kv.key] = {"int": str(kv.value.int_value)}
        elif kind == "array_value":
            attrs[kv.key] = [v.string_value for v in kv.value.array_value.values]
        else:
            attrs[kv.key] = getattr(kv.value, kind)
    return {
        "timeUnixNano": str(record.time_unix_nano),
        "eventName": record.event_name,
        "body": record.body.string_value,
        "attributes": attrs,
    }


def _node(encoding: str, port: int, records: list[logs_pb2.LogRecord]) -> dict[str, Any]:
    proc = subprocess.run(
        [str(NODE), str(JS / "export_logs.mjs"), encoding, f"http://127.0.0.1:{port}/v1/logs"],
        input=json.dumps({"service": SERVICE, "records": [_describe(r) for r in records]}),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=JS,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_the_js_sdk_otlp_http_exporters_give_the_grpc_snapshot() -> None:
    records = [vfo_log_record(e) for e in _events()]
    got = {}
    for name in ("json", "protobuf", "grpc"):
        with ReceiverThread(_config()) as thread:
            if name == "grpc":
                with grpc.insecure_channel(f"127.0.0.1:{thread.grpc_port}") as channel:
                    logs_service_pb2_grpc.LogsServiceStub(channel).Export(
                        logs_request(records, resource(service_name=SERVICE)), timeout=20
                    )
            else:
                assert _node(name, thread.otlp_http_port, records) == {"code": 0, "error": None}
            stats = thread.server.receiver.stats
            assert (stats.events_stored, stats.rejected) == (len(records), 0), name
            got[name] = _snapshots(thread, "js-run", [("", ""), ("video", "clip-1")])
    assert got["json"] == got["grpc"] and got["protobuf"] == got["grpc"]
    summary, detail = got["grpc"]
    assert (summary.run.service_name, summary.summary.nodes.failed, summary.summary.nodes.complete) == (
        SERVICE,
        1,
        1,
    )
    encode = next(d for d in detail.node_details if d.node_id == "encode")
    assert encode.attempts[0].error.detail == "ffmpeg: exit 1"
