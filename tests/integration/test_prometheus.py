"""A real Prometheus server (Debian's `prometheus`) scrapes the emitter's metrics.

The emitter gets the OTel Prometheus reader (opentelemetry-exporter-prometheus); a
prometheus_client HTTP server on port 0 exposes it; Prometheus scrapes it every second.
After a run over 200 assets, PromQL must show the expected series and no label outside
the allow-list (issue 4).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from vfo_otel import Emitter, NodeSpec
from vfo_otel.contract.conventions import METRIC_LABELS
from vfo_otel.testing import in_memory_emitter

prometheus_client = pytest.importorskip("prometheus_client")
exporter = pytest.importorskip("opentelemetry.exporter.prometheus")

PROMETHEUS = shutil.which("prometheus")
if PROMETHEUS is None:
    if os.environ.get("CI"):
        pytest.fail("Debian package 'prometheus' is required in CI (.ci/run installs it)", pytrace=False)
    pytest.skip("prometheus server not installed (apt-get install prometheus)", allow_module_level=True)

ASSETS = 200
WORKFLOW = {
    "probe": NodeSpec("analyze"),
    "checksum": NodeSpec("analyze", ("probe",)),
    "thumbnail": NodeSpec("encode", ("probe",)),
    "package": NodeSpec("package", ("checksum", "thumbnail")),
}
# Labels a scrape adds by itself, or the OTel Prometheus exporter adds to every series.
SCRAPE_LABELS = {
    "__name__",
    "job",
    "instance",
    "le",
    "otel_scope_name",
    "otel_scope_version",
    "otel_scope_schema_url",
}
ALLOWED = {k.replace(".", "_") for k in METRIC_LABELS} | SCRAPE_LABELS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _wait(predicate, timeout_s: float, what: str):
    """Poll a condition on a real external server (Prometheus scrapes on its own schedule)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:  # not up yet
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def scraped_emitter(tmp_path: Path):
    registry = prometheus_client.CollectorRegistry()
    reader = exporter.PrometheusMetricReader(registry=registry)
    httpd, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    target_port = httpd.server_port
    base = in_memory_emitter()  # traces and logs stay in memory; only metrics matter here
    emitter = Emitter(
        tracer_provider=base.emitter._providers[0],
        logger_provider=base.emitter._providers[1],
        metric_readers=[reader],
        export_metrics_otlp=False,
        service_name="vfo-prom-test",
    )
    prom_port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: vfo\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        yield emitter, f"http://127.0.0.1:{prom_port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        emitter.shutdown()
        httpd.shutdown()
        thread.join(10)


def test_prometheus_scrapes_allow_listed_series(scraped_emitter) -> None:
    emitter, prom = scraped_emitter
    run_id = "RUN-prom-1f3a"
    with emitter.run(run_id, command=["vfo", "run", "/data/secret/input.mov"]) as run:
        with run.pipeline("media", WORKFLOW) as pipe:
            for i in range(ASSETS):
                with pipe.asset(f"asset-{i:04d}") as asset:
                    for node_id in WORKFLOW:
                        if node_id == "package" and i % 50 == 7:
                            continue  # upstream failed: left queued, skipped when the asset ends
                        with asset.node(node_id) as node:
                            node.set_command(["tool", f"/data/secret/asset-{i:04d}.mov"])
                            if node_id == "checksum" and i % 50 == 7:
                                node.fail(
                                    "ChecksumMismatch", f"bad digest for /data/secret/asset-{i:04d}.mov"
                                )
    assert emitter.stats.failures == {}

    failed_assets = sum(1 for i in range(ASSETS) if i % 50 == 7)  # 4
    expected_complete = ASSETS * len(WORKFLOW) - failed_assets * 2  # checksum failed, package never ran

    # Prometheus scrapes on its own schedule: wait until the last counters are visible.
    promql = 'sum(vfo_transitions_total{vfo_scope="node",vfo_state="complete"})'
    try:
        result = _wait(
            lambda: [r for r in _query(prom, promql) if float(r["value"][1]) == expected_complete],
            60,
            f"{promql} == {expected_complete}",
        )
    except AssertionError as exc:
        with urllib.request.urlopen(f"{prom}/api/v1/targets", timeout=5) as resp:
            targets = resp.read()[:2000]
        raise AssertionError(f"{exc}; value now: {_query(prom, promql)}; targets: {targets!r}") from None
    assert float(result[0]["value"][1]) == expected_complete

    failed = _query(prom, 'sum by (error_type) (vfo_errors_total{vfo_scope="node"})')
    assert {r["metric"]["error_type"]: float(r["value"][1]) for r in failed} == {
        "ChecksumMismatch": failed_assets
    }
    skipped = _query(prom, 'sum(vfo_transitions_total{vfo_scope="node",vfo_state="skipped"})')
    assert float(skipped[0]["value"][1]) == failed_assets
    per_stage = _query(prom, 'sum by (vfo_stage_id) (vfo_duration_seconds_count{vfo_scope="node"})')
    assert {r["metric"]["vfo_stage_id"] for r in per_stage} == {"analyze", "encode", "package"}
    active = _query(prom, "sum(vfo_nodes_active)")
    assert float(active[0]["value"][1]) == 0  # every attempt that started running has ended

    # Every vfo series: labels only from the allow-list; no id, path or command anywhere.
    series = _query(prom, '{__name__=~"vfo_.*"}')
    assert len(series) > 10
    for s in series:
        labels = s["metric"]
        assert set(labels) <= ALLOWED, f"label outside the allow-list: {set(labels) - ALLOWED}"
        for value in labels.values():
            assert "asset-" not in value and "/data/" not in value and run_id not in value, labels
    # Cardinality: a series per (scope, pipeline, stage, state), not per asset.
    transitions = _query(prom, "count(vfo_transitions_total)")
    assert float(transitions[0]["value"][1]) < 40
