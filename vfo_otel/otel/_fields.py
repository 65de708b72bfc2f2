"""A RunEvent's fields as plain Python values: the input of the forward mapping. Pure."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import EntityKey

__all__ = ["EventFields"]

#: The attributes of an event without extra attributes (read-only; shared).
_NO_ATTRIBUTES: Mapping[str, str] = types.MappingProxyType({})


class EventFields:
    """One event's fields as plain Python values: what the forward mapping reads (the reference
    mapping's input; :func:`vfo_otel.otel.span_start` and the others read a RunEvent through it).

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
    def of(cls, m: ev.RunEvent) -> EventFields:
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

    def key(self) -> EntityKey:
        """:func:`vfo_otel.contract.entity_key` of the event."""
        scope = self.scope
        if scope == ev.SCOPE_NODE:
            return (self.run_id, self.pipeline_id, self.asset_id, self.node_id, str(self.attempt_id))
        if scope == ev.SCOPE_ASSET:
            return (self.run_id, self.pipeline_id, self.asset_id)
        if scope == ev.SCOPE_PIPELINE:
            return (self.run_id, self.pipeline_id)
        if scope == ev.SCOPE_RUN:
            return (self.run_id,)
        raise ValueError(f"unknown or unspecified scope {scope}")
