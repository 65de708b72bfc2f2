"""OTLP/JSON export requests -> the same :class:`~vfo_otel.receiver.Decoded` as OTLP protobuf. Pure.

OTLP/JSON is the protobuf JSON mapping with three differences (OTLP specification, "JSON
Protobuf Encoding"):

1. ``traceId`` and ``spanId`` (in every OTLP message: ``Span``, ``Span.Link``, ``LogRecord``,
   metric ``Exemplar``; and so ``parentSpanId``) are case-insensitive **hex** strings, not
   base64. :func:`_hex_ids` is the one pre-pass that turns them into the base64 that
   :mod:`google.protobuf.json_format` reads for ``bytes`` fields. It rewrites object *keys*
   of those names only; attribute keys are JSON values (``{"key": "traceId", ...}``) and are
   never touched.
2. Enum values are integers. ``json_format`` reads integers (and, leniently, names).
3. Unknown field names are ignored (``ignore_unknown_fields=True``).

64-bit integers arrive as decimal strings or numbers; ``json_format`` reads both.

Per-record rejection, as for protobuf (:func:`~vfo_otel.receiver.parse_logs`): the request
is parsed one record at a time along the OTLP nesting (``resourceLogs > scopeLogs >
logRecords``, ``resourceSpans > scopeSpans > spans``). A record that does not parse (a value
of the wrong type, a bad hex id, a lone surrogate escape such as ``"\\udc80"``, which no
protobuf string can hold) is rejected on its own with its index; its batch-mates are kept. A
resource that does not parse gives no origin, as in the protobuf split. The parsed request
is serialized and goes through :func:`~vfo_otel.receiver.parse_logs` /
:func:`~vfo_otel.receiver.parse_traces`, so limits, rejection and counts are the protobuf
path's own. A body that is not a JSON object, or whose nesting is not lists of objects, is
refused whole (:class:`~vfo_otel.receiver.RequestError`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from vfo_otel.contract import Limits
from vfo_otel.receiver._decode import Decoded, RequestError, parse_logs, parse_traces

__all__ = ["parse_logs_json", "parse_metrics_json", "parse_traces_json"]

#: Object keys whose string values OTLP/JSON carries as hex (lowerCamelCase, and the proto
#: names json_format also accepts).
_HEX_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def _hex_ids(value: Any) -> Any:
    """A copy of an OTLP/JSON value with every hex trace/span id as base64 (pure).

    Raises:
        ValueError: an id is not an even-length hex string.
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in _HEX_KEYS and isinstance(v, str):
                if not _HEX.fullmatch(v):
                    raise ValueError(f"{k} {v[:64]!r} is not a hex string (OTLP/JSON ids are hex)")
                out[k] = base64.b64encode(bytes.fromhex(v)).decode()
            else:
                out[k] = _hex_ids(v)
        return out
    if isinstance(value, list):
        return [_hex_ids(v) for v in value]
    return value


def _load(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise RequestError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError("an OTLP/JSON request is a JSON object")
    return doc


def _children(doc: dict[str, Any], camel: str, snake: str, where: str) -> list[dict[str, Any]]:
    """The list under ``camel`` (or proto name ``snake``); RequestError unless a list of objects."""
    value = doc.get(camel, doc.get(snake))
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise RequestError(f"{where}.{camel} is not a list of objects")
    return value


def _parse_into(doc: dict[str, Any], msg: Message) -> None:
    json_format.ParseDict(_hex_ids(doc), msg, ignore_unknown_fields=True)


@dataclass(frozen=True)
class _Shape:
    """The OTLP nesting of one signal: JSON names, proto field names and the bytes parser."""

    request: type[Message]
    resources: tuple[str, str]  # (JSON name, proto field name)
    scopes: tuple[str, str]
    records: tuple[str, str]
    kind: str  # "log record" / "span": how rejection messages name a record
    parse: Callable[[bytes, Limits], Decoded]


_LOGS = _Shape(
    logs_service_pb2.ExportLogsServiceRequest,
    ("resourceLogs", "resource_logs"),
    ("scopeLogs", "scope_logs"),
    ("logRecords", "log_records"),
    "log record",
    parse_logs,
)
_TRACES = _Shape(
    trace_service_pb2.ExportTraceServiceRequest,
    ("resourceSpans", "resource_spans"),
    ("scopeSpans", "scope_spans"),
    ("spans", "spans"),
    "span",
    parse_traces,
)


def _parse(data: bytes, limits: Limits, shape: _Shape) -> Decoded:
    doc = _load(data)
    request = shape.request()
    bad: list[tuple[str, Exception]] = []
    res_json, res_field = shape.resources
    scope_json, scope_field = shape.scopes
    rec_json, rec_field = shape.records
    for r_i, res_doc in enumerate(_children(doc, res_json, res_field, "request")):
        res_msg = getattr(request, res_field).add()
        head = {k: v for k, v in res_doc.items() if k not in shape.scopes}
        try:
            _parse_into(head, res_msg)
        except (json_format.ParseError, ValueError):
            res_msg.Clear()  # no origin; its records are still read (as in the protobuf split)
        for s_i, scope_doc in enumerate(_children(res_doc, scope_json, scope_field, f"{res_json}[{r_i}]")):
            scope_msg = getattr(res_msg, scope_field).add()
            try:
                _parse_into({k: v for k, v in scope_doc.items() if k not in shape.records}, scope_msg)
            except (json_format.ParseError, ValueError):
                scope_msg.Clear()
            where = f"{res_json}[{r_i}].{scope_json}[{s_i}]"
            for i, rec_doc in enumerate(_children(scope_doc, rec_json, rec_field, where)):
                rec_msg = getattr(scope_msg, rec_field).add()
                try:
                    _parse_into(rec_doc, rec_msg)
                except (json_format.ParseError, ValueError) as exc:
                    # An empty record stands in for it (keeping its batch-mates' indexes); the
                    # decoder counts an empty record as ignored, which is corrected below.
                    rec_msg.Clear()
                    bad.append(
                        (f"{shape.kind} {i}", ValueError(f"not a valid OTLP/JSON {shape.kind}: {exc}"))
                    )
    decoded = shape.parse(request.SerializeToString(), limits)
    for where, reason in bad:
        decoded.ignored -= 1
        decoded.reject(where, reason)
    return decoded


def parse_logs_json(data: bytes, limits: Limits) -> Decoded:
    """Decode an OTLP/JSON ``ExportLogsServiceRequest`` (UTF-8 bytes), rejecting only bad records.

    Raises:
        RequestError: the body is not a JSON object of the OTLP nesting (nothing could be read).
    """
    return _parse(data, limits, _LOGS)


def parse_traces_json(data: bytes, limits: Limits) -> Decoded:
    """Decode an OTLP/JSON ``ExportTraceServiceRequest`` (UTF-8 bytes), rejecting only bad spans.

    Raises:
        RequestError: the body is not a JSON object of the OTLP nesting (nothing could be read).
    """
    return _parse(data, limits, _TRACES)


def parse_metrics_json(data: bytes) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """Parse an OTLP/JSON ``ExportMetricsServiceRequest`` as a whole (metrics are only counted).

    Raises:
        RequestError: the body is not a valid OTLP/JSON metrics request.
    """
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    try:
        _parse_into(_load(data), request)
    except (json_format.ParseError, ValueError) as exc:
        if isinstance(exc, RequestError):
            raise
        raise RequestError(f"not a valid OTLP/JSON metrics request: {exc}") from None
    return request
