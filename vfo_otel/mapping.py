"""Pure mapping between ``vfo.events.v1.RunEvent`` and OpenTelemetry, both directions.

No I/O, no clocks, no SDK state: values in, values out. The emitter
(:mod:`vfo_otel.emitter`) applies the forward direction through the OTel SDK;
the receiver applies the reverse direction to OTLP protobuf messages
(``opentelemetry.proto.logs.v1.LogRecord``, ``opentelemetry.proto.trace.v1.Span``).
Keys, names and units come from :mod:`vfo_otel.conventions` only.

Forward:
    :func:`trace_id_for_run`, :func:`span_id_for`, :func:`span_start`,
    :func:`span_event`, :func:`span_end`, :func:`log_record`, :func:`metric_points`.
Reverse:
    :func:`event_from_attributes`, :func:`events_from_log_record`,
    :func:`events_from_span`, :func:`otlp_attributes_to_dict`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from vfo_otel import conventions as c
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.conventions import Key

__all__ = [
    "DecodeError",
    "LogRecordData",
    "MetricPoint",
    "SpanEventData",
    "SpanStartData",
    "SpanStatusData",
    "clean_text",
    "entity_key",
    "event_from_attributes",
    "events_from_log_record",
    "events_from_span",
    "is_vfo_log_record",
    "log_record",
    "metric_points",
    "normalize",
    "otlp_attributes_to_dict",
    "parent_key",
    "scope_name",
    "span_end",
    "span_event",
    "span_id_for",
    "span_start",
    "state_name",
    "trace_id_for_run",
]

AttrValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]

_STATE_BY_NAME = {v: k for k, v in c.STATE_NAMES.items()}
_SCOPE_BY_NAME = {v: k for k, v in c.SCOPE_NAMES.items()}

# OTel log severity numbers (logs data model): INFO=9, WARN=13, ERROR=17.
_SEVERITY: dict[int, tuple[int, str]] = {
    ev.STATE_QUEUED: (9, "INFO"),
    ev.STATE_RUNNING: (9, "INFO"),
    ev.STATE_WAITING: (9, "INFO"),
    ev.STATE_COMPLETE: (9, "INFO"),
    ev.STATE_SKIPPED: (13, "WARN"),
    ev.STATE_FAILED: (17, "ERROR"),
}


class DecodeError(ValueError):
    """An OTLP record claims to be a vfo event but does not decode into a valid RunEvent."""


def clean_text(text: str) -> str:
    """The one escaping rule for text going into an event: valid UTF-8, always.

    Protobuf strings must be valid UTF-8, and a Python ``str`` may hold lone surrogates
    (``os.fsdecode`` of a non-UTF-8 file name, ``surrogateescape``, a broken JSON ``\\ud800``)
    that no protobuf message accepts. A surrogate pair is combined into its character;
    every lone surrogate becomes U+FFFD (the replacement character). Other text is returned
    unchanged (the common case costs one encode).
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


# ---------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------


def state_name(state: int) -> str:
    """Canonical state name (``queued`` ...); raises ValueError for unspecified/unknown values."""
    try:
        return c.STATE_NAMES[state]
    except KeyError:
        raise ValueError(f"unknown or unspecified state {state}") from None


def scope_name(scope: int) -> str:
    """Scope name (``run``, ``pipeline``, ``asset``, ``node``); raises ValueError otherwise."""
    try:
        return c.SCOPE_NAMES[scope]
    except KeyError:
        raise ValueError(f"unknown or unspecified scope {scope}") from None


def entity_key(event: ev.RunEvent) -> tuple[str, ...]:
    """The key of the entity an event is about.

    Returns:
        ``(run,)``, ``(run, pipeline)``, ``(run, pipeline, asset)`` or
        ``(run, pipeline, asset, node, attempt)`` by scope.
    """
    scope = event.scope
    if scope == ev.SCOPE_RUN:
        return (event.run_id,)
    if scope == ev.SCOPE_PIPELINE:
        return (event.run_id, event.pipeline_id)
    if scope == ev.SCOPE_ASSET:
        return (event.run_id, event.pipeline_id, event.asset_id)
    if scope == ev.SCOPE_NODE:
        return (event.run_id, event.pipeline_id, event.asset_id, event.node_id, str(event.attempt_id))
    raise ValueError(f"unknown or unspecified scope {scope}")


def parent_key(key: tuple[str, ...]) -> tuple[str, ...] | None:
    """The parent entity key (node attempt -> asset -> pipeline -> run -> None)."""
    if len(key) == 5:
        return key[:3]
    if len(key) == 1:
        return None
    return key[:-1]


def _digest(prefix: str, parts: Iterable[str], size: int) -> int:
    h = hashlib.sha256(prefix.encode())
    for p in parts:
        h.update(b"\x1f" + p.encode("utf-8", "surrogatepass"))
    value = int.from_bytes(h.digest()[:size], "big")
    return value or 1  # all-zero ids are invalid in OTLP


def trace_id_for_run(run_id: str) -> int:
    """Deterministic 128-bit trace id of a run: the first 16 bytes of SHA-256("vfo-trace" | run_id)."""
    return _digest("vfo-trace", [run_id], 16)


def span_id_for(key: tuple[str, ...]) -> int:
    """Deterministic 64-bit span id of an entity key (see :func:`entity_key`)."""
    return _digest("vfo-span", key, 8)


# ---------------------------------------------------------------------------
# Forward: RunEvent -> OpenTelemetry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SpanStartData:
    """How to start the span of an entity.

    Attributes:
        name: Span name (from conventions.SPAN_NAMES).
        trace_id: 128-bit trace id (from the run id).
        span_id: 64-bit span id (from the entity key).
        parent_span_id: 64-bit span id of the parent entity, or None for the run span.
        attributes: Span attributes known at start.
    """

    name: str
    trace_id: int
    span_id: int
    parent_span_id: int | None
    attributes: dict[str, AttrValue]


@dataclass(frozen=True)
class SpanEventData:
    """One span event per transition: name, attributes, timestamp (ns since epoch)."""

    name: str
    attributes: dict[str, AttrValue]
    timestamp_ns: int


@dataclass(frozen=True)
class SpanStatusData:
    """Span status and end-time attributes for a terminal transition.

    Attributes:
        ok: False when the status is ERROR.
        description: Status description (error detail, truncated), "" when ok.
        attributes: Attributes set on the span at end (state, error.type, exit code, cicd result).
    """

    ok: bool
    description: str
    attributes: dict[str, AttrValue]


@dataclass(frozen=True)
class LogRecordData:
    """One OTLP log record: the live channel of an event.

    Attributes:
        timestamp_ns: Event time, ns since epoch.
        severity_number: OTel severity number (9 INFO, 13 WARN, 17 ERROR).
        severity_text: ``INFO``, ``WARN`` or ``ERROR``.
        body: Short human-readable text.
        event_name: OTLP ``event_name`` (conventions.LOG_EVENT_NAMES).
        attributes: Every canonical field of the event.
        trace_id: Trace id of the run.
        span_id: Span id of the entity.
    """

    timestamp_ns: int
    severity_number: int
    severity_text: str
    body: str
    event_name: str
    attributes: dict[str, AttrValue]
    trace_id: int
    span_id: int


@dataclass(frozen=True)
class MetricPoint:
    """One metric update: instrument name, value (count, seconds or delta), labels."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)


def _entity_attributes(event: ev.RunEvent) -> dict[str, AttrValue]:
    attrs: dict[str, AttrValue] = {Key.SCOPE: scope_name(event.scope), Key.RUN_ID: event.run_id}
    if event.scope >= ev.SCOPE_PIPELINE:
        attrs[Key.PIPELINE_ID] = event.pipeline_id
    if event.scope >= ev.SCOPE_ASSET:
        attrs[Key.ASSET_ID] = event.asset_id
    if event.scope == ev.SCOPE_NODE:
        attrs[Key.NODE_ID] = event.node_id
        attrs[Key.ATTEMPT_ID] = event.attempt_id
    if event.stage_id:
        attrs[Key.STAGE_ID] = event.stage_id
    return attrs


def _refs_to_json(refs: Sequence[ev.AssetRef]) -> str:
    return json.dumps([json_format.MessageToDict(r) for r in refs], separators=(",", ":"), ensure_ascii=False)


def _transition_attributes(event: ev.RunEvent) -> dict[str, AttrValue]:
    """The per-event fields (everything but the entity)."""
    attrs: dict[str, AttrValue] = {
        Key.EVENT_ID: event.event_id,
        Key.STATE: state_name(event.state),
    }
    if event.source_id:
        attrs[Key.EVENT_SOURCE] = event.source_id
    if event.sequence:
        attrs[Key.EVENT_SEQUENCE] = event.sequence
    if event.previous_state:
        attrs[Key.PREVIOUS_STATE] = state_name(event.previous_state)
    if event.HasField("duration"):
        attrs[Key.DURATION_NS] = event.duration.ToNanoseconds()
    if event.HasField("exit_code"):
        attrs[Key.EXIT_CODE] = event.exit_code
    cmd = event.command
    if cmd.command_line:
        attrs[Key.COMMAND_LINE] = cmd.command_line
    if cmd.argv:
        attrs[Key.COMMAND_ARGS] = list(cmd.argv)
    if cmd.action:
        attrs[Key.ACTION] = cmd.action
    if event.inputs:
        attrs[Key.INPUTS] = _refs_to_json(event.inputs)
    if event.outputs:
        attrs[Key.OUTPUTS] = _refs_to_json(event.outputs)
    if event.upstream_node_ids:
        attrs[Key.UPSTREAM] = list(event.upstream_node_ids)
    if event.error.error_class:
        attrs[Key.ERROR_TYPE] = event.error.error_class
    if event.error.detail:
        attrs[Key.ERROR_DETAIL] = event.error.detail
    if event.synthetic:
        attrs[Key.SYNTHETIC] = True
    if event.heartbeat:
        attrs[Key.HEARTBEAT] = True
    for k in sorted(event.attributes):
        attrs[c.ATTR_PREFIX_EXTRA + k] = event.attributes[k]
    return attrs


def span_start(event: ev.RunEvent) -> SpanStartData:
    """How to start the span of ``event``'s entity (run > pipeline > asset > node attempt).

    Raises:
        ValueError: unspecified scope.
    """
    key = entity_key(event)
    scope = scope_name(event.scope)
    name = c.SPAN_NAMES[scope].format(pipeline_id=event.pipeline_id, node_id=event.node_id)
    attrs = _entity_attributes(event)
    attrs[Key.CICD_PIPELINE_RUN_ID] = event.run_id
    if event.scope >= ev.SCOPE_PIPELINE:
        attrs[Key.CICD_PIPELINE_NAME] = event.pipeline_id
    if event.scope == ev.SCOPE_NODE:
        attrs[Key.CICD_TASK_NAME] = event.node_id
        attrs[Key.CICD_TASK_RUN_ID] = "/".join(key[1:])
    parent = parent_key(key)
    return SpanStartData(
        name=name,
        trace_id=trace_id_for_run(event.run_id),
        span_id=span_id_for(key),
        parent_span_id=span_id_for(parent) if parent else None,
        attributes=attrs,
    )


def span_event(event: ev.RunEvent) -> SpanEventData:
    """The span event recording one transition (all per-event fields as attributes)."""
    return SpanEventData(c.SPAN_EVENT_NAME, _transition_attributes(event), event.time.ToNanoseconds())


def span_end(event: ev.RunEvent) -> SpanStatusData:
    """Status and end attributes for a terminal event (ERROR with ``error.type`` when failed)."""
    attrs: dict[str, AttrValue] = {Key.STATE: state_name(event.state)}
    result = c.CICD_RESULT.get(event.state)
    if result:
        attrs[Key.CICD_TASK_RUN_RESULT if event.scope == ev.SCOPE_NODE else Key.CICD_PIPELINE_RESULT] = result
    if event.HasField("exit_code"):
        attrs[Key.EXIT_CODE] = event.exit_code
    if event.command.command_line:
        attrs[Key.COMMAND_LINE] = event.command.command_line
    if event.command.argv:
        attrs[Key.COMMAND_ARGS] = list(event.command.argv)
    if event.command.action:
        attrs[Key.ACTION] = event.command.action
    if event.state == ev.STATE_FAILED:
        attrs[Key.ERROR_TYPE] = event.error.error_class or "_OTHER"
        return SpanStatusData(False, event.error.detail[:1024], attrs)
    return SpanStatusData(True, "", attrs)


def _body(event: ev.RunEvent) -> str:
    scope = scope_name(event.scope)
    what = {
        "run": f"run {event.run_id}",
        "pipeline": f"pipeline {event.pipeline_id}",
        "asset": f"asset {event.asset_id} in {event.pipeline_id}",
        "node": (
            f"node {event.node_id} attempt {event.attempt_id} for {event.asset_id} in {event.pipeline_id}"
        ),
    }[scope]
    text = f"{what} {state_name(event.state)}"
    if event.state == ev.STATE_FAILED and event.error.error_class:
        text += f": {event.error.error_class}"
    if event.HasField("exit_code"):
        text += f" (exit {event.exit_code})"
    return text


def log_record(event: ev.RunEvent) -> LogRecordData:
    """The log record of an event: every canonical field as an attribute, trace/span id of its entity."""
    severity_number, severity_text = _SEVERITY[event.state] if event.state in _SEVERITY else (9, "INFO")
    attrs = _entity_attributes(event)
    attrs.update(_transition_attributes(event))
    return LogRecordData(
        timestamp_ns=event.time.ToNanoseconds(),
        severity_number=severity_number,
        severity_text=severity_text,
        body=_body(event),
        event_name=c.HEARTBEAT_EVENT_NAME if event.heartbeat else c.LOG_EVENT_NAMES[scope_name(event.scope)],
        attributes=attrs,
        trace_id=trace_id_for_run(event.run_id),
        span_id=span_id_for(entity_key(event)),
    )


def metric_points(event: ev.RunEvent) -> list[MetricPoint]:
    """Low-cardinality metric updates for one event; labels only from conventions.METRIC_LABELS.

    ``vfo.nodes.active`` moves by +1 when a node attempt enters ``running`` and by -1
    when it leaves it, judged by ``previous_state`` (the emitter fills it in).
    A heartbeat is no transition: it has no metric points.
    """
    if event.heartbeat:
        return []
    scope = scope_name(event.scope)
    state = state_name(event.state)
    base: dict[str, str] = {Key.SCOPE: scope}
    if event.scope >= ev.SCOPE_PIPELINE:
        base[Key.PIPELINE_ID] = event.pipeline_id
    if event.stage_id:
        base[Key.STAGE_ID] = event.stage_id
    points = [MetricPoint("vfo.transitions", 1, {**base, Key.STATE: state})]
    if event.state in c.TERMINAL_STATES and event.HasField("duration"):
        seconds = max(event.duration.ToNanoseconds(), 0) / 1e9
        points.append(MetricPoint("vfo.duration", seconds, {**base, Key.STATE: state}))
    if event.state == ev.STATE_FAILED:
        error_type = event.error.error_class or "_OTHER"
        points.append(MetricPoint("vfo.errors", 1, {**base, Key.ERROR_TYPE: error_type}))
    if event.scope == ev.SCOPE_NODE and event.state != event.previous_state:
        active = {k: v for k, v in base.items() if k != Key.SCOPE}
        if event.state == ev.STATE_RUNNING:
            points.append(MetricPoint("vfo.nodes.active", 1, active))
        elif event.previous_state == ev.STATE_RUNNING:
            points.append(MetricPoint("vfo.nodes.active", -1, active))
    return points


def normalize(event: ev.RunEvent) -> ev.RunEvent:
    """A copy with empty sub-messages cleared (an empty Command or Error means "not available").

    Two events that mean the same thing compare equal after normalize().
    """
    out = ev.RunEvent()
    out.CopyFrom(event)
    if not (out.command.command_line or out.command.argv or out.command.action):
        out.ClearField("command")
    if not (out.error.error_class or out.error.detail):
        out.ClearField("error")
    return out


# ---------------------------------------------------------------------------
# Reverse: OTLP -> RunEvent
# ---------------------------------------------------------------------------


def _any_value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if kind is None:
        return None
    return getattr(value, kind)


def otlp_attributes_to_dict(attributes: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    """OTLP ``KeyValue`` list -> ``{key: python value}`` (arrays become lists, kvlists dicts)."""
    return {kv.key: _any_value(kv.value) for kv in attributes}


def _get(attrs: Mapping[str, Any], key: str, kind: type, required: bool = False) -> Any:
    if key not in attrs:
        if required:
            raise DecodeError(f"missing attribute {str(key)!r}")
        return None
    value = attrs[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise DecodeError(f"attribute {str(key)!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _get_str_list(attrs: Mapping[str, Any], key: str) -> list[str]:
    value = attrs.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DecodeError(f"attribute {str(key)!r} must be an array of strings")
    return value


def _refs_from_json(key: str, text: str | None) -> list[ev.AssetRef]:
    if text is None:
        return []
    try:
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("not a JSON array")
        return [json_format.ParseDict(item, ev.AssetRef()) for item in items]
    except (ValueError, json_format.ParseError) as exc:
        raise DecodeError(f"attribute {str(key)!r} is not a JSON array of AssetRef: {exc}") from exc


def event_from_attributes(attrs: Mapping[str, Any], time_ns: int) -> ev.RunEvent:
    """Decode the canonical attributes (log record, or span + span event merged) into a RunEvent.

    Args:
        attrs: attribute key -> python value (see :func:`otlp_attributes_to_dict`).
        time_ns: the record's timestamp, ns since epoch.

    Raises:
        DecodeError: a required attribute is missing, or one has the wrong type or value.
    """
    event = ev.RunEvent()
    event.event_id = _get(attrs, Key.EVENT_ID, str, required=True)
    if not event.event_id:
        raise DecodeError(f"attribute {str(Key.EVENT_ID)!r} is empty")
    event.time.FromNanoseconds(time_ns)
    scope = _get(attrs, Key.SCOPE, str, required=True)
    if scope not in _SCOPE_BY_NAME:
        raise DecodeError(f"unknown scope {scope!r}")
    event.scope = _SCOPE_BY_NAME[scope]  # type: ignore[assignment]
    state = _get(attrs, Key.STATE, str, required=True)
    if state not in _STATE_BY_NAME:
        raise DecodeError(f"unknown state {state!r}")
    event.state = _STATE_BY_NAME[state]  # type: ignore[assignment]
    previous = _get(attrs, Key.PREVIOUS_STATE, str)
    if previous is not None:
        if previous not in _STATE_BY_NAME:
            raise DecodeError(f"unknown previous state {previous!r}")
        event.previous_state = _STATE_BY_NAME[previous]  # type: ignore[assignment]
    event.run_id = _get(attrs, Key.RUN_ID, str, required=True)
    if not event.run_id:
        raise DecodeError(f"attribute {str(Key.RUN_ID)!r} is empty")
    need = {
        ev.SCOPE_PIPELINE: (Key.PIPELINE_ID,),
        ev.SCOPE_ASSET: (Key.PIPELINE_ID, Key.ASSET_ID),
        ev.SCOPE_NODE: (Key.PIPELINE_ID, Key.ASSET_ID, Key.NODE_ID, Key.ATTEMPT_ID),
    }.get(event.scope, ())
    for key in (Key.PIPELINE_ID, Key.ASSET_ID, Key.NODE_ID, Key.STAGE_ID):
        value = _get(attrs, key, str, required=key in need)
        if key in need and not value:
            raise DecodeError(f"attribute {str(key)!r} is empty")
        if value:
            setattr(event, key.removeprefix("vfo.").replace(".", "_"), value)
    attempt = _get(attrs, Key.ATTEMPT_ID, int, required=Key.ATTEMPT_ID in need)
    if attempt is not None:
        if not 1 <= attempt <= 2**32 - 1:
            raise DecodeError(f"attribute {str(Key.ATTEMPT_ID)!r} out of range: {attempt}")
        event.attempt_id = attempt
    source = _get(attrs, Key.EVENT_SOURCE, str)
    if source:
        event.source_id = source
    seq = _get(attrs, Key.EVENT_SEQUENCE, int)
    if seq is not None:
        if not 0 <= seq < 2**64:
            raise DecodeError(f"attribute {str(Key.EVENT_SEQUENCE)!r} out of range")
        event.sequence = seq
    duration = _get(attrs, Key.DURATION_NS, int)
    if duration is not None:
        event.duration.FromNanoseconds(duration)
    exit_code = _get(attrs, Key.EXIT_CODE, int)
    if exit_code is not None:
        if not -(2**31) <= exit_code < 2**31:
            raise DecodeError(f"attribute {str(Key.EXIT_CODE)!r} out of range")
        event.exit_code = exit_code
    line = _get(attrs, Key.COMMAND_LINE, str)
    argv = _get_str_list(attrs, Key.COMMAND_ARGS)
    action = _get(attrs, Key.ACTION, str)
    if line:
        event.command.command_line = line
    if argv:
        event.command.argv.extend(argv)
    if action:
        event.command.action = action
    event.inputs.extend(_refs_from_json(Key.INPUTS, _get(attrs, Key.INPUTS, str)))
    event.outputs.extend(_refs_from_json(Key.OUTPUTS, _get(attrs, Key.OUTPUTS, str)))
    event.upstream_node_ids.extend(_get_str_list(attrs, Key.UPSTREAM))
    error_class = _get(attrs, Key.ERROR_TYPE, str)
    detail = _get(attrs, Key.ERROR_DETAIL, str)
    if error_class:
        event.error.error_class = error_class
    if detail:
        event.error.detail = detail
    event.synthetic = bool(_get(attrs, Key.SYNTHETIC, bool))
    event.heartbeat = bool(_get(attrs, Key.HEARTBEAT, bool))
    for attr_key, value in attrs.items():
        if attr_key.startswith(c.ATTR_PREFIX_EXTRA):
            if not isinstance(value, str):
                raise DecodeError(f"attribute {attr_key!r} must be str")
            event.attributes[attr_key[len(c.ATTR_PREFIX_EXTRA) :]] = value
    return event


def is_vfo_log_record(record: logs_pb2.LogRecord) -> bool:
    """True when an OTLP log record claims to be a vfo event (event_name or ``vfo.event.id``)."""
    if record.event_name.startswith("vfo."):
        return True
    return any(kv.key == Key.EVENT_ID for kv in record.attributes)


def events_from_log_record(record: logs_pb2.LogRecord) -> ev.RunEvent:
    """Decode one OTLP LogRecord (see :func:`log_record`) into a RunEvent.

    Raises:
        DecodeError: the record is not a valid vfo event.
    """
    time_ns = record.time_unix_nano or record.observed_time_unix_nano
    return event_from_attributes(otlp_attributes_to_dict(record.attributes), time_ns)


def events_from_span(span: trace_pb2.Span) -> tuple[list[ev.RunEvent], list[DecodeError]]:
    """Decode the ``vfo.transition`` span events of one OTLP Span into RunEvents.

    Span attributes (the entity) and each span event's attributes (the transition) are
    merged; span-event keys win.

    Returns:
        (events, errors): one entry per vfo span event, decoded or rejected.
    """
    span_attrs = otlp_attributes_to_dict(span.attributes)
    entity = {k: v for k, v in span_attrs.items() if k in _ENTITY_KEYS}
    events: list[ev.RunEvent] = []
    errors: list[DecodeError] = []
    for span_ev in span.events:
        if span_ev.name != c.SPAN_EVENT_NAME:
            continue
        attrs = dict(entity)
        attrs.update(otlp_attributes_to_dict(span_ev.attributes))
        try:
            events.append(event_from_attributes(attrs, span_ev.time_unix_nano))
        except DecodeError as exc:
            errors.append(exc)
    return events, errors


_ENTITY_KEYS = frozenset(
    {Key.SCOPE, Key.RUN_ID, Key.PIPELINE_ID, Key.ASSET_ID, Key.NODE_ID, Key.STAGE_ID, Key.ATTEMPT_ID}
)
