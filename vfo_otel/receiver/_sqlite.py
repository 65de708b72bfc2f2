"""The embedded event store: SQLite (stdlib), append-only, de-duplicated by (run_id, event_id).

:class:`EventStore` is the blocking store (one process: an exclusive lock file keeps a
second receiver out); :class:`SqliteStore` is its :class:`~vfo_otel.receiver._store.Store`
face for the receiver, running every call on one dedicated thread.

Durability: WAL journal. With ``synchronous=NORMAL`` (default) a commit survives a
crash or ``kill -9`` of the process (the WAL is in the OS before ``append`` returns);
``fsync=True`` sets ``synchronous=FULL`` so a commit also survives power loss. The WAL is
checkpointed into the database every ~10,000 pages (~40 MB; SQLite's default is 1,000).

Thread contract: blocking calls. One EventStore belongs to one thread at a time; the
receiver runs it on a single-thread executor (``check_same_thread`` is off for that).
Errors are ``sqlite3.Error`` subclasses, raised as :class:`StoreError` with the path.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import TERMINAL_STATES
from vfo_otel.receiver._record import EventRecord
from vfo_otel.receiver._store import Appended, RunItem, RunRow, Store, StoreError

__all__ = ["SCHEMA_VERSION", "EventStore", "SqliteStore", "StoreError"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Schema 3: each event also carries its run's revision at insert (``rev``: 1, 2, 3, ... per
#: run; the number of distinct events of the run), and ``runs`` is the runs table of the
#: receiver: revision, newest event time and the folded list item (header, summary), so a
#: restart reads no event to list runs. Schema 2 keyed an event by (run_id, event_id) (schema
#: 1 by event_id alone: every insert touched an index at a random page). The (run_id, event_id)
#: index keeps a batch's rows together and de-duplicates; (run_id, rev) serves the per-run reads.
#: Older stores are migrated when opened.
_EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   TEXT NOT NULL,
    event_id TEXT NOT NULL,
    rev      INTEGER NOT NULL,
    time_ns  INTEGER NOT NULL,
    payload  BLOB NOT NULL,
    UNIQUE (run_id, event_id)
);
"""
_RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS runs (
    run_id          TEXT PRIMARY KEY,
    revision        INTEGER NOT NULL DEFAULT 0,
    last_time_ns    INTEGER NOT NULL DEFAULT 0,
    folded_revision INTEGER NOT NULL DEFAULT 0,
    state           INTEGER NOT NULL DEFAULT 0,
    start_ns        INTEGER NOT NULL DEFAULT 0,
    item            BLOB
);
CREATE INDEX IF NOT EXISTS runs_newest ON runs (start_ns DESC, run_id DESC);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id   TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    code     TEXT NOT NULL,
    blob     BLOB NOT NULL
);
"""
#: Up to schema 2 as first released, an AFTER INSERT trigger kept ``runs`` row by row.
_DROP_TRIGGER = "DROP TRIGGER IF EXISTS events_last_time;"
SCHEMA_VERSION = "3"
_SCHEMA = (
    _EVENTS_TABLE.format(name="events")
    + "CREATE INDEX IF NOT EXISTS events_rev ON events (run_id, rev);\n"
    + _RUNS_TABLE
    + """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '3');
"""
)
#: Schema 1 or 2 -> 3 in one transaction: copy every row (seq kept), numbering each run's
#: events in insertion order; the runs table is rebuilt with no items (the receiver folds
#: them again: see ``stale_items``). A second copy of a (run_id, event_id) cannot exist in 2;
#: in 1 the event id alone was unique.
_MIGRATE_TO_3 = (
    "BEGIN;"
    + _EVENTS_TABLE.format(name="events_v3")
    + """
INSERT INTO events_v3 (seq, run_id, event_id, rev, time_ns, payload)
    SELECT seq, run_id, event_id, row_number() OVER (PARTITION BY run_id ORDER BY seq), time_ns, payload
    FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;
CREATE INDEX events_rev ON events (run_id, rev);
DROP TABLE IF EXISTS runs;
"""
    + _RUNS_TABLE
    + """
INSERT INTO runs (run_id, revision, last_time_ns)
    SELECT run_id, count(*), max(time_ns) FROM events GROUP BY run_id;
UPDATE meta SET value = '3' WHERE key = 'schema';
COMMIT;
"""
)

_CHUNK = 500  # stays under SQLite's bound-variable limit
_ROWS_PER_INSERT = 1638  # 5 bound variables a row: 8,190 (SQLite allows 32,766 since 3.32)
#: WAL pages between automatic checkpoints (SQLite's default: 1,000): fewer, larger
#: checkpoints copy each page once however many batches rewrote it.
_WAL_AUTOCHECKPOINT = 10_000
_TERMINAL = tuple(sorted(TERMINAL_STATES))


@functools.lru_cache(maxsize=64)
def _multi_insert(rows: int) -> str:
    """INSERT of ``rows`` new events (the caller checked they are new, under the write lock)."""
    values = ",".join(["(?, ?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO events (event_id, run_id, rev, time_ns, payload) VALUES {values} "
        "ON CONFLICT (run_id, event_id) DO NOTHING"
    )


def _exclusive(path: str) -> IO[bytes]:
    """Hold an exclusive lock on ``<path>.lock`` so two receivers never share one store.

    The OS releases it when the process ends, however it ends (kill -9 included).

    Raises:
        StoreError: another process holds the store.
    """
    lockfile = open(path + ".lock", "ab")
    try:
        fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lockfile.close()
        raise StoreError(
            f"event store {path} is in use by another process (lock {path}.lock): "
            "stop the other receiver or pass another --store (or share a PostgreSQL store)"
        ) from exc
    return lockfile


def group_new(
    records: Sequence[EventRecord], stored: Callable[[str, list[str]], set[str]], revisions: dict[str, int]
) -> tuple[list[tuple[str, int, list[EventRecord]]], Appended]:
    """Split a batch into each run's new records, numbered after the run's revision.

    Args:
        records: the batch (duplicates within it count once: the first wins).
        stored: ``(run_id, event_ids) -> the ids among them already stored``.
        revisions: each run's revision now (missing: 0).

    Returns:
        ``[(run_id, base revision, new records)]`` in run id order, and the :class:`Appended`.
    """
    by_run: dict[str, dict[str, EventRecord]] = {}
    for r in records:
        by_run.setdefault(r.run_id, {}).setdefault(r.event_id, r)
    out: list[tuple[str, int, list[EventRecord]]] = []
    appended = Appended([], {})
    for run_id in sorted(by_run):
        batch = by_run[run_id]
        old = stored(run_id, list(batch))
        new = [r for eid, r in batch.items() if eid not in old]
        if new:
            base = revisions.get(run_id, 0)
            out.append((run_id, base, new))
            appended.records.extend(new)
            appended.bases[run_id] = base
    return out, appended


class EventStore:
    """SQLite store of serialized ``vfo.events.v1.RunEvent`` messages and the runs table.

    Args:
        path: database file (created with its folder if missing); ``":memory:"`` for tests.
        fsync: fsync every commit (``synchronous=FULL``) instead of relying on the OS.

    Raises:
        StoreError: the database cannot be opened or has an unknown schema.
    """

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = str(path)
        self._lockfile: IO[bytes] | None = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._lockfile = _exclusive(self.path)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.execute(f"PRAGMA wal_autocheckpoint={_WAL_AUTOCHECKPOINT}")
            self._db.executescript(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            )
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.executescript(_SCHEMA)
                schema = SCHEMA_VERSION
            else:
                schema = row[0]
                if schema in ("1", "2"):
                    self._db.executescript(_DROP_TRIGGER)
                    self._migrate_to_3(schema)
                    schema = SCHEMA_VERSION
                if schema == SCHEMA_VERSION:
                    self._db.executescript(_RUNS_TABLE)  # IF NOT EXISTS: a no-op on a current store
        except sqlite3.Error as exc:
            self._unlock()
            raise StoreError(f"cannot open event store {self.path}: {exc}") from exc
        if schema != SCHEMA_VERSION:
            self._unlock()
            raise StoreError(
                f"event store {self.path} has schema {schema}; this version reads schema {SCHEMA_VERSION}"
                " (and migrates schemas 1 and 2)"
            )
        self._lock = threading.Lock()
        self._closed = False
        max_vars = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_insert = min(_ROWS_PER_INSERT, max_vars // 5)

    def _fail(self, what: str, exc: sqlite3.Error) -> StoreError:
        self._rollback()
        return StoreError(f"cannot {what} event store {self.path}: {exc}")

    # -- writes --------------------------------------------------------------------------

    def append(self, records: Sequence[EventRecord]) -> list[EventRecord]:
        """Store the events not stored before; the new ones (see :meth:`append_revisions`)."""
        return self.append_revisions(records).records

    def append_revisions(self, records: Sequence[EventRecord]) -> Appended:
        """Store the events not stored before, in one committed transaction.

        Args:
            records: the events as the decoder hands them over (``record.event`` is stored,
                keyed by ``(record.run_id, record.event_id)``, with ``record.time_ns``).

        Returns:
            The new records (duplicates by ``(run_id, event_id)``, in the store or within the
            batch, are dropped), grouped by run, and each run's revision before them. They are
            durable when this returns.

        Raises:
            StoreError: the write failed; nothing of the batch is stored.
        """
        if not records:
            return Appended([], {})
        with self._lock:
            try:
                return self._insert(records)
            except sqlite3.Error as exc:
                raise self._fail("write to", exc) from exc

    def _stored(self, run_id: str, event_ids: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(event_ids), _CHUNK):
            chunk = event_ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT event_id FROM events WHERE run_id = ? AND event_id IN ({marks})", [run_id, *chunk]
            )
            out.update(r[0] for r in rows)
        return out

    def _insert(self, records: Sequence[EventRecord]) -> Appended:
        """One transaction: one multi-row INSERT per ``_ROWS_PER_INSERT`` rows with each run's
        next revisions, then one update of each run's row. SQLite releases the GIL per statement
        step, so one statement for many rows hands it back and forth with the loop rarely."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        run_ids = sorted({r.run_id for r in records})
        revisions: dict[str, int] = {}
        for i in range(0, len(run_ids), _CHUNK):
            chunk = run_ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT run_id, revision FROM runs WHERE run_id IN ({marks})"
            revisions.update(db.execute(query, chunk))
        # Optimistic first: number every key of the batch and let the unique index drop stored ones.
        # All new (the common case) or all stored (a retry, or the second of the log and span
        # paths): the revisions have no gap, and no key was probed twice. Only a batch mixing
        # new and stored keys is rolled back and inserted again with the new keys alone.
        groups, appended = group_new(records, lambda _run, _ids: set(), revisions)
        inserted = self._insert_groups(groups)
        total = len(appended.records)
        if inserted == 0:
            db.execute("ROLLBACK")
            return Appended([], {})
        if inserted != total:
            db.execute("ROLLBACK")
            db.execute("BEGIN IMMEDIATE")
            groups, appended = group_new(records, self._stored, revisions)
            self._insert_groups(groups)
        for run_id, base, new in groups:
            last = max(r.time_ns for r in new)
            db.execute(
                "INSERT INTO runs (run_id, revision, last_time_ns) VALUES (?, ?, ?) ON CONFLICT (run_id)"
                " DO UPDATE SET revision = excluded.revision,"
                " last_time_ns = max(last_time_ns, excluded.last_time_ns)",
                (run_id, base + len(new), last),
            )
        db.execute("COMMIT")
        return appended

    def _insert_groups(self, groups: list[tuple[str, int, list[EventRecord]]]) -> int:
        """Insert each run's records with revisions after its base; returns the rows inserted."""
        db = self._db
        params: list[object] = []
        for run_id, base, new in groups:
            for i, r in enumerate(new, start=base + 1):
                params += (r.event_id, run_id, i, r.time_ns, r.event.SerializeToString())
        step = 5 * self._rows_per_insert
        inserted = 0
        for i in range(0, len(params), step):
            part = params[i : i + step]
            inserted += db.execute(_multi_insert(len(part) // 5), part).rowcount
        return inserted

    def put_items(self, items: Sequence[RunItem]) -> None:
        """Write folded list items; a row folded at a revision >= an item's keeps its own."""
        if not items:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "UPDATE runs SET folded_revision = ?, state = ?, start_ns = ?, item = ?"
                    " WHERE run_id = ? AND folded_revision < ?",
                    [(i.revision, i.state, i.start_ns, i.item, i.run_id, i.revision) for i in items],
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._fail("write to", exc) from exc

    def _migrate_to_3(self, schema: str) -> None:
        """Rebuild a schema 1 or 2 store as schema 3 (one transaction; logs what it does)."""
        (n,) = self._db.execute("SELECT count(*) FROM events").fetchone()
        _log.warning(
            "event store %s: migrating schema %s -> 3 (%d events; one transaction)", self.path, schema, n
        )
        try:
            self._db.executescript(_MIGRATE_TO_3)
        except sqlite3.Error:
            self._rollback()
            raise
        _log.warning("event store %s: now schema 3", self.path)

    # -- reads ---------------------------------------------------------------------------

    def _read(self, query: str, args: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(query, args).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc

    def replay(self, batch_size: int = 5000) -> Iterator[list[ev.RunEvent]]:
        """Every stored event in insertion order, in lists of up to ``batch_size``."""
        last = 0
        while True:
            rows = self._read(
                "SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch_size)
            )
            if not rows:
                return
            last = rows[-1][0]
            yield [ev.RunEvent.FromString(r[1]) for r in rows]

    def events(self, run_id: str, after_revision: int = 0) -> list[bytes]:
        """The serialized events of a run with revision > ``after_revision``, in revision order."""
        rows = self._read(
            "SELECT payload FROM events WHERE run_id = ? AND rev > ? ORDER BY rev", (run_id, after_revision)
        )
        return [r[0] for r in rows]

    def run(self, run_id: str) -> RunRow | None:
        """The runs-table row of a run (None: no event stored)."""
        rows = self._read(
            "SELECT run_id, revision, last_time_ns, folded_revision, state, start_ns, item"
            " FROM runs WHERE run_id = ? AND revision > 0",
            (run_id,),
        )
        return RunRow(*rows[0]) if rows else None

    def list_items(self, offset: int, limit: int, state: int = 0) -> list[RunRow]:
        """Folded rows newest first (start time, then run id), of one state (0: all)."""
        where = "item IS NOT NULL" + (" AND state = ?" if state else "")
        args: list[object] = [state] if state else []
        rows = self._read(
            "SELECT run_id, revision, last_time_ns, folded_revision, state, start_ns, item FROM runs"
            f" WHERE {where} ORDER BY start_ns DESC, run_id DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        return [RunRow(*r) for r in rows]

    def stale_items(self, limit: int = 1000, *, missing_only: bool = False) -> list[str]:
        """Runs whose item is missing (or, unless ``missing_only``, older than their revision)."""
        where = "item IS NULL AND revision > 0" if missing_only else "folded_revision < revision"
        rows = self._read(f"SELECT run_id FROM runs WHERE {where} LIMIT ?", (limit,))
        return [r[0] for r in rows]

    def unfinished_runs(self) -> list[str]:
        """Runs whose folded state is not terminal (or not folded yet)."""
        marks = ",".join("?" * len(_TERMINAL))
        rows = self._read(
            f"SELECT run_id FROM runs WHERE revision > 0 AND (item IS NULL OR state NOT IN ({marks}))",
            _TERMINAL,
        )
        return [r[0] for r in rows]

    def checkpoint(self, run_id: str) -> tuple[int, str, bytes] | None:
        """The run's fold checkpoint (revision, fold code, blob), or None."""
        rows = self._read("SELECT revision, code, blob FROM checkpoints WHERE run_id = ?", (run_id,))
        return (int(rows[0][0]), str(rows[0][1]), bytes(rows[0][2])) if rows else None

    def put_checkpoint(self, run_id: str, revision: int, code: str, blob: bytes) -> None:
        """Save a fold checkpoint while the run exists (a newer revision replaces an older one)."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO checkpoints (run_id, revision, code, blob)"
                    " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ? AND revision >= ?)"
                    " ON CONFLICT (run_id) DO UPDATE SET revision = excluded.revision, code = excluded.code,"
                    " blob = excluded.blob WHERE excluded.revision > checkpoints.revision"
                    " OR excluded.code != checkpoints.code",
                    (run_id, revision, code, blob, run_id, revision),
                )
            except sqlite3.Error as exc:
                raise self._fail("write to", exc) from exc

    def count(self, run_id: str | None = None) -> int:
        """Number of stored events (of one run, or all)."""
        if run_id is None:
            n: int = self._read("SELECT count(*) FROM events")[0][0]
            return n
        m: int = self._read("SELECT count(*) FROM events WHERE run_id = ?", (run_id,))[0][0]
        return m

    # -- retention -----------------------------------------------------------------------

    def expired(self, *, max_runs: int | None, min_time_ns: int | None) -> list[tuple[str, int]]:
        """(run id, revision) of the runs outside retention: beyond the newest ``max_runs`` (by
        last event time) or last updated before ``min_time_ns``."""
        rows = self._read(
            "SELECT run_id, last_time_ns, revision FROM runs ORDER BY last_time_ns DESC, run_id"
        )
        out = []
        for i, (run_id, last, revision) in enumerate(rows):
            too_many = max_runs is not None and i >= max_runs
            if too_many or (min_time_ns is not None and last < min_time_ns):
                out.append((str(run_id), int(revision)))
        return out

    def expired_runs(self, *, max_runs: int | None, min_time_ns: int | None) -> list[str]:
        """The ids of :meth:`expired`."""
        return [run_id for run_id, _ in self.expired(max_runs=max_runs, min_time_ns=min_time_ns)]

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete every event of these runs, whatever arrived since; returns the events deleted."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                deleted = 0
                for run_id in run_ids:
                    deleted += self._db.execute("DELETE FROM events WHERE run_id = ?", (run_id,)).rowcount
                    self._db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                    self._db.execute("DELETE FROM checkpoints WHERE run_id = ?", (run_id,))
                self._db.execute("COMMIT")
                return deleted
            except sqlite3.Error as exc:
                raise self._fail("delete from", exc) from exc

    def delete_unchanged(self, runs: Sequence[tuple[str, int]], batch_events: int = 20_000) -> list[str]:
        """Delete the runs whose revision is still the one given, in batches of about
        ``batch_events`` events, one transaction each (the revision is re-read in it, under the
        write lock that ingest takes too: an event stored after the run was chosen keeps it)."""
        out: list[str] = []
        i = 0
        while i < len(runs):
            batch: list[tuple[str, int]] = []
            size = 0
            while i < len(runs) and (not batch or size + runs[i][1] <= batch_events):
                batch.append(runs[i])
                size += runs[i][1]
                i += 1
            with self._lock:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    for run_id, revision in batch:
                        row = self._db.execute(
                            "SELECT revision FROM runs WHERE run_id = ?", (run_id,)
                        ).fetchone()
                        if row is None or row[0] != revision:
                            continue  # new events since it was chosen: it stays
                        self._db.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
                        self._db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                        self._db.execute("DELETE FROM checkpoints WHERE run_id = ?", (run_id,))
                        out.append(run_id)
                    self._db.execute("COMMIT")
                except sqlite3.Error as exc:
                    raise self._fail("delete from", exc) from exc
        return out

    # -- lifecycle -----------------------------------------------------------------------

    def _rollback(self) -> None:
        """Roll back an open transaction; a broken connection (e.g. closed) is left as it is."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
                self._unlock()

    def _unlock(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()  # closing the descriptor releases the flock
            self._lockfile = None


class SqliteStore(Store):
    """The :class:`~vfo_otel.receiver._store.Store` over an :class:`EventStore`, on one thread.

    Args:
        path: the database file (``":memory:"``: nothing kept).
        fsync: as :class:`EventStore`.
    """

    shared = False

    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.location = path
        self._fsync = fsync
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vfo-store")
        self.store: EventStore | None = None

    async def _call(self, fn: Callable[[EventStore], _T]) -> _T:
        store = self.store
        if store is None:
            raise StoreError(f"event store {self.location} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, store)

    async def open(self) -> None:
        if self.store is None:
            self.store = await asyncio.get_running_loop().run_in_executor(
                self._io, lambda: EventStore(self.location, fsync=self._fsync)
            )

    async def close(self) -> None:
        store, self.store = self.store, None
        if store is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, store.close)
        self._io.shutdown(wait=False)

    async def append(self, records: Sequence[EventRecord]) -> Appended:
        return await self._call(lambda s: s.append_revisions(records))

    async def events(self, run_id: str, after_revision: int = 0) -> list[bytes]:
        return await self._call(lambda s: s.events(run_id, after_revision))

    async def run(self, run_id: str) -> RunRow | None:
        return await self._call(lambda s: s.run(run_id))

    async def list_items(self, offset: int, limit: int, state: int = 0) -> list[RunRow]:
        return await self._call(lambda s: s.list_items(offset, limit, state))

    async def put_items(self, items: Sequence[RunItem]) -> None:
        await self._call(lambda s: s.put_items(items))

    async def stale_items(self, limit: int = 1000, *, missing_only: bool = False) -> list[str]:
        return await self._call(lambda s: s.stale_items(limit, missing_only=missing_only))

    async def unfinished_runs(self) -> list[str]:
        return await self._call(lambda s: s.unfinished_runs())

    async def expired_runs(self, *, max_runs: int | None, min_time_ns: int | None) -> list[tuple[str, int]]:
        return await self._call(lambda s: s.expired(max_runs=max_runs, min_time_ns=min_time_ns))

    async def delete_runs(self, runs: Sequence[tuple[str, int]], batch_events: int = 20_000) -> list[str]:
        return await self._call(lambda s: s.delete_unchanged(runs, batch_events))

    async def checkpoint(self, run_id: str) -> tuple[int, str, bytes] | None:
        return await self._call(lambda s: s.checkpoint(run_id))

    async def put_checkpoint(self, run_id: str, revision: int, code: str, blob: bytes) -> None:
        await self._call(lambda s: s.put_checkpoint(run_id, revision, code, blob))

    async def count(self, run_id: str | None = None) -> int:
        return await self._call(lambda s: s.count(run_id))
