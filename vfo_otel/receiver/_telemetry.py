"""The receiver's own metrics, exposed the Prometheus way: ``GET /metrics`` on the HTTP port.

One ``prometheus_client`` registry per receiver (never the process-global one, so several
receivers in one process, as in the tests, do not collide). Two kinds of series:

* read at scrape time from what the receiver already keeps (:class:`ReceiverStats` counters,
  the fold's run count, pending events, watchers, cache entries), so nothing is counted twice;
* recorded as they happen by the service and the transports: export and store-commit latency
  histograms, whole requests refused by reason, snapshot cache hits and misses;
* the OpenLineage sinks' counters and backlog, when OpenLineage is on.

Labels are few and closed sets (``transport``: grpc, http, and file for OpenLineage; ``signal``:
logs, traces, metrics, liveness; ``reason``; ``result``): never a run, pipeline, asset or event
id. The names and meanings are listed in docs/receiver.md ("Metrics: GET /metrics") and in :data:`SERIES`.

Thread contract: recording methods are thread-safe (prometheus_client); the scrape runs on the
receiver's event loop, where the fold is read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vfo_otel.receiver._errors import Invalid, Overloaded, ReceiverError, Unauthenticated

if TYPE_CHECKING:
    from vfo_otel.receiver._service import Receiver

__all__ = ["LATENCY_BUCKETS_S", "SERIES", "ReceiverTelemetry", "metrics_handler", "refusal_reason"]

#: Histogram buckets of the export and commit latencies (seconds): 0.5 ms to 10 s.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Every series ``/metrics`` exposes: name -> (type, labels, what it means). docs/receiver.md renders it.
SERIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "vfo_receiver_events_received_total": (
        "counter", (), "vfo events decoded from accepted OTLP exports (stored or duplicate)"),
    "vfo_receiver_events_stored_total": (
        "counter", ("signal",), "events new to the store, by the signal that brought them first"),
    "vfo_receiver_duplicates_total": (
        "counter", (), "events already stored (retries; the log and span-event copies of one transition)"),
    "vfo_receiver_records_rejected_total": (
        "counter", (), "malformed vfo records rejected through partial_success"),
    "vfo_receiver_records_ignored_total": (
        "counter", (), "OTLP log records and spans that are not vfo telemetry"),
    "vfo_receiver_metric_points_ignored_total": (
        "counter", (), "OTLP metric data points accepted and not folded"),
    "vfo_receiver_requests_rejected_total": (
        "counter", ("transport", "reason"),
        "whole OTLP exports refused: overloaded, store_unavailable, malformed, unauthenticated,"
        " too_large, unsupported_media_type"),
    "vfo_receiver_export_duration_seconds": (
        "histogram", ("transport", "signal"),
        "answered OTLP exports (logs, traces): from the request to the answer, commit included"),
    "vfo_receiver_store_commit_duration_seconds": (
        "histogram", (), "one store write of an export's events (durable when it ends)"),
    "vfo_receiver_snapshot_cache_requests_total": (
        "counter", ("result",), "snapshot reads served from the cache (hit) or built (miss)"),
    "vfo_receiver_snapshot_cache_entries": ("gauge", (), "snapshots held in the cache"),
    "vfo_receiver_watchers": ("gauge", (), "live snapshot streams (gRPC WatchSnapshot and HTTP SSE)"),
    "vfo_receiver_runs": ("gauge", (), "runs whose fold is in the fold cache now"),
    "vfo_receiver_pending_events": ("gauge", (), "events of exports being stored now"),
    "vfo_receiver_stale_nodes": ("gauge", (), "node attempts stale at the last liveness check"),
    "vfo_receiver_heartbeat_lost_total": ("counter", (), "synthetic HeartbeatLost events written"),
    "vfo_receiver_retention_runs_deleted_total": ("counter", (), "runs removed by retention"),
    "vfo_receiver_openlineage_events_total": (
        "counter", ("transport", "result"),
        "OpenLineage events: sent, send_failed (each failed try; retried), dropped (queue full;"
        " sent at the next start), skipped (delivered before)"),
    "vfo_receiver_openlineage_pending": (
        "gauge", ("transport",), "OpenLineage events queued or being sent"),
}  # fmt: skip


def refusal_reason(exc: BaseException) -> str:
    """The ``reason`` label of an export refused with a receiver error: overloaded, malformed,
    unauthenticated, or error (a failed store write is counted as ``store_unavailable`` by its caller)."""
    if isinstance(exc, Overloaded):
        return "overloaded"
    if isinstance(exc, Invalid):
        return "malformed"
    if isinstance(exc, Unauthenticated):
        return "unauthenticated"
    return "error" if isinstance(exc, ReceiverError) else "internal"


class _Live(Collector):
    """Series read from the receiver at scrape time (runs on the event loop)."""

    def __init__(self, receiver: Receiver, telemetry: ReceiverTelemetry) -> None:
        self._receiver = receiver
        self._telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        r, stats = self._receiver, self._receiver.stats

        def counter(name: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name.removesuffix("_total"), SERIES[name][2], value=value)

        def gauge(name: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, SERIES[name][2], value=value)

        yield counter("vfo_receiver_events_received_total", stats.events_received)
        stored = CounterMetricFamily(
            "vfo_receiver_events_stored", SERIES["vfo_receiver_events_stored_total"][2], labels=["signal"]
        )
        for signal, n in sorted(stats.by_signal.items()):
            stored.add_metric([signal], n)
        yield stored
        yield counter("vfo_receiver_duplicates_total", stats.duplicates)
        yield counter("vfo_receiver_records_rejected_total", stats.rejected)
        yield counter("vfo_receiver_records_ignored_total", stats.ignored)
        yield counter("vfo_receiver_metric_points_ignored_total", stats.metrics_points_ignored)
        yield counter("vfo_receiver_heartbeat_lost_total", stats.heartbeat_lost)
        yield counter("vfo_receiver_retention_runs_deleted_total", stats.runs_expired)
        yield gauge("vfo_receiver_snapshot_cache_entries", r.snapshot_cache_size)
        yield gauge("vfo_receiver_watchers", self._telemetry.watchers)
        yield gauge("vfo_receiver_runs", r.cached_runs)
        yield gauge("vfo_receiver_pending_events", r.pending_events)
        yield gauge("vfo_receiver_stale_nodes", stats.stale_nodes)
        lineage = CounterMetricFamily(
            "vfo_receiver_openlineage_events",
            SERIES["vfo_receiver_openlineage_events_total"][2],
            labels=["transport", "result"],
        )
        pending = GaugeMetricFamily(
            "vfo_receiver_openlineage_pending",
            SERIES["vfo_receiver_openlineage_pending"][2],
            labels=["transport"],
        )
        for sink in self._telemetry.lineage_sinks:
            s = sink.stats
            for result, n in (
                ("sent", s.sent),
                ("send_failed", s.failures),
                ("dropped", s.dropped),
                ("skipped", s.skipped),
            ):
                lineage.add_metric([sink.transport, result], n)
            pending.add_metric([sink.transport], sink.pending())
        yield lineage
        yield pending


class ReceiverTelemetry:
    """The receiver's metrics registry and the recording calls of the service and transports.

    Attributes:
        registry: this receiver's ``prometheus_client`` registry (what ``/metrics`` renders).
        watchers: live snapshot streams now.
    """

    def __init__(self, receiver: Receiver) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.watchers = 0
        #: The OpenLineage sinks (``.transport``, ``.stats``, ``.pending()``), set by the server.
        self.lineage_sinks: list[Any] = []
        self._export = Histogram(
            "vfo_receiver_export_duration_seconds",
            SERIES["vfo_receiver_export_duration_seconds"][2],
            ["transport", "signal"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._commit = Histogram(
            "vfo_receiver_store_commit_duration_seconds",
            SERIES["vfo_receiver_store_commit_duration_seconds"][2],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._refused = Counter(
            "vfo_receiver_requests_rejected",
            SERIES["vfo_receiver_requests_rejected_total"][2],
            ["transport", "reason"],
            registry=self.registry,
        )
        self._cache = Counter(
            "vfo_receiver_snapshot_cache_requests",
            SERIES["vfo_receiver_snapshot_cache_requests_total"][2],
            ["result"],
            registry=self.registry,
        )
        for transport in ("grpc", "http"):  # the series exist (at 0) before the first export
            for signal in ("logs", "traces"):
                self._export.labels(transport, signal)
        for result in ("hit", "miss"):
            self._cache.labels(result)
        self.registry.register(_Live(receiver, self))

    def export_answered(self, transport: str, signal: str, seconds: float) -> None:
        """One OTLP export answered (success or partial success) after ``seconds``."""
        self._export.labels(transport, signal).observe(seconds)

    def commit_done(self, seconds: float) -> None:
        """One store write of an export's events took ``seconds``."""
        self._commit.observe(seconds)

    def refused(self, transport: str, reason: str) -> None:
        """One whole export refused (see :func:`refusal_reason` and :data:`SERIES`)."""
        self._refused.labels(transport, reason).inc()

    def cache_read(self, hit: bool) -> None:
        """One snapshot read: served from the cache or built."""
        self._cache.labels("hit" if hit else "miss").inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every series (runs on the event loop)."""
        return generate_latest(self.registry)


def metrics_handler(receiver: Receiver) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of ``GET /metrics`` (Prometheus text format 0.0.4)."""

    async def metrics(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=receiver.telemetry.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    return metrics
