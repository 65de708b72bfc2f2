"""The vfo-otel emitter: canonical RunEvents out through the OpenTelemetry Python SDK.

Each event becomes, at once, one OTLP log record (the live channel), one span event on
its entity's span (run > pipeline > asset > node attempt; the span is exported when the
entity reaches a terminal state) and a few low-cardinality metric updates. What each
becomes is the reference mapping's output (:mod:`vfo_otel.otel`, called on the event's plain
values); this module only drives the SDK (wiring in :mod:`vfo_otel.emitter._sdk`).

Thread contract: every public method is thread-safe and never raises into the runner
(except constructor validation, which raises ``ValueError``). Failures are counted in
:attr:`Emitter.stats` and logged once per kind on the ``vfo_otel`` logger. Export runs
on the SDK's batch processor threads, so ``emit`` does not block on the network.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import (
    ABANDONED,
    EntityKey,
    child_failed_error,
    parent_key,
    scope_name,
    span_id_for,
    state_name,
    trace_id_for_run,
)
from vfo_otel.contract import conventions as c
from vfo_otel.contract.conventions import Key
from vfo_otel.emitter._otlp import build_otlp_exporter, otlp_protocol
from vfo_otel.emitter._runner import RunHandle
from vfo_otel.emitter._sdk import (
    NEXT_IDS,
    VERSION,
    CardinalityCap,
    CountingLogExporter,
    CountingLogProcessor,
    CountingSpanExporter,
    CountingSpanProcessor,
    DeterministicIds,
    EmitterStats,
    build_resource,
)
from vfo_otel.otel import (
    AttrValue,
    EntityParts,
    EventFields,
    entity_parts,
    log_record_values,
    metric_parts,
    metric_updates,
    span_end_values,
    span_start_values,
    transition_attributes,
)

__all__ = ["MAX_EXTRA_ATTRIBUTES", "Emitter", "Terminated", "install_sigterm_handler"]

_log = logging.getLogger("vfo_otel")


_DEFAULT_CARDINALITY_LIMIT = 2000
#: Ids each scope needs besides run_id (attempt_id: >= 1).
_REQUIRED_IDS: dict[int, tuple[str, ...]] = {
    ev.SCOPE_PIPELINE: ("pipeline_id",),
    ev.SCOPE_ASSET: ("pipeline_id", "asset_id"),
    ev.SCOPE_NODE: ("pipeline_id", "asset_id", "node_id", "attempt_id"),
}
#: Most extra attributes (``RunEvent.attributes``) an emitted event keeps; see _cap_extra_attributes.
MAX_EXTRA_ATTRIBUTES = 64
#: Most live entities (started, not ended) the emitter tracks; past it a new entity's span starts
#: only at its terminal event (counted in ``stats.untracked``), so a runner that never ends its
#: entities cannot grow the emitter's memory without bound.
MAX_LIVE_ENTITIES = 100_000




def _check_otlp_range(time_ns: int, event: EventFields) -> None:
    """Refuse values OTLP cannot carry (an unencodable value would be dropped, or fail a whole batch).

    OTLP timestamps are unsigned 64-bit ns since the epoch and integer attributes are int64.

    Args:
        time_ns: the event's time, ns since the epoch.
        event: the event.
    """
    if not 0 < time_ns < 2**64:
        raise ValueError(f"time out of the OTLP range (ns since epoch): {time_ns}")
    if event.sequence >= 2**63:
        raise ValueError(f"sequence {event.sequence} does not fit an OTLP int64 attribute")
    duration_ns = event.duration_ns
    if duration_ns is not None and not -(2**63) <= duration_ns < 2**63:
        raise ValueError("duration does not fit an OTLP int64 attribute (ns)")


def _refuse_missing_ids(event: EventFields) -> None:
    """Raise ValueError for the first id the event's scope needs that it lacks (run_id first)."""
    if not event.run_id:
        raise ValueError("run_id is required")
    for name in _REQUIRED_IDS.get(event.scope, ()):  # what every receiver requires (vfo_otel.otel)
        if not getattr(event, name):
            raise ValueError(f"{name} is required for scope {scope_name(event.scope)}")


def _cap_extra_attributes(event: EventFields) -> None:
    """Keep the first ``MAX_EXTRA_ATTRIBUTES - 1`` extra attributes (by key) and record the count.

    The SDK keeps at most 128 attributes per log record and span event by default and evicts
    the oldest first, which are the canonical keys: an event with hundreds of extra attributes
    would arrive without its event id or state and be rejected. The original count is kept as
    ``attributes_original_count`` (the receiver's limits use the same ``*_original_*`` style).
    """
    extra = event.attributes
    kept = {k: extra[k] for k in sorted(extra)[: MAX_EXTRA_ATTRIBUTES - 1]}
    kept["attributes_original_count"] = str(len(extra))
    event.attributes = kept  # a new dict: the owner's is not modified


@dataclass
class _Attempt:
    """What the emitter remembers of one live entity."""

    span: trace_api.Span | None
    state: int
    start_ns: int
    stage_id: str = ""
    #: The context that gives this entity's log records its trace and span id (built once).
    log_ctx: Context | None = None
    #: What its events map to alike at its latest stage id (vfo_otel.otel.entity_parts; built once per stage).
    parts: EntityParts | None = None
    #: The context its children's spans start in (this entity's span as their remote parent; built once).
    child_ctx: Context | None = None
    #: The command and exit code of its latest event that had them (the span's end attributes).
    command: tuple[str, Sequence[str], str] | None = None
    exit_code: int | None = None


class Emitter:
    """Turns canonical ``vfo.events.v1.RunEvent`` messages into spans, span events, log records
    and metrics through the OpenTelemetry Python SDK.

    Configuration comes, in order, from explicit arguments, the standard ``OTEL_*``
    environment variables (read by the SDK's OTLP exporters and ``Resource.create``), or
    providers the application already owns (then the emitter adds no exporter and does
    not shut them down).

    Args:
        endpoint: OTLP endpoint: for gRPC e.g. ``http://127.0.0.1:4317``; for HTTP the base URL,
            e.g. ``http://127.0.0.1:4318``, to which ``/v1/traces``, ``/v1/logs`` and
            ``/v1/metrics`` are appended (as ``OTEL_EXPORTER_OTLP_ENDPOINT`` is). None lets the
            SDK read ``OTEL_EXPORTER_OTLP_ENDPOINT`` (default ``http://localhost:4317`` for gRPC,
            ``http://localhost:4318`` for HTTP).
        protocol: ``"grpc"`` or ``"http/protobuf"``; None reads the standard
            ``OTEL_EXPORTER_OTLP_PROTOCOL`` (default ``grpc``). ``http/json`` has no exporter
            in the Python SDK and is refused (ValueError).
        service_name: ``service.name`` (default: ``OTEL_SERVICE_NAME`` or ``vfo``).
        resource_attributes: extra resource attributes; ``vfo.*`` keys are refused (ValueError)
            because entity ids must never be resource attributes.
        tracer_provider, logger_provider, meter_provider: SDK providers to use instead of
            building our own.
        metric_readers: extra metric readers for the emitter's own MeterProvider (for
            example an OTel Prometheus reader); ignored when ``meter_provider`` is given.
        export_metrics_otlp: add the OTLP metric exporter to our own MeterProvider.
        metric_export_interval_ms: OTLP metric export interval (ms).
        cardinality_limit: distinct label sets per metric before the overflow series.
        source_id: id of this source (default: random); with ``sequence`` it orders events.
        heartbeat_interval_s: while a node attempt is ``running``, a heartbeat (a log record
            ``vfo.node.heartbeat``, same state, ``heartbeat`` true) is sent at this interval
            (seconds) from a daemon thread, so a receiver can tell a live long node from a
            dead worker; None disables heartbeats.
        handle_sigterm: install :func:`install_sigterm_handler`: SIGTERM then raises
            :class:`Terminated` in the main thread, so open handles end ``failed`` with
            error class ``Cancelled`` and the process exits with status 143 after flushing.
        export_timeout_s: how long the OTLP exporters the emitter builds keep retrying one
            export (seconds) before dropping it (counted in ``stats.dropped``); None: the
            SDK's default (``OTEL_EXPORTER_OTLP_TIMEOUT``, else 10 s).

    Raises:
        ValueError: a bad argument (non-positive limits, forbidden resource keys).
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        service_name: str | None = None,
        resource_attributes: Mapping[str, str] | None = None,
        tracer_provider: TracerProvider | None = None,
        logger_provider: LoggerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        metric_readers: Sequence[MetricReader] = (),
        export_metrics_otlp: bool = True,
        metric_export_interval_ms: int = 10_000,
        cardinality_limit: int = _DEFAULT_CARDINALITY_LIMIT,
        source_id: str | None = None,
        heartbeat_interval_s: float | None = 30.0,
        handle_sigterm: bool = False,
        export_timeout_s: float | None = None,
        protocol: str | None = None,
    ) -> None:
        if cardinality_limit < 2:
            raise ValueError("cardinality_limit must be >= 2 (one slot is the overflow series)")
        if metric_export_interval_ms <= 0:
            raise ValueError("metric_export_interval_ms must be > 0")
        if export_timeout_s is not None and export_timeout_s <= 0:
            raise ValueError("export_timeout_s must be > 0")
        resource = build_resource(service_name, resource_attributes)
        self.resource = resource
        self.stats = EmitterStats()

        self._endpoint = endpoint
        otlp_protocol(protocol)  # a bad protocol (argument or OTEL_EXPORTER_OTLP_PROTOCOL) fails here
        self._protocol = protocol  # per-signal variables are read when each exporter is built
        self._export_timeout_s = export_timeout_s
        self._metric_readers = list(metric_readers)
        self._export_metrics_otlp = export_metrics_otlp
        self._metric_export_interval_ms = metric_export_interval_ms
        self._given = (tracer_provider, logger_provider, meter_provider)
        self._setup_providers()
        self._cap = CardinalityCap(cardinality_limit)
        #: metric base labels shared by entities, and the labels admitted per shared base (_emit_metrics)
        self._label_bases: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], dict[Any, Any]]] = {}
        self._admitted: dict[int, dict[tuple[str, str], Mapping[str, Any]]] = {}

        self._lock = threading.RLock()
        self._source_id = source_id or uuid.uuid4().hex[:16]
        self._sequence = 0
        self._random, self._random_pos = "", 0  # event ids to hand out, as hex (_new_event_id)
        self._live: dict[EntityKey, _Attempt] = {}
        #: live descendants (spans started, not ended) of each entity key, any depth
        self._below: dict[EntityKey, int] = {}
        #: terminal events that wait for the entity's live descendants to end
        self._pending: dict[EntityKey, EventFields] = {}
        #: for each live or waiting entity: how its ended descendants ended, by descendant key
        #: (node attempts by node, the latest attempt winning) -> (attempt, state)
        self._outcomes: dict[EntityKey, dict[EntityKey, tuple[int, int]]] = {}
        self._warned: set[str] = set()
        self._closed = False
        self._in_child = False
        self._rebuild = False
        self._child_flush_timeout_ms = 10_000
        self._ended: collections.OrderedDict[EntityKey, None] = collections.OrderedDict()
        if heartbeat_interval_s is not None and heartbeat_interval_s <= 0:
            raise ValueError("heartbeat_interval_s must be > 0 (or None to disable heartbeats)")
        self._heartbeat_interval_s = heartbeat_interval_s
        self._heartbeat_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self_ref = weakref.ref(self)
        atexit.register(_shutdown_at_exit, self_ref)
        if handle_sigterm:
            install_sigterm_handler()
        after_fork = weakref.WeakMethod(self._after_fork)  # a strong ref would keep every emitter alive
        os.register_at_fork(after_in_child=lambda: (m := after_fork()) is not None and m())

    # -- public API -------------------------------------------------------------------

    def _setup_providers(self) -> None:
        """Build the providers the application did not hand us, then the tracer, logger and instruments."""
        tracer_provider, logger_provider, meter_provider = self._given
        resource, endpoint, timeout = self.resource, self._endpoint, self._export_timeout_s
        stats = self.stats
        protocol = self._protocol

        def otlp_exporter(signal: str, endpoint: str | None, timeout: float | None) -> Any:
            return build_otlp_exporter(signal, protocol, endpoint, timeout)

        self._owned: list[Any] = []
        if tracer_provider is None:
            tracer_provider = TracerProvider(resource=resource)
            spans = CountingSpanExporter(otlp_exporter("traces", endpoint, timeout), stats)
            tracer_provider.add_span_processor(CountingSpanProcessor(BatchSpanProcessor(spans), stats))
            self._owned.append(tracer_provider)
        if logger_provider is None:
            logger_provider = LoggerProvider(resource=resource)
            logs = CountingLogExporter(otlp_exporter("logs", endpoint, timeout), stats)
            logger_provider.add_log_record_processor(
                CountingLogProcessor(
                    BatchLogRecordProcessor(logs, schedule_delay_millis=_log_schedule_delay_ms()), stats
                )
            )
            self._owned.append(logger_provider)
        if meter_provider is None:
            readers = list(self._metric_readers)
            if self._export_metrics_otlp:
                readers.append(
                    PeriodicExportingMetricReader(
                        otlp_exporter("metrics", endpoint, timeout),
                        export_interval_millis=self._metric_export_interval_ms,
                    )
                )
            meter_provider = MeterProvider(resource=resource, metric_readers=readers)
            self._owned.append(meter_provider)
        self._providers = (tracer_provider, logger_provider, meter_provider)

        self._tracer = tracer_provider.get_tracer(c.INSTRUMENTATION_SCOPE, VERSION)
        if hasattr(self._tracer, "id_generator"):
            self._tracer.id_generator = DeterministicIds(self._tracer.id_generator or RandomIdGenerator())
        else:  # pragma: no cover - a non-SDK tracer provider
            _log.warning("tracer provider is not the OTel SDK's: span ids will not be deterministic")
        self._logger = logger_provider.get_logger(c.INSTRUMENTATION_SCOPE, VERSION)
        meter = meter_provider.get_meter(c.INSTRUMENTATION_SCOPE, VERSION)
        self._instruments: dict[str, Any] = {}
        for spec in c.METRICS:
            if spec.instrument == "counter":
                inst: Any = meter.create_counter(spec.name, unit=spec.unit, description=spec.description)
            elif spec.instrument == "updowncounter":
                inst = meter.create_up_down_counter(spec.name, unit=spec.unit, description=spec.description)
            else:
                inst = meter.create_histogram(
                    spec.name,
                    unit=spec.unit,
                    description=spec.description,
                    explicit_bucket_boundaries_advisory=list(c.DURATION_BUCKETS_S),
                )
            self._instruments[spec.name] = inst
        #: metric name -> the instrument's record (histogram) or add (counters), looked up once
        self._record: dict[str, Any] = {
            name: inst.record if hasattr(inst, "record") else inst.add
            for name, inst in self._instruments.items()
        }

    @property
    def source_id(self) -> str:
        """This emitter's source id (changes in a forked child)."""
        return self._source_id

    def emit(self, event: ev.RunEvent) -> ev.RunEvent:
        """Emit one event as a log record, a span event (and span when terminal) and metrics.

        Missing ``event_id``, ``time``, ``source_id``/``sequence`` and ``previous_state`` are
        filled in, and more than ``MAX_EXTRA_ATTRIBUTES`` extra attributes are cut down (the
        caller's message is not modified). Events OTLP cannot carry (time outside 1970..2554,
        ``sequence`` >= 2**63, a duration beyond int64 ns) are refused like invalid ones.

        Args:
            event: a RunEvent with scope, state, run_id and the ids its scope needs.

        Returns:
            The completed event as emitted (an empty RunEvent if it could not be emitted).
            Never raises: failures are counted in :attr:`stats`.
        """
        try:
            if not isinstance(event, ev.RunEvent):
                raise TypeError(f"emit() takes a vfo.events.v1.RunEvent, not {type(event).__name__}")
            fields = EventFields.of(event)  # read once; the caller's message is not modified
        except Exception as exc:  # the emit path never raises into the runner
            self._failed(exc)
            return ev.RunEvent()
        # what _emit may fill in or replace
        event_id, time_ns, source_id = fields.event_id, fields.time_ns, fields.source_id
        previous, extra = fields.previous_state, fields.attributes
        if not self._emit_guarded(fields):
            return ev.RunEvent()
        out = ev.RunEvent()  # the completed event: a copy of the caller's with what was filled in
        out.CopyFrom(event)
        if not event_id:
            out.event_id = fields.event_id
        if time_ns is None:  # = out.time.FromNanoseconds(...), without its range check
            t = out.time
            t.seconds, t.nanos = divmod(fields.time_ns or 0, 1_000_000_000)
        if not source_id:
            out.source_id, out.sequence = fields.source_id, fields.sequence
        if fields.previous_state != previous:
            out.previous_state = fields.previous_state  # type: ignore[assignment]
        if fields.attributes is not extra:  # cut down (_cap_extra_attributes)
            out.attributes.clear()
            out.attributes.update(fields.attributes)
        return out

    def _emit_owned(self, event: EventFields) -> None:
        """:meth:`emit` for an event's plain fields built for this call alone (the runner's
        handles): they are completed in place, and no RunEvent is built or read back.

        When ``emit`` is overridden (a subclass or an instance attribute), the event's RunEvent
        is built and goes through the override, as the handles' events always have."""
        if type(self).emit is not Emitter.emit or "emit" in self.__dict__:
            self.emit(event.message())
            return
        self._emit_guarded(event)

    def _emit_guarded(self, event: EventFields) -> bool:
        """Complete and emit ``event`` under the lock; False when it failed (counted in stats)."""
        try:
            with self._lock:
                if self._rebuild:  # first use in a forked child: fresh exporters and channels
                    self._rebuild = False
                    self._setup_providers()
                self._emit(event)
            if self._in_child and event.state in c.TERMINAL_STATES:
                self.force_flush(self._child_flush_timeout_ms)
            return True
        except Exception as exc:  # the emit path never raises into the runner
            self._failed(exc)
            return False

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export everything buffered; True when every provider flushed within the timeout (ms).

        Blocks the calling thread (not other threads' ``emit``) until the exports are done. The
        three providers flush at once, each in a thread of its own, so the wait is the slowest
        signal's, not the sum (a receiver that is down costs one export timeout, not three).
        When it completes with nothing enqueued meanwhile, ``stats.queue_dropped`` is brought
        up to date (see :class:`EmitterStats`)."""
        with self._lock:  # records are enqueued only under this lock (in _emit)
            enqueued = dict(self.stats.enqueued)

        def flush(provider: Any) -> bool:
            try:
                return bool(provider.force_flush(timeout_millis))
            except Exception as exc:
                self._failed(exc)
                return False

        try:
            with ThreadPoolExecutor(max_workers=3, thread_name_prefix="vfo-otel-flush") as pool:
                flushed = list(pool.map(flush, self._providers))  # tracer, logger, meter provider
        except RuntimeError:  # at interpreter exit no new thread may start: one after the other
            flushed = [flush(p) for p in self._providers]
        # the signals whose provider (tracer: spans, logger: logs) flushed completely
        done = zip(("spans", "logs"), flushed[:2], strict=True)
        settled = [kind for kind, ok in done if ok and kind in enqueued]
        if settled:
            with self._lock:
                if self.stats.enqueued == enqueued:  # every record enqueued has left its queue
                    self.stats._settle_queue_drops(settled)
        return all(flushed)

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Stop heartbeats, flush (at most ``timeout_millis`` ms), then shut down the providers
        the emitter built. Idempotent; also run at interpreter exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        self.end_abandoned()
        self.force_flush(timeout_millis)
        for provider in self._owned:
            try:
                provider.shutdown()
            except Exception as exc:
                self._failed(exc)

    def end_abandoned(self) -> int:
        """End every entity this emitter started and never ended: ``failed`` with error class
        ``Abandoned`` (node attempts first, then assets, pipelines, runs), and emit the terminal
        events that were waiting for them. Run by :meth:`shutdown` (so Tempo gets a root span
        for every run); returns how many entities were ended. Never raises."""
        ended = 0
        try:
            with self._lock:
                for key in sorted(self._live, key=len, reverse=True):
                    live = self._live.get(key)
                    if live is None or key in self._pending:
                        continue
                    run_id, pipeline_id, asset_id, node_id = (*key[:4], "", "", "")[:4]
                    self._emit(
                        EventFields(
                            _SCOPE_OF_KEY[len(key)],
                            ev.STATE_FAILED,
                            run_id,
                            pipeline_id,
                            asset_id,
                            node_id,
                            live.stage_id,
                            int(key[4]) if len(key) == 5 else 0,
                            error=(ABANDONED, "the emitter shut down before this entity ended"),
                        )
                    )
                    ended += 1
                for key in list(self._pending):  # waiting for descendants that are gone
                    self._emit(self._pending.pop(key))
                self.stats.abandoned += ended
        except Exception as exc:
            self._failed(exc)
        return ended

    def run(self, run_id: str, **kwargs: Any) -> RunHandle:
        """Context manager for a run; see :class:`vfo_otel.emitter.RunHandle`."""
        return RunHandle(self, run_id, **kwargs)

    # -- internals --------------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child: new source id; exporters rebuilt on first use; terminal events flushed.

        The parent's gRPC channels are not usable in the child, and a worker that exits
        with ``os._exit`` (as multiprocessing does) runs no atexit hook, so a child flushes
        each terminal event before ``emit`` returns.
        """
        self._lock = threading.RLock()
        self._source_id = uuid.uuid4().hex[:16]
        self._sequence = 0
        self._random, self._random_pos = "", 0  # never the parent's random ids
        self._heartbeat_thread = None  # the parent's thread does not run here
        self.stats._forget_pending()
        self._in_child = True
        self._rebuild = bool(self._owned)
        self._live, self._below, self._pending, self._outcomes = {}, {}, {}, {}

    def _failed(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        count = self.stats._count_failure(kind)
        if count == 0:
            _log.warning(
                "vfo_otel emitter failure (%s), counted in Emitter.stats; further ones not logged",
                kind,
                exc_info=exc,
            )

    def _emit(self, event: EventFields) -> None:
        """Complete (in place: ids, time, source and sequence, previous state) and emit one event."""
        key = event.key()  # validates the scope; nothing below changes an id
        if event.state not in _STATE_NAMES:
            state_name(event.state)  # raises
        if "" in key or (len(key) == 5 and not event.attempt_id):  # the key holds every required id
            _refuse_missing_ids(event)
        if not event.event_id:
            event.event_id = self._new_event_id()
        time_ns = event.time_ns
        if time_ns is None:
            time_ns = event.time_ns = time.time_ns()
        if not event.source_id:
            self._sequence += 1
            event.source_id = self._source_id
            event.sequence = self._sequence
        duration_ns = event.duration_ns
        if (
            not 0 < time_ns < 2**64
            or event.sequence >= 2**63
            or (duration_ns is not None and not -(2**63) <= duration_ns < 2**63)
        ):
            _check_otlp_range(time_ns, event)  # raises
        if len(event.attributes) > MAX_EXTRA_ATTRIBUTES:
            _cap_extra_attributes(event)
        terminal = event.state in _TERMINAL and not event.heartbeat
        if terminal and key in self._below:
            # A parent never ends before its children: its terminal event waits until the last
            # live descendant in this emitter has ended (then it is emitted, at that time).
            self._pending[key] = event
            self.stats.deferred += 1
            return
        live = self._live.get(key)
        if terminal:
            outcomes = self._outcomes.pop(key, None)
            if outcomes:
                _settle_children(event, key, outcomes)
        elif len(key) == 1 and key in self._ended and event.state in _STARTS:
            self._run_id_reused(event.run_id)
        if live is not None and not event.previous_state and live.state != event.state:
            event.previous_state = live.state
        # What the entity's events map to alike (entity attributes, body prefix, metric base
        # labels): kept per live entity while its stage id stays the same.
        parts = live.parts if live is not None else None
        if parts is None or parts.stage_id != event.stage_id:
            parts = self._shared_labels(entity_parts(event))
            if live is not None:
                live.parts = parts

        # The reference mapping on plain values (vfo_otel.otel's log_record, span_event and
        # metric_points wrap the same functions). The span event's attributes are the log
        # record's transition attributes: built once.
        transition = transition_attributes(event)
        log_ctx = self._emit_log(event, key, live, transition, time_ns, parts)
        if not event.heartbeat:  # a heartbeat is no transition: log record only
            if key in self._ended:  # a late or repeated event of an exported span: never a second span
                self.stats.late_events += 1
            else:
                self._emit_span(key, live, event, transition, time_ns, log_ctx, parts)
        if not event.heartbeat:  # a heartbeat is no transition: no metric points
            self._emit_metrics(event, parts)
        self.stats.events += 1

    def _ended_entity(self, key: EntityKey, event: EventFields, counted: bool) -> None:
        """After ``key``'s terminal event: tell its ancestors (their children's states and, when
        ``key`` was counted as a live descendant, the counts) and emit the terminal events that
        waited for it (nearest first)."""
        parent = parent_key(key)
        outcome_key, attempt = (key[:4], event.attempt_id) if len(key) == 5 else (key, 0)
        ancestors = []
        a = parent
        while a is not None:
            ancestors.append(a)
            if a in self._live or a in self._pending:  # it will want to know how its children ended
                outcomes = self._outcomes.setdefault(a, {})
                old = outcomes.get(outcome_key)
                if old is None or attempt >= old[0]:
                    outcomes[outcome_key] = (attempt, event.state)
            a = parent_key(a)
        for a in ancestors if counted else ():
            n = self._below.get(a, 0) - 1
            if n > 0:
                self._below[a] = n
            else:
                self._below.pop(a, None)
        for a in ancestors:
            if a in self._pending and a not in self._below:
                waiting = self._pending.pop(a)
                now_ns = time.time_ns()
                if waiting.time_ns is not None and now_ns > waiting.time_ns:  # it ends now, not before
                    if waiting.duration_ns is not None:
                        waiting.duration_ns += now_ns - waiting.time_ns
                    waiting.time_ns = now_ns
                self._emit(waiting)

    def _untracked(self) -> None:
        self.stats.untracked += 1
        if "untracked" not in self._warned:
            self._warned.add("untracked")
            _log.warning(
                "vfo_otel emitter holds %d live entities (never ended?): new ones are not tracked "
                "until some end; counted in Emitter.stats.untracked",
                MAX_LIVE_ENTITIES,
            )

    def _run_id_reused(self, run_id: str) -> None:
        """A run this emitter ended starts again: two executions under one run id (counted, warned once)."""
        self.stats.run_ids_reused += 1
        if "run_id_reused" not in self._warned:
            self._warned.add("run_id_reused")
            _log.warning(
                "run id %r is used again after its run ended: run ids must be unique per execution "
                "(the receiver flags the run as a conflict); counted in Emitter.stats.run_ids_reused",
                run_id,
            )

    def _shared_labels(self, parts: EntityParts) -> EntityParts:
        """``parts`` with the metric base labels of every entity with the same ones (scope,
        pipeline id, stage id) as one dict, which keys the labels the cap admitted (_emit_metrics).
        At most ``cardinality_limit`` base label sets are shared; others go uncached."""
        base = parts.metric_base
        shared = self._label_bases.get(key := tuple(base.items()))
        if shared is None:
            if len(self._label_bases) >= self._cap.limit:
                return parts
            shared = self._label_bases[key] = (base, {})
            self._admitted[id(base)] = shared[1]  # base is kept alive by _label_bases: a stable id
        return parts._replace(metric_base=shared[0])

    def _emit_metrics(self, event: EventFields, parts: EntityParts) -> None:
        """Record the event's metric points (:func:`vfo_otel.otel.metric_parts`) through the
        cardinality cap.

        The labels the cap admitted are kept per shared base labels (_shared_labels), by metric
        and the label that completes them; admitted once, a label set stays admitted, and these
        dicts are never modified, so the same dict is handed to the SDK again."""
        admitted = self._admitted.get(id(parts.metric_base))
        record = self._record
        if admitted is None:
            cap, stats = self._cap, self.stats
            for name, value, point_labels in metric_updates(event, parts):
                record[name](value, cap.labels(name, point_labels, stats))
            return
        for name, value, key, label in metric_parts(event):
            labels = admitted.get((name, label))
            if labels is None:
                labels = self._admit(admitted, name, key, label, parts)
            record[name](value, labels)

    def _admit(
        self,
        admitted: dict[tuple[str, str], Mapping[str, Any]],
        name: str,
        label: str | None,
        value: str,
        parts: EntityParts,
    ) -> Mapping[str, Any]:
        """The labels of one metric point as _metric_updates builds them, through the cap;
        kept in ``admitted`` unless they went to the overflow series."""
        labels = dict(parts.active_labels) if label is None else {**parts.metric_base, label: value}
        capped = self._cap.labels(name, labels, self.stats)
        if capped is labels:
            admitted[(name, value)] = labels
        return capped

    def _new_event_id(self) -> str:
        """A random UUID (version 4) as 32 hex digits, like ``uuid.uuid4().hex``.

        The random bytes come from ``os.urandom`` 4 KiB (256 ids) at a time rather than one
        system call per event, and are turned into hex a block at a time (:func:`_uuid4_hex_block`);
        a forked child drops the parent's block (:meth:`_after_fork`).
        """
        pos = self._random_pos
        if pos >= len(self._random):
            self._random, pos = _uuid4_hex_block(), 0
        self._random_pos = pos + 32
        return self._random[pos : pos + 32]

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat_interval_s is None or self._closed:
            return
        if self._heartbeat_thread is None:  # started lazily (again in a forked child: _after_fork)
            self._heartbeat_thread = threading.Thread(
                target=_heartbeat_loop,
                args=(weakref.ref(self), self._heartbeat_interval_s, self._stopping),
                name="vfo-otel-heartbeat",
                daemon=True,
            )
            self._heartbeat_thread.start()

    def heartbeat(self) -> int:
        """Send one heartbeat for every running or waiting node attempt now; returns how many were sent.

        A heartbeat carries the attempt's current state (``running`` or ``waiting``), so it
        never changes what the receiver shows, only how recently the attempt was heard of.

        Called by the heartbeat thread every ``heartbeat_interval_s``; never raises.
        """
        sent = 0
        try:
            with self._lock:
                for key, live in list(self._live.items()):
                    if len(key) != 5 or live.state not in (ev.STATE_RUNNING, ev.STATE_WAITING):
                        continue
                    run_id, pipeline_id, asset_id, node_id, attempt = key
                    self._emit(
                        EventFields(
                            ev.SCOPE_NODE,
                            live.state,
                            run_id,
                            pipeline_id,
                            asset_id,
                            node_id,
                            live.stage_id,
                            int(attempt),
                            previous_state=live.state,
                            heartbeat=True,
                        )
                    )
                    sent += 1
                self.stats.heartbeats += sent
        except Exception as exc:
            self._failed(exc)
        return sent

    def _emit_log(
        self,
        event: EventFields,
        key: EntityKey,
        live: _Attempt | None,
        transition: Mapping[str, AttrValue],
        time_ns: int,
        parts: EntityParts,
    ) -> Context:
        """Emit the event's log record (= vfo_otel.otel.log_record); returns its trace/span context."""
        fields = log_record_values(event, transition, parts)
        severity_number, severity_text, body, event_name, attrs = fields
        ctx = live.log_ctx if live is not None else None
        if ctx is None:  # once per live entity (the ids depend on the entity only)
            trace_id, span_id = trace_id_for_run(event.run_id), span_id_for(key)
            span_ctx = SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
            ctx = trace_api.set_span_in_context(NonRecordingSpan(span_ctx))
            if live is not None:
                live.log_ctx = ctx
        severity = _SEVERITY_NUMBERS.get(severity_number)
        self._logger.emit(
            timestamp=time_ns,
            observed_timestamp=time.time_ns(),
            context=ctx,
            severity_number=severity if severity is not None else SeverityNumber(severity_number),
            severity_text=severity_text,
            body=body,
            attributes=attrs,
            event_name=event_name,
        )
        return ctx

    def _start_span(
        self, event: EventFields, start_ns: int, key: EntityKey, parts: EntityParts
    ) -> trace_api.Span:
        start = span_start_values(event, key, parts.attributes)  # = vfo_otel.otel.span_start(event)
        name, trace_id, span_id, parent_span_id, attributes = start
        parent_ctx = None
        if parent_span_id is not None:
            pkey = parent_key(key)
            parent_live = self._live.get(pkey) if pkey is not None else None
            parent_ctx = parent_live.child_ctx if parent_live is not None else None
            if parent_ctx is None:  # once per live parent (its ids depend on the entity only)
                parent = SpanContext(trace_id, parent_span_id, is_remote=True, trace_flags=_SAMPLED)
                parent_ctx = trace_api.set_span_in_context(NonRecordingSpan(parent))
                if parent_live is not None:
                    parent_live.child_ctx = parent_ctx
        token = NEXT_IDS.set((trace_id, span_id))
        try:
            return self._tracer.start_span(
                name,
                context=parent_ctx,
                attributes=attributes,
                start_time=start_ns,
                kind=trace_api.SpanKind.INTERNAL,
            )
        finally:
            NEXT_IDS.reset(token)

    def _emit_span(
        self,
        key: EntityKey,
        live: _Attempt | None,
        event: EventFields,
        transition: Mapping[str, AttrValue],
        now_ns: int,
        log_ctx: Context,
        parts: EntityParts,
    ) -> None:
        terminal = event.state in _TERMINAL
        counted = live is not None and live.span is not None  # a live descendant of its ancestors
        if live is None or live.span is None:
            if not terminal and len(self._live) >= MAX_LIVE_ENTITIES:
                self._untracked()  # its log records and metrics still go out; its span starts at its end
                return
            start_ns = now_ns
            if terminal and event.duration_ns is not None:  # start seen elsewhere: its real start time
                start_ns = max(now_ns - max(event.duration_ns, 0), 0)
            # the span starts with the event's stage id among its attributes (span_start)
            started = self._start_span(event, start_ns, key, parts)
            live = _Attempt(started, event.state, start_ns, event.stage_id, log_ctx, parts)
            self._live[key] = live
            if not terminal:  # its ancestors now wait for it
                a = parent_key(key)
                while a is not None:
                    self._below[a] = self._below.get(a, 0) + 1
                    a = parent_key(a)
        span = live.span
        assert span is not None
        span.add_event(_SPAN_EVENT_NAME, transition, timestamp=now_ns)  # = vfo_otel.otel.span_event
        if event.stage_id and event.stage_id != live.stage_id:  # the stage changed: update the span
            span.set_attribute(_K_STAGE, event.stage_id)
            live.stage_id = event.stage_id
        live.state = event.state
        if event.command is not None:
            live.command = event.command
        if event.exit_code is not None:
            live.exit_code = event.exit_code
        if event.scope == _SCOPE_NODE and event.state in _LIVE_NODE_STATES:
            self._ensure_heartbeat()
        if terminal:
            # = vfo_otel.otel.span_end(event), with the command and exit code of earlier events
            ok, description, end_attributes = span_end_values(event, live.command, live.exit_code)
            span.set_attributes(end_attributes)
            if not ok:  # success leaves the status UNSET, as OTel instrumentation guidance asks
                span.set_status(Status(StatusCode.ERROR, description))
            span.end(end_time=max(now_ns, live.start_ns))
            del self._live[key]
            self._ended[key] = None
            if len(self._ended) > _ENDED_MEMORY:
                self._ended.popitem(last=False)
            self._ended_entity(key, event, counted)


_ENDED_MEMORY = 100_000  # span keys remembered as ended, to refuse a second span of one entity
#: How long the emitter's log record processor waits to fill a batch (ms) when the standard
#: ``OTEL_BLRP_SCHEDULE_DELAY`` is not set: log records are the live channel, and the SDK's
#: default of 1,000 ms made every transition reach a dashboard a second late. Under load a
#: batch fills (512 records) before the delay, so exports are no more frequent than before.
LIVE_LOG_DELAY_MS = 50


def _log_schedule_delay_ms() -> int | None:
    """``LIVE_LOG_DELAY_MS``, unless ``OTEL_BLRP_SCHEDULE_DELAY`` is set (None: the SDK reads it)."""
    return None if os.environ.get("OTEL_BLRP_SCHEDULE_DELAY") else LIVE_LOG_DELAY_MS
_STARTS = (ev.STATE_QUEUED, ev.STATE_RUNNING)
_SCOPE_OF_KEY = {1: ev.SCOPE_RUN, 2: ev.SCOPE_PIPELINE, 3: ev.SCOPE_ASSET, 5: ev.SCOPE_NODE}


def _settle_children(
    event: EventFields, key: EntityKey, outcomes: dict[EntityKey, tuple[int, int]]
) -> None:
    """A ``complete`` parent some of whose descendants (node attempts: the latest) ended
    ``failed`` ends ``failed``, with the child-failed error class of its scope naming its failed
    children (docs/fold.md, rule 4): the same rule the receiver's fold applies, so Tempo's root
    span and the dashboard agree."""
    if event.state != ev.STATE_COMPLETE:
        return
    depth = len(key)  # the child of `key` on the path to a descendant is its id at this position
    failed = sorted({k[depth] for k, (_, state) in outcomes.items() if state == ev.STATE_FAILED})
    if failed:
        event.state = ev.STATE_FAILED
        event.error = child_failed_error(event.scope, failed)
_STATE_NAMES, _TERMINAL, _SPAN_EVENT_NAME = c.STATE_NAMES, c.TERMINAL_STATES, c.SPAN_EVENT_NAME
_SCOPE_NODE, _LIVE_NODE_STATES = ev.SCOPE_NODE, (ev.STATE_RUNNING, ev.STATE_WAITING)
# plain str keys, not Key members (see vfo_otel.otel._forward._K_SCOPE)
_K_STAGE, _OVERFLOW_LABEL = Key.STAGE_ID.value, c.OVERFLOW_LABEL.value


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
# uuid.UUID(bytes=..., version=4) sets the version (4: the high nibble of byte 6) and the
# variant (RFC 4122: the top two bits of byte 8 are 10) of 16 random bytes: as byte tables
_UUID4_VERSION = bytes((b & 0x0F) | 0x40 for b in range(256))
_UUID4_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))


def _uuid4_hex_block(n: int = 256) -> str:
    """``n`` random UUIDv4s as one string of ``n`` x 32 hex digits (each = ``uuid.uuid4().hex``)."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = raw[6::16].translate(_UUID4_VERSION)
    raw[8::16] = raw[8::16].translate(_UUID4_VARIANT)
    return raw.hex()


#: SeverityNumber members by number, so a log record does not call the Enum constructor.
_SEVERITY_NUMBERS: dict[int, SeverityNumber] = {s.value: s for s in SeverityNumber}


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM by :func:`install_sigterm_handler`.

    A ``SystemExit`` with code 143 (128 + SIGTERM); open handles record it as ``failed`` with
    error class ``Cancelled`` and detail ``received SIGTERM``.
    """

    def __init__(self) -> None:
        super().__init__(143)

    def __str__(self) -> str:
        return "received SIGTERM"


def install_sigterm_handler() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (only from the main thread).

    Python's default SIGTERM ends the process without unwinding, so no handle could record the
    failure and nothing buffered would be flushed. With this handler the ``with`` blocks unwind,
    each emits ``failed``/``Cancelled``, and the emitters flush at interpreter exit.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def _raise(signum: int, frame: object) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, _raise)


def _shutdown_at_exit(ref: weakref.ref[Emitter]) -> None:
    emitter = ref()
    if emitter is not None:
        emitter.shutdown(timeout_millis=5_000)


def _heartbeat_loop(ref: weakref.ref[Emitter], interval_s: float, stopping: threading.Event) -> None:
    while not stopping.wait(interval_s):
        emitter = ref()
        if emitter is None:
            return
        emitter.heartbeat()
        del emitter
