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
    :func:`events_from_span`, :func:`otlp_attributes_to_dict`; for the receiver, which also
    wants the fold's view of each event: :func:`log_record_event`, :func:`span_events`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from google.protobuf import json_format
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from vfo_otel import conventions as c
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.conventions import Key
from vfo_otel.fold import _frame  # the fold's packed form of AssetRefs (fold._pack_refs)

if TYPE_CHECKING:
    from vfo_otel.fold import Facts
    from vfo_otel.limits import Limits

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
    "log_record_event",
    "metric_points",
    "normalize",
    "otlp_attributes_to_dict",
    "parent_key",
    "scope_name",
    "span_end",
    "span_event",
    "span_events",
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
    # SHA-256 of prefix, then 0x1f + each part (UTF-8): the same bytes as one joined str encoded
    text = "\x1f".join((prefix, *parts))
    value = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:size], "big")
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


#: The attributes of an event without extra attributes (read-only; shared).
_NO_ATTRIBUTES: Mapping[str, str] = types.MappingProxyType({})


class _Event:
    """One event's fields as plain Python values: what the forward mapping reads.

    The emitter's per-event path works on these, not on a RunEvent: the runner's handles build
    them from their own values (nothing is read back from a protobuf message), and :meth:`of`
    reads a RunEvent's fields once. :meth:`message` builds the RunEvent when one is asked for.

    The attribute names are RunEvent's field names, except where a value is kept in another
    form: ``time_ns`` and ``duration_ns`` (ns; None when not set), ``command``
    (``(command_line, argv, action)`` or None), ``error`` (``(error_class, detail)`` or None).
    ``exit_code`` is None when not set. Sequences and ``attributes`` may be shared with their
    owner (a handle, a caller's message): they are read, never modified (the emitter replaces
    ``attributes`` when it caps them). ``origin`` (which receivers set) is not among the fields:
    the forward mapping never reads it.
    """

    __slots__ = (
        "asset_id",
        "attempt_id",
        "attributes",
        "command",
        "duration_ns",
        "error",
        "event_id",
        "exit_code",
        "heartbeat",
        "inputs",
        "node_id",
        "outputs",
        "pipeline_id",
        "previous_state",
        "run_id",
        "scope",
        "sequence",
        "source_id",
        "stage_id",
        "state",
        "synthetic",
        "time_ns",
        "upstream_node_ids",
    )

    def __init__(
        self,
        scope: int,
        state: int,
        run_id: str,
        pipeline_id: str = "",
        asset_id: str = "",
        node_id: str = "",
        stage_id: str = "",
        attempt_id: int = 0,
        *,
        event_id: str = "",
        time_ns: int | None = None,
        source_id: str = "",
        sequence: int = 0,
        previous_state: int = 0,
        duration_ns: int | None = None,
        exit_code: int | None = None,
        command: tuple[str, Sequence[str], str] | None = None,
        inputs: Sequence[ev.AssetRef] = (),
        outputs: Sequence[ev.AssetRef] = (),
        upstream_node_ids: Sequence[str] = (),
        error: tuple[str, str] | None = None,
        synthetic: bool = False,
        heartbeat: bool = False,
        attributes: Mapping[str, str] = _NO_ATTRIBUTES,
    ) -> None:
        self.scope, self.state, self.run_id = scope, state, run_id
        self.pipeline_id, self.asset_id, self.node_id = pipeline_id, asset_id, node_id
        self.stage_id, self.attempt_id = stage_id, attempt_id
        self.event_id, self.time_ns, self.source_id, self.sequence = event_id, time_ns, source_id, sequence
        self.previous_state, self.duration_ns, self.exit_code = previous_state, duration_ns, exit_code
        self.command, self.inputs, self.outputs = command, inputs, outputs
        self.upstream_node_ids, self.error, self.attributes = upstream_node_ids, error, attributes
        self.synthetic, self.heartbeat = synthetic, heartbeat

    @classmethod
    def of(cls, m: ev.RunEvent) -> _Event:
        """The fields of a RunEvent, each read once (its sub-messages, repeated fields and map are
        read, not copied: they stay the message's, which must not change while the fields are used)."""
        e = cls.__new__(cls)  # each field read once, set directly: cheaper than the keyword call
        e.scope, e.state, e.run_id = m.scope, m.state, m.run_id
        e.pipeline_id, e.asset_id, e.node_id = m.pipeline_id, m.asset_id, m.node_id
        e.stage_id, e.attempt_id = m.stage_id, m.attempt_id
        e.event_id, e.source_id, e.sequence = m.event_id, m.source_id, m.sequence
        e.previous_state = m.previous_state
        e.time_ns = m.time.ToNanoseconds() if m.HasField("time") else None  # checks the timestamp
        if m.HasField("duration"):  # = duration.ToNanoseconds(), without its Python call
            d = m.duration
            e.duration_ns = d.seconds * 1_000_000_000 + d.nanos
        else:
            e.duration_ns = None
        e.exit_code = m.exit_code if m.HasField("exit_code") else None
        if m.HasField("command"):
            cmd = m.command
            e.command = (cmd.command_line, list(cmd.argv), cmd.action)  # read once: the log and span use it
        else:
            e.command = None
        if m.HasField("error"):
            error = m.error
            e.error = (error.error_class, error.detail)
        else:
            e.error = None
        e.inputs, e.outputs, e.upstream_node_ids = m.inputs, m.outputs, m.upstream_node_ids
        e.attributes, e.synthetic, e.heartbeat = m.attributes, m.synthetic, m.heartbeat
        return e

    def message(self) -> ev.RunEvent:
        """The RunEvent of these fields."""
        cmd, error = self.command, self.error
        msg = ev.RunEvent(
            event_id=self.event_id,
            source_id=self.source_id,
            sequence=self.sequence,
            scope=self.scope,  # type: ignore[arg-type]
            run_id=self.run_id,
            pipeline_id=self.pipeline_id,
            asset_id=self.asset_id,
            node_id=self.node_id,
            stage_id=self.stage_id,
            attempt_id=self.attempt_id,
            state=self.state,  # type: ignore[arg-type]
            previous_state=self.previous_state,  # type: ignore[arg-type]
            exit_code=self.exit_code,
            command=None if cmd is None else ev.Command(command_line=cmd[0], argv=cmd[1], action=cmd[2]),
            inputs=self.inputs,
            outputs=self.outputs,
            error=None if error is None else ev.Error(error_class=error[0], detail=error[1]),
            upstream_node_ids=self.upstream_node_ids,
            attributes=self.attributes,
            synthetic=self.synthetic,
            heartbeat=self.heartbeat,
        )
        if self.time_ns is not None:
            msg.time.seconds, msg.time.nanos = divmod(self.time_ns, 1_000_000_000)
        if self.duration_ns is not None:
            msg.duration.FromNanoseconds(self.duration_ns)
        return msg

    def key(self) -> tuple[str, ...]:
        """:func:`entity_key` of the event."""
        scope = self.scope
        if scope == _SCOPE_NODE:
            return (self.run_id, self.pipeline_id, self.asset_id, self.node_id, str(self.attempt_id))
        if scope == _SCOPE_ASSET:
            return (self.run_id, self.pipeline_id, self.asset_id)
        if scope == _SCOPE_PIPELINE:
            return (self.run_id, self.pipeline_id)
        if scope == ev.SCOPE_RUN:
            return (self.run_id,)
        raise ValueError(f"unknown or unspecified scope {scope}")


def _entity_attributes(event: _Event) -> dict[str, AttrValue]:
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


def _transition_attributes(event: _Event) -> dict[str, AttrValue]:
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
        command_line, argv, action = cmd
        if command_line:
            attrs[_K_LINE] = command_line
        if argv:
            attrs[_K_ARGS] = list(argv)
        if action:
            attrs[_K_ACTION] = action
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
    fields = _Event.of(event)
    return SpanStartData(*_span_start(fields, fields.key(), _entity_attributes(fields)))


def _span_start(
    event: _Event, key: tuple[str, ...], entity: Mapping[str, AttrValue]
) -> tuple[str, int, int, int | None, dict[str, AttrValue]]:
    """:func:`span_start`'s fields as a tuple (name, trace id, span id, parent span id, attributes),
    from the event's entity key and entity attributes (copied, not kept): the emitter's path."""
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
    attrs = _transition_attributes(_Event.of(event))
    return SpanEventData(c.SPAN_EVENT_NAME, attrs, event.time.ToNanoseconds())


def span_end(event: ev.RunEvent) -> SpanStatusData:
    """Status and end attributes for a terminal event (ERROR with ``error.type`` when failed)."""
    return SpanStatusData(*_span_end(_Event.of(event)))


def _span_end(event: _Event) -> tuple[bool, str, dict[str, AttrValue]]:
    """:func:`span_end`'s fields as a tuple (ok, description, attributes): the emitter's path."""
    attrs: dict[str, AttrValue] = {_K_STATE: state_name(event.state)}
    result = c.CICD_RESULT.get(event.state)
    if result:
        attrs[_K_TASK_RESULT if event.scope == _SCOPE_NODE else _K_PIPELINE_RESULT] = result
    if event.exit_code is not None:
        attrs[_K_EXIT] = event.exit_code
    if event.command is not None:
        command_line, argv, action = event.command
        if command_line:
            attrs[_K_LINE] = command_line
        if argv:
            attrs[_K_ARGS] = list(argv)
        if action:
            attrs[_K_ACTION] = action
    if event.state == _STATE_FAILED:
        error_class, detail = event.error or ("", "")
        attrs[_K_ERROR_TYPE] = error_class or "_OTHER"
        return False, detail[:1024], attrs
    return True, "", attrs


def _body_prefix(event: _Event) -> str:
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


def _body(event: _Event, prefix: str | None = None) -> str:
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
    fields = _Event.of(event)
    severity_number, severity_text, body, event_name, attrs = _log_record_fields(
        fields, _transition_attributes(fields) if transition is None else transition
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


def _log_record_fields(
    event: _Event, transition: Mapping[str, AttrValue], parts: _EntityParts | None = None
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


def _metric_labels(event: _Event) -> tuple[dict[str, str], dict[str, str]]:
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


def _entity_parts(event: _Event) -> _EntityParts:
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
    return [MetricPoint(name, value, labels) for name, value, labels in _metric_updates(_Event.of(event))]


def _metric_parts(event: _Event) -> list[tuple[str, float, str | None, str]]:
    """The metric points of one event, before labels: (metric name, value, label key, label
    value). A point's labels are the entity's base labels plus ``label key: label value``; with
    label key None they are the entity's ``vfo.nodes.active`` labels as they are. The one
    place that decides which points an event makes (:func:`_metric_updates` builds the label
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


def _metric_updates(
    event: _Event, parts: _EntityParts | None = None
) -> list[tuple[str, float, dict[str, str]]]:
    """:func:`metric_points` as (name, value, labels) tuples: the emitter's per-event path
    (``parts``: the live entity's :func:`_entity_parts`, when the caller has them).

    Every metric's label dict is built in one fixed key order (the emitter's cardinality cap
    relies on it). No label dict returned is ``parts``' own: each is a new dict.
    """
    points = _metric_parts(event)
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
        values, extras = _typed_attributes(record.attributes)
        return _fast_event(values, extras, time_ns, None, None)[0]
    except (_Slow, DecodeError, ValueError):  # the reference path decides, and words any error
        return event_from_attributes(otlp_attributes_to_dict(record.attributes), time_ns)


def events_from_span(span: trace_pb2.Span) -> tuple[list[ev.RunEvent], list[DecodeError]]:
    """Decode the ``vfo.transition`` span events of one OTLP Span into RunEvents.

    Span attributes (the entity) and each span event's attributes (the transition) are
    merged; span-event keys win.

    Returns:
        (events, errors): one entry per vfo span event, decoded or rejected.
    """
    decoded, errors = span_events(span, None, None)
    return [event for event, _ in decoded], errors


def log_record_event(
    record: logs_pb2.LogRecord, limits: Limits, origin: ev.Origin
) -> tuple[ev.RunEvent, Facts] | None:
    """The receiver's one-pass decoding of a log record that is plainly valid and within limits.

    Returns:
        (event, facts): the RunEvent that :func:`events_from_log_record` gives, with ``origin``
        set, which :func:`vfo_otel.limits.check_event` would leave as it is (every id and text
        is within ``limits``), and its :data:`vfo_otel.fold.Facts`. None for any other record:
        decode that one with :func:`events_from_log_record` and ``check_event``, which accept,
        truncate or reject it and word any error. Raises nothing.
    """
    try:
        values, extras = _typed_attributes(record.attributes)
        time_ns = record.time_unix_nano or record.observed_time_unix_nano
        return _fast_event(values, extras, time_ns, limits, origin)  # type: ignore[return-value]
    except (_Slow, DecodeError, ValueError):
        return None


def span_events(
    span: trace_pb2.Span, limits: Limits | None, origin: ev.Origin | None
) -> tuple[list[tuple[ev.RunEvent, Facts | None]], list[DecodeError]]:
    """:func:`events_from_span` for the receiver: each event with its facts when the one-pass decoder took it.

    Args:
        span: the OTLP span.
        limits: when given, the one-pass decoder takes only events within them.
        origin: set on the events the one-pass decoder takes (with ``limits``).

    Returns:
        (decoded, errors): per vfo span event, in order, either ``(event, facts)`` (one-pass,
        with ``limits``: origin set, within limits, facts as :data:`vfo_otel.fold.Facts`) or
        ``(event, None)`` (the reference path's event, or one-pass without ``limits``: not
        checked against limits, no origin), or a DecodeError in ``errors``.
    """
    fast_entity: list[Any] | None = _NO_VALUES  # (a placeholder) read at the first vfo span event
    entity: dict[str, Any] | None = None  # the reference path's, built when first needed
    decoded: list[tuple[ev.RunEvent, Facts | None]] = []
    errors: list[DecodeError] = []
    for span_ev in span.events:
        if span_ev.name != _SPAN_EVENT_NAME:
            continue
        if fast_entity is _NO_VALUES:
            try:
                fast_entity = _typed_entity(span.attributes)
            except _Slow:
                fast_entity = None
        if fast_entity is not None:
            try:
                values, extras = _typed_attributes(span_ev.attributes)
                for i in _ENTITY_SLOTS:  # span-event keys win
                    if values[i] is None:
                        values[i] = fast_entity[i]
                decoded.append(_fast_event(values, extras, span_ev.time_unix_nano, limits, origin))
                continue
            except (_Slow, DecodeError, ValueError):
                pass
        if entity is None:
            span_attrs = otlp_attributes_to_dict(span.attributes)
            entity = {k: v for k, v in span_attrs.items() if k in _ENTITY_KEYS}
        attrs = dict(entity)
        attrs.update(otlp_attributes_to_dict(span_ev.attributes))
        try:
            decoded.append((event_from_attributes(attrs, span_ev.time_unix_nano), None))
        except DecodeError as exc:
            errors.append(exc)
    return decoded, errors


_ENTITY_KEYS = frozenset(
    {Key.SCOPE, Key.RUN_ID, Key.PIPELINE_ID, Key.ASSET_ID, Key.NODE_ID, Key.STAGE_ID, Key.ATTEMPT_ID}
)

# ---------------------------------------------------------------------------
# Reverse, fast path: KeyValues -> RunEvent in one pass over the attributes
# ---------------------------------------------------------------------------
#
# The fast path decodes only records that are plainly valid: every known key at most once,
# with the AnyValue kind the forward mapping writes, every value in range (and, for the
# receiver, every id and text within its Limits). On anything else it raises _Slow, and the
# callers decode the record again with the reference path (otlp_attributes_to_dict +
# event_from_attributes, then check_event), which accepts or rejects it and words the error.
# So the fast path changes no result: it is the reference path for valid input, faster.


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
#: Every canonical key has a slot in the list _typed_attributes returns (the order _fast_event
#: unpacks), grouped by the AnyValue kind the forward mapping writes.
_STR_KEYS = (
    _R_EVENT_ID, _R_SCOPE, _R_STATE, _R_PREVIOUS, _R_RUN, _R_PIPELINE, _R_ASSET, _R_NODE, _R_STAGE,
    _R_SOURCE, _R_LINE, _R_ACTION, _R_INPUTS, _R_OUTPUTS, _R_ERROR_TYPE, _R_DETAIL,
)
_INT_KEYS = (_R_ATTEMPT, _R_SEQUENCE, _R_DURATION, _R_EXIT)
_ARRAY_KEYS = (_R_ARGS, _R_UPSTREAM)  # arrays of strings
_BOOL_KEYS = (_R_SYNTHETIC, _R_HEARTBEAT)
_SLOT_KEYS = _STR_KEYS + _INT_KEYS + _ARRAY_KEYS + _BOOL_KEYS
_SLOT = {key: i for i, key in enumerate(_SLOT_KEYS)}
_END_STR = len(_STR_KEYS)  # slot ranges of the kinds
_END_INT = _END_STR + len(_INT_KEYS)
_END_ARRAY = _END_INT + len(_ARRAY_KEYS)
_NO_VALUES: list[Any] = [None] * len(_SLOT_KEYS)
_SPAN_EVENT_NAME = str(c.SPAN_EVENT_NAME)
_ENTITY_SLOTS = tuple(_SLOT[str(k)] for k in sorted(_ENTITY_KEYS))
_EXTRA = c.ATTR_PREFIX_EXTRA
_EXTRA_LEN = len(_EXTRA)
_U32, _U64, _I31, _NS = 2**32 - 1, 2**64, 2**31, 1_000_000_000
_SCOPE_PIPELINE, _SCOPE_ASSET, _SCOPE_NODE = ev.SCOPE_PIPELINE, ev.SCOPE_ASSET, ev.SCOPE_NODE
_RunEvent, _AssetRef = ev.RunEvent, ev.AssetRef
_SCOPE_OF = cast("dict[str, ev.Scope]", _SCOPE_BY_NAME)
_STATE_OF = cast("dict[str, ev.State]", _STATE_BY_NAME)


def _typed_attributes(attributes: Iterable[common_pb2.KeyValue]) -> tuple[list[Any], dict[str, str] | None]:
    """The canonical keys' values by slot (type-checked; None when absent) and the ``vfo.attr.*``
    extras (suffix -> value; None when there are none).

    A value of a oneof member that is not its default proves that member is the one set, so the
    kind is read (``WhichOneof``) only for empty strings, zeros, empty arrays and False.
    """
    values = _NO_VALUES.copy()
    extras: dict[str, str] | None = None
    v: Any
    for kv in attributes:
        key = kv.key
        i = _SLOT.get(key)
        if i is None:
            if key.startswith(_EXTRA):
                value = kv.value
                v = value.string_value
                if not v and value.WhichOneof("value") != _STR:
                    raise _Slow
                suffix = key[_EXTRA_LEN:]
                if extras is None:
                    extras = {}
                elif suffix in extras:  # a repeated key: the reference path keeps the last
                    raise _Slow
                extras[suffix] = v
            continue
        if values[i] is not None:
            raise _Slow
        value = kv.value
        if i < _END_STR:
            v = value.string_value
            if not v and value.WhichOneof("value") != _STR:
                raise _Slow
        elif i < _END_INT:
            v = value.int_value
            if not v and value.WhichOneof("value") != _INT:
                raise _Slow
        elif i < _END_ARRAY:
            items = value.array_value.values
            if not items and value.WhichOneof("value") != _ARRAY:
                raise _Slow
            v = [item.string_value for item in items]
            if not all(v):  # an empty string, or an item of another kind
                for item in items:
                    if not item.string_value and item.WhichOneof("value") != _STR:
                        raise _Slow
        else:
            v = value.bool_value
            if not v and value.WhichOneof("value") != _BOOL:
                raise _Slow
        values[i] = v
    return values, extras


def _typed_entity(attributes: Iterable[common_pb2.KeyValue]) -> list[Any]:
    """The entity keys of a span's attributes by slot (type-checked); other keys are not read."""
    values = _NO_VALUES.copy()
    v: Any
    for kv in attributes:
        key = kv.key
        if key not in _ENTITY_KEYS:
            continue
        i = _SLOT[key]
        if values[i] is not None:
            raise _Slow
        value = kv.value
        if i < _END_STR:
            v = value.string_value
            if not v and value.WhichOneof("value") != _STR:
                raise _Slow
        else:  # the attempt id
            v = value.int_value
            if not v and value.WhichOneof("value") != _INT:
                raise _Slow
        values[i] = v
    return values


#: JSON text of ``vfo.inputs``/``vfo.outputs`` -> the refs packed as RunEvent field 17 and as
#: field 18. Every node of an asset names the same inputs, so the same text comes again and again.
_REFS: dict[str, tuple[bytes, bytes]] = {}
_REFS_MAX, _REFS_MAX_TEXT = 256, 2048  # at most ~1 MB


def _packed_refs(text: str) -> tuple[bytes, bytes]:
    """:func:`_refs_from_json` for plainly valid text, as (field 17 bytes, field 18 bytes); raises _Slow."""
    packed = _REFS.get(text)
    if packed is not None:
        return packed
    try:
        items = json.loads(text)
    except ValueError:
        raise _Slow from None
    if type(items) is not list:
        raise _Slow
    datas = []
    for item in items:
        fields = _ref_fields(item)
        if fields is None:
            raise _Slow
        try:
            datas.append(_AssetRef(**fields).SerializeToString())
        except ValueError:  # e.g. a lone surrogate from a JSON escape
            raise _Slow from None
    packed = (_frame(b"\x8a\x01", datas), _frame(b"\x92\x01", datas))
    if len(text) <= _REFS_MAX_TEXT:
        if len(_REFS) >= _REFS_MAX:
            _REFS.clear()
        _REFS[text] = packed
    return packed


def _fast_event(
    values: list[Any],
    extras: dict[str, str] | None,
    time_ns: int,
    limits: Limits | None,
    origin: ev.Origin | None,
) -> tuple[ev.RunEvent, Facts | None]:
    """:func:`event_from_attributes` for type-checked values by slot; raises _Slow where it would
    raise. With ``limits``: also raises _Slow where check_event would change or reject the event,
    sets ``origin``, and returns the event's fold facts (else None)."""
    (event_id, scope_name, state_name, previous_name, run_id, pipeline_id, asset_id, node_id, stage_id,
     source, line, action, inputs, outputs, error_class, detail,
     attempt, seq, duration, exit_code, argv, upstream, synthetic, heartbeat) = values
    scope = _SCOPE_OF.get(scope_name)
    state = _STATE_OF.get(state_name)
    if not event_id or scope is None or state is None or not run_id:
        raise _Slow
    previous = None
    if previous_name is not None:
        previous = _STATE_OF.get(previous_name)
        if previous is None:
            raise _Slow
    if scope >= _SCOPE_PIPELINE and not pipeline_id:
        raise _Slow
    if scope >= _SCOPE_ASSET and not asset_id:
        raise _Slow
    if scope == _SCOPE_NODE and (not node_id or attempt is None):
        raise _Slow
    if attempt is not None and not 1 <= attempt <= _U32:
        raise _Slow
    if seq is not None and not 0 <= seq < _U64:
        raise _Slow
    if exit_code is not None and not -_I31 <= exit_code < _I31:
        raise _Slow
    if limits is not None:  # what check_event would look at: nothing may need a change
        pipeline_id, asset_id, node_id = pipeline_id or "", asset_id or "", node_id or ""
        stage_id, source = stage_id or "", source or ""
        most = limits.max_id_length
        each = (event_id, run_id, pipeline_id, asset_id, node_id, stage_id, source)
        ids = "".join(each)
        if len(ids) > most and max(map(len, each)) > most:  # (all are short, most often)
            raise _Slow
        if not ids.isprintable():  # (Cc and Cs are never printable)
            raise _Slow
        if upstream:
            joined = "".join(upstream)
            if (len(joined) > most and max(map(len, upstream)) > most) or not joined.isprintable():
                raise _Slow
        if detail and len(detail) > limits.max_detail_length:
            raise _Slow
        if line and len(line) > limits.max_command_length:
            raise _Slow
        if argv and sum(map(len, argv)) > limits.max_command_length:
            raise _Slow
        if extras:
            most = limits.max_attribute_length
            for v in extras.values():
                if len(v) > most:
                    raise _Slow
    event = _RunEvent(  # (a keyword given as None costs as much as one set afterwards)
        event_id=event_id,
        scope=scope,
        state=state,
        run_id=run_id,
        pipeline_id=pipeline_id,
        asset_id=asset_id,
        node_id=node_id,
        stage_id=stage_id,
        attempt_id=attempt,
        source_id=source,
        sequence=seq,
        origin=origin,
    )
    if previous is not None:
        event.previous_state = previous
    if exit_code is not None:
        event.exit_code = exit_code
    if upstream:
        event.upstream_node_ids.extend(upstream)
    if synthetic:
        event.synthetic = True
    if heartbeat:
        event.heartbeat = True
    ts = event.time
    ts.seconds, ts.nanos = divmod(time_ns, _NS)
    if duration is not None:  # Duration.FromNanoseconds, without its Python call
        seconds, nanos = divmod(duration, _NS)
        if seconds < 0 and nanos > 0:
            seconds += 1
            nanos -= _NS
        d = event.duration
        d.seconds, d.nanos = seconds, nanos
    cmd = None
    if line or argv or action:
        command = event.command
        if line:
            command.command_line = line
        if argv:
            command.argv.extend(argv)
        if action:
            command.action = action
        if limits is not None:
            cmd = command.SerializeToString()
    packed_inputs = packed_outputs = b""
    if inputs is not None:
        packed_inputs = _packed_refs(inputs)[0]
        event.MergeFromString(packed_inputs)
    if outputs is not None:
        packed_outputs, as_outputs = _packed_refs(outputs)
        event.MergeFromString(as_outputs)
    error = None
    if error_class or detail:
        err = event.error
        if error_class:
            err.error_class = error_class
        if detail:
            err.detail = detail
        error = (error_class or "", detail or "")
    if extras:
        event.attributes.update(extras)
    if limits is None:
        return event, None
    facts = (
        event_id, run_id, scope, pipeline_id, asset_id, node_id, attempt or 0, stage_id, state,
        synthetic is True, time_ns, duration, error, cmd, exit_code, packed_inputs, packed_outputs,
        extras, upstream or (), origin,
    )
    return event, facts
