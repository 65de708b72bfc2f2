"""Forward reference mapping: a RunEvent -> OpenTelemetry span, span event, log record, metrics.

Pure: no I/O, no clocks, no SDK state; values in, values out. Keys, names and units come from
:mod:`vfo_otel.contract.conventions` only (docs/conventions.md). Two tiers, one mapping:

* on a ``vfo.events.v1.RunEvent``: :func:`span_start`, :func:`span_event`, :func:`span_end`,
  :func:`log_record`, :func:`metric_points` (result dataclasses, for tests and readers);
* on an :class:`~vfo_otel.otel.EventFields` (the same fields as plain values):
  :func:`transition_attributes`, :func:`entity_parts`, :func:`span_start_values`,
  :func:`span_end_values`, :func:`log_record_values`, :func:`metric_parts`,
  :func:`metric_updates`. The first tier is these functions wrapped; the emitter calls them
  directly on its per-event path, so what it sends is the reference mapping's output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from google.protobuf import json_format

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import (
    EntityKey,
    parent_key,
    scope_name,
    span_id_for,
    state_name,
    trace_id_for_run,
)
from vfo_otel.contract import conventions as c
from vfo_otel.contract.conventions import Key
from vfo_otel.otel._fields import EventFields

__all__ = [
    "AttrValue",
    "EntityParts",
    "LogRecordData",
    "MetricPoint",
    "SpanEventData",
    "SpanStartData",
    "SpanStatusData",
    "entity_attributes",
    "entity_parts",
    "log_record",
    "log_record_values",
    "metric_parts",
    "metric_points",
    "metric_updates",
    "normalize",
    "span_end",
    "span_end_values",
    "span_event",
    "span_start",
    "span_start_values",
    "transition_attributes",
]

#: An OTel attribute value as the SDK takes it.
AttrValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]

# OTel log severity numbers (OTel logs data model): INFO=9, WARN=13, ERROR=17.
_SEVERITY: dict[int, tuple[int, str]] = {
    ev.STATE_QUEUED: (9, "INFO"),
    ev.STATE_RUNNING: (9, "INFO"),
    ev.STATE_WAITING: (9, "INFO"),
    ev.STATE_COMPLETE: (9, "INFO"),
    ev.STATE_SKIPPED: (13, "WARN"),
    ev.STATE_FAILED: (17, "ERROR"),
}


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


def entity_attributes(event: EventFields) -> dict[str, AttrValue]:
    """The entity's attributes (scope, run/pipeline/asset/node ids, attempt, stage): a span's
    attributes at start and the first attributes of every log record of the entity."""
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


# Attribute keys as plain str (Key.X.value), not the Key members: a dict whose keys are all exact
# str is CPython's compact kind (16 B an entry, not 24, and the str-only lookup), and every
# attribute dict the SDK copies ours into (BoundedAttributes) inherits the kind of our keys.
_K_SCOPE, _K_RUN, _K_PIPELINE = Key.SCOPE.value, Key.RUN_ID.value, Key.PIPELINE_ID.value
_K_ASSET, _K_NODE, _K_ATTEMPT = Key.ASSET_ID.value, Key.NODE_ID.value, Key.ATTEMPT_ID.value
_K_STAGE = Key.STAGE_ID.value
_K_CICD_RUN_ID, _K_CICD_NAME = Key.CICD_PIPELINE_RUN_ID.value, Key.CICD_PIPELINE_NAME.value
_K_TASK_NAME, _K_TASK_RUN_ID = Key.CICD_TASK_NAME.value, Key.CICD_TASK_RUN_ID.value
_K_TASK_RESULT, _K_PIPELINE_RESULT = Key.CICD_TASK_RUN_RESULT.value, Key.CICD_PIPELINE_RESULT.value
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


# Attribute keys as module constants (plain str, see _K_SCOPE): an Enum member lookup (Key.X)
# costs ~65 ns, a global ~5 ns.
_K_EVENT_ID, _K_STATE, _K_SOURCE = Key.EVENT_ID.value, Key.STATE.value, Key.EVENT_SOURCE.value
_K_SEQUENCE, _K_PREVIOUS = Key.EVENT_SEQUENCE.value, Key.PREVIOUS_STATE.value
_K_DURATION, _K_EXIT = Key.DURATION_NS.value, Key.EXIT_CODE.value
_K_LINE, _K_ARGS, _K_ACTION = Key.COMMAND_LINE.value, Key.COMMAND_ARGS.value, Key.ACTION.value
_K_INPUTS, _K_OUTPUTS, _K_UPSTREAM = Key.INPUTS.value, Key.OUTPUTS.value, Key.UPSTREAM.value
_K_ERROR_TYPE, _K_DETAIL = Key.ERROR_TYPE.value, Key.ERROR_DETAIL.value
_K_SYNTHETIC, _K_HEARTBEAT = Key.SYNTHETIC.value, Key.HEARTBEAT.value
_STATE_NAMES = c.STATE_NAMES


def _command_attributes(attrs: dict[str, AttrValue], cmd: tuple[str, Sequence[str], str]) -> None:
    """``process.command_line``, ``process.command_args`` and ``vfo.action`` of a command
    (OTel semantic conventions, process.*), each only when set."""
    command_line, argv, action = cmd
    if command_line:
        attrs[_K_LINE] = command_line
    if argv:
        attrs[_K_ARGS] = list(argv)
    if action:
        attrs[_K_ACTION] = action


def transition_attributes(event: EventFields) -> dict[str, AttrValue]:
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
    if event.duration_ns is not None:
        attrs[_K_DURATION] = event.duration_ns
    if event.exit_code is not None:
        attrs[_K_EXIT] = event.exit_code
    cmd = event.command
    if cmd is not None:
        _command_attributes(attrs, cmd)
    if event.inputs:
        attrs[_K_INPUTS] = _refs_to_json(event.inputs)
    if event.outputs:
        attrs[_K_OUTPUTS] = _refs_to_json(event.outputs)
    if event.upstream_node_ids:
        attrs[_K_UPSTREAM] = list(event.upstream_node_ids)
    error = event.error
    if error is not None:
        error_class, detail = error
        if error_class:
            attrs[_K_ERROR_TYPE] = error_class
        if detail:
            attrs[_K_DETAIL] = detail
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
    fields = EventFields.of(event)
    return SpanStartData(*span_start_values(fields, fields.key(), entity_attributes(fields)))


def span_start_values(
    event: EventFields, key: EntityKey, entity: Mapping[str, AttrValue]
) -> tuple[str, int, int, int | None, dict[str, AttrValue]]:
    """:func:`span_start`'s fields as a tuple (name, trace id, span id, parent span id, attributes),
    from the event's entity key and entity attributes (copied, not kept).

    Raises:
        ValueError: unspecified scope.
    """
    scope = scope_name(event.scope)
    name = c.SPAN_NAMES[scope].format(pipeline_id=event.pipeline_id, node_id=event.node_id)
    attrs = dict(entity)
    attrs[_K_CICD_RUN_ID] = event.run_id
    if event.scope >= _SCOPE_PIPELINE:
        attrs[_K_CICD_NAME] = event.pipeline_id
    if event.scope == _SCOPE_NODE:
        attrs[_K_TASK_NAME] = event.node_id
        attrs[_K_TASK_RUN_ID] = "/".join(key[1:])
    parent = parent_key(key)
    parent_span_id = span_id_for(parent) if parent else None
    return name, trace_id_for_run(event.run_id), span_id_for(key), parent_span_id, attrs


def span_event(event: ev.RunEvent) -> SpanEventData:
    """The span event recording one transition (all per-event fields as attributes).

    Its ``attributes`` are the event's transition attributes, which :func:`log_record` can
    take as ``transition=`` instead of computing them a second time.
    """
    attrs = transition_attributes(EventFields.of(event))
    return SpanEventData(c.SPAN_EVENT_NAME, attrs, event.time.ToNanoseconds())


def span_end(event: ev.RunEvent) -> SpanStatusData:
    """Status and end attributes for a terminal event (ERROR with ``error.type`` when failed)."""
    return SpanStatusData(*span_end_values(EventFields.of(event)))


def span_end_values(
    event: EventFields,
    command: tuple[str, Sequence[str], str] | None = None,
    exit_code: int | None = None,
) -> tuple[bool, str, dict[str, AttrValue]]:
    """:func:`span_end`'s fields as a tuple (ok, description, attributes).

    Args:
        event: the terminal event.
        command, exit_code: the entity's command and exit code from its earlier events, used
            when the terminal event carries none (a command sent with ``running``): the span
            ends with ``process.command_line``/``process.command_args``/``process.exit.code``
            whichever event of the entity gave them.
    """
    attrs: dict[str, AttrValue] = {_K_STATE: state_name(event.state)}
    result = c.CICD_RESULT.get(event.state)
    if result:
        attrs[_K_TASK_RESULT if event.scope == _SCOPE_NODE else _K_PIPELINE_RESULT] = result
    code = event.exit_code if event.exit_code is not None else exit_code
    if code is not None:
        attrs[_K_EXIT] = code
    cmd = event.command if event.command is not None else command
    if cmd is not None:
        _command_attributes(attrs, cmd)
    if event.state == _STATE_FAILED:
        error_class, detail = event.error or ("", "")
        attrs[_K_ERROR_TYPE] = error_class or "_OTHER"
        return False, detail[:1024], attrs
    return True, "", attrs


def _body_prefix(event: EventFields) -> str:
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


def _body(event: EventFields, prefix: str | None = None) -> str:
    """The log body; ``prefix`` is :func:`_body_prefix` of the event when the caller has it."""
    what = _body_prefix(event) if prefix is None else prefix
    text = f"{what} {_STATE_NAMES.get(event.state) or state_name(event.state)}"
    if event.state == _STATE_FAILED and event.error is not None and event.error[0]:
        text += f": {event.error[0]}"
    if event.exit_code is not None:
        text += f" (exit {event.exit_code})"
    return text


def log_record(event: ev.RunEvent, *, transition: Mapping[str, AttrValue] | None = None) -> LogRecordData:
    """The log record of an event: every canonical field as an attribute, trace/span id of its entity.

    Args:
        event: the event.
        transition: the event's transition attributes when the caller already has them
            (``span_event(event).attributes``); they are copied, not kept.
    """
    fields = EventFields.of(event)
    severity_number, severity_text, body, event_name, attrs = log_record_values(
        fields, transition_attributes(fields) if transition is None else transition
    )
    return LogRecordData(
        timestamp_ns=event.time.ToNanoseconds(),
        severity_number=severity_number,
        severity_text=severity_text,
        body=body,
        event_name=event_name,
        attributes=attrs,
        trace_id=trace_id_for_run(event.run_id),
        span_id=span_id_for(fields.key()),
    )


def log_record_values(
    event: EventFields, transition: Mapping[str, AttrValue], parts: EntityParts | None = None
) -> tuple[int, str, str, str, dict[str, AttrValue]]:
    """:func:`log_record`'s severity number and text, body, event name and attributes.

    ``parts``: the entity's :func:`entity_parts` when the caller keeps them (the emitter keeps
    them per live entity); the result is the same either way.
    """
    severity_number, severity_text = _SEVERITY.get(event.state, (9, "INFO"))
    if parts is None:
        attrs = entity_attributes(event)
        attrs.update(transition)
        body = _body(event)
    else:  # the same dict as above: entity attributes first, then the transition's
        attrs = {**parts.attributes, **transition}
        body = _body(event, parts.body_prefix)
    event_name = c.HEARTBEAT_EVENT_NAME if event.heartbeat else _LOG_EVENT_NAMES[event.scope]
    return severity_number, severity_text, body, event_name, attrs


class EntityParts(NamedTuple):
    """What every event of one entity at one stage id maps to alike (the emitter keeps it per live
    entity): the entity's log attributes, the body prefix and the metric base labels.

    Everything here depends on the entity key's ids, the scope and the stage id only.
    """

    stage_id: str
    attributes: dict[str, AttrValue]  # entity_attributes (never modified: copied per event)
    body_prefix: str  # _body_prefix
    metric_base: dict[str, str]  # scope, pipeline id, stage id: every metric's labels start so
    active_labels: dict[str, str]  # vfo.nodes.active: pipeline id, stage id


def _metric_labels(event: EventFields) -> tuple[dict[str, str], dict[str, str]]:
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


def entity_parts(event: EventFields) -> EntityParts:
    """The :class:`EntityParts` of the event's entity at the event's stage id."""
    base, active = _metric_labels(event)
    return EntityParts(event.stage_id, entity_attributes(event), _body_prefix(event), base, active)


_LOG_EVENT_NAMES = {scope: c.LOG_EVENT_NAMES[name] for scope, name in c.SCOPE_NAMES.items()}


def metric_points(event: ev.RunEvent) -> list[MetricPoint]:
    """Low-cardinality metric updates for one event; labels only from conventions.METRIC_LABELS.

    ``vfo.nodes.active`` moves by +1 when a node attempt enters ``running`` and by -1
    when it leaves it, judged by ``previous_state`` (the emitter fills it in).
    A heartbeat is no transition: it has no metric points.
    """
    return [MetricPoint(name, value, labels) for name, value, labels in metric_updates(EventFields.of(event))]


def metric_parts(event: EventFields) -> list[tuple[str, float, str | None, str]]:
    """The metric points of one event, before labels: (metric name, value, label key, label
    value). A point's labels are the entity's base labels plus ``label key: label value``; with
    label key None they are the entity's ``vfo.nodes.active`` labels as they are. The one
    place that decides which points an event makes (:func:`metric_updates` builds the label
    dicts; the emitter caches them per entity kind)."""
    if event.heartbeat:
        return []
    state_num = event.state
    state = _STATE_NAMES.get(state_num) or state_name(state_num)
    points: list[tuple[str, float, str | None, str]] = [("vfo.transitions", 1, _K_STATE, state)]
    if state_num in _TERMINAL and event.duration_ns is not None:
        points.append(("vfo.duration", max(event.duration_ns, 0) / 1e9, _K_STATE, state))
    if state_num == _STATE_FAILED:
        error_type = (event.error[0] if event.error is not None else "") or "_OTHER"
        points.append(("vfo.errors", 1, _K_ERROR_TYPE, error_type))
    if event.scope == _SCOPE_NODE:
        previous = event.previous_state
        if state_num != previous and (state_num == _STATE_RUNNING or previous == _STATE_RUNNING):
            points.append(("vfo.nodes.active", 1 if state_num == _STATE_RUNNING else -1, None, ""))
    return points


def metric_updates(
    event: EventFields, parts: EntityParts | None = None
) -> list[tuple[str, float, dict[str, str]]]:
    """:func:`metric_points` as (name, value, labels) tuples
    (``parts``: the entity's :func:`entity_parts`, when the caller keeps them).

    Every metric's label dict is built in one fixed key order (the emitter's cardinality cap
    relies on it). No label dict returned is ``parts``' own: each is a new dict.
    """
    points = metric_parts(event)
    if not points:
        return []
    if parts is None:
        base, active_base = _metric_labels(event)
    else:
        base, active_base = parts.metric_base, parts.active_labels
    return [
        (name, value, {**base, key: label} if key is not None else dict(active_base))
        for name, value, key, label in points
    ]


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


