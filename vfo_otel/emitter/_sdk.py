"""The emitter's SDK wiring: resource, deterministic ids, counting processors and exporters,
the emitter's counters and the metric cardinality cap.

Thread contract: the counting wrappers run on the SDK's batch processor threads (exporters)
or under the emitter's lock (processors); counters shared between threads are changed under
one lock.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator

from vfo_otel.contract import conventions as c
from vfo_otel.contract.conventions import Key

__all__ = [
    "NEXT_IDS",
    "VERSION",
    "CardinalityCap",
    "CountingLogExporter",
    "CountingLogProcessor",
    "CountingSpanExporter",
    "CountingSpanProcessor",
    "DeterministicIds",
    "EmitterStats",
    "build_resource",
]

_log = logging.getLogger("vfo_otel")

try:  # the package version, for service.version and the instrumentation scope
    from importlib.metadata import version as _pkg_version

    VERSION = _pkg_version("vfo-otel")
except Exception:  # pragma: no cover - running from a source tree without metadata
    VERSION = "0.0.0"


def build_resource(
    service_name: str | None = None, resource_attributes: Mapping[str, str] | None = None
) -> Resource:
    """The emitter's OTel resource: service and host identity, never an entity id.

    ``Resource.create`` merges the ``OTEL_RESOURCE_ATTRIBUTES`` / ``OTEL_SERVICE_NAME``
    environment variables; any ``vfo.*`` key arriving that way is dropped (with a warning on
    the ``vfo_otel`` logger) because Loki turns resource attributes into index labels.

    Args:
        service_name: ``service.name`` (default: ``OTEL_SERVICE_NAME`` or ``vfo``).
        resource_attributes: extra resource attributes.

    Raises:
        ValueError: ``resource_attributes`` holds a ``vfo.*`` key.
    """
    extra = dict(resource_attributes or {})
    forbidden = sorted(k for k in extra if k.startswith("vfo."))
    if forbidden:
        raise ValueError(f"entity attributes are not resource attributes: {forbidden}")
    attrs: dict[str, str] = {Key.SERVICE_VERSION: VERSION, Key.HOST_NAME: socket.gethostname(), **extra}
    if service_name:
        attrs[Key.SERVICE_NAME] = service_name
    elif not os.environ.get("OTEL_SERVICE_NAME"):
        attrs[Key.SERVICE_NAME] = "vfo"
    resource = Resource.create(attrs)
    leaked = sorted(k for k in resource.attributes if str(k).startswith("vfo."))
    if leaked:  # from OTEL_RESOURCE_ATTRIBUTES
        _log.warning(
            "dropping vfo.* resource attributes %s: entity ids are never resource attributes", leaked
        )
        resource = Resource({k: v for k, v in resource.attributes.items() if not str(k).startswith("vfo.")})
    return resource


class DeterministicIds(IdGenerator):
    """Returns the ids put in :data:`NEXT_IDS` by the emitter; random ids otherwise.

    The SDK asks its tracer's id generator for the trace id of a root span and the span id
    of every span; vfo ids are derived from the run id and the entity key (vfo_otel.contract), so
    separate processes and restarts agree.
    """

    def __init__(self, fallback: IdGenerator) -> None:
        self._fallback = fallback

    def generate_span_id(self) -> int:
        ids = NEXT_IDS.get()
        return ids[1] if ids else self._fallback.generate_span_id()

    def generate_trace_id(self) -> int:
        ids = NEXT_IDS.get()
        return ids[0] if ids else self._fallback.generate_trace_id()


NEXT_IDS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "vfo_next_ids", default=None
)


@dataclass
class EmitterStats:
    """Counters of the emitter (read them; do not modify).

    Attributes:
        events: events accepted by :meth:`Emitter.emit`.
        failures: emit failures by kind (exception class name); each kind is logged once.
        overflowed: metric data points folded into the overflow series, by metric name.
        heartbeats: heartbeats sent for running or waiting node attempts.
        late_events: events for an entity whose span had already ended (logged, no new span).
        deferred: terminal events of runs, pipelines or assets held back until their live
            descendants in this emitter ended (a parent never ends before its children).
        abandoned: entities this emitter started and never ended, ended ``failed``/``Abandoned``
            by :meth:`Emitter.shutdown`.
        run_ids_reused: run-scope starts of a run id whose run this emitter had ended (two
            executions under one run id; warned once).
        untracked: entities started while the emitter already held ``MAX_LIVE_ENTITIES`` live
            ones (their span is started at their terminal event; warned once).
        exported: records (``logs``: log records, ``spans``: spans) in exports the receiver or
            collector acknowledged; only for the exporters the emitter built itself.
        dropped: records in exports that failed for good (receiver down past the exporter's
            retries and timeout, or a non-retryable error), by signal; these are lost.
        enqueued: records handed to the SDK's batch processors, by signal; each goes into the
            processor's bounded queue (``OTEL_BLRP_MAX_QUEUE_SIZE``/``OTEL_BSP_MAX_QUEUE_SIZE``,
            default 2048) and from there to the exporter. Only for the processors the emitter
            built itself.
        queue_dropped: records the batch processors dropped because their queue was full (the
            runner thread never waits for room: the SDK drops the oldest queued record), by
            signal; these are lost. Exact as of the latest :meth:`Emitter.force_flush` (also run
            by :meth:`Emitter.shutdown`) that completed with nothing enqueued meanwhile: every
            record enqueued by then has reached the exporter (``exported`` or ``dropped``) or
            was dropped by its queue, so ``queue_dropped = enqueued - exported - dropped``.
            Between such flushes it keeps that figure; ``enqueued - exported - dropped -
            queue_dropped`` is then what is still queued or being exported, plus what the
            queues dropped since (the SDK does not tell which, short of its internal metrics).
    """

    events: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    deferred: int = 0
    abandoned: int = 0
    run_ids_reused: int = 0
    untracked: int = 0
    overflowed: dict[str, int] = field(default_factory=dict)
    heartbeats: int = 0
    late_events: int = 0
    exported: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    enqueued: dict[str, int] = field(default_factory=dict)
    queue_dropped: dict[str, int] = field(default_factory=dict)

    def _count_failure(self, kind: str) -> int:
        """Count one failure of this kind (from any thread); returns the count before it."""
        with _STATS_LOCK:
            count = self.failures.get(kind, 0)
            self.failures[kind] = count + 1
            return count

    def _count_export(self, signal: str, n: int, ok: bool) -> None:
        with _STATS_LOCK:
            counts = self.exported if ok else self.dropped
            counts[signal] = counts.get(signal, 0) + n

    def _settle_queue_drops(self, signals: Sequence[str]) -> None:
        """``queue_dropped = enqueued - exported - dropped`` for these signals; only when every
        record enqueued has left its queue (after a flush with nothing enqueued meanwhile)."""
        with _STATS_LOCK:
            for kind in signals:
                done = self.exported.get(kind, 0) + self.dropped.get(kind, 0)
                self.queue_dropped[kind] = self.enqueued[kind] - done

    def _forget_pending(self) -> None:
        """In a forked child: the records the parent still had queued are the parent's to export."""
        for kind in self.enqueued:
            done = self.exported.get(kind, 0) + self.dropped.get(kind, 0)
            self.enqueued[kind] = done + self.queue_dropped.get(kind, 0)


_STATS_LOCK = threading.Lock()


def _new_stats_lock() -> None:  # in a forked child: the parent's lock may have been held at the fork
    global _STATS_LOCK
    _STATS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_stats_lock)


class CountingLogProcessor(LogRecordProcessor):
    """Wraps the batch log record processor: counts the records enqueued (``stats.enqueued``).

    ``on_emit`` runs in :meth:`Emitter._emit`, under the emitter's lock: the count and the
    record's entry into the queue happen together (see ``Emitter.force_flush``)."""

    def __init__(self, inner: LogRecordProcessor, stats: EmitterStats) -> None:
        self._inner, self._counts = inner, stats.enqueued

    def on_emit(self, log_record: Any) -> None:
        self._inner.on_emit(log_record)
        self._counts["logs"] = self._counts.get("logs", 0) + 1

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingSpanProcessor(SpanProcessor):
    """Wraps the batch span processor: counts the spans enqueued (``stats.enqueued``).

    The batch processor takes only sampled spans (every vfo span is sampled unless the
    application configures a sampler); ``on_end`` runs under the emitter's lock, as above."""

    def __init__(self, inner: SpanProcessor, stats: EmitterStats) -> None:
        self._inner, self._counts = inner, stats.enqueued

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        self._inner.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._inner.on_end(span)
        if span.context is not None and span.context.trace_flags.sampled:  # as BatchSpanProcessor.on_end
            self._counts["spans"] = self._counts.get("spans", 0) + 1

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingSpanExporter(SpanExporter):
    """Wraps the OTLP span exporter: counts acknowledged and dropped spans in the emitter's stats."""

    def __init__(self, inner: SpanExporter, stats: EmitterStats) -> None:
        self._inner, self._stats = inner, stats

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # an exporter bug must not kill the processor thread
            _log_export_error("spans", exc, self._stats)
            result = SpanExportResult.FAILURE
        self._stats._count_export("spans", len(spans), result == SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingLogExporter(LogRecordExporter):
    """Wraps the OTLP log exporter: counts acknowledged and dropped log records in the emitter's stats."""

    def __init__(self, inner: LogRecordExporter, stats: EmitterStats) -> None:
        self._inner, self._stats = inner, stats

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        try:
            result = self._inner.export(batch)
        except Exception as exc:
            _log_export_error("logs", exc, self._stats)
            result = LogRecordExportResult.FAILURE
        self._stats._count_export("logs", len(batch), result == LogRecordExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        flush = getattr(self._inner, "force_flush", None)
        return bool(flush(timeout_millis)) if flush is not None else True


def _log_export_error(signal: str, exc: Exception, stats: EmitterStats) -> None:
    """An exporter raised (instead of returning FAILURE): counted in ``stats.failures`` as
    ``export.<ExceptionClass>`` and logged once per kind, with the traceback."""
    kind = f"export.{type(exc).__name__}"
    if stats._count_failure(kind) == 0:
        _log.warning(
            "vfo_otel %s exporter raised %s; the batch counts as dropped; further ones not logged",
            signal,
            type(exc).__name__,
            exc_info=exc,
        )


class CardinalityCap:
    """Per-metric cap on distinct label sets; past it, points go to one overflow series.

    The OTel Python SDK has no cardinality limit; this mirrors the SDK specification's
    overflow behaviour (attribute ``otel.metric.overflow=true``).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[str, set[tuple[tuple[str, str], ...]]] = {}

    def labels(self, metric: str, labels: dict[str, str], stats: EmitterStats) -> Mapping[str, Any]:
        seen = self._seen.get(metric)
        if seen is None:
            seen = self._seen[metric] = set()
        # metric_points builds every label dict in one fixed key order: a tuple is a cheaper key
        # than a frozenset (this runs for every metric point)
        key = tuple(labels.items())
        if key in seen:
            return labels
        if len(seen) < self.limit - 1:  # keep one slot for the overflow series
            seen.add(key)
            return labels
        stats.overflowed[metric] = stats.overflowed.get(metric, 0) + 1
        return {_OVERFLOW_LABEL: True}


_OVERFLOW_LABEL = c.OVERFLOW_LABEL.value
