"""Test doubles that ship with the product, like the OTel SDK's in-memory exporters.

:func:`in_memory_emitter` builds an :class:`~vfo_otel.Emitter` whose spans, log records
and metrics stay in memory (the SDK's ``InMemorySpanExporter``,
``InMemoryLogRecordExporter`` and ``InMemoryMetricReader``), exported synchronously.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vfo_otel.emitter import Emitter

__all__ = ["InMemoryTelemetry", "in_memory_emitter"]


@dataclass
class InMemoryTelemetry:
    """An emitter and the in-memory sinks behind it."""

    emitter: Emitter
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    metrics: InMemoryMetricReader

    def metric_points(self) -> list[tuple[str, dict[str, Any], Any]]:
        """Every metric data point collected now: (metric name, labels, point)."""
        out: list[tuple[str, dict[str, Any], Any]] = []
        data = self.metrics.get_metrics_data()
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        out.append((metric.name, dict(point.attributes or {}), point))
        return out


def in_memory_emitter(**kwargs: Any) -> InMemoryTelemetry:
    """An Emitter on SDK providers with in-memory exporters (synchronous export).

    Keyword arguments go to :class:`~vfo_otel.Emitter` (e.g. ``cardinality_limit``).
    """
    resource = Resource.create({"service.name": kwargs.pop("service_name", "vfo-test")})
    spans = InMemorySpanExporter()
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    reader = InMemoryMetricReader()
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    emitter = Emitter(tracer_provider=tp, logger_provider=lp, meter_provider=mp, **kwargs)
    return InMemoryTelemetry(emitter, spans, logs, reader)
