"""The receiver core: store, fold, snapshot cache and watchers, independent of transport.

The gRPC servicers and the HTTP app are thin adapters over :class:`Receiver`.

Ingest path (``ingest``): the store commits the new events on its own thread (durable
before acknowledged), then the fold applies them on the event loop and every watcher of
a changed run wakes up. The number of events being stored at once is bounded by
``max_pending_events``; past it, :class:`~vfo_otel.receiver.Overloaded` is raised (the
servers answer UNAVAILABLE with retry information).
Events arrive as :class:`~vfo_otel.receiver._record.EventRecord`, the decoder's hand-off type.

Liveness (``_liveness_loop``, every ``config.liveness_interval_s``): running or waiting
node attempts whose newest event is older than ``stale_after_s`` are flagged ``stale`` in
snapshots; when a run's set of stale attempts changes, its cached snapshots are dropped
and its watchers get a snapshot at once (with the same revision when no event arrived).
With ``heartbeat_lost_after_s`` set, an attempt silent for that long is ended with a
synthetic ``failed``/``HeartbeatLost`` event, ingested through the normal store path
(durable, de-duplicated by a deterministic event id; a later real terminal event wins).

Thread/async contract: every coroutine runs on the receiver's event loop; blocking store
calls go to one dedicated thread. Fold and caches are touched only on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from google.protobuf import json_format

from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import HEARTBEAT_LOST as _HEARTBEAT_LOST
from vfo_otel.receiver._config import ReceiverConfig
from vfo_otel.receiver._errors import Invalid, NotFound, Overloaded
from vfo_otel.receiver._fold import ActiveAttempt, AttemptKey, Fold, RunFold, SilentEntity
from vfo_otel.receiver._record import EventRecord, record_of
from vfo_otel.receiver._selection import Selection, parse_asset_page_token
from vfo_otel.receiver._sqlite import EventStore
from vfo_otel.receiver._telemetry import ReceiverTelemetry

__all__ = [
    "HEARTBEAT_LOST",
    "LIVENESS_SOURCE_ID",
    "Receiver",
    "ReceiverStats",
    "heartbeat_lost_event",
    "make_selection",
    "silent_entity_event",
]

#: error_class of the synthetic event that ends an entity that went silent (the contract's).
HEARTBEAT_LOST = _HEARTBEAT_LOST
#: source_id of the events the receiver itself writes (synthetic HeartbeatLost events).
LIVENESS_SOURCE_ID = "vfo-otel-receiver"


def make_selection(
    pipeline_id: str = "", asset_id: str = "", asset_page_size: int = 0, asset_page_token: str = ""
) -> Selection:
    """A :class:`~vfo_otel.receiver.Selection` from request fields (GetSnapshotRequest,
    WatchSnapshotRequest, or the HTTP query of the same names).

    Raises:
        Invalid: an asset without its pipeline, a page size over
            :data:`~vfo_otel.receiver.MAX_ASSET_PAGE_SIZE`, or a malformed page token.
    """
    if asset_id and not pipeline_id:
        raise Invalid("asset_id needs pipeline_id: an asset id is unique only within its pipeline")
    try:
        return Selection(pipeline_id, asset_id, asset_page_size, asset_page_token)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def heartbeat_lost_event(run_id: str, attempt: ActiveAttempt, lost_after_ns: int) -> ev.RunEvent:
    """The synthetic ``failed`` / ``HeartbeatLost`` event that ends a silent attempt (pure).

    Its time is the attempt's newest event time + ``lost_after_ns``, and its event id is
    derived from the attempt key and that newest event time, so a restarted receiver or a
    second replica deciding the same thing writes the same event (stored once).
    """
    pipeline_id, asset_id, node_id, attempt_id = attempt.key
    h = hashlib.sha256(b"vfo-heartbeat-lost")
    for part in (run_id, pipeline_id, asset_id, node_id, str(attempt_id), str(attempt.last_ns)):
        h.update(b"\x1f" + part.encode())
    event = ev.RunEvent(
        event_id="hbl-" + h.hexdigest()[:32],
        scope=ev.SCOPE_NODE,
        state=ev.STATE_FAILED,
        run_id=run_id,
        pipeline_id=pipeline_id,
        asset_id=asset_id,
        node_id=node_id,
        stage_id=attempt.stage_id,
        attempt_id=attempt_id,
        synthetic=True,
        source_id=LIVENESS_SOURCE_ID,
        error=ev.Error(
            error_class=HEARTBEAT_LOST,
            detail=(
                f"no event (heartbeat or transition) for {lost_after_ns / 1e9:g} s; "
                "its worker is presumed gone"
            ),
        ),
    )
    event.time.FromNanoseconds(attempt.last_ns + lost_after_ns)
    return event


def silent_entity_event(run_id: str, entity: SilentEntity, lost_after_ns: int) -> ev.RunEvent:
    """The synthetic ``failed`` / ``HeartbeatLost`` event that ends a silent run, pipeline or
    asset (pure): time = its newest activity + ``lost_after_ns``; event id derived from the
    entity key and that time, so every replica and restart writes the same event (stored once)."""
    h = hashlib.sha256(b"vfo-entity-lost")
    for part in (run_id, str(entity.scope), entity.pipeline_id, entity.asset_id, str(entity.last_ns)):
        h.update(b"\x1f" + part.encode())
    event = ev.RunEvent(
        event_id="hbl-" + h.hexdigest()[:32],
        scope=entity.scope,  # type: ignore[arg-type]
        state=ev.STATE_FAILED,
        run_id=run_id,
        pipeline_id=entity.pipeline_id,
        asset_id=entity.asset_id,
        synthetic=True,
        source_id=LIVENESS_SOURCE_ID,
        error=ev.Error(
            error_class=HEARTBEAT_LOST,
            detail=(
                f"no event of its own or of a descendant for {lost_after_ns / 1e9:g} s; "
                "its runner is presumed gone"
            ),
        ),
    )
    event.time.FromNanoseconds(entity.last_ns + lost_after_ns)
    return event

_log = logging.getLogger("vfo_otel.receiver")

#: How often a running receiver re-applies retention (seconds); also applied at start.
RETENTION_INTERVAL_S = 3600.0


@dataclass
class ReceiverStats:
    """Counters of the receiver (exposed at ``GET /v1/stats``).

    Attributes:
        events_received: vfo events decoded from OTLP requests.
        events_stored: events new to the store (duplicates excluded).
        duplicates: events already stored (retries, log + span event paths).
        rejected: records rejected as malformed (reported through partial_success).
        ignored: OTLP records that are not vfo telemetry.
        overloaded: requests answered UNAVAILABLE because the ingest queue was full.
        runs_expired: runs removed by retention.
        stale_nodes: node attempts flagged stale now (running/waiting, silent past stale_after_s).
        heartbeat_lost: synthetic HeartbeatLost events written by this receiver.
        internal_errors: requests that failed on a fault of the receiver itself (logged with
            their traceback; clients get INTERNAL / 500 without details).
    """

    events_received: int = 0
    events_stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0
    overloaded: int = 0
    runs_expired: int = 0
    metrics_points_ignored: int = 0
    stale_nodes: int = 0
    heartbeat_lost: int = 0
    internal_errors: int = 0
    by_signal: dict[str, int] = field(default_factory=dict)


class _RunWatch:
    """Wakes watchers of one run when its revision grows."""

    def __init__(self) -> None:
        self.cond = asyncio.Condition()
        self.watchers = 0  # the entry is removed when the last watcher leaves


class Receiver:
    """Folds ingested events into per-run snapshots and serves them.

    Args:
        config: the validated receiver configuration.
    """

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.stats = ReceiverStats()
        self.telemetry = ReceiverTelemetry(self)  # GET /metrics
        #: Called on the loop with the records new to the store after each commit, and with every
        #: replayed record at start; must not block (the OpenLineage sink only queues).
        self.after_commit: list[Callable[[Sequence[EventRecord]], None]] = []
        self.fold = Fold(dedup=False)  # the store de-duplicates
        self._store: EventStore | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfo-store")
        self._pending = 0
        self._watches: dict[str, _RunWatch] = {}
        self._cache: dict[tuple[str, Selection], tuple[int, int, db.DashboardSnapshot]] = {}
        self._json_cache: dict[tuple[str, Selection], tuple[db.DashboardSnapshot, str]] = {}
        self._stale: dict[str, frozenset[AttemptKey]] = {}
        self._epoch: dict[str, int] = {}  # bumps when a run's stale set changes with no new event
        self._started = False
        self._retention_task: asyncio.Task[None] | None = None
        self._liveness_task: asyncio.Task[None] | None = None
        self._retention_soon: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and replay it into the fold (snapshots survive restarts).

        Raises:
            vfo_otel.receiver.StoreError: the store cannot be opened.
        """
        if self._started:
            return
        loop = asyncio.get_running_loop()
        self._store = await loop.run_in_executor(
            self._io, lambda: EventStore(self.config.store_path, fsync=self.config.fsync)
        )
        replayed = 0
        it = self._store.replay()
        while True:
            batch = await loop.run_in_executor(self._io, next, it, None)
            if batch is None:
                break
            for e in batch:
                self.fold.apply(e)
            if self.after_commit:
                self._after_commit([record_of(e) for e in batch])
            replayed += len(batch)
        self._started = True
        if replayed:
            _log.info(
                "replayed %d events of %d run(s) from %s",
                replayed,
                len(self.fold.runs),
                self.config.store_path,
            )
        await self.apply_retention()
        if self.config.retention_runs is not None or self.config.retention_days is not None:
            self._retention_task = asyncio.create_task(self._retention_loop(), name="vfo-retention")
        self._liveness_task = asyncio.create_task(self._liveness_loop(), name="vfo-liveness")

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(RETENTION_INTERVAL_S)
            try:
                await self.apply_retention()
            except Exception:  # never crash after start; try again next time
                _log.exception("retention failed")

    async def _liveness_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.liveness_interval_s)
            try:
                await self.check_liveness()
            except Exception:  # never crash after start; try again next time
                _log.exception("liveness check failed")

    def _stale_after_ns(self) -> int:
        return int(self.config.stale_after_s * 1e9)

    async def check_liveness(self, now_ns: int | None = None) -> int:
        """Flag stale attempts and, with the HeartbeatLost policy on, end silent ones.

        Runs on the event loop (also called by the liveness task every
        ``config.liveness_interval_s``). Returns the number of HeartbeatLost events written.

        Raises:
            Overloaded, vfo_otel.receiver.StoreError: writing the synthetic events failed (retried
                at the next check).
        """
        now = time.time_ns() if now_ns is None else now_ns
        stale_after = self._stale_after_ns()
        lost_s = self.config.heartbeat_lost_after_s
        lost: list[ev.RunEvent] = []
        total = 0
        for run_id, run in list(self.fold.runs.items()):
            stale = run.stale_keys(now, stale_after)
            total += len(stale)
            if stale != self._stale.get(run_id, frozenset()):
                self._stale[run_id] = stale
                self._epoch[run_id] = self._epoch.get(run_id, 0) + 1
                await self._wake(run_id)
            if lost_s is not None:
                lost_ns = int(lost_s * 1e9)
                if stale:
                    for attempt in run.active_attempts():
                        if now - attempt.last_ns > lost_ns:
                            lost.append(heartbeat_lost_event(run_id, attempt, lost_ns))
                silent = run.silent_entities(now, lost_ns)
                lost.extend(silent_entity_event(run_id, e, lost_ns) for e in silent)
        self.stats.stale_nodes = total
        if lost:
            new = await self.ingest([record_of(e) for e in lost], "liveness")
            self.stats.heartbeat_lost += new
            return new
        return 0

    async def _wake(self, run_id: str) -> None:
        watch = self._watches.get(run_id)
        if watch is not None:
            async with watch.cond:
                watch.cond.notify_all()

    async def stop(self) -> None:
        """Close the store (safe to call twice or before start)."""
        for attr in ("_retention_task", "_liveness_task", "_retention_soon"):
            task = getattr(self, attr)
            if task is None:
                continue
            setattr(self, attr, None)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._store is not None:
            store, self._store = self._store, None
            await asyncio.get_running_loop().run_in_executor(self._io, store.close)
        self._io.shutdown(wait=False)

    # -- ingest ------------------------------------------------------------------------

    async def ingest(self, events: Sequence[EventRecord], signal: str = "logs") -> int:
        """Store then fold events (the decoder's records; :func:`record_of` makes one of any
        RunEvent); returns how many were new.

        Raises:
            Overloaded: ``max_pending_events`` would be exceeded (nothing stored).
            vfo_otel.receiver.StoreError: the store write failed (nothing acknowledged).
        """
        if not events:
            return 0
        store = self._store
        if store is None:
            raise Overloaded("receiver is not started", retry_after_s=1.0)
        if self._pending + len(events) > self.config.max_pending_events and self._pending:
            self.stats.overloaded += 1
            raise Overloaded(f"ingest queue full ({self._pending} events pending); retry later")
        self._pending += len(events)
        started = time.perf_counter()
        try:
            new = await asyncio.get_running_loop().run_in_executor(self._io, store.append, events)
        finally:
            self._pending -= len(events)
        self.telemetry.commit_done(time.perf_counter() - started)
        self.stats.events_received += len(events)
        self.stats.events_stored += len(new)
        self.stats.duplicates += len(events) - len(new)
        self.stats.by_signal[signal] = self.stats.by_signal.get(signal, 0) + len(new)
        if self.after_commit and new:
            self._after_commit(new)
        changed = self.fold.apply_records(new)
        if self._over_run_limit():
            self._schedule_retention()  # retention_runs bounds memory, not only the hourly sweep
        now, stale_after = time.time_ns(), self._stale_after_ns()
        for run_id in changed:
            run = self.fold.runs.get(run_id)
            if run is not None:  # the revision changed: the stale set is re-read without an epoch bump
                self._stale[run_id] = run.stale_keys(now, stale_after)
            await self._wake(run_id)
        return len(new)

    def _after_commit(self, records: Sequence[EventRecord]) -> None:
        for hook in self.after_commit:
            try:
                hook(records)
            except Exception:  # the events are committed: a hook's failure never fails ingest
                _log.exception("after-commit hook failed")

    def _schedule_retention(self) -> None:
        """Run retention soon, once at a time (runs on the loop; ingest does not wait for it)."""
        if self._retention_soon is not None and not self._retention_soon.done():
            return

        async def sweep() -> None:
            try:
                # Runs that arrived while a sweep ran are not in it: sweep again until under the
                # bound, so it holds once ingest pauses, whatever the machine's load.
                while True:
                    await self.apply_retention()
                    if not self._over_run_limit():
                        return
            except Exception:  # never crash after start; the next ingest or sweep tries again
                _log.exception("retention failed")

        self._retention_soon = asyncio.create_task(sweep(), name="vfo-retention-now")

    def _over_run_limit(self) -> bool:
        """More runs than ``retention_runs`` plus a margin of 10% (at least 1): sweep now."""
        limit = self.config.retention_runs
        return limit is not None and len(self.fold.runs) > limit + max(limit // 10, 1)

    @property
    def pending_events(self) -> int:
        """Events of exports being stored right now (bounded by ``max_pending_events``)."""
        return self._pending

    async def apply_retention(self) -> list[str]:
        """Remove runs outside retention from the store and the fold; returns their ids."""
        store = self._store
        if store is None or (self.config.retention_runs is None and self.config.retention_days is None):
            return []
        min_time = None
        if self.config.retention_days is not None:
            min_time = time.time_ns() - int(self.config.retention_days * 86400e9)
        loop = asyncio.get_running_loop()
        expired = await loop.run_in_executor(
            self._io, lambda: store.expired_runs(max_runs=self.config.retention_runs, min_time_ns=min_time)
        )
        if expired:
            await loop.run_in_executor(self._io, store.delete_runs, expired)
            for run_id in expired:
                self.fold.drop(run_id)
                self._stale.pop(run_id, None)
                self._epoch.pop(run_id, None)
                for key in [k for k in self._cache if k[0] == run_id]:
                    del self._cache[key]
                    self._json_cache.pop(key, None)
                watch = self._watches.get(run_id)
                if watch is not None:  # its watchers end with NotFound
                    async with watch.cond:
                        watch.cond.notify_all()
            self.stats.runs_expired += len(expired)
        return expired

    # -- reads -------------------------------------------------------------------------

    def check_run(self, run_id: str, selection: Selection | None = None) -> None:
        """Raise what :meth:`snapshot` would for this run and selection: NotFound (unknown
        run) or Invalid (empty id, a page token of another run's pipeline); return otherwise."""
        self._check_selection(self._run(run_id), run_id, selection)

    @staticmethod
    def _check_selection(run: RunFold, run_id: str, sel: Selection | None) -> None:
        if sel is not None and sel.asset_page_token:
            pid = parse_asset_page_token(sel.asset_page_token)[0]
            if pid not in run.pipelines:
                raise Invalid(
                    f"asset_page_token names pipeline {pid!r}, which run {run_id!r} does not have:"
                    " pass a token from a snapshot of this run"
                )

    def _run(self, run_id: str) -> RunFold:
        if not run_id:
            raise Invalid("run_id is required")
        run = self.fold.runs.get(run_id)
        if run is None:
            raise NotFound(f"run {run_id!r} not found")
        return run

    def snapshot(self, run_id: str, selection: Selection | None = None) -> db.DashboardSnapshot:
        """The current DashboardSnapshot of a run (cached per revision and selection).

        Raises:
            NotFound: unknown run. Invalid: empty run id, or an asset page token that names a
                pipeline this run does not have.
        """
        run = self._run(run_id)
        sel = selection or Selection()
        self._check_selection(run, run_id, sel)
        key = (run_id, sel)
        epoch = self._epoch.get(run_id, 0)
        cached = self._cache.get(key)
        hit = cached is not None and cached[0] == run.revision and cached[1] == epoch
        self.telemetry.cache_read(hit)
        if cached is not None and hit:
            return cached[2]
        snap = run.snapshot(sel, time.time_ns(), self._stale_after_ns())
        if len(self._cache) > 256:
            self._cache.clear()
            self._json_cache.clear()
        self._cache[key] = (run.revision, epoch, snap)
        return snap

    def snapshot_json(
        self, run_id: str, selection: Selection | None = None, snap: db.DashboardSnapshot | None = None
    ) -> str:
        """The snapshot as protobuf JSON (the HTTP body), encoded once per revision and selection.

        Args:
            snap: encode this snapshot of the run (e.g. one a watch yielded) instead of the current one.

        Raises:
            NotFound: unknown run. Invalid: empty run id.
        """
        if snap is None:
            snap = self.snapshot(run_id, selection)
        key = (run_id, selection or Selection())
        cached = self._json_cache.get(key)
        if cached is not None and cached[0] is snap:
            return cached[1]
        text = json_format.MessageToJson(snap, indent=None)
        self._json_cache[key] = (snap, text)
        return text

    def list_runs(self, page_size: int = 50, page_token: str = "", state: int = 0) -> db.ListRunsResponse:
        """Runs newest first (by start time, then run id), filtered by state, paged.

        Raises:
            Invalid: a malformed page token or page size over 1000.
        """
        if page_size > 1000:
            raise Invalid("page_size must be <= 1000")
        size = page_size or 50
        if page_size < 0:
            raise Invalid(f"page_size must be >= 0, got {page_size}")
        offset = 0
        if page_token:
            bad = Invalid(f"malformed page_token {page_token!r}: pass next_page_token of a response")
            try:
                text = base64.urlsafe_b64decode(page_token.encode("ascii")).decode("ascii")
            except (ValueError, UnicodeError) as exc:
                raise bad from exc
            if not (text.isdigit() and len(text) <= 12):  # digits only: no sign, no huge number
                raise bad
            offset = int(text)
        items = []
        for run in self.fold.runs.values():
            header = run.header()
            if state and header.state != state:
                continue
            items.append((header, run))
        items.sort(key=lambda hr: (hr[0].start_time.ToNanoseconds(), hr[0].run_id), reverse=True)
        out = db.ListRunsResponse()
        now, stale_after = time.time_ns(), self._stale_after_ns()
        for header, run in items[offset : offset + size]:
            summary = run.summary(run.stale_keys(now, stale_after))
            out.runs.add(run=header, summary=summary, revision=run.revision)
        if offset + size < len(items):
            out.next_page_token = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return out

    @property
    def snapshot_cache_size(self) -> int:
        """Snapshots held in the cache now."""
        return len(self._cache)

    async def watch(
        self, run_id: str, selection: Selection | None = None, after_revision: int = 0
    ) -> AsyncIterator[db.DashboardSnapshot]:
        """Yield the run's snapshot now if newer than ``after_revision``, then at each new revision
        and whenever the run's set of stale attempts changes (then the revision may be the same).

        Revisions may be coalesced: a slow reader gets the newest, never an older one.

        Raises:
            NotFound: unknown run (when the watch starts). Invalid: as :meth:`check_run`.
        """
        self.check_run(run_id, selection)
        self.telemetry.watchers += 1  # a live stream, until it ends however it ends
        try:
            async for snap in self._watch(run_id, selection, after_revision):
                yield snap
        finally:
            self.telemetry.watchers -= 1

    async def _watch(
        self, run_id: str, selection: Selection | None, after_revision: int
    ) -> AsyncIterator[db.DashboardSnapshot]:
        watch = self._watches.setdefault(run_id, _RunWatch())
        watch.watchers += 1
        try:
            last = after_revision
            last_epoch = self._epoch.get(run_id, 0)
            while True:
                run = self.fold.runs.get(run_id)
                if run is None:
                    raise NotFound(f"run {run_id!r} was removed")
                epoch = self._epoch.get(run_id, 0)
                if run.revision > last or epoch != last_epoch:
                    snap = self.snapshot(run_id, selection)
                    last, last_epoch = max(last, snap.revision), epoch
                    yield snap
                    continue
                async with watch.cond:
                    await watch.cond.wait_for(functools.partial(self._changed, run_id, last, last_epoch))
        finally:
            watch.watchers -= 1
            if watch.watchers == 0 and self._watches.get(run_id) is watch:
                del self._watches[run_id]  # the table holds only runs someone watches

    @property
    def watched_runs(self) -> int:
        """Runs with at least one live watcher (the size of the watcher table)."""
        return len(self._watches)

    def _changed(self, run_id: str, revision: int, epoch: int) -> bool:
        """True when the run was removed, has a revision greater than ``revision``, or its
        stale set changed since ``epoch``."""
        run = self.fold.runs.get(run_id)
        return run is None or run.revision > revision or self._epoch.get(run_id, 0) != epoch
