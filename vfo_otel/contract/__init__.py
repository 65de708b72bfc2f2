"""The contract: the canonical event, its states, identity, limits and semantic conventions.

Pure; imports nothing from the layers above it (otel, emitter, receiver, app).

* The protobuf messages of ``proto/vfo/events/v1/events.proto`` (``RunEvent``, ``AssetRef``,
  ``Command``, ``Error``, ``Origin``, ``RunEventBatch``; the ``State`` and ``Scope`` enum
  wrappers). docs/event-model.md gives the meaning of every field.
* The one state table (:data:`STATE_NAMES`, :data:`TERMINAL_STATES` ...), read from the
  generated enums.
* Identity: :func:`entity_key`, :func:`trace_id_for_run`, :func:`span_id_for`.
* :class:`Limits` and :func:`check_event`, applied to every event a receiver accepts.
* :func:`clean_text`, the one escaping rule for text.
* :mod:`vfo_otel.contract.conventions`, the semantic conventions table (docs/conventions.md).
"""

from vfo_otel._gen.vfo.events.v1.events_pb2 import (
    AssetRef,
    Command,
    Error,
    Origin,
    RunEvent,
    RunEventBatch,
    Scope,
    State,
)
from vfo_otel.contract._failures import (
    ABANDONED,
    CANCELLED,
    CHILD_FAILED,
    HEARTBEAT_LOST,
    RUN_ID_REUSED,
    child_failed_error,
)
from vfo_otel.contract._ids import EntityKey, entity_key, parent_key, span_id_for, trace_id_for_run
from vfo_otel.contract._limits import Limits, check_event
from vfo_otel.contract._states import (
    ACTIVE_STATES,
    SCOPE_BY_NAME,
    SCOPE_NAMES,
    STATE_BY_NAME,
    STATE_NAMES,
    STATES,
    TERMINAL_STATES,
    scope_name,
    state_label,
    state_name,
    state_number,
)
from vfo_otel.contract._text import clean_text

__all__ = [
    "ABANDONED",
    "ACTIVE_STATES",
    "CANCELLED",
    "CHILD_FAILED",
    "HEARTBEAT_LOST",
    "RUN_ID_REUSED",
    "SCOPE_BY_NAME",
    "SCOPE_NAMES",
    "STATES",
    "STATE_BY_NAME",
    "STATE_NAMES",
    "TERMINAL_STATES",
    "AssetRef",
    "Command",
    "EntityKey",
    "Error",
    "Limits",
    "Origin",
    "RunEvent",
    "RunEventBatch",
    "Scope",
    "State",
    "check_event",
    "child_failed_error",
    "clean_text",
    "entity_key",
    "parent_key",
    "scope_name",
    "span_id_for",
    "state_label",
    "state_name",
    "state_number",
    "trace_id_for_run",
]
