"""vfo-otel: one canonical pipeline-run event model for vfo, fanned out through OpenTelemetry.

Public surface (see docs/): the protobuf messages of ``vfo.events.v1`` (re-exported from
:mod:`vfo_otel.events`), the :class:`Emitter` and its context-manager handles, the
semantic conventions table (:mod:`vfo_otel.conventions`), the pure mapping
(:mod:`vfo_otel.mapping`) and fold (:mod:`vfo_otel.fold`), and test helpers
(:mod:`vfo_otel.testing`).
"""

from vfo_otel.emitter import VERSION as __version__
from vfo_otel.emitter import Emitter, EmitterStats
from vfo_otel.events import AssetRef, Command, Error, RunEvent, Scope, State
from vfo_otel.runner import AssetHandle, NodeHandle, NodeSpec, PipelineHandle, RunHandle

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
