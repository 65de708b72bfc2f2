"""The emitter: canonical RunEvents out through the OpenTelemetry Python SDK (the SDK edge).

:class:`Emitter` maps each event with the reference mapping (:mod:`vfo_otel.otel`) to one log
record, one span event on its entity's span and low-cardinality metric points; the runner
handles (:meth:`Emitter.run` -> :class:`RunHandle` > :class:`PipelineHandle` >
:class:`AssetHandle` > :class:`NodeHandle`) emit the canonical transitions of ``with`` blocks.
The SDK wiring (resource, deterministic ids, counting processors, cardinality cap) is in
``_sdk``; heartbeats, fork and exit handling in ``_emitter``.
"""

from vfo_otel.emitter._emitter import MAX_EXTRA_ATTRIBUTES, Emitter, Terminated, install_sigterm_handler
from vfo_otel.emitter._runner import (
    AssetHandle,
    EventSink,
    NodeHandle,
    NodeSpec,
    PipelineHandle,
    RunHandle,
    asset_ref,
    error_class_of,
)
from vfo_otel.emitter._sdk import VERSION, EmitterStats, build_resource

__all__ = [
    "MAX_EXTRA_ATTRIBUTES",
    "VERSION",
    "AssetHandle",
    "Emitter",
    "EmitterStats",
    "EventSink",
    "NodeHandle",
    "NodeSpec",
    "PipelineHandle",
    "RunHandle",
    "Terminated",
    "asset_ref",
    "build_resource",
    "error_class_of",
    "install_sigterm_handler",
]
