"""Per-asset digests and per-pipeline sums: the parts a run's snapshot is assembled from. Pure.

A snapshot of a large run is built from one :class:`AssetDigest` per asset (recomputed only
when the asset changed) and one :class:`PipelineAgg` per pipeline (kept up to date by swapping
one digest at a time), so a change to one asset costs one asset's work, not a walk over the run.
Counts are indexed by ``vfo.events.v1.State`` number (7 slots; 0 = unspecified).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import STATE_NAMES

__all__ = [
    "AssetDigest",
    "OrderKey",
    "PipelineAgg",
    "Times",
    "add_counts",
    "count",
    "depths",
    "set_duration",
    "set_time",
]

#: The order of events within one entity: (rank, time ns, event id); see the fold's rule 2.
OrderKey = tuple[int, int, str]
#: (start, end, duration, last update) of an entity, ns; None when unknown.
Times = tuple[int | None, int | None, int | None, int]


class AssetDigest:
    """What a snapshot needs of one asset, computed once per version of the asset.

    A snapshot of a large run is assembled from these, so a change to one asset costs one
    asset's work plus a merge, not a walk over every attempt of the run.
    """

    __slots__ = ("attempt_counts", "nodes", "stages", "state", "summary", "times", "version")

    def __init__(self, version: int) -> None:
        self.version = version
        self.state: int = ev.STATE_UNSPECIFIED
        self.summary = db.AssetSummary()
        self.times: Times = (None, None, None, 0)
        #: counts by state of every attempt (retries included), indexed by state number
        self.attempt_counts = [0] * 7
        #: node id -> (stage key, stage, latest state, upstream ids: the node's own sorted
        #: tuple, shared, not copied: _Node replaces it, never mutates it)
        self.nodes: dict[str, tuple[OrderKey | None, str, int, tuple[str, ...]]] = {}
        #: stage -> [counts of latest attempts by state (7), total duration ns, max duration ns,
        #: whether any finished attempt had a duration]
        self.stages: dict[str, list[Any]] = {}


class PipelineAgg:
    """Sums over a pipeline's asset digests, kept up to date by swapping one digest at a time.

    Counts are added and subtracted; stage keys and upstream ids only ever grow (they are
    maxima and unions over events), so they are only added; a stage's maximum duration is
    recomputed from the digests when the digest that held it is replaced.
    """

    __slots__ = ("asset_states", "attempts", "digests", "max_dirty", "node_states", "nodes", "stage_of",
                 "stages", "upstream")

    def __init__(self) -> None:
        self.digests: dict[str, AssetDigest] = {}
        self.asset_states = [0] * 7
        self.nodes = [0] * 7
        self.attempts = [0] * 7
        self.node_states: dict[str, list[int]] = {}
        self.stage_of: dict[str, tuple[OrderKey | None, str]] = {}
        self.upstream: dict[str, set[str]] = {}
        #: stage -> [counts of latest attempts (7), total duration ns, max duration ns, timed digests]
        self.stages: dict[str, list[Any]] = {}
        self.max_dirty: set[str] = set()

    def swap(self, asset_id: str, new: AssetDigest) -> None:
        old = self.digests.get(asset_id)
        if old is new:
            return
        if old is not None:
            self._add(old, -1)
        self._add(new, 1)
        self.digests[asset_id] = new

    def _add(self, d: AssetDigest, sign: int) -> None:
        self.asset_states[d.state] += sign
        for i, n in enumerate(d.attempt_counts):
            self.attempts[i] += sign * n
        for node_id, (key, stage, state, ups) in d.nodes.items():
            self.nodes[state] += sign
            counts = self.node_states.get(node_id)
            if counts is None:
                counts = self.node_states[node_id] = [0] * 7
            counts[state] += sign
            if sign > 0:
                old = self.stage_of.get(node_id)
                if old is None or (key is not None and (old[0] is None or key > old[0])):
                    self.stage_of[node_id] = (key, stage)
                known = self.upstream.get(node_id)
                if known is None:
                    self.upstream[node_id] = set(ups)
                elif not known.issuperset(ups):
                    known.update(ups)
        for stage, (counts, total, biggest, timed) in d.stages.items():
            agg = self.stages.get(stage)
            if agg is None:
                agg = self.stages[stage] = [[0] * 7, 0, 0, 0]
            for i, n in enumerate(counts):
                agg[0][i] += sign * n
            agg[1] += sign * total
            agg[3] += sign * int(timed)
            if sign > 0:
                agg[2] = max(agg[2], biggest)
            elif biggest and biggest >= agg[2]:
                self.max_dirty.add(stage)

    def stage_totals(self) -> dict[str, list[Any]]:
        """stage -> [counts (7), total ns, max ns, timed digests], maxima made exact."""
        for stage in self.max_dirty:
            agg = self.stages[stage]
            agg[2] = max((d.stages[stage][2] for d in self.digests.values() if stage in d.stages), default=0)
        self.max_dirty.clear()
        return self.stages


def set_time(ns: int | None, out: Timestamp) -> None:
    if ns is not None:
        out.FromNanoseconds(ns)


def set_duration(ns: int | None, out: Duration) -> None:
    if ns is not None:
        out.FromNanoseconds(ns)


def count(counts: db.StateCounts, state: int) -> None:
    name = STATE_NAMES.get(state)
    if name is not None:
        setattr(counts, name, getattr(counts, name) + 1)
        counts.total += 1


def add_counts(out: db.StateCounts, by_state: list[int]) -> None:
    """Add counts indexed by state number (0 = unspecified, ignored) into ``out``."""
    for state, name in STATE_NAMES.items():
        n = by_state[state]
        if n:
            setattr(out, name, getattr(out, name) + n)
            out.total += n


def depths(upstream: dict[str, set[str]]) -> dict[str, int]:
    """Longest path from a root for each node; nodes on a cycle get the depth reached so far.

    Iterative (an explicit stack, no recursion), so a chain of any length is fine: the
    depth-first walk visits upstream ids in sorted order, and an upstream id met again while
    it is being visited (a cycle) counts as depth 0.
    """
    depth: dict[str, int] = {}
    visiting: set[str] = set()
    for root in sorted(upstream):
        if root in depth:
            continue
        visiting.add(root)
        # frames: [node, its sorted upstream ids, next index, deepest upstream so far]
        stack: list[list[Any]] = [[root, sorted(upstream.get(root, ())), 0, -1]]
        while stack:
            frame = stack[-1]
            ups = frame[1]
            if frame[2] < len(ups):
                u = ups[frame[2]]
                frame[2] += 1
                if u in depth:
                    value = depth[u]
                elif u in visiting:
                    value = 0
                else:
                    visiting.add(u)
                    stack.append([u, sorted(upstream.get(u, ())), 0, -1])
                    continue
                if value > frame[3]:
                    frame[3] = value
                continue
            stack.pop()
            node = frame[0]
            visiting.discard(node)
            d = depth[node] = frame[3] + 1
            if stack and d > stack[-1][3]:
                stack[-1][3] = d
    return depth
