"""The receiver's one hand-off type: an accepted event, from decode to store to fold. Pure.

The decoder builds an :class:`EventRecord` for every event it accepts (most straight from the
OTLP values it read anyway; :func:`record_of` for any RunEvent), the store writes
``record.event`` keyed by ``(run_id, event_id)``, and the fold applies the record's plain
values. Nothing reads a record by position.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

__all__ = ["INPUTS_KEY", "OUTPUTS_KEY", "EventRecord", "frame_refs", "pack_refs", "record_of", "unpack_refs"]


def _field_key(name: str) -> bytes:
    """The wire key (tag) of a length-delimited RunEvent field, from the descriptor:
    varint of ``field number << 3 | 2``."""
    n = (ev.RunEvent.DESCRIPTOR.fields_by_name[name].number << 3) | 2
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


#: Wire keys of ``RunEvent.inputs`` (field 17: ``b"\x8a\x01"``) and ``RunEvent.outputs`` (18).
INPUTS_KEY = _field_key("inputs")
OUTPUTS_KEY = _field_key("outputs")


def frame_refs(key: bytes, datas: Iterable[bytes]) -> bytes:
    """Serialized AssetRefs as one repeated length-delimited RunEvent field: per ref, ``key``
    (:data:`INPUTS_KEY` or :data:`OUTPUTS_KEY`), its length as a varint, then the bytes.
    ``RunEvent.MergeFromString`` of the result appends the refs to that field."""
    parts = []
    for data in datas:
        n = len(data)
        if n < 0x80:
            parts.append(key + bytes((n,)))
        else:
            head = bytearray(key)
            while n >= 0x80:
                head.append((n & 0x7F) | 0x80)
                n >>= 7
            head.append(n)
            parts.append(bytes(head))
        parts.append(data)
    return b"".join(parts)


def pack_refs(refs: Iterable[ev.AssetRef]) -> bytes:
    """AssetRefs (inputs or outputs alike) as one bytes object: their wire form framed as
    ``RunEvent.inputs``, the one carrier of :func:`unpack_refs`. Plain bytes, so a fold that keeps
    them keeps no reference into the event's protobuf arena."""
    return frame_refs(INPUTS_KEY, (ref.SerializeToString() for ref in refs))


def unpack_refs(packed: bytes) -> tuple[ev.AssetRef, ...]:
    """The AssetRefs packed by :func:`pack_refs` (new messages; () for ``b""``)."""
    return tuple(ev.RunEvent.FromString(packed).inputs) if packed else ()


class EventRecord(NamedTuple):
    """One accepted event and what the store and the fold read of it, as plain values.

    Attributes:
        event: the RunEvent as stored (origin set, within limits).
        event_id, run_id, pipeline_id, asset_id, node_id, stage_id: the ids ("" when unset).
        scope, state: ``vfo.events.v1.Scope``/``State`` numbers.
        attempt_id: the attempt (0 when unset).
        synthetic: written by liveness, not by a runner.
        time_ns: event time, ns since the Unix epoch.
        duration_ns: the emitter's duration (ns), None when not given.
        error: ``(error_class, detail)``, None without an Error.
        command: the serialized Command, None without one.
        exit_code: None when unset.
        inputs, outputs: the refs packed by :func:`pack_refs` (``b""`` for none).
        attributes: the extra attributes, None when there are none (never modified).
        upstream_node_ids: upstream node ids (a sequence of str).
        origin: the Origin (resource identity), None when unset; a fold copies it.
        source_id: the emitting source ("" when unset); with the scope and state it tells one
            execution of a run from another (a reused run id).
    """

    event: ev.RunEvent
    event_id: str
    run_id: str
    scope: int
    pipeline_id: str
    asset_id: str
    node_id: str
    attempt_id: int
    stage_id: str
    state: int
    synthetic: bool
    time_ns: int
    duration_ns: int | None
    error: tuple[str, str] | None
    command: bytes | None
    exit_code: int | None
    inputs: bytes
    outputs: bytes
    attributes: dict[str, str] | None
    upstream_node_ids: Sequence[str]
    origin: ev.Origin | None
    source_id: str


def record_of(event: ev.RunEvent) -> EventRecord:
    """The :class:`EventRecord` of one event (reads every field the store and fold use, once).

    The reference for every decoder: a record built another way equals ``record_of`` of its event.
    """
    ts = event.time
    duration = None
    if event.HasField("duration"):
        d = event.duration
        duration = d.seconds * 1_000_000_000 + d.nanos
    error = None
    if event.HasField("error"):
        err = event.error
        error = (err.error_class, err.detail)
    inputs, outputs, upstream, attributes = (
        event.inputs, event.outputs, event.upstream_node_ids, event.attributes
    )
    return EventRecord(
        event,
        event.event_id,
        event.run_id,
        event.scope,
        event.pipeline_id,
        event.asset_id,
        event.node_id,
        event.attempt_id,
        event.stage_id,
        event.state,
        event.synthetic,
        ts.seconds * 1_000_000_000 + ts.nanos,
        duration,
        error,
        event.command.SerializeToString() if event.HasField("command") else None,
        event.exit_code if event.HasField("exit_code") else None,
        pack_refs(inputs) if inputs else b"",
        pack_refs(outputs) if outputs else b"",
        dict(attributes) if attributes else None,
        list(upstream) if upstream else (),
        event.origin if event.HasField("origin") else None,
        event.source_id,
    )
