"""What the real collector hands to the Tempo and Loki exporters' endpoints.

Grafana Tempo and Loki cannot be built here (docs/deploy.md: Tempo's Go module is not served by the
module proxy; Loki's is AGPL-licensed, which this project does not take in), so their HTTP query APIs
are NOT exercised. These tests stand in a recording OTLP server for each and check what the collector
delivers there, unchanged, through otelcol.yaml:

- Tempo's endpoint: the run's trace under its derived trace id, with the run > pipeline > asset >
  node-attempt tree and the expected span count;
- Loki's endpoint: run, asset, node and attempt ids are log attributes (Loki stores them as structured
  metadata), never resource attributes; applying deploy/loki/loki.yaml's label rules to what arrives
  from 50 short-lived worker processes gives ONE stream (index label set), not 50.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import _reference_scenario
from tests.upstream.support import (
    ROOT,
    Collector,
    HttpOtlpLogSink,
    run_workers,
    wait_until,
)
from vfo_otel import Emitter
from vfo_otel.contract import trace_id_for_run
from vfo_otel.testing import OtlpSink

DEAD = "127.0.0.1:9"


@pytest.fixture
def tempo_sink() -> Iterator[OtlpSink]:
    with OtlpSink() as sink:
        yield sink


@pytest.fixture
def loki_sink() -> Iterator[HttpOtlpLogSink]:
    sink = HttpOtlpLogSink()
    yield sink
    sink.close()


@pytest.fixture
def collector(procs: Callable[..., Any], tempo_sink: OtlpSink, loki_sink: HttpOtlpLogSink) -> Collector:
    c: Collector = procs(
        Collector,
        "otelcol",
        env={
            "TEMPO_OTLP_GRPC_ENDPOINT": tempo_sink.endpoint.removeprefix("http://"),
            "LOKI_OTLP_ENDPOINT": loki_sink.base,
            "MIMIR_OTLP_ENDPOINT": f"http://{DEAD}/otlp",
            "VFO_RECEIVER_ENDPOINT": DEAD,
        },
    )
    return c.start()


def test_tempo_endpoint_gets_the_run_trace_tree(collector: Collector, tempo_sink: OtlpSink) -> None:
    emitter = Emitter(endpoint=f"http://{collector.grpc_endpoint}", heartbeat_interval_s=None)
    _reference_scenario(emitter, run_id="run-trace")
    emitter.shutdown()

    trace_id = trace_id_for_run("run-trace").to_bytes(16, "big")
    # 1 run + 1 pipeline + 2 assets + node attempts (asset 1: a, b failed, b, c; asset 2: a, b, c)
    expected = 1 + 1 + 2 + 7
    spans = wait_until(
        lambda: (s := [x for x in tempo_sink.spans() if x.trace_id == trace_id]) and len(s) >= expected and s,
        60,
        f"{expected} spans of the run's trace at Tempo's endpoint",
    )
    assert len(spans) == expected
    by_id = {s.span_id: s for s in spans}

    def scope(span: Any) -> str:
        return next(a.value.string_value for a in span.attributes if a.key == "vfo.scope")

    parent_scope = {"run": None, "pipeline": "run", "asset": "pipeline", "node": "asset"}
    counts: dict[str, int] = {}
    for span in spans:
        counts[scope(span)] = counts.get(scope(span), 0) + 1
        if parent_scope[scope(span)] is None:
            assert span.parent_span_id == b""
        else:
            assert scope(by_id[span.parent_span_id]) == parent_scope[scope(span)]
    assert counts == {"run": 1, "pipeline": 1, "asset": 2, "node": 7}


def _loki_streams(
    records: list[tuple[dict[str, Any], Any]], extra_index: tuple[str, ...] = ()
) -> set[tuple[tuple[str, str], ...]]:
    """Index label sets Loki would make from these records under deploy/loki/loki.yaml's otlp_config
    (a model of Loki's documented mapping: index_label resource attributes, dots -> underscores)."""
    config = yaml.safe_load((ROOT / "deploy" / "loki" / "loki.yaml").read_text())
    rules = config["limits_config"]["otlp_config"]["resource_attributes"]
    assert rules["ignore_defaults"] is True
    indexed = [a for r in rules["attributes_config"] if r["action"] == "index_label" for a in r["attributes"]]
    indexed += extra_index
    return {
        tuple(sorted((k.replace(".", "_"), v) for k, v in resource.items() if k in indexed))
        for resource, _ in records
    }


def test_loki_endpoint_gets_ids_as_attributes_and_one_stream_for_many_workers(
    collector: Collector, loki_sink: HttpOtlpLogSink
) -> None:
    workers = 50
    run_workers(collector.grpc_endpoint, workers, "logs")
    # each worker: run running/complete, pipeline x2, 2 assets x2, 4 node attempts x2 (at least)
    records = wait_until(
        lambda: (
            (r := loki_sink.records()) and len({x[0].get("service.instance.id") for x in r}) == workers and r
        ),
        60,
        f"log records of {workers} workers at Loki's endpoint",
    )
    run_ids = set()
    for resource, record in records:
        assert not any(k.startswith("vfo.") for k in resource), resource
        attrs = {a.key: a.value for a in record.attributes}
        assert "vfo.run.id" in attrs and "vfo.event.id" in attrs
        run_ids.add(attrs["vfo.run.id"].string_value)
        if record.event_name == "vfo.node.transition":
            assert {"vfo.asset.id", "vfo.node.id", "vfo.attempt.id"} <= set(attrs)
    assert len(run_ids) == workers
    assert len({r[0]["service.instance.id"] for r in records}) == workers  # 50 processes...
    assert _loki_streams(records) == {(("service_name", "vfo-worker"),)}  # ...one stream


def test_stream_model_sees_per_process_labels() -> None:
    """The stream model above is not vacuous: indexing service.instance.id would split the streams."""
    records = [({"service.name": "w", "service.instance.id": str(i)}, None) for i in range(3)]
    assert len(_loki_streams(records)) == 1
    assert len(_loki_streams(records, extra_index=("service.instance.id",))) == 3
