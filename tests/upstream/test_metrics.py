"""Metrics through the real collector into a real metrics backend: Prometheus 3 with its native OTLP
receiver (built from its upstream Go module; Mimir's module is not served here, docs/deploy.md).

- the names docs/deploy.md promises, labels only from the allow-list, PromQL counts equal to the run;
- the allow-list transform on real metric data: attributes outside the list dropped, values summed;
- short-lived workers (issue 14, item 4): 200 worker processes give the same series as 1, and the
  counters equal the sum over the workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from tests.upstream import workers
from tests.upstream.support import OTELCOL_CONFIG, Collector, Prometheus, run_workers, wait_until
from vfo_otel import Emitter, NodeSpec
from vfo_otel.contract.conventions import METRIC_LABELS

# Labels the OTLP -> Prometheus translation adds by itself (job from service.name; the scope's name
# and version; le on histogram buckets). `instance` is NOT here: the collector drops the per-process
# service.instance.id that would become it (item 4).
TRANSLATION_LABELS = {
    "__name__",
    "job",
    "le",
    "otel_scope_name",
    "otel_scope_version",
    "otel_scope_schema_url",
}
ALLOWED = {k.replace(".", "_") for k in METRIC_LABELS} | TRANSLATION_LABELS
PROMISED_NAMES = {
    "vfo_transitions_total",
    "vfo_duration_seconds_bucket",
    "vfo_duration_seconds_sum",
    "vfo_duration_seconds_count",
    "vfo_errors_total",
    "vfo_nodes_active",
}
WORKFLOW = {
    "probe": NodeSpec("analyze"),
    "checksum": NodeSpec("analyze", ("probe",)),
    "thumbnail": NodeSpec("encode", ("probe",)),
    "package": NodeSpec("package", ("checksum", "thumbnail")),
}


def _collector(
    procs: Callable[..., Any], prometheus: Prometheus, name: str = "otelcol", config: Path = OTELCOL_CONFIG
) -> Collector:
    dead = "127.0.0.1:9"  # Tempo, Loki and the receiver are not part of these tests: their queues wait
    c: Collector = procs(
        Collector,
        name,
        config=config,
        env={
            "MIMIR_OTLP_ENDPOINT": prometheus.otlp_endpoint,
            "TEMPO_OTLP_GRPC_ENDPOINT": dead,
            "LOKI_OTLP_ENDPOINT": f"http://{dead}/otlp",
            "VFO_RECEIVER_ENDPOINT": dead,
        },
    )
    return c.start()


def _value(prometheus: Prometheus, promql: str) -> float | None:
    return prometheus.scalar(promql)


def _wait_value(prometheus: Prometheus, promql: str, expected: float) -> None:
    try:
        wait_until(lambda: _value(prometheus, promql) == expected, 60, f"{promql} == {expected}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; now: {_value(prometheus, promql)}") from None


def _labels_of(prometheus: Prometheus, selector: str) -> list[dict[str, str]]:
    return [s["metric"] for s in prometheus.query(selector)]


def test_run_metrics_in_prometheus(procs: Callable[..., Any], prometheus: Prometheus) -> None:
    collector = _collector(procs, prometheus)
    emitter = Emitter(
        endpoint=f"http://{collector.grpc_endpoint}",
        service_name="vfo-metrics-test",
        resource_attributes={"service.instance.id": uuid.uuid4().hex},
        heartbeat_interval_s=None,
        metric_export_interval_ms=600_000,
    )
    assets, failing = 40, {7, 23}
    with emitter.run("run-metrics", command=["vfo", "run", "/data/secret/in.mov"]) as run:
        with run.pipeline("media", WORKFLOW) as pipe:
            for i in range(assets):
                with pipe.asset(f"asset-{i:04d}") as asset:
                    for node_id in WORKFLOW:
                        if node_id == "package" and i in failing:
                            continue  # left queued upstream of the failure: skipped when the asset ends
                        with asset.node(node_id) as node:
                            if node_id == "checksum" and i in failing:
                                node.fail("ChecksumMismatch", f"bad digest for asset-{i:04d}")
    emitter.shutdown()
    assert not emitter.stats.failures and not emitter.stats.dropped

    complete = assets * len(WORKFLOW) - 2 * len(failing)
    _wait_value(prometheus, 'sum(vfo_transitions_total{vfo_scope="node",vfo_state="complete"})', complete)
    assert _value(prometheus, 'sum(vfo_transitions_total{vfo_scope="node",vfo_state="failed"})') == len(
        failing
    )
    assert _value(prometheus, 'sum(vfo_transitions_total{vfo_scope="node",vfo_state="skipped"})') == len(
        failing
    )
    assert _value(prometheus, 'sum(vfo_transitions_total{vfo_scope="asset",vfo_state="complete"})') == (
        assets - len(failing)
    )
    errors = prometheus.query('sum by (error_type) (vfo_errors_total{vfo_scope="node"})')
    assert {r["metric"]["error_type"]: float(r["value"][1]) for r in errors} == {"ChecksumMismatch": 2.0}
    # every attempt that ran has a duration sample
    assert _value(prometheus, 'sum(vfo_duration_seconds_count{vfo_scope="node"})') == complete + len(failing)
    assert _value(prometheus, "sum(vfo_nodes_active)") == 0

    series = _labels_of(prometheus, '{__name__=~"vfo_.*"}')
    assert PROMISED_NAMES <= {s["__name__"] for s in series}
    for labels in series:
        assert set(labels) <= ALLOWED, f"label outside the allow-list: {set(labels) - ALLOWED}"
        assert all(
            "asset-" not in v and "/data/" not in v and "run-metrics" not in v for v in labels.values()
        )


def test_allowlist_transform_sums_real_metric_data(procs: Callable[..., Any], prometheus: Prometheus) -> None:
    """Data points with attributes outside the allow-list (an asset id, a path) reach the collector;
    Prometheus gets one series per allow-listed label set, with the values added up."""
    collector = _collector(procs, prometheus)
    resource = Resource.create(
        {"service.name": "vfo-allowlist-test", "service.instance.id": uuid.uuid4().hex}
    )
    exporter = OTLPMetricExporter(endpoint=f"http://{collector.grpc_endpoint}", insecure=True)
    provider = MeterProvider(
        resource=resource,
        metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=600_000)],
        shutdown_on_exit=False,
    )
    meter = provider.get_meter("vfo_otel")
    transitions = meter.create_counter("vfo.transitions", unit="{transition}")
    duration = meter.create_histogram(
        "vfo.duration", unit="s", explicit_bucket_boundaries_advisory=[1.0, 5.0]
    )
    for i in range(50):
        base = {"vfo.scope": "node", "vfo.pipeline.id": "allow", "vfo.stage.id": "encode"}
        leaky = {**base, "vfo.asset.id": f"asset-{i}", "file.path": f"/data/secret/{i}.mov"}
        transitions.add(1, {**leaky, "vfo.state": "complete"})
        transitions.add(2, {**leaky, "vfo.state": "running"})
        duration.record(0.5 if i % 2 else 3.0, leaky)
    provider.shutdown()

    sel = 'vfo_pipeline_id="allow"'
    _wait_value(prometheus, f'sum(vfo_transitions_total{{{sel},vfo_state="complete"}})', 50)
    assert _value(prometheus, f'sum(vfo_transitions_total{{{sel},vfo_state="running"}})') == 100
    assert _value(prometheus, f"count(vfo_transitions_total{{{sel}}})") == 2  # one series per state
    assert _value(prometheus, f"count(vfo_duration_seconds_count{{{sel}}})") == 1
    assert _value(prometheus, f"sum(vfo_duration_seconds_count{{{sel}}})") == 50
    assert _value(prometheus, f"sum(vfo_duration_seconds_sum{{{sel}}})") == 25 * 0.5 + 25 * 3.0
    assert _value(prometheus, f'sum(vfo_duration_seconds_bucket{{{sel},le="1"}})') == 25
    assert _value(prometheus, f'sum(vfo_duration_seconds_bucket{{{sel},le="5"}})') == 50
    assert _value(prometheus, f'sum(vfo_duration_seconds_bucket{{{sel},le="+Inf"}})') == 50
    for labels in _labels_of(prometheus, f'{{__name__=~"vfo_.*",{sel}}}'):
        assert set(labels) <= ALLOWED, labels


def test_short_lived_workers_make_one_set_of_series(
    procs: Callable[..., Any], prometheus: Prometheus
) -> None:
    """Item 4: 200 worker processes, each with its own service.instance.id -> the same series as 1
    worker, and every counter equals the sum over the workers."""
    collector = _collector(procs, prometheus)
    many = 200
    run_workers(collector.grpc_endpoint, 1, "one")
    run_workers(collector.grpc_endpoint, many, "many")

    node_complete = 'sum(vfo_transitions_total{vfo_scope="node",vfo_state="complete",vfo_pipeline_id="%s"})'
    _wait_value(prometheus, node_complete % "one", workers.NODE_COMPLETES_PER_WORKER)
    _wait_value(prometheus, node_complete % "many", many * workers.NODE_COMPLETES_PER_WORKER)
    asset_complete = 'sum(vfo_transitions_total{vfo_scope="asset",vfo_state="complete",vfo_pipeline_id="%s"})'
    assert _value(prometheus, asset_complete % "many") == many * workers.ASSET_COMPLETES_PER_WORKER
    durations = 'sum(vfo_duration_seconds_count{vfo_scope="node",vfo_pipeline_id="%s"})'
    _wait_value(prometheus, durations % "many", many * workers.NODE_COMPLETES_PER_WORKER)

    def series(pipeline_id: str) -> set[tuple[tuple[str, str], ...]]:
        found = _labels_of(prometheus, f'{{__name__=~"vfo_.*",vfo_pipeline_id="{pipeline_id}"}}')
        return {tuple(sorted((k, v) for k, v in s.items() if k != "vfo_pipeline_id")) for s in found}

    one, lots = series("one"), series("many")
    assert len(one) > 5
    assert lots == one, f"{len(lots)} series for {many} workers vs {len(one)} for 1"
    assert all("instance" not in dict(s) for s in lots)


def test_without_the_merge_each_worker_is_a_series_of_its_own(
    procs: Callable[..., Any], prometheus: Prometheus, tmp_path: Path
) -> None:
    """Control for the test above: the shipped config with the metrics pipeline as it was before item 4
    (allow-list only, straight to the backend) gives every worker process its own `instance` series."""
    config = yaml.safe_load(OTELCOL_CONFIG.read_text())
    pipelines = config["service"]["pipelines"]
    pipelines["metrics"] = {
        "receivers": ["otlp"],
        "processors": ["memory_limiter", "transform/metric_allowlist"],
        "exporters": ["otlp_http/mimir"],
    }
    del pipelines["metrics/merge"]
    old = tmp_path / "otelcol-before-item-4.yaml"
    old.write_text(yaml.safe_dump(config))
    collector = _collector(procs, prometheus, config=old)
    count = 10
    run_workers(collector.grpc_endpoint, count, "split")
    selector = 'vfo_transitions_total{vfo_scope="node",vfo_state="complete",vfo_pipeline_id="split"}'
    _wait_value(prometheus, f"sum({selector})", count * workers.NODE_COMPLETES_PER_WORKER)
    # one series per (stage, worker process), where the merged path has one per stage
    per_stage = prometheus.query(f"count by (vfo_stage_id) ({selector})")
    assert {r["metric"]["vfo_stage_id"]: float(r["value"][1]) for r in per_stage} == {
        "analyze": count,
        "encode": count,
    }
    instances = {
        s["instance"] for s in _labels_of(prometheus, '{__name__=~"vfo_.*",vfo_pipeline_id="split"}')
    }
    assert len(instances) == count
