"""vfo-otel: one canonical pipeline-run event model for vfo, fanned out through OpenTelemetry.

Public surface (see docs/): the protobuf messages of ``vfo.events.v1``, the :class:`Emitter`
and its context-manager handles. The packages, by role (arrows point down only):
:mod:`vfo_otel.contract` (the event, states, ids, limits, conventions) <- :mod:`vfo_otel.otel`
(the reference mapping) <- :mod:`vfo_otel.emitter` | :mod:`vfo_otel.receiver` <-
:mod:`vfo_otel.app` (CLI, demo, report); :mod:`vfo_otel.client` (SnapshotService client) and
:mod:`vfo_otel.testing` (test doubles) beside them.
"""

from vfo_otel.contract import AssetRef, Command, Error, RunEvent, Scope, State
from vfo_otel.emitter import VERSION as __version__
from vfo_otel.emitter import (
    AssetHandle,
    Emitter,
    EmitterStats,
    NodeHandle,
    NodeSpec,
    PipelineHandle,
    RunHandle,
)

__all__ = [
    "AssetHandle",
    "AssetRef",
    "Command",
    "Emitter",
    "EmitterStats",
    "Error",
    "NodeHandle",
    "NodeSpec",
    "PipelineHandle",
    "RunEvent",
    "RunHandle",
    "Scope",
    "State",
    "__version__",
]
