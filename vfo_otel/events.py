"""The canonical event messages of ``proto/vfo/events/v1/events.proto``, re-exported.

``State`` and ``Scope`` are the protobuf enum wrappers (``State.STATE_FAILED`` ...,
``State.Name(n)``). See docs/event-model.md for the meaning of every field.
"""

from vfo_otel._gen.vfo.events.v1.events_pb2 import (
    AssetRef,
    Command,
    Error,
    RunEvent,
    RunEventBatch,
    Scope,
    State,
)

__all__ = ["AssetRef", "Command", "Error", "RunEvent", "RunEventBatch", "Scope", "State"]
