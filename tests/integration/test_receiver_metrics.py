"""A real Prometheus server (Debian's `prometheus`) scrapes the receiver's own ``GET /metrics``.

Exports over gRPC and OTLP/HTTP, a duplicate, a rejected record, a refused request, snapshot
reads and a live watch: every named series exists in Prometheus, moves with ingest, and carries
no label beyond the closed sets (no run id anywhere). Issue 16, part 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from tests.integration.test_prometheus import _free_port, _query, _wait
from tests.receiver import logs_request, node, vfo_log_record
from tests.receiver.test_otlp_http import JSON, _post, otlp_json
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.receiver import ReceiverConfig, ReceiverThread
from vfo_otel.receiver._telemetry import SERIES

PROMETHEUS = shutil.which("prometheus")
if PROMETHEUS is None:
    if os.environ.get("CI"):
        pytest.fail("Debian package 'prometheus' is required in CI (.ci/run installs it)", pytrace=False)
    pytest.skip("prometheus server not installed (apt-get install prometheus)", allow_module_level=True)

C = ev.STATE_COMPLETE
DEADLINE_S = 60.0
#: Labels of the receiver's series, and those a scrape adds.
ALLOWED_LABELS = {"transport", "signal", "reason", "result", "le", "__name__", "job", "instance"}


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[ReceiverThread, str]]:
    config = ReceiverConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        otlp_http_address="127.0.0.1:0",
        store_path=":memory:",
        openlineage_file=str(tmp_path / "lineage.jsonl"),  # its sink's series too
    )
    with ReceiverThread(config) as thread:
        prom_port = _free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: vfo-receiver\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{thread.http_port}']\n"
        )
        proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "prometheus.log").open("w"),
        )
        try:
            yield thread, f"http://127.0.0.1:{prom_port}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _value(prom: str, promql: str) -> float | None:
    result = _query(prom, promql)
    return float(result[0]["value"][1]) if result else None


def _wait_value(prom: str, promql: str, want: float) -> None:
    try:
        _wait(lambda: _value(prom, promql) == want, DEADLINE_S, f"{promql} == {want}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; now {_value(prom, promql)}") from None


def _grpc_export(thread: ReceiverThread, request: Any) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{thread.grpc_port}") as channel:
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=20)


def test_prometheus_scrapes_the_receiver_s_own_series_and_they_move_with_ingest(
    scraped: tuple[ReceiverThread, str],
) -> None:
    thread, prom = scraped
    run_ids = ("metrics-run-a", "metrics-run-b")
    grpc_batch = logs_request([vfo_log_record(node(f"n{i}", C, t_s=i, run=run_ids[0])) for i in range(5)])
    _grpc_export(thread, grpc_batch)
    _grpc_export(thread, grpc_batch)  # a retry: 5 duplicates
    bad = vfo_log_record(node("bad", C, t_s=1, run=run_ids[1]))
    for kv in bad.attributes:
        if kv.key == "vfo.state":
            kv.value.string_value = "on-fire"
    http_batch = logs_request(
        [vfo_log_record(node(f"h{i}", C, t_s=i, run=run_ids[1])) for i in range(3)] + [bad]
    )
    assert _post(thread.otlp_http_port, "/v1/logs", otlp_json(http_batch), JSON)[0] == 200
    assert _post(thread.otlp_http_port, "/v1/logs", b"{", JSON)[0] == 400
    with SnapshotClient(f"127.0.0.1:{thread.grpc_port}") as client:
        client.get_snapshot(run_ids[0])
        client.get_snapshot(run_ids[0])  # the same revision: served from the cache
        stream = client.watch(run_ids[0], timeout_s=DEADLINE_S)
        next(iter(stream))  # a live watcher until the stream is closed

        _wait_value(prom, "sum(vfo_receiver_events_stored_total)", 8)
        assert _value(prom, 'vfo_receiver_events_stored_total{signal="logs"}') == 8
        assert _value(prom, "vfo_receiver_events_received_total") == 13
        assert _value(prom, "vfo_receiver_duplicates_total") == 5
        assert _value(prom, "vfo_receiver_records_rejected_total") == 1
        assert _value(prom, 'vfo_receiver_requests_rejected_total{transport="http",reason="malformed"}') == 1
        assert _value(prom, 'vfo_receiver_export_duration_seconds_count{transport="grpc",signal="logs"}') == 2
        assert _value(prom, 'vfo_receiver_export_duration_seconds_count{transport="http",signal="logs"}') == 1
        assert _value(prom, "vfo_receiver_store_commit_duration_seconds_count") == 3
        assert (_value(prom, 'vfo_receiver_snapshot_cache_requests_total{result="hit"}') or 0) >= 1
        assert (_value(prom, 'vfo_receiver_snapshot_cache_requests_total{result="miss"}') or 0) >= 1
        assert (_value(prom, "vfo_receiver_snapshot_cache_entries") or 0) >= 1
        assert _value(prom, "vfo_receiver_runs") == 2
        _wait_value(prom, "vfo_receiver_watchers", 1)
        stream.close()  # type: ignore[attr-defined]
    _wait_value(prom, "vfo_receiver_watchers", 0)

    # They move with ingest.
    more = logs_request([vfo_log_record(node(f"m{i}", C, t_s=i, run=run_ids[1])) for i in range(4)])
    _grpc_export(thread, more)
    _wait_value(prom, "sum(vfo_receiver_events_stored_total)", 12)
    assert _value(prom, 'vfo_receiver_export_duration_seconds_count{transport="grpc",signal="logs"}') == 3
    # The OpenLineage file sink: one COMPLETE per stored node event, then nothing pending.
    _wait_value(prom, 'vfo_receiver_openlineage_events_total{transport="file",result="sent"}', 12)
    _wait_value(prom, 'vfo_receiver_openlineage_pending{transport="file"}', 0)

    # Every named series exists; no label outside the closed sets, no run id in any value.
    names = {s["metric"]["__name__"] for s in _query(prom, '{__name__=~"vfo_receiver_.*"}')}
    for name, (kind, _, _) in SERIES.items():
        want = f"{name}_count" if kind == "histogram" else name
        assert want in names, f"{want} not scraped"
    for series in _query(prom, '{__name__=~"vfo_receiver_.*"}'):
        labels = series["metric"]
        assert set(labels) <= ALLOWED_LABELS, labels
        assert not any(r in v for v in labels.values() for r in run_ids), labels
    assert len(names) < 40


def test_metrics_is_prometheus_text_and_open_like_healthz() -> None:
    config = ReceiverConfig(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", store_path=":memory:", auth_token="tok"
    )
    with ReceiverThread(config) as thread:
        with urllib.request.urlopen(f"http://127.0.0.1:{thread.http_port}/metrics", timeout=20) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = resp.read().decode()
    assert "# TYPE vfo_receiver_events_received_total counter" in text
    assert "# TYPE vfo_receiver_export_duration_seconds histogram" in text


def test_docs_list_every_series_as_the_code_does() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "receiver.md").read_text(encoding="utf-8")
    table = text.split("<!-- receiver-metrics:begin -->", 1)[1].split("<!-- receiver-metrics:end -->", 1)[0]
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert documented == set(SERIES)
