"""The embedded event store: SQLite (stdlib), append-only, de-duplicated by event id.

Durability: WAL journal. With ``synchronous=NORMAL`` (default) a commit survives a
crash or ``kill -9`` of the process (the WAL is in the OS before ``append`` returns);
``fsync=True`` sets ``synchronous=FULL`` so a commit also survives power loss. The WAL is
checkpointed into the database every ~10,000 pages (~40 MB; SQLite's default is 1,000).

Thread contract: blocking calls. One EventStore belongs to one thread at a time; the
receiver runs it on a single-thread executor (``check_same_thread`` is off for that).
Errors are ``sqlite3.Error`` subclasses, raised as :class:`StoreError` with the path.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.receiver._record import EventRecord

__all__ = ["SCHEMA_VERSION", "EventStore", "StoreError"]

_log = logging.getLogger(__name__)

#: Schema 2: an event is keyed by (run_id, event_id). Schema 1 keyed it by event_id alone, with
#: a second index on run_id; every insert then touched two indexes, and the event_id one at a
#: random page (event ids are random), so the store's cost per event grew with its size. The
#: (run_id, event_id) index keeps a batch's rows together (a batch holds few runs) and also
#: serves the per-run reads and deletes. Schema 1 stores are migrated when opened.
_EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id   TEXT NOT NULL,
    event_id TEXT NOT NULL,
    time_ns  INTEGER NOT NULL,
    payload  BLOB NOT NULL,
    UNIQUE (run_id, event_id)
);
"""
#: Up to schema 2 as first released, an AFTER INSERT trigger kept ``runs`` row by row (one
#: upsert per event); now :meth:`EventStore._insert` upserts each run once per batch, in the
#: batch's transaction. Opening a store drops the trigger (an older receiver that opens the
#: store again recreates it: both keep ``runs`` the same way).
_DROP_TRIGGER = "DROP TRIGGER IF EXISTS events_last_time;"
#: The newest event time of each run among the rows inserted after ``seq`` ``?`` (this batch's).
#: NOT INDEXED: read the batch's rows by seq (rowid) range; otherwise SQLite would rather walk the
#: whole (run_id, event_id) index for the GROUP BY. (The WHERE clause also keeps SQLite from
#: reading ON CONFLICT as a join constraint.)
_UPSERT_RUNS = (
    "INSERT INTO runs (run_id, last_time_ns) SELECT run_id, max(time_ns) FROM events NOT INDEXED"
    " WHERE seq > ? GROUP BY run_id ON CONFLICT (run_id)"
    " DO UPDATE SET last_time_ns = max(last_time_ns, excluded.last_time_ns)"
)
SCHEMA_VERSION = "2"
_SCHEMA = _EVENTS_TABLE.format(name="events") + """
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    last_time_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '2');
"""
#: Schema 1 -> 2 in one transaction: copy every row (seq kept, so replay order is unchanged)
#: into the new table; a second copy of an (run_id, event_id) cannot exist in schema 1.
_MIGRATE_1_TO_2 = (
    "BEGIN;"
    + _EVENTS_TABLE.format(name="events_v2")
    + """
INSERT INTO events_v2 (seq, run_id, event_id, time_ns, payload)
    SELECT seq, run_id, event_id, time_ns, payload FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
UPDATE meta SET value = '2' WHERE key = 'schema';
COMMIT;
"""
)

_CHUNK = 500  # stays under SQLite's bound-variable limit


_ROWS_PER_INSERT = 2048  # 8,192 bound variables (SQLite allows 32,766 since 3.32; fewer if built lower)
#: WAL pages between automatic checkpoints (SQLite's default: 1,000). Event ids are random, so
#: once the event_id index outgrows a batch, every row dirties a page of its own; a checkpoint
#: copies each page once, however many batches rewrote it since the last checkpoint, so fewer,
#: larger checkpoints copy less (at 250k stored events: store CPU -10%, wall time -20% per event).
_WAL_AUTOCHECKPOINT = 10_000


@functools.lru_cache(maxsize=64)
def _multi_insert(rows: int) -> str:
    """INSERT of ``rows`` events that skips event ids already stored."""
    values = ",".join(["(?, ?, ?, ?)"] * rows)
    return (
        f"INSERT INTO events (event_id, run_id, time_ns, payload) VALUES {values} "
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
            "stop the other receiver or pass another --store"
        ) from exc
    return lockfile


class StoreError(RuntimeError):
    """The store could not be opened, read or written."""


class EventStore:
    """SQLite store of serialized ``vfo.events.v1.RunEvent`` messages.

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
            self._db.executescript(_SCHEMA + _DROP_TRIGGER)
            (schema,) = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if schema == "1":
                self._migrate_1_to_2()
                schema = SCHEMA_VERSION
        except sqlite3.Error as exc:
            self._unlock()
            raise StoreError(f"cannot open event store {self.path}: {exc}") from exc
        if schema != SCHEMA_VERSION:
            self._unlock()
            raise StoreError(
                f"event store {self.path} has schema {schema}; this version reads schema {SCHEMA_VERSION}"
                " (and migrates schema 1)"
            )
        self._lock = threading.Lock()
        self._closed = False
        max_vars = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._rows_per_insert = min(_ROWS_PER_INSERT, max_vars // 4)

    def append(self, records: Sequence[EventRecord]) -> list[EventRecord]:
        """Store the events not stored before, in one committed transaction.

        Args:
            records: the events as the decoder hands them over (``record.event`` is stored,
                keyed by ``(record.run_id, record.event_id)``, with ``record.time_ns``).

        Returns:
            The records that were new (duplicates by ``(run_id, event_id)``, in the store or
            within the batch, are dropped), in input order. They are durable when this returns.

        Raises:
            StoreError: the write failed; nothing of the batch is stored.
        """
        if not records:
            return []
        with self._lock:
            batch: dict[tuple[str, str], EventRecord] = {}
            for r in records:
                batch.setdefault((r.run_id, r.event_id), r)
            try:
                return self._insert(batch)
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"cannot write to event store {self.path}: {exc}") from exc

    def _insert(self, batch: dict[tuple[str, str], EventRecord]) -> list[EventRecord]:
        """Insert the batch, skipping keys stored before; returns the new events (under the lock).

        One multi-row INSERT per ``_ROWS_PER_INSERT`` events (a 512-record export: one). SQLite
        releases the GIL for each statement step, and one step per row (``executemany``) would
        hand the GIL back and forth with the event loop once per event. Then one upsert per run
        of the batch moves its last event time (``runs``), from the rows this batch inserted
        (after the highest ``seq`` before it), so stored duplicates move nothing; one transaction.
        """
        params: list[object] = []
        for (run_id, event_id), r in batch.items():
            params += (event_id, run_id, r.time_ns, r.event.SerializeToString())
        db = self._db
        step = 4 * self._rows_per_insert
        db.execute("BEGIN")
        (before,) = db.execute("SELECT max(seq) FROM events").fetchone()
        inserted = 0
        for i in range(0, len(params), step):
            part = params[i : i + step]
            inserted += db.execute(_multi_insert(len(part) // 4), part).rowcount
        if inserted:
            db.execute(_UPSERT_RUNS, (before or 0,))
        db.execute("COMMIT")
        if inserted == len(batch):
            return list(batch.values())
        # Some keys were stored before. Sequence numbers only grow, so the new rows are the
        # `inserted` highest seqs among the batch's keys.
        keys = list(batch)
        seqs: list[tuple[int, str, str]] = []
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            marks = ",".join(["(?, ?)"] * len(chunk))
            flat = [v for key in chunk for v in key]
            query = f"SELECT seq, run_id, event_id FROM events WHERE (run_id, event_id) IN (VALUES {marks})"
            seqs.extend(db.execute(query, flat))
        seqs.sort(reverse=True)
        new_keys = {(run_id, event_id) for _, run_id, event_id in seqs[:inserted]}
        return [r for key, r in batch.items() if key in new_keys]

    def _migrate_1_to_2(self) -> None:
        """Rebuild a schema 1 events table as schema 2 (one transaction; logs what it does)."""
        (n,) = self._db.execute("SELECT count(*) FROM events").fetchone()
        _log.warning("event store %s: migrating schema 1 -> 2 (%d events; one transaction)", self.path, n)
        try:
            self._db.executescript(_MIGRATE_1_TO_2)
        except sqlite3.Error:
            self._rollback()
            raise
        _log.warning("event store %s: now schema 2", self.path)

    def replay(self, batch_size: int = 5000) -> Iterator[list[ev.RunEvent]]:
        """Every stored event in insertion order, in lists of up to ``batch_size``."""
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT seq, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch_size)
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [ev.RunEvent.FromString(r[1]) for r in rows]

    def count(self, run_id: str | None = None) -> int:
        """Number of stored events (of one run, or all)."""
        with self._lock:
            if run_id is None:
                return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
            row = self._db.execute("SELECT count(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()
            return int(row[0])

    def expired_runs(self, *, max_runs: int | None, min_time_ns: int | None) -> list[str]:
        """Runs outside retention: beyond the newest ``max_runs`` (by last event time) or last
        updated before ``min_time_ns``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id, last_time_ns FROM runs ORDER BY last_time_ns DESC, run_id"
            )
            out = []
            for i, (run_id, last) in enumerate(rows):
                too_many = max_runs is not None and i >= max_runs
                if too_many or (min_time_ns is not None and last < min_time_ns):
                    out.append(run_id)
            return out

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete every event of these runs; returns the number of events deleted."""
        if not run_ids:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN")
                deleted = 0
                for run_id in run_ids:
                    deleted += self._db.execute("DELETE FROM events WHERE run_id = ?", (run_id,)).rowcount
                    self._db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
                self._db.execute("COMMIT")
                return deleted
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"cannot delete from event store {self.path}: {exc}") from exc

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
