"""A real OTLP/gRPC export: the SDK's OTLP exporters -> a gRPC server on port 0 -> decoded events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from vfo_otel import Emitter, RunEvent, contract, otel
from vfo_otel.contract import conventions as c
from vfo_otel.contract.conventions import Key
from vfo_otel.testing import OtlpSink

from .conftest import WORKFLOW


class RecordingEmitter(Emitter):
    """An Emitter that keeps every event it emitted (as completed by emit())."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.emitted: list[RunEvent] = []

    def emit(self, event: RunEvent) -> RunEvent:
        out = super().emit(event)
        self.emitted.append(out)
        return out


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpSink]:
    server = OtlpSink()
    server.start()
    # Nothing but the sink may be contacted, whatever the developer's environment says.
    for name in (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_INSECURE",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_SERVICE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.endpoint)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    yield server
    server.stop()


def test_sink_start_stop_lifecycle() -> None:
    sink = OtlpSink()
    sink.stop()  # before start: a no-op
    port = sink.start()
    assert port > 0 and sink.endpoint == f"http://127.0.0.1:{port}"
    with pytest.raises(RuntimeError, match="already started"):
        sink.start()
    sink.stop()
    sink.stop()  # idempotent
    with pytest.raises(TimeoutError):
        sink.wait_for_log_records(1, timeout_s=0.05)


def test_real_otlp_grpc_export_decodes_to_the_emitted_events(sink: OtlpSink) -> None:
    emitter = RecordingEmitter(endpoint=f"http://127.0.0.1:{sink.port}", service_name="vfo-export-test")
    try:
        with emitter.run("run-otlp") as run, run.pipeline("video", WORKFLOW) as pipeline:
            with pipeline.asset("clip-1") as asset:
                with asset.node("a") as node:
                    node.run(["sh", "-c", "exit 0"])
                    node.add_output("/out/clip-1.json", role="probe", size_bytes=12)
                with pytest.raises(RuntimeError), asset.node("b"):
                    raise RuntimeError("encoder crashed")
                with asset.node("b"):
                    pass
                # c is never run: skipped at asset end.
        assert emitter.force_flush(10_000)
    finally:
        emitter.shutdown()

    # run 2 + pipeline 2 + asset 2 + queued 3 + a 2 + b 2x2 + c skipped 1 = 16
    assert len(emitter.emitted) == emitter.stats.events == 16
    assert emitter.stats.failures == {}
    expected = {e.event_id: otel.normalize(e) for e in emitter.emitted}

    records = sink.wait_for_log_records(16, timeout_s=10)
    from_logs = [otel.events_from_log_record(r) for r in records]
    assert len(from_logs) == 16
    assert {e.event_id: e for e in from_logs} == expected

    spans = sink.wait_for_spans(7, timeout_s=10)  # run, pipeline, asset, a, b x2, c
    assert len(spans) == 7
    from_spans = []
    for span in spans:
        events, errors = otel.events_from_span(span)
        assert errors == []
        from_spans += events
    assert len(from_spans) == 16  # every entity ended, so every transition arrived as a span event
    assert {e.event_id: e for e in from_spans} == expected

    # Logs carry the trace and span id of their entity; one trace for the run.
    trace_id = contract.trace_id_for_run("run-otlp").to_bytes(16, "big")
    assert {r.trace_id for r in records} == {span.trace_id for span in spans} == {trace_id}

    # The resource is service identity only.
    requests = sink.requests
    resources = [rl.resource for sig, req in requests if sig == "logs" for rl in req.resource_logs]
    resources += [rs.resource for sig, req in requests if sig == "traces" for rs in req.resource_spans]
    assert resources
    for resource in resources:
        attrs = otel.otlp_attributes_to_dict(resource.attributes)
        assert attrs["service.name"] == "vfo-export-test"
        assert not any(k.startswith("vfo.") for k in attrs)

    # Metrics arrived over OTLP too (flushed by force_flush), labelled from the allow-list only.
    metrics = sink.metrics()
    assert {m.name for m in metrics} >= {"vfo.transitions", "vfo.duration", "vfo.errors", "vfo.nodes.active"}
    for metric in metrics:
        kind = metric.WhichOneof("data")
        for point in getattr(metric, kind).data_points:
            assert set(otel.otlp_attributes_to_dict(point.attributes)) <= c.METRIC_LABELS
    units = {m.name: m.unit for m in metrics}
    assert units["vfo.duration"] == "s"
    errors = [
        otel.otlp_attributes_to_dict(p.attributes)
        for m in metrics
        if m.name == "vfo.errors"
        for p in m.sum.data_points
    ]
    assert {e.get(Key.ERROR_TYPE) for e in errors} == {"RuntimeError"}
