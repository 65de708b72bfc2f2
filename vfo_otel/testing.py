"""Test doubles that ship with the product, like the OTel SDK's in-memory exporters.

* :func:`in_memory_emitter` builds an :class:`~vfo_otel.Emitter` whose spans, log records
  and metrics stay in memory (the SDK's ``InMemorySpanExporter``,
  ``InMemoryLogRecordExporter`` and ``InMemoryMetricReader``), exported synchronously.
* :class:`OtlpSink` is a real OTLP gRPC server (trace, logs and metrics services) on an
  ephemeral port that records every export request, for end-to-end tests of the real
  OTLP exporters.
* :class:`CountingLogExporter` is the SDK's OTLP/gRPC log exporter that remembers the
  vfo event ids of every export the receiver acknowledged (or that failed for good), for
  "nothing acknowledged is lost" tests.
* :func:`free_port` picks a free TCP port on 127.0.0.1, for a server that must come back
  on the same port after a restart.
* :func:`run_events` is a hypothesis strategy of valid ``vfo.events.v1.RunEvent`` messages
  (hypothesis is a dev dependency; it is imported only when the function is called).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract.conventions import Key
from vfo_otel.emitter import Emitter, build_resource

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "CountingLogExporter",
    "InMemoryTelemetry",
    "OtlpSink",
    "free_port",
    "in_memory_emitter",
    "run_events",
]


@dataclass
class InMemoryTelemetry:
    """An emitter and the in-memory sinks behind it.

    Attributes:
        emitter: the Emitter, on the providers below.
        spans: finished spans (``spans.get_finished_spans()``).
        logs: emitted log records (``logs.get_finished_logs()``).
        metrics: the metric reader (see :meth:`metric_points`).
        providers: the tracer, logger and meter providers (shut down by :meth:`close`).
    """

    emitter: Emitter
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    metrics: InMemoryMetricReader
    providers: tuple[Any, ...] = field(default=())

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

    def otlp_log_records(self) -> list[logs_pb2.LogRecord]:
        """The log records emitted so far, encoded to OTLP protobuf by the SDK's own OTLP encoder."""
        from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

        request = encode_logs(self.logs.get_finished_logs())
        return [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]

    def otlp_spans(self) -> list[trace_pb2.Span]:
        """The spans finished so far, encoded to OTLP protobuf by the SDK's own OTLP encoder."""
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        request = encode_spans(self.spans.get_finished_spans())
        return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]

    def close(self) -> None:
        """Shut down the three providers (idempotent)."""
        providers, self.providers = self.providers, ()
        for provider in providers:
            provider.shutdown()


def in_memory_emitter(**kwargs: Any) -> InMemoryTelemetry:
    """An Emitter on SDK providers with in-memory exporters (synchronous export).

    The providers get the same resource the Emitter would build for itself
    (:func:`vfo_otel.emitter.build_resource`: ``vfo.*`` keys from ``OTEL_RESOURCE_ATTRIBUTES``
    dropped). Keyword arguments go to :class:`~vfo_otel.Emitter` (e.g. ``cardinality_limit``);
    ``service_name`` defaults to ``vfo-test``.

    Raises:
        ValueError: as :class:`~vfo_otel.Emitter` (e.g. a ``vfo.*`` resource attribute).
    """
    kwargs.setdefault("service_name", "vfo-test")
    resource = build_resource(kwargs["service_name"], kwargs.get("resource_attributes"))
    spans = InMemorySpanExporter()
    tp = TracerProvider(resource=resource, shutdown_on_exit=False)
    tp.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    reader = InMemoryMetricReader()
    mp = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
    emitter = Emitter(tracer_provider=tp, logger_provider=lp, meter_provider=mp, **kwargs)
    return InMemoryTelemetry(emitter, spans, logs, reader, (tp, lp, mp))


class CountingLogExporter(OTLPLogExporter):
    """The SDK's OTLP/gRPC log exporter, counting the vfo events of each export by outcome.

    An export is *acknowledged* when the receiver answered OK (after the SDK's own retries):
    the receiver promises those events are stored. Keyword arguments go to
    ``OTLPLogExporter`` (``endpoint``, ``timeout``, ...). Thread-safe.

    Attributes:
        acknowledged: vfo event ids of log records in acknowledged exports.
        failed: vfo event ids of log records in exports that failed for good.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ids_lock = threading.Lock()
        self.acknowledged: list[str] = []
        self.failed: list[str] = []

    def export(self, batch: Any) -> Any:
        """Export through the OTLP log exporter and record which event ids were acknowledged."""
        ids = [str(r.log_record.attributes.get(Key.EVENT_ID, "")) for r in batch]
        result = super().export(batch)
        with self._ids_lock:
            (self.acknowledged if result == LogRecordExportResult.SUCCESS else self.failed).extend(ids)
        return result


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind port 0, read it, close): there is a small race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------
# A real OTLP gRPC server on an ephemeral port
# ---------------------------------------------------------------------------


class OtlpSink:
    """A real OTLP/gRPC server (TraceService, LogsService, MetricsService) that records requests.

    Every export is answered OK and appended, thread-safely, to :attr:`requests` as
    ``(signal, request)`` with signal ``"traces"``, ``"logs"`` or ``"metrics"``.

    Usage::

        sink = OtlpSink()
        port = sink.start()            # 127.0.0.1, an ephemeral port
        ...                            # point an exporter at http://127.0.0.1:{port}
        records = sink.wait_for_log_records(5, timeout_s=10)
        sink.stop()                    # idempotent; also safe before start()

    Args:
        host: interface to bind (default ``127.0.0.1``).
        max_workers: size of the server's thread pool.
    """

    def __init__(self, host: str = "127.0.0.1", max_workers: int = 4) -> None:
        self.host = host
        self.port: int | None = None
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self._cond = threading.Condition()
        self._requests: list[tuple[str, Any]] = []

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> int:
        """Bind and serve; returns the port.

        Raises:
            RuntimeError: already started, or the port could not be bound.
        """
        if self._server is not None:
            raise RuntimeError("OtlpSink already started")
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self._record), server)  # type: ignore[no-untyped-call]
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(self._record), server)  # type: ignore[no-untyped-call]
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(self._record), server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port(f"{self.host}:0")
        if not port:
            raise RuntimeError(f"could not bind {self.host}:0")
        server.start()
        self._server, self.port = server, int(port)
        return self.port

    def stop(self, grace_s: float | None = None) -> None:
        """Stop serving and wait until the server has stopped (idempotent; safe before start)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace_s).wait()

    @property
    def endpoint(self) -> str:
        """``http://host:port`` (the OTLP exporters treat ``http://`` as insecure)."""
        if self.port is None:
            raise RuntimeError("OtlpSink not started")
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> OtlpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- recorded data ------------------------------------------------------------------

    def _record(self, signal: str, request: Any) -> None:
        with self._cond:
            self._requests.append((signal, request))
            self._cond.notify_all()

    @property
    def requests(self) -> list[tuple[str, Any]]:
        """A copy of every request received so far, in arrival order: (signal, request)."""
        with self._cond:
            return list(self._requests)

    def log_records(self) -> list[logs_pb2.LogRecord]:
        """Every OTLP LogRecord received so far."""
        return [
            r
            for req in self._of("logs")
            for rl in req.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        ]

    def spans(self) -> list[trace_pb2.Span]:
        """Every OTLP Span received so far."""
        return [
            s
            for req in self._of("traces")
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]

    def metrics(self) -> list[metrics_pb2.Metric]:
        """Every OTLP Metric received so far (one entry per metric per export)."""
        return [
            m
            for req in self._of("metrics")
            for rm in req.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        ]

    def _of(self, signal: str) -> list[Any]:
        return [req for sig, req in self.requests if sig == signal]

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Block until ``predicate()`` is true, re-checked on every request (no polling sleeps).

        Raises:
            TimeoutError: not true within ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"OtlpSink: condition not met within {timeout_s} s")
                self._cond.wait(remaining)

    def wait_for_log_records(self, count: int, timeout_s: float = 10.0) -> list[logs_pb2.LogRecord]:
        """Block until at least ``count`` log records arrived; returns them all.

        Raises:
            TimeoutError: fewer arrived within ``timeout_s`` seconds.
        """
        self.wait_for(lambda: len(self._log_records_locked()) >= count, timeout_s)
        return self.log_records()

    def wait_for_spans(self, count: int, timeout_s: float = 10.0) -> list[trace_pb2.Span]:
        """Block until at least ``count`` spans arrived; returns them all.

        Raises:
            TimeoutError: fewer arrived within ``timeout_s`` seconds.
        """

        def enough() -> bool:
            n = sum(
                len(ss.spans)
                for sig, req in self._requests
                if sig == "traces"
                for rs in req.resource_spans
                for ss in rs.scope_spans
            )
            return n >= count

        self.wait_for(enough, timeout_s)
        return self.spans()

    def _log_records_locked(self) -> list[logs_pb2.LogRecord]:
        return [
            r
            for sig, req in self._requests
            if sig == "logs"
            for rl in req.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        ]


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, record: Callable[[str, Any], None]) -> None:
        self._record = record

    def Export(self, request: Any, context: Any) -> Any:  # gRPC method name
        self._record("traces", request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, record: Callable[[str, Any], None]) -> None:
        self._record = record

    def Export(self, request: Any, context: Any) -> Any:  # gRPC method name
        self._record("logs", request)
        return logs_service_pb2.ExportLogsServiceResponse()


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, record: Callable[[str, Any], None]) -> None:
        self._record = record

    def Export(self, request: Any, context: Any) -> Any:  # gRPC method name
        self._record("metrics", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


# ---------------------------------------------------------------------------
# Hypothesis strategy
# ---------------------------------------------------------------------------

#: 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z in ns since the epoch: the event times generated.
_TIME_MIN_NS = 946_684_800 * 10**9
_TIME_MAX_NS = 4_102_444_800 * 10**9


def run_events(
    *, states: tuple[int, ...] | None = None, scopes: tuple[int, ...] | None = None
) -> SearchStrategy[ev.RunEvent]:
    """A hypothesis strategy of valid, fully identified ``vfo.events.v1.RunEvent`` messages.

    Each event has a non-empty ``event_id``, a ``time`` between 2000 and 2100, a non-empty
    ``source_id`` with ``sequence`` in 1..2**63-1, a scope with exactly the entity ids it
    needs (``attempt_id`` >= 1 for nodes), optionally a stage, a previous state, a duration
    (0 ns to 30 days), an exit code, a command, inputs/outputs (with optional
    ``size_bytes``), an error, upstream node ids, ``synthetic`` and up to 4 extra
    attributes. Text is arbitrary Unicode without lone surrogates (protobuf strings are UTF-8).

    Args:
        states: the ``State`` numbers to draw from (default: 1..6, every real state).
        scopes: the ``Scope`` numbers to draw from (default: 1..4).

    Returns:
        A ``SearchStrategy[RunEvent]``. Requires hypothesis (a dev dependency).
    """
    from hypothesis import strategies as st

    chars = st.characters(codec="utf-8")  # no lone surrogates
    text = st.text(chars, max_size=12)
    ident = st.text(chars, min_size=1, max_size=12)
    state_choice = st.sampled_from(states or tuple(range(1, 7)))
    scope_choice = st.sampled_from(scopes or (1, 2, 3, 4))

    @st.composite
    def asset_refs(draw: Any) -> ev.AssetRef:
        ref = ev.AssetRef(asset_id=draw(text), uri=draw(text), role=draw(text), media_type=draw(text))
        size = draw(st.none() | st.integers(0, 2**64 - 1))
        if size is not None:
            ref.size_bytes = size
        return ref

    @st.composite
    def build(draw: Any) -> ev.RunEvent:
        event = ev.RunEvent(
            event_id=draw(ident),
            source_id=draw(ident),
            sequence=draw(st.integers(1, 2**63 - 1)),
            scope=draw(scope_choice),
            state=draw(state_choice),
            run_id=draw(ident),
        )
        event.time.FromNanoseconds(draw(st.integers(_TIME_MIN_NS, _TIME_MAX_NS)))
        if event.scope >= ev.SCOPE_PIPELINE:
            event.pipeline_id = draw(ident)
        if event.scope >= ev.SCOPE_ASSET:
            event.asset_id = draw(ident)
        if event.scope == ev.SCOPE_NODE:
            event.node_id = draw(ident)
            event.attempt_id = draw(st.integers(1, 2**32 - 1))
        event.stage_id = draw(text)
        event.previous_state = draw(st.integers(0, 6))
        if draw(st.booleans()):
            event.duration.FromNanoseconds(draw(st.integers(0, 30 * 86_400 * 10**9)))
        exit_code = draw(st.none() | st.integers(-(2**31), 2**31 - 1))
        if exit_code is not None:
            event.exit_code = exit_code
        if draw(st.booleans()):
            event.command.command_line = draw(text)
            event.command.argv.extend(draw(st.lists(text, max_size=4)))
            event.command.action = draw(text)
        event.inputs.extend(draw(st.lists(asset_refs(), max_size=3)))
        event.outputs.extend(draw(st.lists(asset_refs(), max_size=3)))
        if draw(st.booleans()):
            event.error.error_class = draw(text)
            event.error.detail = draw(text)
        event.upstream_node_ids.extend(draw(st.lists(text, max_size=4)))
        event.synthetic = draw(st.booleans())
        for key, value in draw(st.dictionaries(text, text, max_size=4)).items():
            event.attributes[key] = value
        return event

    return build()
