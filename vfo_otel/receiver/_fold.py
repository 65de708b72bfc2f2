"""The fold: canonical RunEvents in, a versioned ``vfo.dashboard.v1.DashboardSnapshot`` out.

Pure and deterministic (sans-I/O): no sockets, no clocks (``now_ns`` is passed in), no
threads. The rules, also in docs/fold.md:

1. **Idempotent and order-insensitive.** Every field of every entity is a *maximum*
   under a total order of events, so folding a set of events in any order, with any
   duplicates, gives the same result. Duplicates (same ``event_id``) count once:
   :class:`Fold` drops ids it has seen, and the revision is the number of distinct
   events folded into the run.
2. **Which event decides an entity's state.** Events are ranked: ``queued`` (0) <
   ``running``/``waiting`` (1) < synthetic terminal (2, e.g. ``HeartbeatLost``) < real
   terminal (3); within a rank the later ``time`` wins, then the greater ``event_id``.
   So the terminal state of an attempt is final (a late ``running`` never overrides
   ``complete``), and a real terminal event overrides a synthetic one.
3. **A node shows its latest attempt** (highest ``attempt_id``).
4. **Run, pipeline and asset states** come from their own events when any were
   emitted (``state_reported``); otherwise they are derived from their children
   (run <- pipelines, pipeline <- assets, asset <- latest attempt of each node):
   no children: queued; any running: running; else any waiting: waiting; else any
   queued: running if some child already finished, queued otherwise; all finished:
   failed if any failed, skipped if all skipped, complete otherwise.
5. **Times.** start = earliest ``running`` event (else earliest event, else
   end - duration); end = time of the deciding terminal event; duration = the
   emitter's own duration (one clock) when given, else end - start, never negative.
6. **Staleness** is the one rule that reads ``now_ns``: an attempt whose state is
   ``running`` or ``waiting`` and whose newest event time (heartbeats included) is more
   than ``stale_after_ns`` before ``now_ns`` is ``stale`` (a flag; its state is unchanged).
7. **Paged asset lists.** A snapshot carries one page of each pipeline's assets (ordered
   by ``asset_id``; :class:`Selection` says which page and how long), plus the selected
   asset's row, so its size is bounded by the page and the selection, not by the run.
   Counts, summaries and stage totals always cover every asset.

Thread contract: not thread-safe; the receiver confines a Fold to its event loop.
"""


from __future__ import annotations

import bisect
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import ACTIVE_STATES, RUN_ID_REUSED, TERMINAL_STATES, child_failed_error
from vfo_otel.receiver._digest import (
    AssetDigest,
    OrderKey,
    PipelineAgg,
    Times,
    add_counts,
    count,
    depths,
    set_duration,
    set_time,
)
from vfo_otel.receiver._record import EventRecord, record_of, unpack_refs
from vfo_otel.receiver._selection import Selection, asset_page_token

__all__ = [
    "SCHEMA_VERSION",
    "ActiveAttempt",
    "AttemptKey",
    "Fold",
    "RunFold",
    "SilentEntity",
    "derive_state",
    "resolve_state",
    "snapshot_of",
]

#: Version of the DashboardSnapshot schema this fold produces (docs/snapshot.md).
#: 2: pipelines carry one page of their asset list (``Pipeline.asset_page``).
SCHEMA_VERSION = 2

#: Attempts that ran (a skipped one never did).
_RAN = frozenset({ev.STATE_COMPLETE, ev.STATE_FAILED})
_TERMINAL = TERMINAL_STATES
_ACTIVE = ACTIVE_STATES
#: (pipeline_id, asset_id, node_id, attempt_id) of a node attempt within a run.
AttemptKey = tuple[str, str, str, int]
#: Which node an asset is "at": a running/waiting one, else a failed one, else the latest that
#: ran; a skipped node is never preferred over one that ran. Ties: the most recently updated.
_CURRENT_RANK: dict[int, int] = {
    ev.STATE_RUNNING: 3, ev.STATE_WAITING: 3, ev.STATE_FAILED: 2,
    ev.STATE_COMPLETE: 1, ev.STATE_QUEUED: 1, ev.STATE_SKIPPED: 0,
}
_QUEUED, _RUNNING, _FAILED = ev.STATE_QUEUED, ev.STATE_RUNNING, ev.STATE_FAILED
_WAITING = ev.STATE_WAITING
_SCOPE_RUN, _SCOPE_PIPELINE, _SCOPE_ASSET = ev.SCOPE_RUN, ev.SCOPE_PIPELINE, ev.SCOPE_ASSET


@dataclass(frozen=True)
class ActiveAttempt:
    """A running or waiting node attempt and the time of its newest event (ns since epoch)."""

    key: AttemptKey
    stage_id: str
    last_ns: int


class _Acc:
    """What one entity (run, pipeline, asset or node attempt) keeps: maxima of its events."""

    __slots__ = (
        "_cmd",
        "_inputs",
        "_outputs",
        "attrs",
        "cmd_key",
        "duration_ns",
        "end_ns",
        "error",
        "exit_code",
        "exit_key",
        "first_ns",
        "inputs_key",
        "last_ns",
        "outputs_key",
        "running_ns",
        "state",
        "state_key",
        "synthetic",
    )

    def __init__(self) -> None:
        self.state_key: OrderKey | None = None
        self.state: int = ev.STATE_UNSPECIFIED
        self.synthetic = False
        self.error: tuple[str, str] | None = None
        self.end_ns: int | None = None
        self.duration_ns: int | None = None
        self.first_ns: int | None = None
        self.running_ns: int | None = None
        self.last_ns = 0
        self.cmd_key: OrderKey | None = None
        self._cmd: bytes | None = None  # serialized Command: plain bytes, no reference into the event
        self.exit_key: OrderKey | None = None
        self.inputs_key: OrderKey | None = None
        self.outputs_key: OrderKey | None = None
        self.exit_code: int | None = None
        self._inputs = b""  # AssetRefs packed by _record.pack_refs (plain bytes)
        self._outputs = b""
        self.attrs: dict[str, tuple[OrderKey, str]] | None = None

    # The fold keeps plain Python values only (str, int, bytes): a protobuf sub-message taken
    # from an event would keep the whole event (its arena) alive for as long as the run is held.
    # Messages are built from these when a snapshot is built.

    @property
    def cmd(self) -> ev.Command | None:
        """The command of the deciding event that had one (a new message), or None."""
        return None if self._cmd is None else ev.Command.FromString(self._cmd)

    @property
    def inputs(self) -> tuple[ev.AssetRef, ...]:
        """The input refs of the deciding event that had some (new messages)."""
        return unpack_refs(self._inputs)

    @property
    def outputs(self) -> tuple[ev.AssetRef, ...]:
        """The output refs of the deciding event that had some (new messages)."""
        return unpack_refs(self._outputs)

    def apply(self, r: EventRecord, key: OrderKey) -> None:
        """Fold one event, given as its record and its order key (rank, time, event id)."""
        state, t = r.state, r.time_ns
        if self.state_key is None or key > self.state_key:
            self.state_key = key
            self.state = state
            self.synthetic = r.synthetic
            if state in _TERMINAL:
                self.end_ns = t
                self.duration_ns = r.duration_ns
            else:
                self.end_ns = self.duration_ns = None
            self.error = r.error if state == _FAILED else None
        if self.first_ns is None or t < self.first_ns:
            self.first_ns = t
        if state == _RUNNING and (self.running_ns is None or t < self.running_ns):
            self.running_ns = t
        if t > self.last_ns:
            self.last_ns = t
        cmd, exit_code, inputs, outputs, attrs = r.command, r.exit_code, r.inputs, r.outputs, r.attributes
        if cmd is not None and (self.cmd_key is None or key > self.cmd_key):
            self.cmd_key, self._cmd = key, cmd
        if exit_code is not None and (self.exit_key is None or key > self.exit_key):
            self.exit_key, self.exit_code = key, exit_code
        if inputs and (self.inputs_key is None or key > self.inputs_key):
            self.inputs_key, self._inputs = key, inputs
        if outputs and (self.outputs_key is None or key > self.outputs_key):
            self.outputs_key, self._outputs = key, outputs
        if attrs:
            mine = self.attrs
            if mine is None:
                mine = self.attrs = {}
            for k, v in attrs.items():
                old = mine.get(k)
                if old is None or key > old[0]:
                    mine[k] = (key, v)

    # -- derived values ----------------------------------------------------------------

    @property
    def reported(self) -> bool:
        return self.state_key is not None

    def start_ns(self) -> int | None:
        if self.running_ns is not None:
            return self.running_ns
        if self.first_ns is not None and (self.end_ns is None or self.first_ns < self.end_ns):
            return self.first_ns
        if self.end_ns is not None and self.duration_ns is not None:
            return self.end_ns - self.duration_ns
        return self.first_ns

    def duration(self) -> int | None:
        if self.duration_ns is not None:
            return max(self.duration_ns, 0)
        start = self.start_ns()
        if self.end_ns is not None and start is not None:
            return max(self.end_ns - start, 0)
        return None


def derive_state(children: Iterable[int]) -> int:
    """Derive a parent's state from its children's states (rule 4 of the module docstring)."""
    seen = set(children)
    if not seen:
        return ev.STATE_QUEUED
    if ev.STATE_RUNNING in seen:
        return ev.STATE_RUNNING
    if ev.STATE_WAITING in seen:
        return ev.STATE_WAITING
    if ev.STATE_QUEUED in seen or ev.STATE_UNSPECIFIED in seen:
        return ev.STATE_RUNNING if seen & _TERMINAL else ev.STATE_QUEUED
    if ev.STATE_FAILED in seen:
        return ev.STATE_FAILED
    if seen == {ev.STATE_SKIPPED}:
        return ev.STATE_SKIPPED
    return ev.STATE_COMPLETE


@dataclass(frozen=True)
class SilentEntity:
    """A run, pipeline or asset that went silent: its scope, ids ("" above its scope) and the
    time of the newest event of it or a descendant (ns since epoch)."""

    scope: int
    pipeline_id: str
    asset_id: str
    last_ns: int


def _silent_ok(acc: _Acc, active_below: bool) -> bool:
    """Whether liveness may end this silent entity: not when its own real terminal event is
    stored, nor when it reported nothing and an attempt below it is running or waiting."""
    if acc.state_key is None:
        return not active_below
    return acc.state_key[0] < 3


#: (state, error) of an entity as shown: error is (error_class, detail) or None.
Resolved = tuple[int, tuple[str, str] | None]


def resolve_state(own: _Acc, children: Sequence[tuple[str, int]], scope: int) -> Resolved:
    """The state a run, pipeline or asset is shown in, and its error (rule 4 of the module
    docstring): its own report, never contradicted by its children.

    Args:
        own: the entity's own events, folded.
        children: ``(child id, shown state)`` of each child (pipelines of a run, assets of a
            pipeline, the latest attempt of each node of an asset), sorted by id.
        scope: the entity's ``Scope`` number (names the error class of a failed child).

    Returns:
        ``(state, error)``: a ``failed`` report keeps its own error; a terminal ``complete`` or
        ``skipped`` report with a non-terminal child is shown as the children's derived state
        (``running`` when they are only queued: the entity reported it had run), and with a
        failed child as ``failed`` with :func:`~vfo_otel.contract.child_failed_error`; an
        unreported entity takes :func:`derive_state` of its children, with that error when
        failed; a ``queued`` report with running or waiting children shows them.
    """
    states = [state for _, state in children]
    if own.reported:
        state = own.state
        if state == _FAILED:
            if own.synthetic and states:  # liveness's guess yields to children that all ended well
                derived = derive_state(states)
                if derived in _TERMINAL and derived != _FAILED:
                    return derived, None
            return state, own.error
        if state in _TERMINAL:
            if not states:
                return state, None
            derived = derive_state(states)
            if derived not in _TERMINAL:  # never complete while a descendant is non-terminal
                return (_RUNNING if derived == _QUEUED else derived), None
            failed = [cid for cid, st in children if st == _FAILED]
            if failed:  # never complete after a descendant failed
                return _FAILED, child_failed_error(scope, failed)
            return state, None
        if state == _QUEUED and states:
            derived = derive_state(states)
            if derived in _ACTIVE:
                return derived, None
        return state, None
    derived = derive_state(states)
    if derived == _FAILED:
        return _FAILED, child_failed_error(scope, [cid for cid, st in children if st == _FAILED])
    return derived, None


class _Node:
    __slots__ = ("attempts", "stage", "stage_key", "upstream")

    def __init__(self) -> None:
        self.attempts: dict[int, _Acc] = {}
        self.stage = ""
        self.stage_key: OrderKey | None = None
        #: sorted upstream node ids (a tuple: an empty set alone would cost 216 bytes per node)
        self.upstream: tuple[str, ...] = ()

    def add_upstream(self, ids: Iterable[str]) -> None:
        current = self.upstream
        for u in ids:
            if u not in current:
                break
        else:  # the common case: every event of a node repeats the same upstream ids
            return
        merged = set(current)
        merged.update(ids)
        self.upstream = tuple(sorted(map(sys.intern, merged)))  # (merged has an id more)

    def latest(self) -> tuple[int, _Acc]:
        n = max(self.attempts)
        return n, self.attempts[n]


class _Asset:
    __slots__ = ("acc", "digest", "nodes", "version")

    def __init__(self) -> None:
        self.acc = _Acc()
        self.nodes: dict[str, _Node] = {}
        self.version = 0  # bumped by every event of the asset or its node attempts
        self.digest: AssetDigest | None = None


class _Pipeline:
    __slots__ = ("acc", "agg", "assets")

    def __init__(self) -> None:
        self.acc = _Acc()
        self.assets: dict[str, _Asset] = {}
        self.agg = PipelineAgg()


class RunFold:
    """The folded state of one run. Build snapshots with :meth:`snapshot`.

    Attributes:
        run_id: the run.
        revision: number of distinct events folded (grows with every change).
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.revision = 0
        self.acc = _Acc()
        self.pipelines: dict[str, _Pipeline] = {}
        self._origin_key: tuple[bool, int, str] | None = None
        self.origin = ev.Origin()
        #: run-scope evidence of more than one execution under this run id (rule 8)
        self._run_sources: set[str] = set()
        self._last_run_start_ns: int | None = None
        self._first_run_end_ns: int | None = None
        self._ended_at_revision = -1  # silent_entities: the run ended (no silent entity) at this revision
        self._active: dict[AttemptKey, _Acc] = {}

    def apply(self, event: ev.RunEvent) -> None:
        """Fold one event (the caller drops duplicates; see :class:`Fold`)."""
        self.apply_record(record_of(event))

    def apply_record(self, f: EventRecord) -> None:
        """Fold one event given as its :class:`EventRecord` (the caller drops duplicates)."""
        event_id, scope, state, t, origin = f.event_id, f.scope, f.state, f.time_ns, f.origin
        pipeline_id, asset_id, node_id = f.pipeline_id, f.asset_id, f.node_id
        self.revision += 1
        if origin is not None and (origin.service_name or origin.service_version or origin.host_name):
            okey = (scope == _SCOPE_RUN, t, event_id)  # an empty origin (no resource) decides nothing
            if self._origin_key is None or okey > self._origin_key:
                self._origin_key = okey
                self.origin = ev.Origin()  # a copy: a sub-message would keep the whole event alive
                self.origin.CopyFrom(origin)
        if state in _TERMINAL:  # rule 2: queued < running/waiting < synthetic terminal < terminal
            rank = 2 if f.synthetic else 3
        else:
            rank = 0 if state == _QUEUED else 1
        k = (rank, t, event_id)  # one order key per event, shared by every field it decides
        if scope == _SCOPE_RUN:
            self.acc.apply(f, k)
            if not f.synthetic:
                if state in _TERMINAL:
                    if self._first_run_end_ns is None or t < self._first_run_end_ns:
                        self._first_run_end_ns = t
                else:
                    if state != _WAITING and (self._last_run_start_ns is None or t > self._last_run_start_ns):
                        self._last_run_start_ns = t
                    if f.source_id and len(self._run_sources) < 2 and state != _WAITING:
                        self._run_sources.add(f.source_id)
            return
        pipe = self.pipelines.get(pipeline_id)
        if pipe is None:
            pipe = self.pipelines[pipeline_id] = _Pipeline()
        if scope == _SCOPE_PIPELINE:
            pipe.acc.apply(f, k)
            return
        asset = pipe.assets.get(asset_id)
        if asset is None:
            asset = pipe.assets[asset_id] = _Asset()
        asset.version += 1
        if scope == _SCOPE_ASSET:
            asset.acc.apply(f, k)
            return
        node = asset.nodes.get(node_id)
        if node is None:
            node = asset.nodes[node_id] = _Node()
        stage_id, upstream, attempt_id = f.stage_id, f.upstream_node_ids, f.attempt_id
        if stage_id and (node.stage_key is None or k > node.stage_key):
            node.stage_key, node.stage = k, sys.intern(stage_id)  # a handful of stages per run
        if upstream:
            node.add_upstream(upstream)
        attempt = node.attempts.get(attempt_id)
        if attempt is None:
            attempt = node.attempts[attempt_id] = _Acc()
        attempt.apply(f, k)
        akey = (pipeline_id, asset_id, node_id, attempt_id)
        if attempt.state in _ACTIVE:
            self._active[akey] = attempt
        else:
            self._active.pop(akey, None)

    # -- liveness ----------------------------------------------------------------------

    def active_attempts(self) -> list[ActiveAttempt]:
        """Every running or waiting node attempt, with its stage and newest event time."""
        out = []
        for key, acc in self._active.items():
            stage = self.pipelines[key[0]].assets[key[1]].nodes[key[2]].stage
            out.append(ActiveAttempt(key, stage, acc.last_ns))
        return out

    def stale_keys(self, now_ns: int, stale_after_ns: int | None) -> frozenset[AttemptKey]:
        """Running/waiting attempts whose newest event is more than ``stale_after_ns`` before ``now_ns``."""
        if stale_after_ns is None:
            return frozenset()
        return frozenset(k for k, acc in self._active.items() if now_ns - acc.last_ns > stale_after_ns)

    def conflict(self) -> str:
        """Why this run id looks used by more than one execution (rule 8), "" when it does not:
        run-scope ``queued``/``running`` events from two sources, or one later than the run's
        first real terminal event."""
        if len(self._run_sources) > 1:
            return (
                f"{RUN_ID_REUSED}: run-scope events from more than one source "
                f"({', '.join(sorted(self._run_sources))}); run ids must be unique per execution"
            )
        start, end = self._last_run_start_ns, self._first_run_end_ns
        if start is not None and end is not None and start > end:
            return (
                f"{RUN_ID_REUSED}: the run started again after it ended; run ids must be unique "
                "per execution"
            )
        return ""

    def silent_entities(self, now_ns: int, lost_after_ns: int) -> list[SilentEntity]:
        """Runs, pipelines and assets shown in a non-terminal state with no event of their own or
        of a descendant for more than ``lost_after_ns`` before ``now_ns`` (rule 6); node
        attempts are :meth:`active_attempts`. Not listed: an entity whose own real terminal
        event is stored (its synthetic failure would change nothing), and one that reported
        nothing itself while a descendant attempt is running or waiting (its state is derived:
        it ends when liveness ends that attempt)."""
        if self._ended_at_revision == self.revision:  # ended, and no event since: nothing is silent
            return []
        out: list[SilentEntity] = []
        pipeline_states = []
        run_last = self.acc.last_ns
        run_active = False
        for pid in sorted(self.pipelines):
            pipe = self.pipelines[pid]
            digests = self._digests(pid, pipe)
            for aid, d in digests:
                acc = pipe.assets[aid].acc
                active = any(n[2] in _ACTIVE for n in d.nodes.values())
                if (
                    d.state not in _TERMINAL
                    and now_ns - d.times[3] > lost_after_ns
                    and _silent_ok(acc, active)
                ):
                    out.append(SilentEntity(_SCOPE_ASSET, pid, aid, d.times[3]))
            state = self._pipeline_state(pipe, digests)[0]
            pipeline_states.append((pid, state))
            last = max([pipe.acc.last_ns, *(d.times[3] for _, d in digests)])
            run_last = max(run_last, last)
            active = bool(pipe.agg.nodes[_RUNNING] or pipe.agg.nodes[_WAITING])
            run_active = run_active or active
            if state not in _TERMINAL and now_ns - last > lost_after_ns and _silent_ok(pipe.acc, active):
                out.append(SilentEntity(_SCOPE_PIPELINE, pid, "", last))
        state = self._resolved(pipeline_states)[0]
        if state not in _TERMINAL and now_ns - run_last > lost_after_ns and _silent_ok(self.acc, run_active):
            out.append(SilentEntity(_SCOPE_RUN, "", "", run_last))
        if state in _TERMINAL and not out:
            self._ended_at_revision = self.revision
        return out

    # -- derived state -----------------------------------------------------------------

    def _digest(self, pipeline_id: str, asset_id: str, asset: _Asset) -> AssetDigest:
        """The asset's digest, recomputed only when the asset changed since the last one."""
        d = asset.digest
        if d is not None and d.version == asset.version:
            return d
        d = asset.digest = AssetDigest(asset.version)
        latest_states: list[tuple[str, int]] = []
        kid_times = []
        current: tuple[tuple[int, int], str, str] | None = None
        row = d.summary
        for node_id, node in asset.nodes.items():
            if not node.attempts:
                continue
            _, acc = node.latest()
            state = acc.state
            latest_states.append((node_id, state))
            kid_times.append(self._span(acc, ()))
            d.nodes[node_id] = (node.stage_key, node.stage, state, node.upstream)
            row.attempts += len(node.attempts)
            count(row.node_counts, state)
            cand = ((_CURRENT_RANK.get(state, 0), acc.last_ns), node_id, node.stage)
            if current is None or (cand[0], cand[1]) > (current[0], current[1]):
                current = cand
            stage = d.stages.get(node.stage)
            if stage is None:
                stage = d.stages[node.stage] = [[0] * 7, 0, 0, False]
            stage[0][state] += 1
            for a in node.attempts.values():
                d.attempt_counts[a.state] += 1
                if a.state in _RAN:  # a skipped attempt never ran: its wait is no stage time
                    dur = a.duration()
                    if dur is not None:
                        stage[1] += dur
                        stage[2] = max(stage[2], dur)
                        stage[3] = True
        latest_states.sort()
        d.state, error = resolve_state(asset.acc, latest_states, _SCOPE_ASSET)
        row.asset_id, row.state_reported = asset_id, asset.acc.reported
        row.state = d.state  # type: ignore[assignment]
        if current is not None:
            row.current_node_id, row.current_stage_id = current[1], current[2]
        d.times = self._span(asset.acc, kid_times, own_end=d.state == asset.acc.state)
        start, end, duration, last = d.times
        set_time(start, row.start_time)
        if d.state in _TERMINAL:
            set_time(end, row.end_time)
            set_duration(duration, row.duration)
        set_time(last or None, row.last_update_time)
        _set_error(error, row.error)
        return d

    def _digests(self, pipeline_id: str, pipe: _Pipeline) -> list[tuple[str, AssetDigest]]:
        """Every asset's digest, sorted by asset id; the pipeline's sums follow the changed ones."""
        out = []
        for aid in sorted(pipe.assets):
            d = self._digest(pipeline_id, aid, pipe.assets[aid])
            pipe.agg.swap(aid, d)
            out.append((aid, d))
        return out

    def _pipeline_state(self, pipe: _Pipeline, digests: list[tuple[str, AssetDigest]]) -> Resolved:
        """The pipeline's shown state and error (:func:`resolve_state` over its assets)."""
        return resolve_state(pipe.acc, [(aid, d.state) for aid, d in digests], _SCOPE_PIPELINE)

    def _resolved(self, pipeline_states: Sequence[tuple[str, int]] | None = None) -> Resolved:
        """The run's shown state and error (:func:`resolve_state` over its pipelines, by id)."""
        if pipeline_states is None:
            pipeline_states = [
                (pid, self._pipeline_state(self.pipelines[pid], self._digests(pid, self.pipelines[pid]))[0])
                for pid in sorted(self.pipelines)
            ]
        return resolve_state(self.acc, pipeline_states, _SCOPE_RUN)

    def state(self) -> int:
        """The run's state as shown (rule 4: its own report, never contradicted by its pipelines)."""
        return self._resolved()[0]

    @staticmethod
    def _span(acc: _Acc, kids: Iterable[Times], own_end: bool = True) -> Times:
        """(start, end, duration, last update) of an entity, widened by its children's.

        The end is the entity's own (its deciding terminal event) when it reported the state it
        is shown in (``own_end``); otherwise it is the latest end of its children once all of
        them ended (the own end too, if any)."""
        start, end, last = acc.start_ns(), acc.end_ns, acc.last_ns
        duration = acc.duration()
        spans = list(kids)
        if spans:
            kid_starts = [k[0] for k in spans if k[0] is not None]
            kid_ends = [k[1] for k in spans if k[1] is not None]
            last = max([last, *(k[3] for k in spans)])
            if start is None and kid_starts:
                start = min(kid_starts)
            if not (own_end and acc.reported) and kid_ends and len(kid_ends) == len(spans):
                end = max(kid_ends) if end is None else max(end, *kid_ends)
                duration = max(end - start, 0) if start is not None else None
        return start, end, duration, last

    def header(
        self,
        pipeline_times: Iterable[Times] | None = None,
        pipeline_states: Sequence[tuple[str, int]] | None = None,
    ) -> db.RunHeader:
        """The run header (state, times, origin, command, attributes, error).

        Args:
            pipeline_times, pipeline_states: each pipeline's times and ``(id, shown state)``
                when the caller has them (a snapshot does); computed otherwise.
        """
        if pipeline_times is None or pipeline_states is None:
            pipeline_times, pipeline_states = [], []
            for pid in sorted(self.pipelines):
                p = self.pipelines[pid]
                digests = self._digests(pid, p)
                state = self._pipeline_state(p, digests)[0]
                pipeline_times.append(
                    self._span(p.acc, [d.times for _, d in digests], own_end=state == p.acc.state)
                )
                pipeline_states.append((pid, state))
        state, error = self._resolved(pipeline_states)
        h = db.RunHeader(run_id=self.run_id, state=state, state_reported=self.acc.reported)  # type: ignore[arg-type]
        start, end, duration, last = self._span(self.acc, pipeline_times, own_end=state == self.acc.state)
        set_time(start, h.start_time)
        if h.state in _TERMINAL:
            set_time(end, h.end_time)
            set_duration(duration, h.duration)
        set_time(last or None, h.last_update_time)
        h.conflict = self.conflict()
        h.service_name = self.origin.service_name
        h.service_version = self.origin.service_version
        h.host_name = self.origin.host_name
        if self.acc.cmd is not None:
            h.command.CopyFrom(self.acc.cmd)
        if self.acc.attrs:
            for k, (_, v) in self.acc.attrs.items():
                h.attributes[k] = v
        _set_error(error, h.error)
        return h

    def _stale_nodes(self, stale: frozenset[AttemptKey]) -> int:
        """How many stale attempts are their node's latest attempt."""
        n = 0
        for pid, aid, nid, attempt in stale:
            node = self.pipelines[pid].assets[aid].nodes[nid]
            if node.attempts and node.latest()[0] == attempt:
                n += 1
        return n

    def summary(self, stale: frozenset[AttemptKey] = frozenset()) -> db.Summary:
        """Counts by state of pipelines, assets, nodes (latest attempts) and all attempts.

        Args:
            stale: the stale attempts (:meth:`stale_keys`), counted in ``stale_nodes``.
        """
        s = db.Summary()
        nodes, attempts = [0] * 7, [0] * 7
        for pid, pipe in self.pipelines.items():
            digests = self._digests(pid, pipe)
            count(s.pipelines, self._pipeline_state(pipe, digests)[0])
            agg = pipe.agg
            add_counts(s.assets, agg.asset_states)
            for i in range(7):
                nodes[i] += agg.nodes[i]
                attempts[i] += agg.attempts[i]
        add_counts(s.nodes, nodes)
        add_counts(s.attempts, attempts)
        s.stale_nodes = self._stale_nodes(stale) if stale else 0
        return s

    @staticmethod
    def _workflow(agg: PipelineAgg) -> db.Workflow:
        upstream = {n: set(u) for n, u in agg.upstream.items()}
        stages = dict(agg.stage_of)
        for node_id in list(upstream):
            for u in list(upstream[node_id]):
                upstream.setdefault(u, set())
                stages.setdefault(u, (None, ""))
        depth = depths(upstream)
        wf = db.Workflow()
        for node_id in sorted(upstream, key=lambda n: (depth[n], n)):
            node = wf.nodes.add(node_id=node_id, stage_id=stages[node_id][1], depth=depth[node_id])
            counts = agg.node_states.get(node_id)
            if counts is not None:
                add_counts(node.counts, counts)
        for node_id in sorted(upstream):
            for u in sorted(upstream[node_id]):
                wf.edges.add(from_node_id=u, to_node_id=node_id)
        return wf

    def _pipeline(
        self, pipeline_id: str, pipe: _Pipeline, digests: list[tuple[str, AssetDigest]],
        stale_assets: set[str], sel: Selection,
    ) -> tuple[db.Pipeline, Times]:
        state, error = self._pipeline_state(pipe, digests)
        out = db.Pipeline(pipeline_id=pipeline_id, state=state, state_reported=pipe.acc.reported)  # type: ignore[arg-type]
        times = self._span(pipe.acc, [d.times for _, d in digests], own_end=state == pipe.acc.state)
        start, end, duration, _ = times
        set_time(start, out.start_time)
        if state in _TERMINAL:
            set_time(end, out.end_time)
            set_duration(duration, out.duration)
        size, after = sel.page(pipeline_id)
        start = bisect.bisect_right(digests, after, key=lambda t: t[0]) if after else 0
        page = digests[start : start + size]
        out.assets.extend(d.summary for _, d in page)
        ap = out.asset_page
        ap.offset, ap.size = start, len(page)
        if start + size < len(digests):
            ap.next_page_token = asset_page_token(pipeline_id, page[-1][0])
        if start > 0:
            prev = start - size
            ap.previous_page_token = asset_page_token(pipeline_id, digests[prev - 1][0] if prev > 0 else "")
        if sel.pipeline_id == pipeline_id and sel.asset_id in pipe.assets:
            i = bisect.bisect_left(digests, sel.asset_id, key=lambda t: t[0])
            if not start <= i < start + len(page):
                out.assets.append(digests[i][1].summary)
        if stale_assets:
            for row in out.assets:
                if row.asset_id in stale_assets:
                    row.stale = True
        add_counts(out.asset_counts, pipe.agg.asset_states)
        add_counts(out.node_counts, pipe.agg.nodes)
        out.workflow.CopyFrom(self._workflow(pipe.agg))
        _set_error(error, out.error)
        return out, times

    def _stage_totals(self) -> list[db.StageTotal]:
        totals: dict[str, list[Any]] = {}
        for pipe in self.pipelines.values():
            for stage, (counts, total, biggest, timed) in pipe.agg.stage_totals().items():
                acc = totals.get(stage)
                if acc is None:
                    acc = totals[stage] = [[0] * 7, 0, 0, 0]
                for i, n in enumerate(counts):
                    acc[0][i] += n
                acc[1] += total
                acc[2] = max(acc[2], biggest)
                acc[3] += timed
        out = []
        for stage in sorted(totals):
            counts, total, biggest, timed = totals[stage]
            if not any(counts):
                continue  # every node of the stage moved to another stage
            st = db.StageTotal(stage_id=stage)
            add_counts(st.counts, counts)
            if timed:
                st.total_duration.FromNanoseconds(total)
                st.max_duration.FromNanoseconds(biggest)
            out.append(st)
        return out

    def node_details(
        self, selection: Selection, stale: frozenset[AttemptKey] = frozenset()
    ) -> list[db.NodeDetail]:
        """Every node of the selected asset with all its attempts (oldest first); [] if none.

        Nodes come in workflow order: by depth in the asset's DAG (roots first), then by id.
        """
        pipe = self.pipelines.get(selection.pipeline_id)
        asset = pipe.assets.get(selection.asset_id) if pipe else None
        if asset is None:
            return []
        out: list[db.NodeDetail] = []
        depth = depths({n: set(node.upstream) for n, node in asset.nodes.items()})
        for node_id in sorted(asset.nodes, key=lambda n: (depth.get(n, 0), n)):  # workflow order
            node = asset.nodes[node_id]
            if not node.attempts:
                continue
            detail = db.NodeDetail(
                node_id=node_id,
                stage_id=node.stage,
                state=node.latest()[1].state,  # type: ignore[arg-type]
                upstream_node_ids=sorted(node.upstream),
            )
            for n in sorted(node.attempts):
                acc = node.attempts[n]
                a = detail.attempts.add(attempt_id=n, state=acc.state, synthetic=acc.synthetic)
                a.stale = (selection.pipeline_id, selection.asset_id, node_id, n) in stale
                set_time(acc.start_ns(), a.start_time)
                if acc.state in _TERMINAL:
                    set_time(acc.end_ns, a.end_time)
                    set_duration(acc.duration(), a.duration)
                set_time(acc.last_ns or None, a.last_update_time)
                if acc.exit_code is not None:
                    a.exit_code = acc.exit_code
                if acc.cmd is not None:
                    a.command.CopyFrom(acc.cmd)
                a.inputs.extend(acc.inputs)
                a.outputs.extend(acc.outputs)
                _set_error(acc.error if acc.state == _FAILED else None, a.error)
                if acc.attrs:
                    for k, (_, v) in acc.attrs.items():
                        a.attributes[k] = v
            out.append(detail)
        return out

    def snapshot(
        self, selection: Selection | None = None, now_ns: int = 0, stale_after_ns: int | None = None
    ) -> db.DashboardSnapshot:
        """Build the DashboardSnapshot of this run.

        Args:
            selection: pipeline/asset whose node details to include, and which page of
                each pipeline's asset list (rule 7); None: nothing selected, first pages.
            now_ns: ``generated_time`` (ns since epoch) and the "now" of staleness; the
                only input not from events.
            stale_after_ns: flag running/waiting attempts with no event for longer than
                this (ns) as ``stale`` (rule 6); None flags none.

        Returns:
            A new DashboardSnapshot message (schema_version = SCHEMA_VERSION).
        """
        sel = selection or Selection()
        stale = self.stale_keys(now_ns, stale_after_ns)
        snap = db.DashboardSnapshot(schema_version=SCHEMA_VERSION, revision=self.revision)
        set_time(now_ns, snap.generated_time)
        pipeline_times: list[Times] = []
        pipeline_states: list[tuple[str, int]] = []
        for pid in sorted(self.pipelines):
            pipe = self.pipelines[pid]
            digests = self._digests(pid, pipe)
            stale_assets = {k[1] for k in stale if k[0] == pid}
            row, times = self._pipeline(pid, pipe, digests, stale_assets, sel)
            snap.pipelines.append(row)
            pipeline_times.append(times)
            pipeline_states.append((pid, row.state))
        snap.run.CopyFrom(self.header(pipeline_times, pipeline_states))
        snap.selection.pipeline_id, snap.selection.asset_id = sel.pipeline_id, sel.asset_id
        snap.node_details.extend(self.node_details(sel, stale))
        snap.summary.CopyFrom(self.summary(stale))
        snap.stage_totals.extend(self._stage_totals())
        return snap


def _set_error(error: tuple[str, str] | None, out: ev.Error) -> None:
    if error is not None:
        out.error_class, out.detail = error


class Fold:
    """Many runs: drops duplicate event ids and folds the rest into their :class:`RunFold`.

    An event is identified by ``(run_id, event_id)``, as in the receiver's store; the fold
    keeps the keys folded so far. A durable store that already de-duplicates may pass
    ``dedup=False`` and feed only new events.
    """

    def __init__(self, *, dedup: bool = True) -> None:
        self.runs: dict[str, RunFold] = {}
        self._dedup = dedup
        self._seen: set[tuple[str, str]] = set()

    def apply(self, event: ev.RunEvent) -> RunFold | None:
        """Fold one event; returns its run's fold, or None when the event was a duplicate."""
        if self._dedup:
            key = (event.run_id, event.event_id)
            if key in self._seen:
                return None
            self._seen.add(key)
        run = self.runs.get(event.run_id)
        if run is None:
            run = self.runs[event.run_id] = RunFold(event.run_id)
        run.apply(event)
        return run

    def apply_records(self, records: Iterable[EventRecord]) -> set[str]:
        """Fold events given as their :class:`EventRecord` (what the receiver's decoder produces);
        duplicates are dropped as by :meth:`apply`. Returns the ids of the runs that changed."""
        runs, seen, changed = self.runs, self._seen, set()
        for f in records:
            run_id = f.run_id
            if self._dedup:
                key = (run_id, f.event_id)
                if key in seen:
                    continue
                seen.add(key)
            run = runs.get(run_id)
            if run is None:
                run = runs[run_id] = RunFold(run_id)
            run.apply_record(f)
            changed.add(run_id)
        return changed

    def drop(self, run_id: str) -> None:
        """Forget a run (retention). Its event ids stay known only in the store."""
        self.runs.pop(run_id, None)


def snapshot_of(
    events: Iterable[ev.RunEvent],
    run_id: str,
    selection: Selection | None = None,
    now_ns: int = 0,
    stale_after_ns: int | None = None,
) -> db.DashboardSnapshot | None:
    """The snapshot of ``run_id`` from a set of events (pure; duplicates ignored); None if no event."""
    fold = Fold()
    for e in events:
        fold.apply(e)
    run = fold.runs.get(run_id)
    return run.snapshot(selection, now_ns, stale_after_ns) if run else None
