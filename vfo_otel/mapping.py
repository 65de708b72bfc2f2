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

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

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
    unchanged (the common case costs one ``isascii``, or one encode).
    """
    if text.isascii():  # no surrogate is ASCII
        return text
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


#: Ids remembered by trace_id_for_run and span_id_for (live runs and entities; LRU, bounded).
_ID_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_ID_CACHE_SIZE)
def trace_id_for_run(run_id: str) -> int:
    """Deterministic 128-bit trace id of a run: the first 16 bytes of SHA-256("vfo-trace" | run_id)."""
    return _digest("vfo-trace", [run_id], 16)


@functools.lru_cache(maxsize=_ID_CACHE_SIZE)
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
    scope = event.scope
    attrs: dict[str, AttrValue] = {_K_SCOPE: scope_name(scope), _K_RUN: event.run_id}
    if scope >= _SCOPE_PIPELINE:
        attrs[_K_PIPELINE] = event.pipeline_id
        if scope >= _SCOPE_ASSET:
            attrs[_K_ASSET] = event.asset_id
            if scope == _SCOPE_NODE:
                attrs[_K_NODE] = event.node_id
                attrs[_K_ATTEMPT] = event.attempt_id
    stage_id = event.stage_id
    if stage_id:
        attrs[_K_STAGE] = stage_id
    return attrs


_K_SCOPE, _K_RUN, _K_PIPELINE, _K_ASSET = Key.SCOPE, Key.RUN_ID, Key.PIPELINE_ID, Key.ASSET_ID
_K_NODE, _K_ATTEMPT, _K_STAGE = Key.NODE_ID, Key.ATTEMPT_ID, Key.STAGE_ID
_SCOPE_PIPELINE, _SCOPE_ASSET, _SCOPE_NODE = ev.SCOPE_PIPELINE, ev.SCOPE_ASSET, ev.SCOPE_NODE


#: AssetRef's fields in field-number order, as the fast path of _refs_to_json knows them.
_ASSET_REF_FIELDS = ("asset_id", "uri", "role", "size_bytes", "media_type")
_ASSET_REF_FAST = tuple(f.name for f in ev.AssetRef.DESCRIPTOR.fields) == _ASSET_REF_FIELDS


def _ref_json(ref: ev.AssetRef) -> str:
    """``json.dumps(json_format.MessageToDict(ref), separators=(",", ":"), ensure_ascii=False)``
    built from the fields directly (about 8x faster).

    The protobuf JSON mapping: lowerCamelCase keys in field-number order, empty strings
    omitted, the optional uint64 ``size_bytes`` present when set (even 0), as a string.
    Strings are escaped by the json module's own function for ``ensure_ascii=False``.
    """
    parts = []
    if ref.asset_id:
        parts.append('"assetId":' + _json_str(ref.asset_id))
    if ref.uri:
        parts.append('"uri":' + _json_str(ref.uri))
    if ref.role:
        parts.append('"role":' + _json_str(ref.role))
    if ref.HasField("size_bytes"):
        parts.append(f'"sizeBytes":"{ref.size_bytes}"')
    if ref.media_type:
        parts.append('"mediaType":' + _json_str(ref.media_type))
    return "{" + ",".join(parts) + "}"


def _refs_to_json(refs: Sequence[ev.AssetRef]) -> str:
    if _ASSET_REF_FAST:
        return "[" + ",".join([_ref_json(r) for r in refs]) + "]"
    # pragma: no cover - AssetRef gained a field: the generic (slower) mapping stays exact
    items = [json_format.MessageToDict(r) for r in refs]
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


_json_str = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) escapes str with


# Attribute keys as module constants: an Enum member lookup (Key.X) costs ~65 ns, a global ~5 ns.
_K_EVENT_ID, _K_STATE, _K_SOURCE, _K_SEQUENCE = Key.EVENT_ID, Key.STATE, Key.EVENT_SOURCE, Key.EVENT_SEQUENCE
_K_PREVIOUS, _K_DURATION, _K_EXIT = Key.PREVIOUS_STATE, Key.DURATION_NS, Key.EXIT_CODE
_K_LINE = Key.COMMAND_LINE
_K_ARGS, _K_ACTION, _K_INPUTS, _K_OUTPUTS = Key.COMMAND_ARGS, Key.ACTION, Key.INPUTS, Key.OUTPUTS
_K_UPSTREAM, _K_ERROR_TYPE, _K_DETAIL = Key.UPSTREAM, Key.ERROR_TYPE, Key.ERROR_DETAIL
_K_SYNTHETIC, _K_HEARTBEAT = Key.SYNTHETIC, Key.HEARTBEAT
_STATE_NAMES = c.STATE_NAMES


def _transition_attributes(event: ev.RunEvent) -> dict[str, AttrValue]:
    """The per-event fields (everything but the entity)."""
    attrs: dict[str, AttrValue] = {
        _K_EVENT_ID: event.event_id,
        _K_STATE: _STATE_NAMES.get(event.state) or state_name(event.state),
    }
    if event.source_id:
        attrs[_K_SOURCE] = event.source_id
    if event.sequence:
        attrs[_K_SEQUENCE] = event.sequence
    previous = event.previous_state
    if previous:
        attrs[_K_PREVIOUS] = _STATE_NAMES.get(previous) or state_name(previous)
    if event.HasField("duration"):
        attrs[_K_DURATION] = event.duration.ToNanoseconds()
    if event.HasField("exit_code"):
        attrs[_K_EXIT] = event.exit_code
    if event.HasField("command"):
        cmd = event.command
        if cmd.command_line:
            attrs[_K_LINE] = cmd.command_line
        if cmd.argv:
            attrs[_K_ARGS] = list(cmd.argv)
        if cmd.action:
            attrs[_K_ACTION] = cmd.action
    if event.inputs:
        attrs[_K_INPUTS] = _refs_to_json(event.inputs)
    if event.outputs:
        attrs[_K_OUTPUTS] = _refs_to_json(event.outputs)
    if event.upstream_node_ids:
        attrs[_K_UPSTREAM] = list(event.upstream_node_ids)
    if event.HasField("error"):
        error = event.error
        if error.error_class:
            attrs[_K_ERROR_TYPE] = error.error_class
        if error.detail:
            attrs[_K_DETAIL] = error.detail
    if event.synthetic:
        attrs[_K_SYNTHETIC] = True
    if event.heartbeat:
        attrs[_K_HEARTBEAT] = True
    extra = event.attributes
    if extra:
        for k in sorted(extra):
            attrs[c.ATTR_PREFIX_EXTRA + k] = extra[k]
    return attrs


def span_start(event: ev.RunEvent) -> SpanStartData:
    """How to start the span of ``event``'s entity (run > pipeline > asset > node attempt).

    Raises:
        ValueError: unspecified scope.
    """
    return _span_start(event, entity_key(event), _entity_attributes(event))


def _span_start(event: ev.RunEvent, key: tuple[str, ...], entity: Mapping[str, AttrValue]) -> SpanStartData:
    """:func:`span_start` with the event's entity key and entity attributes (copied, not kept)."""
    scope = scope_name(event.scope)
    name = c.SPAN_NAMES[scope].format(pipeline_id=event.pipeline_id, node_id=event.node_id)
    attrs = dict(entity)
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
    """The span event recording one transition (all per-event fields as attributes).

    Its ``attributes`` are the event's transition attributes, which :func:`log_record` can
    take as ``transition=`` instead of computing them a second time.
    """
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


def _body_prefix(event: ev.RunEvent) -> str:
    """The entity part of the log body (``node n1 attempt 1 for a1 in p``); the same for all its events."""
    scope = event.scope  # only the text of the event's own scope is built
    if scope == _SCOPE_NODE:
        return f"node {event.node_id} attempt {event.attempt_id} for {event.asset_id} in {event.pipeline_id}"
    if scope == _SCOPE_ASSET:
        return f"asset {event.asset_id} in {event.pipeline_id}"
    if scope == _SCOPE_PIPELINE:
        return f"pipeline {event.pipeline_id}"
    if scope == ev.SCOPE_RUN:
        return f"run {event.run_id}"
    raise ValueError(f"unknown or unspecified scope {scope}")


def _body(event: ev.RunEvent, prefix: str | None = None) -> str:
    """The log body; ``prefix`` is :func:`_body_prefix` of the event when the caller has it."""
    what = _body_prefix(event) if prefix is None else prefix
    text = f"{what} {state_name(event.state)}"
    if event.state == ev.STATE_FAILED and event.error.error_class:
        text += f": {event.error.error_class}"
    if event.HasField("exit_code"):
        text += f" (exit {event.exit_code})"
    return text


def log_record(event: ev.RunEvent, *, transition: Mapping[str, AttrValue] | None = None) -> LogRecordData:
    """The log record of an event: every canonical field as an attribute, trace/span id of its entity.

    Args:
        event: the event.
        transition: the event's transition attributes when the caller already has them
            (``span_event(event).attributes``); they are copied, not kept.
    """
    severity_number, severity_text, body, event_name, attrs = _log_record_fields(
        event, _transition_attributes(event) if transition is None else transition
    )
    return LogRecordData(
        timestamp_ns=event.time.ToNanoseconds(),
        severity_number=severity_number,
        severity_text=severity_text,
        body=body,
        event_name=event_name,
        attributes=attrs,
        trace_id=trace_id_for_run(event.run_id),
        span_id=span_id_for(entity_key(event)),
    )


def _log_record_fields(
    event: ev.RunEvent, transition: Mapping[str, AttrValue], parts: _EntityParts | None = None
) -> tuple[int, str, str, str, dict[str, AttrValue]]:
    """:func:`log_record`'s severity number and text, body, event name and attributes.

    The emitter's per-event path calls this directly (it has the time and the ids already,
    and its live entity's :func:`_entity_parts` as ``parts``).
    """
    severity_number, severity_text = _SEVERITY.get(event.state, (9, "INFO"))
    if parts is None:
        attrs = _entity_attributes(event)
        attrs.update(transition)
        body = _body(event)
    else:  # the same dict as above: entity attributes first, then the transition's
        attrs = {**parts.attributes, **transition}
        body = _body(event, parts.body_prefix)
    event_name = c.HEARTBEAT_EVENT_NAME if event.heartbeat else _LOG_EVENT_NAMES[event.scope]
    return severity_number, severity_text, body, event_name, attrs


class _EntityParts(NamedTuple):
    """What every event of one entity at one stage id maps to alike (the emitter keeps it per live
    entity): the entity's log attributes, the body prefix and the metric base labels.

    Everything here depends on the entity key's ids, the scope and the stage id only.
    """

    stage_id: str
    attributes: dict[str, AttrValue]  # _entity_attributes (never modified: copied per event)
    body_prefix: str  # _body_prefix
    metric_base: dict[str, str]  # scope, pipeline id, stage id: every metric's labels start so
    active_labels: dict[str, str]  # vfo.nodes.active: pipeline id, stage id


def _metric_labels(event: ev.RunEvent) -> tuple[dict[str, str], dict[str, str]]:
    """The base labels of every metric of the event, and the labels of ``vfo.nodes.active``."""
    scope, pipeline_id, stage_id = event.scope, event.pipeline_id, event.stage_id
    base: dict[str, str] = {_K_SCOPE: scope_name(scope)}
    if scope >= _SCOPE_PIPELINE:
        base[_K_PIPELINE] = pipeline_id
    active: dict[str, str] = {_K_PIPELINE: pipeline_id}
    if stage_id:
        base[_K_STAGE] = stage_id
        active[_K_STAGE] = stage_id
    return base, active


def _entity_parts(event: ev.RunEvent) -> _EntityParts:
    """The :class:`_EntityParts` of the event's entity at the event's stage id."""
    base, active = _metric_labels(event)
    return _EntityParts(event.stage_id, _entity_attributes(event), _body_prefix(event), base, active)


_LOG_EVENT_NAMES = {scope: c.LOG_EVENT_NAMES[name] for scope, name in c.SCOPE_NAMES.items()}


def metric_points(event: ev.RunEvent) -> list[MetricPoint]:
    """Low-cardinality metric updates for one event; labels only from conventions.METRIC_LABELS.

    ``vfo.nodes.active`` moves by +1 when a node attempt enters ``running`` and by -1
    when it leaves it, judged by ``previous_state`` (the emitter fills it in).
    A heartbeat is no transition: it has no metric points.
    """
    return [MetricPoint(name, value, labels) for name, value, labels in _metric_updates(event)]


def _metric_updates(
    event: ev.RunEvent, parts: _EntityParts | None = None
) -> list[tuple[str, float, dict[str, str]]]:
    """:func:`metric_points` as (name, value, labels) tuples: the emitter's per-event path
    (``parts``: the live entity's :func:`_entity_parts`, when the caller has them).

    Every metric's label dict is built in one fixed key order (the emitter's cardinality cap
    relies on it). No label dict returned is ``parts``' own: each is a new dict.
    """
    if event.heartbeat:
        return []
    scope, state_num = event.scope, event.state
    state = _STATE_NAMES.get(state_num) or state_name(state_num)
    if parts is None:
        base, active_base = _metric_labels(event)
    else:
        base, active_base = parts.metric_base, parts.active_labels
    points: list[tuple[str, float, dict[str, str]]] = [("vfo.transitions", 1, {**base, _K_STATE: state})]
    if state_num in _TERMINAL and event.HasField("duration"):
        seconds = max(event.duration.ToNanoseconds(), 0) / 1e9
        points.append(("vfo.duration", seconds, {**base, _K_STATE: state}))
    if state_num == _STATE_FAILED:
        error_type = event.error.error_class or "_OTHER"
        points.append(("vfo.errors", 1, {**base, _K_ERROR_TYPE: error_type}))
    if scope == _SCOPE_NODE:
        previous = event.previous_state
        if state_num != previous and (state_num == _STATE_RUNNING or previous == _STATE_RUNNING):
            delta = 1 if state_num == _STATE_RUNNING else -1
            points.append(("vfo.nodes.active", delta, dict(active_base)))
    return points


_TERMINAL = c.TERMINAL_STATES
_STATE_FAILED, _STATE_RUNNING = ev.STATE_FAILED, ev.STATE_RUNNING


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


#: AssetRef string fields by their JSON names (protobuf's JSON parser accepts both spellings).
_REF_STR_FIELDS = {
    "assetId": "asset_id",
    "asset_id": "asset_id",
    "uri": "uri",
    "role": "role",
    "mediaType": "media_type",
    "media_type": "media_type",
}


def _ref_fields(item: Any) -> dict[str, Any] | None:
    """The AssetRef fields of one parsed JSON object, when it is plainly well-formed: known
    keys once each, strings for the text fields, a non-negative uint64 (a JSON string of ASCII
    digits, as protobuf's JSON encoder writes it, or an integer) for ``sizeBytes``.
    None for anything else: :func:`json_format.ParseDict` then judges it (and words the error)."""
    if type(item) is not dict:
        return None
    out: dict[str, Any] = {}
    for k, v in item.items():
        name = _REF_STR_FIELDS.get(k)
        if name is not None:
            if type(v) is not str:
                return None
        elif k == "sizeBytes" or k == "size_bytes":
            name = "size_bytes"
            if type(v) is str and v.isascii() and v.isdigit():
                v = int(v)
            elif type(v) is not int:
                return None
            if not 0 <= v < 2**64:
                return None
        else:
            return None
        if name in out:
            return None
        out[name] = v
    return out


def _refs_from_json(key: str, text: str | None) -> list[ev.AssetRef]:
    if text is None:
        return []
    try:
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("not a JSON array")
        refs: list[ev.AssetRef] = []
        for item in items:
            if not isinstance(item, dict):  # ParseDict would raise TypeError, not a decode error
                raise ValueError(f"item {len(refs)} is not a JSON object")
            fields = _ref_fields(item)
            if fields is None:  # unusual input: protobuf's JSON parser judges it
                refs.append(json_format.ParseDict(item, ev.AssetRef()))
            else:
                refs.append(ev.AssetRef(**fields))
        return refs
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
    try:
        typed, extras = _typed_attributes(record.attributes)
        return _event_from_typed(typed, extras, time_ns)
    except (_Slow, DecodeError, ValueError):  # the reference path decides, and words any error
        return event_from_attributes(otlp_attributes_to_dict(record.attributes), time_ns)


def events_from_span(span: trace_pb2.Span) -> tuple[list[ev.RunEvent], list[DecodeError]]:
    """Decode the ``vfo.transition`` span events of one OTLP Span into RunEvents.

    Span attributes (the entity) and each span event's attributes (the transition) are
    merged; span-event keys win.

    Returns:
        (events, errors): one entry per vfo span event, decoded or rejected.
    """
    try:
        fast_entity: dict[str, Any] | None = _typed_entity(span.attributes)
    except _Slow:
        fast_entity = None
    entity: dict[str, Any] | None = None  # the reference path's, built when first needed
    events: list[ev.RunEvent] = []
    errors: list[DecodeError] = []
    for span_ev in span.events:
        if span_ev.name != c.SPAN_EVENT_NAME:
            continue
        if fast_entity is not None:
            try:
                typed, extras = _typed_attributes(span_ev.attributes)
                merged = dict(fast_entity)
                merged.update(typed)
                events.append(_event_from_typed(merged, extras, span_ev.time_unix_nano))
                continue
            except (_Slow, DecodeError, ValueError):
                pass
        if entity is None:
            span_attrs = otlp_attributes_to_dict(span.attributes)
            entity = {k: v for k, v in span_attrs.items() if k in _ENTITY_KEYS}
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

# ---------------------------------------------------------------------------
# Reverse, fast path: KeyValues -> RunEvent in one pass over the attributes
# ---------------------------------------------------------------------------
#
# The fast path decodes only records that are plainly valid: every known key at most once,
# with the AnyValue kind the forward mapping writes, every value in range. On anything else it
# raises _Slow, and the callers decode the record again with the reference path
# (otlp_attributes_to_dict + event_from_attributes), which accepts or rejects it and words the
# error. So the fast path changes no result: it is the reference path for valid input, faster.


class _Slow(Exception):
    """The fast path met something the reference path must judge."""


_STR, _INT, _BOOL, _ARRAY = "string_value", "int_value", "bool_value", "array_value"
_R_EVENT_ID, _R_SCOPE, _R_STATE = str(Key.EVENT_ID), str(Key.SCOPE), str(Key.STATE)
_R_PREVIOUS = str(Key.PREVIOUS_STATE)
_R_RUN, _R_PIPELINE = str(Key.RUN_ID), str(Key.PIPELINE_ID)
_R_ASSET, _R_NODE = str(Key.ASSET_ID), str(Key.NODE_ID)
_R_STAGE, _R_ATTEMPT, _R_SOURCE = str(Key.STAGE_ID), str(Key.ATTEMPT_ID), str(Key.EVENT_SOURCE)
_R_SEQUENCE, _R_DURATION, _R_EXIT = str(Key.EVENT_SEQUENCE), str(Key.DURATION_NS), str(Key.EXIT_CODE)
_R_LINE, _R_ARGS, _R_ACTION = str(Key.COMMAND_LINE), str(Key.COMMAND_ARGS), str(Key.ACTION)
_R_INPUTS, _R_OUTPUTS, _R_UPSTREAM = str(Key.INPUTS), str(Key.OUTPUTS), str(Key.UPSTREAM)
_R_ERROR_TYPE, _R_DETAIL = str(Key.ERROR_TYPE), str(Key.ERROR_DETAIL)
_R_SYNTHETIC, _R_HEARTBEAT = str(Key.SYNTHETIC), str(Key.HEARTBEAT)
#: The AnyValue kind of every canonical key (as the forward mapping writes it).
_KIND: dict[str, str] = {
    _R_EVENT_ID: _STR,
    _R_SCOPE: _STR,
    _R_STATE: _STR,
    _R_PREVIOUS: _STR,
    _R_RUN: _STR,
    _R_PIPELINE: _STR,
    _R_ASSET: _STR,
    _R_NODE: _STR,
    _R_STAGE: _STR,
    _R_ATTEMPT: _INT,
    _R_SOURCE: _STR,
    _R_SEQUENCE: _INT,
    _R_DURATION: _INT,
    _R_EXIT: _INT,
    _R_LINE: _STR,
    _R_ARGS: _ARRAY,
    _R_ACTION: _STR,
    _R_INPUTS: _STR,
    _R_OUTPUTS: _STR,
    _R_UPSTREAM: _ARRAY,
    _R_ERROR_TYPE: _STR,
    _R_DETAIL: _STR,
    _R_SYNTHETIC: _BOOL,
    _R_HEARTBEAT: _BOOL,
}
_ENTITY_KIND = {k: v for k, v in _KIND.items() if k in _ENTITY_KEYS}
_EXTRA = c.ATTR_PREFIX_EXTRA
_EXTRA_LEN = len(_EXTRA)
_U32, _U64, _I31 = 2**32 - 1, 2**64, 2**31


def _typed_attributes(
    attributes: Iterable[common_pb2.KeyValue],
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The canonical keys' values (type-checked) and the ``vfo.attr.*`` extras (suffix, value)."""
    out: dict[str, Any] = {}
    extras: list[tuple[str, str]] = []
    for kv in attributes:
        key = kv.key
        want = _KIND.get(key)
        if want is None:
            if key.startswith(_EXTRA):
                value = kv.value
                if key in out or value.WhichOneof("value") != _STR:
                    raise _Slow
                out[key] = None  # marks the key as seen (duplicates go the reference way)
                extras.append((key[_EXTRA_LEN:], value.string_value))
            continue
        value = kv.value
        kind: str | None = value.WhichOneof("value")
        if key in out or kind != want:
            raise _Slow
        if want is _ARRAY:
            items = []
            for item in value.array_value.values:
                if item.WhichOneof("value") != _STR:
                    raise _Slow
                items.append(item.string_value)
            out[key] = items
        else:
            out[key] = getattr(value, want)
    return out, extras


def _typed_entity(attributes: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    """The entity keys of a span's attributes (type-checked); other keys are not read."""
    out: dict[str, Any] = {}
    for kv in attributes:
        key = kv.key
        want = _ENTITY_KIND.get(key)
        if want is None:
            continue
        value = kv.value
        kind: str | None = value.WhichOneof("value")
        if key in out or kind != want:
            raise _Slow
        out[key] = getattr(value, want)
    return out


def _event_from_typed(a: dict[str, Any], extras: list[tuple[str, str]], time_ns: int) -> ev.RunEvent:
    """:func:`event_from_attributes` for type-checked values; raises _Slow where it would raise."""
    get = a.get
    event_id = get(_R_EVENT_ID)
    scope = _SCOPE_BY_NAME.get(get(_R_SCOPE))  # type: ignore[arg-type]
    state = _STATE_BY_NAME.get(get(_R_STATE))  # type: ignore[arg-type]
    run_id = get(_R_RUN)
    if not event_id or scope is None or state is None or not run_id:
        raise _Slow
    event = ev.RunEvent(event_id=event_id, scope=scope, state=state, run_id=run_id)  # type: ignore[arg-type]
    event.time.FromNanoseconds(time_ns)
    previous = get(_R_PREVIOUS)
    if previous is not None:
        prev = _STATE_BY_NAME.get(previous)
        if prev is None:
            raise _Slow
        event.previous_state = prev  # type: ignore[assignment]
    pipeline_id, asset_id, node_id = get(_R_PIPELINE), get(_R_ASSET), get(_R_NODE)
    attempt = get(_R_ATTEMPT)
    if scope >= ev.SCOPE_PIPELINE and not pipeline_id:
        raise _Slow
    if scope >= ev.SCOPE_ASSET and not asset_id:
        raise _Slow
    if scope == ev.SCOPE_NODE and (not node_id or attempt is None):
        raise _Slow
    if pipeline_id:
        event.pipeline_id = pipeline_id
    if asset_id:
        event.asset_id = asset_id
    if node_id:
        event.node_id = node_id
    stage_id = get(_R_STAGE)
    if stage_id:
        event.stage_id = stage_id
    if attempt is not None:
        if not 1 <= attempt <= _U32:
            raise _Slow
        event.attempt_id = attempt
    source = get(_R_SOURCE)
    if source:
        event.source_id = source
    seq = get(_R_SEQUENCE)
    if seq is not None:
        if not 0 <= seq < _U64:
            raise _Slow
        event.sequence = seq
    duration = get(_R_DURATION)
    if duration is not None:
        event.duration.FromNanoseconds(duration)
    exit_code = get(_R_EXIT)
    if exit_code is not None:
        if not -_I31 <= exit_code < _I31:
            raise _Slow
        event.exit_code = exit_code
    line, argv, action = get(_R_LINE), get(_R_ARGS), get(_R_ACTION)
    if line or argv or action:
        cmd = event.command
        if line:
            cmd.command_line = line
        if argv:
            cmd.argv.extend(argv)
        if action:
            cmd.action = action
    inputs = get(_R_INPUTS)
    if inputs is not None:
        event.inputs.extend(_refs_from_json(_R_INPUTS, inputs))
    outputs = get(_R_OUTPUTS)
    if outputs is not None:
        event.outputs.extend(_refs_from_json(_R_OUTPUTS, outputs))
    upstream = get(_R_UPSTREAM)
    if upstream:
        event.upstream_node_ids.extend(upstream)
    error_class, detail = get(_R_ERROR_TYPE), get(_R_DETAIL)
    if error_class or detail:
        err = event.error
        if error_class:
            err.error_class = error_class
        if detail:
            err.detail = detail
    if get(_R_SYNTHETIC):
        event.synthetic = True
    if get(_R_HEARTBEAT):
        event.heartbeat = True
    if extras:
        attrs = event.attributes
        for k, v in extras:
            attrs[k] = v
    return event
