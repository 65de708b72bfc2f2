"""OTLP export requests -> EventRecords, with per-record rejection. Pure.

Knows nothing of transport (like the collector's otlpreceiver translation layer): the
gRPC servicers call :func:`decode_logs` / :func:`decode_traces` and answer with the
counts in :class:`Decoded` as OTLP ``partial_success``.

Which records are vfo's: log records with an ``event_name`` starting ``vfo.`` or a
``vfo.event.id`` attribute; span events named ``vfo.transition``. Everything else is
another application's telemetry: ignored and counted, never rejected.
Events get their ``Origin`` from the OTLP resource. Each accepted event becomes an
:class:`~vfo_otel.receiver._record.EventRecord`, the hand-off to the store and the fold.

Requests arrive as bytes (:func:`parse_logs` / :func:`parse_traces`). A request that
protobuf parses is decoded as a whole. One it refuses (most often a string field that is
not valid UTF-8: protobuf rejects the *whole* message for one bad record) is split with a
small wire-format walker (:func:`_fields`) along the OTLP nesting
``request -> resource_{logs,spans}(1) -> scope_{logs,spans}(2) -> log_records / spans(2)``
and each record is parsed on its own: only the records that do not parse are rejected,
their batch-mates are kept. A request whose framing itself is broken is refused whole
(:class:`RequestError`, INVALID_ARGUMENT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError as ProtoDecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import Limits, check_event
from vfo_otel.contract import conventions as c
from vfo_otel.otel import DecodeError, events_from_log_record, is_vfo_log_record, otlp_attributes_to_dict
from vfo_otel.receiver._fastdecode import log_record_event, span_events
from vfo_otel.receiver._record import EventRecord, record_of

__all__ = ["Decoded", "RequestError", "decode_logs", "decode_traces", "parse_logs", "parse_traces"]


@dataclass
class Decoded:
    """The result of decoding one OTLP export request.

    Attributes:
        records: the accepted vfo events, in request order, as the records the store and the
            fold take (:attr:`events` gives their RunEvents).
        rejected: records rejected (log records, or spans with at least one bad vfo span event).
        ignored: records that are not vfo telemetry.
        errors: the first few rejection messages (for the partial_success message).
    """

    records: list[EventRecord] = field(default_factory=list)
    rejected: int = 0
    ignored: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[ev.RunEvent]:
        """The accepted RunEvents, in request order (a new list)."""
        return [r.event for r in self.records]

    def reject(self, where: str, exc: Exception) -> None:
        """Count one rejected record; keep the first few messages (``where: reason``)."""
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


class RequestError(ValueError):
    """An OTLP request whose protobuf framing is broken: nothing of it can be read."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a base-128 varint at ``pos``; returns (value, next position). Raises RequestError."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise RequestError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, bytes | None]]:
    """The fields of one protobuf message: (field number, payload of a length-delimited field
    or None for a varint / fixed field). Pure; raises RequestError on a broken framing."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise RequestError("field number 0")
        if wire == 0:
            _, pos = _varint(buf, pos)
            yield number, None
        elif wire == 1 or wire == 5:
            pos += 8 if wire == 1 else 4
            if pos > len(buf):
                raise RequestError("truncated fixed-width field")
            yield number, None
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise RequestError("truncated length-delimited field")
            yield number, buf[pos : pos + size]
            pos += size
        else:  # groups (3, 4) are not used by OTLP; 6 and 7 do not exist
            raise RequestError(f"unsupported wire type {wire}")


def _children(buf: bytes, number: int) -> list[bytes]:
    return [v for n, v in _fields(buf) if n == number and v is not None]


def _origin(resource: resource_pb2.Resource, limits: Limits) -> ev.Origin:
    """The events' Origin from their OTLP resource (service.name, service.version, host.name),
    each cut to ``limits.max_id_length`` characters: a resource is shared by every record of its
    batch and copied into each event, so its text is bounded like an id."""
    wanted = (c.Key.SERVICE_NAME, c.Key.SERVICE_VERSION, c.Key.HOST_NAME)
    attrs = otlp_attributes_to_dict(kv for kv in resource.attributes if kv.key in wanted)
    most = limits.max_id_length

    def text(key: str) -> str:
        v = attrs.get(key)
        return v[:most] if isinstance(v, str) else ""

    return ev.Origin(
        service_name=text(c.Key.SERVICE_NAME),
        service_version=text(c.Key.SERVICE_VERSION),
        host_name=text(c.Key.HOST_NAME),
    )


def decode_logs(request: logs_service_pb2.ExportLogsServiceRequest, limits: Limits) -> Decoded:
    """Decode the vfo log records of an ``ExportLogsServiceRequest``."""
    out = Decoded()
    records = out.records
    is_vfo, fast = is_vfo_log_record, log_record_event
    for rl in request.resource_logs:
        origin = _origin(rl.resource, limits)
        for sl in rl.scope_logs:
            for i, record in enumerate(sl.log_records):
                if not is_vfo(record):
                    out.ignored += 1
                    continue
                decoded = fast(record, limits, origin)  # _decode_log_record's first steps, inline
                if decoded is None:
                    _decode_log_record_reference(out, i, record, origin, limits)
                else:
                    records.append(decoded)
    return out


def _decode_log_record(
    out: Decoded, i: int, record: logs_pb2.LogRecord, origin: ev.Origin, limits: Limits
) -> None:
    if not is_vfo_log_record(record):
        out.ignored += 1
        return
    decoded = log_record_event(record, limits, origin)  # plainly valid and within limits
    if decoded is not None:
        out.records.append(decoded)
        return
    _decode_log_record_reference(out, i, record, origin, limits)


def _decode_log_record_reference(
    out: Decoded, i: int, record: logs_pb2.LogRecord, origin: ev.Origin, limits: Limits
) -> None:
    """A vfo log record the one-pass decoder declined: decode, then truncate or reject by the
    limits (this path words every error)."""
    try:
        event = events_from_log_record(record)
        check_event(event, limits)
    except (DecodeError, ValueError) as exc:
        out.reject(f"log record {i}", exc)
        return
    event.origin.CopyFrom(origin)
    out.records.append(record_of(event))


def decode_traces(request: trace_service_pb2.ExportTraceServiceRequest, limits: Limits) -> Decoded:
    """Decode the vfo span events of an ``ExportTraceServiceRequest``."""
    out = Decoded()
    for rs in request.resource_spans:
        origin = _origin(rs.resource, limits)
        for ss in rs.scope_spans:
            for span in ss.spans:
                _decode_span(out, span, origin, limits)
    return out


def _decode_span(out: Decoded, span: trace_pb2.Span, origin: ev.Origin, limits: Limits) -> None:
    decoded, errors = span_events(span, limits, origin)
    if not decoded and not errors:  # no vfo span event (span_events gives one entry for each)
        out.ignored += 1
        return
    bad: list[Exception] = list(errors)
    for event, record in decoded:
        if record is None:  # decoded by the reference path: truncate or reject by the limits
            try:
                check_event(event, limits)
            except ValueError as exc:
                bad.append(exc)
                continue
            event.origin.CopyFrom(origin)
            record = record_of(event)
        out.records.append(record)
    if bad:
        out.reject(f"span {span.name!r}", bad[0])


def _bad_record(what: str, exc: Exception) -> ValueError:
    text = str(exc)
    if "UTF-8" in text:
        text = "a string field is not valid UTF-8"
    return ValueError(f"{what} is not a valid protobuf message ({text})")


def _split(
    data: bytes, kind: str, record_type: type[logs_pb2.LogRecord] | type[trace_pb2.Span]
) -> Iterator[tuple[resource_pb2.Resource, list[tuple[int, object]]]]:
    """Walk a request that failed to parse as a whole: per resource, its records, each parsed alone.

    Yields (resource, [(index, record or the exception that refused it)]). Indexes count
    records within their scope, like the messages of :func:`decode_logs`.
    """
    for res_buf in _children(data, 1):
        resource = resource_pb2.Resource()
        records: list[tuple[int, object]] = []
        for number, value in _fields(res_buf):
            if number == 1 and value is not None:
                try:
                    resource = resource_pb2.Resource.FromString(value)
                except ProtoDecodeError:
                    resource = resource_pb2.Resource()  # no origin; the records are still read
            elif number == 2 and value is not None:
                for i, rec_buf in enumerate(_children(value, 2)):
                    try:
                        records.append((i, record_type.FromString(rec_buf)))
                    except ProtoDecodeError as exc:
                        records.append((i, _bad_record(f"{kind} {i}", exc)))
        yield resource, records


def _parse(
    data: bytes,
    limits: Limits,
    request_type: type[logs_service_pb2.ExportLogsServiceRequest]
    | type[trace_service_pb2.ExportTraceServiceRequest],
    decode_request: Callable[[Any, Limits], Decoded],
    kind: str,
    record_type: type[logs_pb2.LogRecord] | type[trace_pb2.Span],
    decode_record: Callable[[Decoded, int, Any, ev.Origin, Limits], None],
) -> Decoded:
    """Parse a whole request; when protobuf refuses it, split it and reject only the bad records."""
    try:
        return decode_request(request_type.FromString(data), limits)
    except ProtoDecodeError:
        pass
    out = Decoded()
    for resource, records in _split(data, kind, record_type):
        origin = _origin(resource, limits)
        for i, record in records:
            if isinstance(record, Exception):
                out.reject(f"{kind} {i}", record)
            else:
                decode_record(out, i, record, origin, limits)
    return out


def parse_logs(data: bytes, limits: Limits) -> Decoded:
    """Decode a serialized ``ExportLogsServiceRequest``, rejecting only records that do not parse.

    Raises:
        RequestError: the request's framing is broken (nothing could be read).
    """
    return _parse(
        data,
        limits,
        logs_service_pb2.ExportLogsServiceRequest,
        decode_logs,
        "log record",
        logs_pb2.LogRecord,
        _decode_log_record,
    )


def parse_traces(data: bytes, limits: Limits) -> Decoded:
    """Decode a serialized ``ExportTraceServiceRequest``, rejecting only spans that do not parse.

    Raises:
        RequestError: the request's framing is broken (nothing could be read).
    """
    return _parse(
        data,
        limits,
        trace_service_pb2.ExportTraceServiceRequest,
        decode_traces,
        "span",
        trace_pb2.Span,
        lambda out, _i, span, origin, lim: _decode_span(out, span, origin, lim),
    )
