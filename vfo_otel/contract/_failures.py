"""The documented error classes of failures that are not a command's own (docs/event-model.md).

Cancellation, lost heartbeats, abandoned entities and failed children are ``failed`` with one
of these ``error_class`` values, never new states. The runner handles, the emitter and the
receiver's fold take them from here. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

__all__ = [
    "ABANDONED",
    "CANCELLED",
    "CHILD_FAILED",
    "HEARTBEAT_LOST",
    "RUN_ID_REUSED",
    "child_failed_error",
]

#: A run, pipeline, asset or node attempt that went silent (no event of its own or of a
#: descendant) for longer than the receiver's ``--heartbeat-lost-after``; written by liveness.
HEARTBEAT_LOST = "HeartbeatLost"
#: An entity its emitter started and never ended, ended by ``Emitter.shutdown()``.
ABANDONED = "Abandoned"
#: Interrupted (SIGTERM, KeyboardInterrupt, SystemExit).
CANCELLED = "Cancelled"
#: Error class of a parent that failed because children did, by the parent's scope: an asset
#: fails with ``NodeFailed``, a pipeline with ``AssetFailed``, a run with ``PipelineFailed``.
CHILD_FAILED: dict[int, str] = {
    ev.SCOPE_ASSET: "NodeFailed",
    ev.SCOPE_PIPELINE: "AssetFailed",
    ev.SCOPE_RUN: "PipelineFailed",
}
#: What a run's snapshot and the emitter call a run id used by two executions (a conflict).
RUN_ID_REUSED = "RunIdReused"

_SHOWN = 10


def child_failed_error(scope: int, failed_ids: Sequence[str]) -> tuple[str, str]:
    """``(error_class, detail)`` of a run, pipeline or asset whose children failed.

    Args:
        scope: the parent's ``Scope`` number (run, pipeline or asset).
        failed_ids: the failed children's ids (node, asset or pipeline ids), in a deterministic
            order; at most 10 are named in the detail.

    Raises:
        KeyError: ``scope`` is not run, pipeline or asset.
    """
    shown = ", ".join(failed_ids[:_SHOWN]) + (" ..." if len(failed_ids) > _SHOWN else "")
    if scope == ev.SCOPE_PIPELINE:  # a pipeline may have thousands of assets: say how many
        return CHILD_FAILED[scope], f"{len(failed_ids)} failed assets: {shown}"
    word = "nodes" if scope == ev.SCOPE_ASSET else "pipelines"
    return CHILD_FAILED[scope], f"failed {word}: {shown}"
