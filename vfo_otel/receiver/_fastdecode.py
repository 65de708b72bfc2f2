"""The receiver's one-pass OTLP decoder: KeyValues -> RunEvent and its EventRecord. Pure.

A fast path of the reverse reference mapping (:mod:`vfo_otel.otel`), proven equal to it by
property tests (tests/test_mapping.py): it decodes only records that are plainly valid, every
known key at most once, with the AnyValue kind the forward mapping writes, every value in
range, and every id and text within the receiver's :class:`~vfo_otel.contract.Limits`. On
anything else it declines (internally, ``_Slow``), and the caller decodes the record again with
the reference path (``otlp_attributes_to_dict`` + ``event_from_attributes``, then
``check_event``), which accepts, truncates or rejects it and words the error. So it changes no
result: it is the reference path for valid input, without building a dict per record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, cast

from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import SCOPE_BY_NAME, STATE_BY_NAME, Limits
from vfo_otel.contract import conventions as c
from vfo_otel.contract.conventions import Key
from vfo_otel.otel import DecodeError, asset_ref_fields, event_from_attributes, otlp_attributes_to_dict
from vfo_otel.receiver._record import INPUTS_KEY, OUTPUTS_KEY, EventRecord, frame_refs

__all__ = ["log_record_event", "span_events"]


def log_record_event(
    record: logs_pb2.LogRecord, limits: Limits, origin: ev.Origin
) -> EventRecord | None:
    """The receiver's one-pass decoding of a log record that is plainly valid and within limits.

    Returns:
        The record of the RunEvent that :func:`vfo_otel.otel.events_from_log_record` gives,
        with ``origin`` set, which :func:`vfo_otel.contract.check_event` would leave as it is
        (every id and text is within ``limits``); equal to :func:`record_of` of that event.
        None for any other record: decode that one with the reference path and
        ``check_event``, which accept, truncate or reject it and word any error. Raises nothing.
    """
    try:
        values, extras = _typed_attributes(record.attributes)
        time_ns = record.time_unix_nano or record.observed_time_unix_nano
        _, accepted = _fast_event(values, extras, time_ns, limits, origin)
        return accepted
    except (_Slow, DecodeError, ValueError):
        return None


def span_events(
    span: trace_pb2.Span, limits: Limits | None, origin: ev.Origin | None
) -> tuple[list[tuple[ev.RunEvent, EventRecord | None]], list[DecodeError]]:
    """:func:`vfo_otel.otel.events_from_span` for the receiver: each event with its record when the
    one-pass decoder took it.

    Args:
        span: the OTLP span.
        limits: when given, the one-pass decoder takes only events within them.
        origin: set on the events the one-pass decoder takes (with ``limits``).

    Returns:
        (decoded, errors): per vfo span event, in order, either ``(event, record)`` (one-pass,
        with ``limits``: origin set, within limits) or ``(event, None)`` (the reference path's
        event, or one-pass without ``limits``: not checked against limits, no origin), or a
        DecodeError in ``errors``.
    """
    fast_entity: list[Any] | None = _NO_VALUES  # (a placeholder) read at the first vfo span event
    entity: dict[str, Any] | None = None  # the reference path's, built when first needed
    decoded: list[tuple[ev.RunEvent, EventRecord | None]] = []
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
            entity = {k: v for k, v in span_attrs.items() if k in c.ENTITY_KEYS}
        attrs = dict(entity)
        attrs.update(otlp_attributes_to_dict(span_ev.attributes))
        try:
            decoded.append((event_from_attributes(attrs, span_ev.time_unix_nano), None))
        except DecodeError as exc:
            errors.append(exc)
    return decoded, errors


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
_ENTITY_SLOTS = tuple(_SLOT[str(k)] for k in sorted(c.ENTITY_KEYS))
_EXTRA = c.ATTR_PREFIX_EXTRA
_EXTRA_LEN = len(_EXTRA)
_U32, _U64, _I31, _NS = 2**32 - 1, 2**64, 2**31, 1_000_000_000
_SCOPE_PIPELINE, _SCOPE_ASSET, _SCOPE_NODE = ev.SCOPE_PIPELINE, ev.SCOPE_ASSET, ev.SCOPE_NODE
_RunEvent, _AssetRef = ev.RunEvent, ev.AssetRef
_SCOPE_OF = cast("dict[str, ev.Scope]", SCOPE_BY_NAME)
_STATE_OF = cast("dict[str, ev.State]", STATE_BY_NAME)


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
        if key not in c.ENTITY_KEYS:
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


#: JSON text of ``vfo.inputs``/``vfo.outputs`` -> the refs framed as ``RunEvent.inputs`` (the
#: packed form :func:`~vfo_otel.receiver._record.pack_refs` gives, and what an event's inputs
#: are merged from) and framed as ``RunEvent.outputs`` (what an event's outputs are merged from).
#: Every node of an asset names the same inputs, so the same text comes again and again.
_REFS: dict[str, tuple[bytes, bytes]] = {}
_REFS_MAX, _REFS_MAX_TEXT = 256, 2048  # at most ~1 MB


def _packed_refs(text: str) -> tuple[bytes, bytes]:
    """:func:`vfo_otel.otel.refs_from_json` for plainly valid text, as (framed as inputs, framed as
    outputs); raises _Slow."""
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
        fields = asset_ref_fields(item)
        if fields is None:
            raise _Slow
        try:
            datas.append(_AssetRef(**fields).SerializeToString())
        except ValueError:  # e.g. a lone surrogate from a JSON escape
            raise _Slow from None
    packed = (frame_refs(INPUTS_KEY, datas), frame_refs(OUTPUTS_KEY, datas))
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
) -> tuple[ev.RunEvent, EventRecord | None]:
    """:func:`vfo_otel.otel.event_from_attributes` for type-checked values by slot; raises _Slow
    where it would raise. With ``limits``: also raises _Slow where check_event would change or
    reject the event, sets ``origin``, and returns the event's record too (else None)."""
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
            if len(upstream) > limits.max_upstream_node_ids:
                raise _Slow
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
            if len(extras) > limits.max_attributes:
                raise _Slow
            most, most_key = limits.max_attribute_length, limits.max_attribute_key_length
            for k, v in extras.items():
                if len(v) > most or len(k) > most_key:
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
    return event, EventRecord(
        event, event_id, run_id, scope, pipeline_id, asset_id, node_id, attempt or 0, stage_id, state,
        synthetic is True, time_ns, duration, error, cmd, exit_code, packed_inputs, packed_outputs,
        extras, upstream or (), origin, source,
    )
