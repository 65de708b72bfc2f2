"""The receiver core: store, on-demand folds, snapshot cache and watchers, independent of transport.

The gRPC servicers and the HTTP app are thin adapters over :class:`Receiver`.

The store is the source of truth (:mod:`vfo_otel.receiver._store`: SQLite or PostgreSQL);
everything here is a cache of it. A run's fold is built from its stored events when the run
is first read or written, kept in a bounded LRU cache (``config.fold_cache_events`` events in
all, ``config.fold_cache_runs`` runs; a run with watchers is never evicted) and brought up to
date by reading the revisions after its own (a run's revision is the number of its distinct
stored events: the same number in every process). Start-up reads no event: the runs list
comes from the store's runs table, whose list items (header, summary) are written from the
folds shortly after each change (``ITEM_DELAY_S``), and refolded from the events when missing.

Ingest path (``ingest``): the store commits the new events (durable before acknowledged)
and numbers them, then the cached fold applies them on the event loop (or catches up from the
store when another receiver wrote in between) and every watcher of a changed run wakes up. The
number of events being stored at once is bounded by ``max_pending_events``; past it,
:class:`~vfo_otel.receiver.Overloaded` is raised (the servers answer UNAVAILABLE with retry
information). A store that cannot be reached is UNAVAILABLE too, for writes and reads.

Shared store (PostgreSQL): other receivers' changes arrive as run ids (LISTEN/NOTIFY); the
runs this receiver caches or watches catch up from the store, and after a reconnect of the
notification channel every cached run is checked again.

Liveness (``check_liveness``, every ``config.liveness_interval_s``): for every run the runs
table does not know as terminal, running or waiting node attempts whose newest event is older
than ``stale_after_s`` are flagged ``stale`` in snapshots; when a run's set of stale attempts
changes, its cached snapshots are dropped and its watchers get a snapshot at once (with the
same revision when no event arrived). With ``heartbeat_lost_after_s`` set, an attempt silent
for that long is ended with a synthetic ``failed``/``HeartbeatLost`` event, ingested through
the normal store path (durable, de-duplicated by a deterministic event id, so every replica
writing it stores it once; a later real terminal event wins).

Thread/async contract: every coroutine runs on the receiver's event loop; the store does its
blocking work off the loop; a cold run is folded on a worker thread before the loop sees it.
Folds and caches are touched only on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from google.protobuf import json_format

from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import HEARTBEAT_LOST as _HEARTBEAT_LOST
from vfo_otel.receiver import _checkpoint
from vfo_otel.receiver._config import ReceiverConfig
from vfo_otel.receiver._errors import Invalid, NotFound, Overloaded
from vfo_otel.receiver._fold import ActiveAttempt, AttemptKey, RunFold, SilentEntity
from vfo_otel.receiver._record import EventRecord, record_of
from vfo_otel.receiver._selection import Selection, parse_asset_page_token
from vfo_otel.receiver._store import RunItem, Store, StoreError, open_store
from vfo_otel.receiver._telemetry import ReceiverTelemetry

__all__ = [
    "HEARTBEAT_LOST",
    "LIVENESS_SOURCE_ID",
    "Receiver",
    "ReceiverStats",
    "heartbeat_lost_event",
    "make_selection",
    "run_fold_of",
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

_log = logging.getLogger("vfo_otel.receiver")

#: How often a running receiver re-applies retention (seconds); also applied at start.
RETENTION_INTERVAL_S = 3600.0
#: How long after a change a run's list item (header, summary) is written to the runs table
#: (changes within it are written once: building an item digests the run's changed assets, so a
#: run under ingest pays for it at most once a second); ``list_runs`` of this receiver writes
#: pending ones first, so only other receivers' lists can lag by this much.
ITEM_DELAY_S = 1.0
#: At most this many runs with no list item yet are folded by one ``list_runs`` (the rest, and
#: items behind their revision, by the background repair: at start, then every
#: ``REPAIR_INTERVAL_S``).
LIST_REPAIR_RUNS = 100
REPAIR_INTERVAL_S = 60.0
#: How long a request waits for an unreachable store before it is answered UNAVAILABLE.
STORE_RETRY_AFTER_S = 1.0


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


def run_fold_of(run_id: str, payloads: Sequence[bytes], fold: RunFold | None = None) -> RunFold:
    """Fold serialized RunEvents (a run's revisions in order, none seen before) into ``fold``
    (a new :class:`RunFold` when None); pure, safe on any thread for a fold no one else holds."""
    run = RunFold(run_id) if fold is None else fold
    parse, apply = ev.RunEvent.FromString, run.apply_record
    for payload in payloads:
        apply(record_of(parse(payload)))
    return run


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """A store error while reading: UNAVAILABLE with retry information (the store may come back)."""
    try:
        yield
    except StoreError as exc:
        raise Overloaded(f"event store unavailable: {exc}", retry_after_s=STORE_RETRY_AFTER_S) from exc


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
        folds_built: runs folded from their stored events (cache misses).
        cached_runs, cached_events: runs in the fold cache and their events (its weight).
        notifications: run changes announced by other receivers (shared store).
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
    folds_built: int = 0
    cached_runs: int = 0
    cached_events: int = 0
    notifications: int = 0
    internal_errors: int = 0
    by_signal: dict[str, int] = field(default_factory=dict)


class _RunWatch:
    """Wakes watchers of one run when its revision grows."""

    def __init__(self) -> None:
        self.cond = asyncio.Condition()
        self.watchers = 0


class Receiver:
    """Serves per-run snapshots folded on demand from the store, and ingests into it.

    Args:
        config: the validated receiver configuration.
        store: the store to use (default: :func:`~vfo_otel.receiver._store.open_store` of
            ``config.store_path``); the receiver opens and closes it.
    """

    def __init__(self, config: ReceiverConfig, store: Store | None = None) -> None:
        self.config = config
        self.stats = ReceiverStats()
        self.telemetry = ReceiverTelemetry(self)  # GET /metrics
        #: Called on the loop with the records new to the store after each commit (and, at
        #: start, with every stored event); must not block (the OpenLineage sink only queues,
        #: and skips what it delivered before).
        self.after_commit: list[Callable[[Sequence[EventRecord]], None]] = []
        self._store_to_open = store
        self._store: Store | None = None
        self._pending = 0
        self._watches: dict[str, _RunWatch] = {}
        self._folds: OrderedDict[str, RunFold] = OrderedDict()  # LRU: oldest first
        self._weight = 0  # events in the cached folds
        self._locks: dict[str, asyncio.Lock] = {}
        self._cache: dict[tuple[str, Selection], tuple[int, int, db.DashboardSnapshot]] = {}
        self._json_cache: dict[tuple[str, Selection], tuple[db.DashboardSnapshot, str]] = {}
        self._stale: dict[str, frozenset[AttemptKey]] = {}
        self._epoch: dict[str, int] = {}  # bumps when a run's stale set changes with no new event
        self._dirty: set[str] = set()  # runs whose list item is behind their fold
        self._new_runs = 0  # runs created since the last retention sweep
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []
        self._item_task: asyncio.Task[None] | None = None
        self._retention_soon: asyncio.Task[None] | None = None
        self._saved: dict[str, int] = {}  # revision of each run's checkpoint in the store, when known
        self._saves: set[asyncio.Task[None]] = set()
        self._save_lock = asyncio.Lock()  # one checkpoint dump at a time

    @property
    def store(self) -> Store | None:
        """The open store (None before start and after stop)."""
        return self._store

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store (nothing is replayed: runs are folded when first read or written).

        Raises:
            vfo_otel.receiver.StoreError: the store cannot be opened.
        """
        if self._started:
            return
        store = self._store_to_open or open_store(
            self.config.store_path, fsync=self.config.fsync, pool_size=self.config.store_pool_size
        )
        await store.open()
        self._store = store
        self._started = True
        if store.shared:
            await store.listen(self._on_change)
        await self.apply_retention()
        if self.config.retention_runs is not None or self.config.retention_days is not None:
            self._tasks.append(asyncio.create_task(self._retention_loop(), name="vfo-retention"))
        self._tasks.append(asyncio.create_task(self._liveness_loop(), name="vfo-liveness"))
        self._tasks.append(asyncio.create_task(self._repair_items(), name="vfo-repair-items"))
        if self.after_commit:  # a sink (OpenLineage) gets what it may not have delivered yet
            await self._feed_stored()

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

    async def _repair_items(self) -> None:
        """Fold again the runs whose list item is missing or behind (a crash between an ingest
        and its item, a migrated store, an item write that failed): at start, then every
        ``REPAIR_INTERVAL_S``, in the background. Runs this receiver caches write their own."""
        while True:
            try:
                await self._repair_pass()
            except StoreError:
                _log.warning("could not repair run list items; retrying later", exc_info=True)
            await asyncio.sleep(REPAIR_INTERVAL_S)

    async def _repair_pass(self, limit: int = 200, *, missing_only: bool = False) -> None:
        store = self._store
        done: set[str] = set()
        while store is not None:
            stale = [
                r for r in await store.stale_items(limit, missing_only=missing_only)
                if r not in done and r not in self._folds and r not in self._dirty
            ]
            if not stale:
                return
            for run_id in stale:
                done.add(run_id)
                if await self._fold_of(run_id, refresh=True) is not None:
                    self._dirty.add(run_id)
            await self._write_items()
            if missing_only:
                return

    def _stale_after_ns(self) -> int:
        return int(self.config.stale_after_s * 1e9)

    async def check_liveness(self, now_ns: int | None = None) -> int:
        """Flag stale attempts and, with the HeartbeatLost policy on, end silent ones.

        Looks at every run the runs table does not know as terminal (folding it if it is not
        cached). Runs on the event loop (also called by the liveness task every
        ``config.liveness_interval_s``). Returns the number of HeartbeatLost events written.

        Raises:
            Overloaded, vfo_otel.receiver.StoreError: reading the runs or writing the synthetic
                events failed (retried at the next check).
        """
        store = self._store
        if store is None:
            return 0
        now = time.time_ns() if now_ns is None else now_ns
        stale_after = self._stale_after_ns()
        lost_s = self.config.heartbeat_lost_after_s
        lost: list[ev.RunEvent] = []
        total = 0
        for run_id in await store.unfinished_runs():
            run = await self._fold_of(run_id)
            if run is None:
                continue
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
                silent = run.silent_entities(now, lost_ns)  # runs, pipelines, assets (docs/fold.md)
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
        """Write pending list items, close the store (safe to call twice or before start)."""
        tasks = [*self._tasks, self._item_task, self._retention_soon]
        self._tasks, self._item_task, self._retention_soon = [], None, None
        for task in tasks:
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._saves:
            await asyncio.gather(*self._saves, return_exceptions=True)
        if self._store is not None:
            with contextlib.suppress(StoreError):
                await self._write_items()
                for run_id, run in list(self._folds.items()):  # the big runs' folds outlive the process
                    await self._save(run_id, run, on_thread=False)
            store, self._store = self._store, None
            await store.close()
        self._started = False

    # -- the fold cache ------------------------------------------------------------------

    def _lock_of(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            if len(self._locks) > 4 * max(len(self._folds), 256):  # forget idle locks of uncached runs
                for rid in [r for r, lk in self._locks.items() if not lk.locked() and r not in self._folds]:
                    del self._locks[rid]
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    def _put(self, run_id: str, run: RunFold, before: int) -> None:
        """Cache ``run`` (``before``: the events it held when it was last counted), evicting the
        coldest unwatched runs past the cache's bounds (the newest one always stays)."""
        self._folds[run_id] = run
        self._folds.move_to_end(run_id)
        self._weight += run.revision - before
        self._shrink()

    def _shrink(self) -> None:
        """Evict the coldest runs while the cache is over its bounds; the most recently used
        run, runs with watchers and runs whose list item is not written yet stay."""
        max_events, max_runs = self.config.fold_cache_events, self.config.fold_cache_runs
        if self._weight > max_events or len(self._folds) > max_runs:
            newest = next(reversed(self._folds), None)
            for rid in list(self._folds):
                if self._weight <= max_events and len(self._folds) <= max_runs:
                    break
                if rid == newest or rid in self._dirty:
                    continue
                watch = self._watches.get(rid)
                if (watch is not None and watch.watchers) or self._lock_of(rid).locked():
                    continue
                self._evict(rid)
        self.stats.cached_runs, self.stats.cached_events = len(self._folds), self._weight

    def _evict(self, run_id: str, *, save: bool = True) -> None:
        old = self._folds.pop(run_id, None)
        if old is not None:
            self._weight -= old.revision
            # no one mutates it now: dump it on a thread (at most 4 waiting: each holds its fold)
            if save and len(self._saves) < 4 and self._needs_save(run_id, old):
                task = asyncio.get_running_loop().create_task(self._save(run_id, old), name="vfo-checkpoint")
                self._saves.add(task)
                task.add_done_callback(self._saves.discard)
        for key in [k for k in self._cache if k[0] == run_id]:
            del self._cache[key]
            self._json_cache.pop(key, None)
        self.stats.cached_runs, self.stats.cached_events = len(self._folds), self._weight

    async def _fold_of(
        self, run_id: str, *, refresh: bool = False, cached_only: bool = False
    ) -> RunFold | None:
        """The run's fold: from the cache, else folded from the store (None: no event stored).

        Args:
            refresh: also read the revisions stored after the cached fold's (another receiver
                or a concurrent ingest wrote them).
            cached_only: None rather than folding a run that is not cached (once any fold of it
                in progress is done).

        Raises:
            StoreError: the store cannot be read.
        """
        run = self._folds.get(run_id)
        if run is not None and not refresh:
            self._folds.move_to_end(run_id)
            return run
        store = self._store
        if store is None:
            raise StoreError("receiver is not started")
        async with self._lock_of(run_id):
            run = self._folds.get(run_id)
            if run is not None and not refresh:
                return run
            if run is None and cached_only:
                return None
            before = run.revision if run is not None else 0
            if run is None:
                run, payloads = await self._cold_fold(store, run_id)
                if run is None and not payloads:
                    return None
                if len(payloads) > 2000:  # a cold run of size: fold it off the loop
                    run = await asyncio.to_thread(run_fold_of, run_id, payloads, run)
                else:
                    run = run_fold_of(run_id, payloads, run)
                self.stats.folds_built += 1
            else:
                payloads = await store.events(run_id, before)
                if payloads:
                    run_fold_of(run_id, payloads, run)
                elif refresh and await self._removed(store, run_id, run):
                    return None
            self._put(run_id, run, before)
            return run

    async def _removed(self, store: Store, run_id: str, run: RunFold) -> bool:
        """True (and the run forgotten) when the store no longer has the run as cached
        (deleted by retention, possibly re-created since: then it is folded again)."""
        row = await store.run(run_id)
        if row is not None and row.revision >= run.revision:
            return False
        self._forget(run_id)
        return True

    def _needs_save(self, run_id: str, run: RunFold) -> bool:
        return run.revision >= _checkpoint.MIN_EVENTS and self._saved.get(run_id, 0) < run.revision

    async def _save(self, run_id: str, run: RunFold, *, on_thread: bool = True) -> None:
        """Save the fold checkpoint of an evicted (or, at stop, cached) big run; failures only log."""
        store = self._store
        if store is None or not self._needs_save(run_id, run):
            return
        try:
            async with self._save_lock:
                blob = await asyncio.to_thread(_checkpoint.dump, run) if on_thread else _checkpoint.dump(run)
                await store.put_checkpoint(run_id, run.revision, _checkpoint.FOLD_CODE, blob)
            self._saved[run_id] = run.revision
        except Exception:  # a cache: the events stay the truth
            _log.warning("run %r: could not save its fold checkpoint", run_id, exc_info=True)

    async def _cold_fold(self, store: Store, run_id: str) -> tuple[RunFold | None, list[bytes]]:
        """A fold from the run's checkpoint of this fold code, if any, and the events after it."""
        saved = await store.checkpoint(run_id)
        if saved is not None and saved[1] == _checkpoint.FOLD_CODE:
            try:
                run = await asyncio.to_thread(_checkpoint.load, saved[2])
            except ValueError:
                _log.warning("run %r: ignoring an unreadable fold checkpoint", run_id, exc_info=True)
            else:
                if run.run_id == run_id and run.revision == saved[0]:
                    self._saved[run_id] = run.revision
                    return run, await store.events(run_id, run.revision)
        return None, await store.events(run_id, 0)

    def _forget(self, run_id: str) -> None:
        self._saved.pop(run_id, None)
        self._evict(run_id, save=False)
        self._stale.pop(run_id, None)
        self._epoch.pop(run_id, None)
        self._dirty.discard(run_id)

    async def run_fold(self, run_id: str) -> RunFold:
        """The current fold of a run (cached, or folded from the store).

        Raises:
            NotFound: unknown run. Invalid: empty run id. Overloaded: the store is unreachable.
        """
        if not run_id:
            raise Invalid("run_id is required")
        with _unavailable():
            run = await self._fold_of(run_id)
        if run is None:
            raise NotFound(f"run {run_id!r} not found")
        return run

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
            appended = await store.append(events)
        finally:
            self._pending -= len(events)
        self.telemetry.commit_done(time.perf_counter() - started)
        new = appended.records
        self.stats.events_received += len(events)
        self.stats.events_stored += len(new)
        self.stats.duplicates += len(events) - len(new)
        self.stats.by_signal[signal] = self.stats.by_signal.get(signal, 0) + len(new)
        if not new:
            return 0
        if self.after_commit:
            self._after_commit(new)
        by_run: dict[str, list[EventRecord]] = {}
        for r in new:
            by_run.setdefault(r.run_id, []).append(r)
        for run_id, records in by_run.items():
            base = appended.bases[run_id]
            if base == 0:
                self._new_runs += 1
            try:
                await self._advance(run_id, base, records)
            except StoreError:  # stored and acknowledged: the fold catches up at the next read
                _log.warning("run %r: stored, but could not be folded now", run_id, exc_info=True)
                self._evict(run_id)
        if self._over_run_margin():
            self._schedule_retention()  # retention_runs bounds the store, not only the hourly sweep
        self._schedule_items()
        return len(new)

    def _after_commit(self, records: Sequence[EventRecord]) -> None:
        for hook in self.after_commit:
            try:
                hook(records)
            except Exception:  # the events are committed: a hook's failure never fails ingest
                _log.exception("after-commit hook failed")

    async def _feed_stored(self) -> None:
        """Hand every stored event to the after-commit hooks, run by run, at start (the sinks
        skip what they delivered before): what was committed but not delivered before a restart
        is delivered now. Only with a hook: otherwise start reads no event."""
        store = self._store
        offset = 0
        while store is not None and self.after_commit:
            rows = await store.list_items(offset, 200)
            for row in rows:
                payloads = await store.events(row.run_id)
                self._after_commit([record_of(ev.RunEvent.FromString(p)) for p in payloads])
            if len(rows) < 200:
                return
            offset += len(rows)

    async def _advance(self, run_id: str, base: int, records: list[EventRecord]) -> None:
        """Fold a run's new records (revisions ``base + 1 ..``): straight into the cached fold
        when it holds exactly the revisions before them, else by reading from the store."""
        run = self._folds.get(run_id)
        busy = self._lock_of(run_id).locked()
        if run is None and base == 0 and not busy:  # a new run: these are all its events
            run = RunFold(run_id)
            for r in records:
                run.apply_record(r)
            self._put(run_id, run, 0)
        elif run is not None and run.revision >= base + len(records) and not busy:
            pass  # a catch-up (another receiver's notification) already read these revisions
        elif run is not None and run.revision == base and not busy:
            for r in records:
                run.apply_record(r)
            self._put(run_id, run, base)
        else:
            found = await self._fold_of(run_id, refresh=True)
            if found is None:
                return
            run = found
        self._changed_run(run_id, run)
        await self._wake(run_id)

    def _changed_run(self, run_id: str, run: RunFold) -> None:
        """A run's revision moved: its stale set is re-read (no epoch bump), its item is due."""
        self._stale[run_id] = run.stale_keys(time.time_ns(), self._stale_after_ns())
        self._dirty.add(run_id)

    def _schedule_items(self) -> None:
        if self._item_task is None or self._item_task.done():
            self._item_task = asyncio.create_task(self._items_soon(), name="vfo-run-items")

    async def _items_soon(self) -> None:
        await asyncio.sleep(ITEM_DELAY_S)
        try:
            await self._write_items()
        except StoreError:  # the items stay dirty; stale_items() finds them after a restart
            _log.warning("could not write run list items; retrying with the next change", exc_info=True)

    def _item(self, run_id: str, run: RunFold) -> RunItem:
        header = run.header()
        summary = run.summary()
        item = db.RunListItem(run=header, summary=summary, revision=run.revision)
        return RunItem(
            run_id, run.revision, header.state, header.start_time.ToNanoseconds(), item.SerializeToString()
        )

    async def _write_items(self) -> None:
        """Write the list items of the changed runs to the runs table."""
        store = self._store
        if store is None or not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        items = []
        for run_id in sorted(dirty):
            run = self._folds.get(run_id)
            if run is not None:
                items.append(self._item(run_id, run))
        try:
            await store.put_items(items)
        except BaseException:
            self._dirty |= {i.run_id for i in items}
            raise
        self._shrink()  # written runs may leave the cache now

    # -- changes from other receivers ----------------------------------------------------

    def _on_change(self, run_ids: Sequence[str] | None) -> None:
        """Called by the store's listener with runs other receivers changed (None: catch up all)."""
        locks = self._locks
        if run_ids is None:
            todo = set(self._folds) | set(self._watches) | {r for r, lk in locks.items() if lk.locked()}
        else:
            self.stats.notifications += len(run_ids)
            # a run being folded now (its lock held) may have read the store before this change
            todo = {
                r for r in run_ids
                if r in self._folds or r in self._watches or (r in locks and locks[r].locked())
            }
        if todo:
            task = asyncio.create_task(self._catch_up(sorted(todo)), name="vfo-catch-up")
            self._tasks.append(task)
            task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _catch_up(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            try:
                before = self._folds.get(run_id)
                rev = before.revision if before is not None else -1
                watched = run_id in self._watches
                run = await self._fold_of(run_id, refresh=True, cached_only=not watched)
                if run is None:
                    watch = self._watches.get(run_id)
                    if watch is not None:
                        await self._wake(run_id)  # its watchers end with NotFound
                    continue
                if run.revision != rev:
                    self._stale[run_id] = run.stale_keys(time.time_ns(), self._stale_after_ns())
                    await self._wake(run_id)
            except StoreError:
                _log.warning("run %r: could not catch up with the store", run_id, exc_info=True)

    # -- retention -----------------------------------------------------------------------

    def _schedule_retention(self) -> None:
        """Run retention soon, once at a time (runs on the loop; ingest does not wait for it)."""
        if self._retention_soon is not None and not self._retention_soon.done():
            return

        async def sweep() -> None:
            try:
                # Runs created while a sweep ran are not in it: sweep again while there are more
                # than the margin, so the bound holds once ingest pauses, whatever the load.
                while True:
                    await self.apply_retention()
                    if not self._over_run_margin():
                        return
            except Exception:  # never crash after start; the next ingest or sweep tries again
                _log.exception("retention failed")

        self._retention_soon = asyncio.create_task(sweep(), name="vfo-retention-now")

    def _over_run_margin(self) -> bool:
        """More new runs since the last sweep than 10% of ``retention_runs`` (at least 1)."""
        limit = self.config.retention_runs
        return limit is not None and self._new_runs > max(limit // 10, 1)

    @property
    def pending_events(self) -> int:
        """Events of exports being stored right now (bounded by ``max_pending_events``)."""
        return self._pending

    async def apply_retention(self) -> list[str]:
        """Remove runs outside retention from the store and the caches; returns their ids.

        Runs are deleted in batches; a run that got an event after it was chosen is kept.
        """
        store = self._store
        if store is None or (self.config.retention_runs is None and self.config.retention_days is None):
            return []
        self._new_runs = 0
        min_time = None
        if self.config.retention_days is not None:
            min_time = time.time_ns() - int(self.config.retention_days * 86400e9)
        chosen = await store.expired_runs(max_runs=self.config.retention_runs, min_time_ns=min_time)
        expired = await store.delete_runs(chosen) if chosen else []
        for run_id in expired:
            self._forget(run_id)
            await self._wake(run_id)  # its watchers end with NotFound
        self.stats.runs_expired += len(expired)
        return expired

    # -- reads -------------------------------------------------------------------------

    async def check_run(self, run_id: str, selection: Selection | None = None) -> None:
        """Raise what :meth:`snapshot` would for this run and selection: NotFound (unknown
        run) or Invalid (empty id, a page token of another run's pipeline); return otherwise."""
        self._check_selection(await self.run_fold(run_id), run_id, selection)

    @staticmethod
    def _check_selection(run: RunFold, run_id: str, sel: Selection | None) -> None:
        if sel is not None and sel.asset_page_token:
            pid = parse_asset_page_token(sel.asset_page_token)[0]
            if pid not in run.pipelines:
                raise Invalid(
                    f"asset_page_token names pipeline {pid!r}, which run {run_id!r} does not have:"
                    " pass a token from a snapshot of this run"
                )

    async def snapshot(self, run_id: str, selection: Selection | None = None) -> db.DashboardSnapshot:
        """The current DashboardSnapshot of a run (cached per revision and selection).

        Raises:
            NotFound: unknown run. Invalid: empty run id, or an asset page token that names a
                pipeline this run does not have. Overloaded: the store is unreachable.
        """
        return self._snapshot(run_id, await self.run_fold(run_id), selection)

    def _snapshot(self, run_id: str, run: RunFold, selection: Selection | None) -> db.DashboardSnapshot:
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

    async def snapshot_json(
        self, run_id: str, selection: Selection | None = None, snap: db.DashboardSnapshot | None = None
    ) -> str:
        """The snapshot as protobuf JSON (the HTTP body), encoded once per revision and selection.

        Args:
            snap: encode this snapshot of the run (e.g. one a watch yielded) instead of the current one.

        Raises:
            NotFound: unknown run. Invalid: empty run id. Overloaded: the store is unreachable.
        """
        if snap is None:
            snap = await self.snapshot(run_id, selection)
        key = (run_id, selection or Selection())
        cached = self._json_cache.get(key)
        if cached is not None and cached[0] is snap:
            return cached[1]
        text = json_format.MessageToJson(snap, indent=None)
        self._json_cache[key] = (snap, text)
        return text

    async def list_runs(
        self, page_size: int = 50, page_token: str = "", state: int = 0
    ) -> db.ListRunsResponse:
        """Runs newest first (by start time, then run id), filtered by state, paged; read from
        the runs table (this receiver's pending items are written first).

        Raises:
            Invalid: a malformed page token or page size over 1000. Overloaded: the store is
                unreachable.
        """
        if page_size > 1000:
            raise Invalid("page_size must be <= 1000")
        if page_size < 0:
            raise Invalid(f"page_size must be >= 0, got {page_size}")
        size = page_size or 50
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
        store = self._store
        if store is None:
            raise Overloaded("receiver is not started", retry_after_s=1.0)
        with _unavailable():
            await self._write_items()
            # runs with no item at all (a migrated store, a crash before the first): folded now
            await self._repair_pass(LIST_REPAIR_RUNS, missing_only=True)
            rows = await store.list_items(offset, size + 1, state)
        out = db.ListRunsResponse()
        for row in rows[:size]:
            assert row.item is not None
            item = out.runs.add()
            item.ParseFromString(row.item)
            stale = self._stale.get(row.run_id)
            run = self._folds.get(row.run_id)
            if stale and run is not None:
                item.summary.stale_nodes = run.summary(stale).stale_nodes
        if len(rows) > size:
            out.next_page_token = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return out

    async def watch(
        self, run_id: str, selection: Selection | None = None, after_revision: int = 0
    ) -> AsyncIterator[db.DashboardSnapshot]:
        """Yield the run's snapshot now if newer than ``after_revision``, then at each new revision
        and whenever the run's set of stale attempts changes (then the revision may be the same).

        Revisions may be coalesced: a slow reader gets the newest, never an older one.

        Raises:
            NotFound: unknown run (when the watch starts), or the run was removed.
            Invalid: as :meth:`check_run`. Overloaded: the store is unreachable.
        """
        await self.check_run(run_id, selection)
        watch = self._watches.setdefault(run_id, _RunWatch())
        watch.watchers += 1
        self.telemetry.watchers += 1  # a live stream, until it ends however it ends
        try:
            last = after_revision
            last_epoch = self._epoch.get(run_id, 0)
            while True:
                run = self._folds.get(run_id)
                if run is None:
                    with _unavailable():
                        run = await self._fold_of(run_id)
                    if run is None:
                        raise NotFound(f"run {run_id!r} was removed")
                epoch = self._epoch.get(run_id, 0)
                if run.revision > last or epoch != last_epoch:
                    snap = self._snapshot(run_id, run, selection)
                    last, last_epoch = max(last, snap.revision), epoch
                    yield snap
                    continue
                async with watch.cond:
                    await watch.cond.wait_for(functools.partial(self._changed, run_id, last, last_epoch))
        finally:
            self.telemetry.watchers -= 1
            watch.watchers -= 1
            if not watch.watchers and self._watches.get(run_id) is watch:
                del self._watches[run_id]  # the table holds only runs someone watches

    @property
    def watched_runs(self) -> int:
        """Runs with at least one live watcher (the size of the watcher table)."""
        return len(self._watches)

    @property
    def snapshot_cache_size(self) -> int:
        """Snapshots held in the cache now."""
        return len(self._cache)

    @property
    def cached_runs(self) -> int:
        """Runs whose fold is in the cache now."""
        return len(self._folds)

    def _changed(self, run_id: str, revision: int, epoch: int) -> bool:
        """True when the run left the cache (removed or evicted), has a revision greater than
        ``revision``, or its stale set changed since ``epoch``."""
        run = self._folds.get(run_id)
        return run is None or run.revision > revision or self._epoch.get(run_id, 0) != epoch
