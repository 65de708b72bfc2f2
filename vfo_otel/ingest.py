"""OTLP export requests -> canonical RunEvents, with per-record rejection. Pure.

Knows nothing of transport (like the collector's otlpreceiver translation layer): the
gRPC servicers call :func:`decode_logs` / :func:`decode_traces` and answer with the
counts in :class:`Decoded` as OTLP ``partial_success``.

Which records are vfo's: log records with an ``event_name`` starting ``vfo.`` or a
``vfo.event.id`` attribute; span events named ``vfo.transition``. Everything else is
another application's telemetry: ignored and counted, never rejected.
Events get their :class:`~vfo_otel.events.Origin` from the OTLP resource.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from vfo_otel import conventions as c
from vfo_otel import mapping
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.limits import Limits, check_event

__all__ = ["Decoded", "decode_logs", "decode_traces"]


@dataclass
class Decoded:
    """The result of decoding one OTLP export request.

    Attributes:
        events: valid vfo events, in request order.
        rejected: records rejected (log records, or spans with at least one bad vfo span event).
        ignored: records that are not vfo telemetry.
        errors: the first few rejection messages (for the partial_success message).
    """

    events: list[ev.RunEvent] = field(default_factory=list)
    rejected: int = 0
    ignored: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, where: str, exc: Exception) -> None:
        self.rejected += 1
        if len(self.errors) < 5:
            self.errors.append(f"{where}: {exc}")

    def message(self) -> str:
        """The OTLP partial_success error_message ("" when nothing was rejected)."""
        if not self.rejected:
            return ""
        more = f" (+{self.rejected - len(self.errors)} more)" if self.rejected > len(self.errors) else ""
        return (
            f"rejected {self.rejected} vfo record(s); the rest of the batch was kept: "
            + "; ".join(self.errors)
            + more
        )


def _origin(resource: resource_pb2.Resource) -> ev.Origin:
    attrs = mapping.otlp_attributes_to_dict(resource.attributes)

    def text(key: str) -> str:
        v = attrs.get(key)
        return v if isinstance(v, str) else ""

    return ev.Origin(
        service_name=text(c.Key.SERVICE_NAME),
        service_version=text(c.Key.SERVICE_VERSION),
        host_name=text(c.Key.HOST_NAME),
    )


def decode_logs(request: logs_service_pb2.ExportLogsServiceRequest, limits: Limits) -> Decoded:
    """Decode the vfo log records of an ``ExportLogsServiceRequest``."""
    out = Decoded()
    for rl in request.resource_logs:
        origin = _origin(rl.resource)
        for sl in rl.scope_logs:
            for i, record in enumerate(sl.log_records):
                if not mapping.is_vfo_log_record(record):
                    out.ignored += 1
                    continue
                try:
                    event = mapping.events_from_log_record(record)
                    check_event(event, limits)
                except (mapping.DecodeError, ValueError) as exc:
                    out.reject(f"log record {i}", exc)
                    continue
                event.origin.CopyFrom(origin)
                out.events.append(event)
    return out


def decode_traces(request: trace_service_pb2.ExportTraceServiceRequest, limits: Limits) -> Decoded:
    """Decode the vfo span events of an ``ExportTraceServiceRequest``."""
    out = Decoded()
    for rs in request.resource_spans:
        origin = _origin(rs.resource)
        for ss in rs.scope_spans:
            for span in ss.spans:
                if not any(e.name == c.SPAN_EVENT_NAME for e in span.events):
                    out.ignored += 1
                    continue
                events, errors = mapping.events_from_span(span)
                bad: list[Exception] = list(errors)
                for event in events:
                    try:
                        check_event(event, limits)
                    except ValueError as exc:
                        bad.append(exc)
                        continue
                    event.origin.CopyFrom(origin)
                    out.events.append(event)
                if bad:
                    out.reject(f"span {span.name!r}", bad[0])
    return out
