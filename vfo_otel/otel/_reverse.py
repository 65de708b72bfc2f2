"""Reverse reference mapping: OTLP log records and spans -> RunEvents. Pure.

The specification of decoding: the receiver's one-pass decoder
(:mod:`vfo_otel.receiver`) is proven equal to these functions for every valid record, and
falls back to them for anything else (they word every error).

Which records are vfo's: log records with an ``event_name`` starting ``vfo.`` or a
``vfo.event.id`` attribute; span events named ``vfo.transition`` (docs/conventions.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import SCOPE_BY_NAME, STATE_BY_NAME
from vfo_otel.contract import conventions as c
from vfo_otel.contract.conventions import Key

__all__ = [
    "DecodeError",
    "asset_ref_fields",
    "event_from_attributes",
    "events_from_log_record",
    "events_from_span",
    "is_vfo_log_record",
    "otlp_attributes_to_dict",
    "refs_from_json",
]


class DecodeError(ValueError):
    """An OTLP record claims to be a vfo event but does not decode into a valid RunEvent."""


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


def asset_ref_fields(item: Any) -> dict[str, Any] | None:
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


def refs_from_json(key: str, text: str | None) -> list[ev.AssetRef]:
    """The AssetRefs of a ``vfo.inputs``/``vfo.outputs`` attribute (a JSON array of AssetRef in
    the protobuf JSON mapping); [] for None.

    Raises:
        DecodeError: not a JSON array of AssetRef objects (``key`` names the attribute).
    """
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
            fields = asset_ref_fields(item)
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
    if scope not in SCOPE_BY_NAME:
        raise DecodeError(f"unknown scope {scope!r}")
    event.scope = SCOPE_BY_NAME[scope]  # type: ignore[assignment]
    state = _get(attrs, Key.STATE, str, required=True)
    if state not in STATE_BY_NAME:
        raise DecodeError(f"unknown state {state!r}")
    event.state = STATE_BY_NAME[state]  # type: ignore[assignment]
    previous = _get(attrs, Key.PREVIOUS_STATE, str)
    if previous is not None:
        if previous not in STATE_BY_NAME:
            raise DecodeError(f"unknown previous state {previous!r}")
        event.previous_state = STATE_BY_NAME[previous]  # type: ignore[assignment]
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
    event.inputs.extend(refs_from_json(Key.INPUTS, _get(attrs, Key.INPUTS, str)))
    event.outputs.extend(refs_from_json(Key.OUTPUTS, _get(attrs, Key.OUTPUTS, str)))
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
    """Decode one OTLP LogRecord (see :func:`vfo_otel.otel.log_record`) into a RunEvent.

    The time is the record's ``time_unix_nano``, else its ``observed_time_unix_nano``.

    Raises:
        DecodeError: the record is not a valid vfo event.
    """
    time_ns = record.time_unix_nano or record.observed_time_unix_nano
    return event_from_attributes(otlp_attributes_to_dict(record.attributes), time_ns)


def events_from_span(span: trace_pb2.Span) -> tuple[list[ev.RunEvent], list[DecodeError]]:
    """Decode the ``vfo.transition`` span events of one OTLP Span into RunEvents.

    Span attributes (the entity: :data:`~vfo_otel.contract.conventions.ENTITY_KEYS`) and each
    span event's attributes (the transition) are merged; span-event keys win.

    Returns:
        (events, errors): one entry per vfo span event, decoded or rejected, in order.
    """
    events: list[ev.RunEvent] = []
    errors: list[DecodeError] = []
    entity: dict[str, Any] | None = None
    for span_ev in span.events:
        if span_ev.name != c.SPAN_EVENT_NAME:
            continue
        if entity is None:
            span_attrs = otlp_attributes_to_dict(span.attributes)
            entity = {k: v for k, v in span_attrs.items() if k in c.ENTITY_KEYS}
        attrs = dict(entity)
        attrs.update(otlp_attributes_to_dict(span_ev.attributes))
        try:
            events.append(event_from_attributes(attrs, span_ev.time_unix_nano))
        except DecodeError as exc:
            errors.append(exc)
    return events, errors
