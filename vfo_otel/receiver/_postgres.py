"""The shared event store: PostgreSQL through psycopg 3 (async) and psycopg_pool.

Any number of receivers use one database at once: any of them ingests any event and serves
any run. The contract is :mod:`vfo_otel.receiver._store`'s; here is how it is kept:

* **Append** is one transaction: the batch's runs are created if new and locked
  (``SELECT ... FOR UPDATE``, in run id order, so two writers cannot deadlock), the keys
  already stored are read, the new events are inserted with the runs' next revisions
  (``INSERT ... ON CONFLICT (run_id, event_id) DO NOTHING`` as a second guard), the runs'
  revisions and newest times move, and ``pg_notify`` names the changed runs. It commits
  (``synchronous_commit`` as the server has it: ``on`` by default, durable) before the export
  is answered. Holding a run's row lock from numbering to commit is what makes a run's
  revisions gap-free in commit order, so a reader that asks for revisions after its own
  never skips an uncommitted row.
* **Notifications**: a dedicated connection LISTENs on ``vfo_otel_runs``; a payload is a JSON
  list of the sending store's id and run ids, sent inside the writing transaction (so
  delivered only if it commits); a store skips its own.
  After the connection drops it reconnects (backing off to 2 s), LISTENs again, and then
  reports ``None`` so the receiver re-reads what it caches: a catch-up read, never a cursor.
* **Schema** ``vfo_meta``/``vfo_events``/``vfo_runs`` (version in ``vfo_meta``) is created or
  checked under a transaction-level advisory lock, so receivers starting together agree.
* **Failures**: a database that cannot be reached within ``connect_timeout_s`` raises
  :class:`~vfo_otel.receiver._store.StoreError` (the receiver answers UNAVAILABLE with retry
  information); the pool checks a connection before lending it and replaces broken ones, so a
  restarted server is used again without restarting the receiver.

Async contract: every method is a coroutine on the receiver's loop (psycopg's async API).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from vfo_otel.contract import TERMINAL_STATES
from vfo_otel.receiver._record import EventRecord
from vfo_otel.receiver._sqlite import group_new
from vfo_otel.receiver._store import Appended, ChangeCallback, RunItem, RunRow, Store, StoreError

__all__ = ["CHANNEL", "SCHEMA_VERSION", "PostgresStore"]

_log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
#: The LISTEN/NOTIFY channel of run changes.
CHANNEL = "vfo_otel_runs"
_SCHEMA_LOCK = 0x76666F5F6F74656C & 0x7FFFFFFFFFFFFFFF  # "vfo_otel": the advisory lock of schema changes
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vfo_events (
    run_id   text   NOT NULL,
    rev      bigint NOT NULL,
    event_id text   NOT NULL,
    time_ns  bigint NOT NULL,
    payload  bytea  NOT NULL,
    PRIMARY KEY (run_id, rev),
    UNIQUE (run_id, event_id)
);
CREATE TABLE IF NOT EXISTS vfo_runs (
    run_id          text PRIMARY KEY,
    revision        bigint NOT NULL DEFAULT 0,
    last_time_ns    bigint NOT NULL DEFAULT 0,
    folded_revision bigint NOT NULL DEFAULT 0,
    state           integer NOT NULL DEFAULT 0,
    start_ns        bigint NOT NULL DEFAULT 0,
    item            bytea
);
CREATE INDEX IF NOT EXISTS vfo_runs_newest ON vfo_runs (start_ns DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS vfo_runs_last_time ON vfo_runs (last_time_ns DESC, run_id);
CREATE TABLE IF NOT EXISTS vfo_checkpoints (
    run_id   text PRIMARY KEY REFERENCES vfo_runs (run_id) ON DELETE CASCADE,
    revision bigint NOT NULL,
    code     text NOT NULL,
    blob     bytea NOT NULL
);
"""
_ROWS = "run_id, revision, last_time_ns, folded_revision, state, start_ns, item"
_TERMINAL = sorted(TERMINAL_STATES)
_NOTIFY_BYTES = 7000  # a NOTIFY payload must stay under 8,000 bytes


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _notify_payloads(sender: str, run_ids: Sequence[str]) -> list[str]:
    """``[sender, run ids...]`` as JSON lists, each under the NOTIFY payload limit."""
    out: list[str] = []
    chunk: list[str] = [sender]
    size = len(json.dumps(chunk))
    for run_id in run_ids:
        n = len(json.dumps(run_id)) + 2
        if len(chunk) > 1 and size + n > _NOTIFY_BYTES:
            out.append(json.dumps(chunk))
            chunk = [sender]
            size = len(json.dumps(chunk))
        chunk.append(run_id)
        size += n
    if len(chunk) > 1:
        out.append(json.dumps(chunk))
    return out


class PostgresStore(Store):
    """The store on a PostgreSQL database shared by any number of receivers.

    Args:
        url: a libpq URL, ``postgresql://user:password@host:port/dbname``.
        pool_size: connections kept for requests (one more listens for notifications).
        connect_timeout_s: how long a request waits for a connection before StoreError.
    """

    shared = True

    def __init__(self, url: str, *, pool_size: int = 4, connect_timeout_s: float = 2.0) -> None:
        self._url = url
        self.location = redact(url)
        self._pool_size = pool_size
        self._timeout_s = connect_timeout_s
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._id = uuid.uuid4().hex[:16]  # names this store's own notifications, which it skips

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            timeout=self._timeout_s,
            reconnect_timeout=0,  # keep trying for ever: the server may come back
            check=AsyncConnectionPool.check_connection,
            kwargs={"connect_timeout": max(1, round(self._timeout_s)), "autocommit": True},
            name="vfo-otel",
        )
        try:
            await pool.open(wait=True, timeout=max(self._timeout_s, 5.0))
        except (PoolTimeout, psycopg.Error, OSError) as exc:
            await pool.close()
            raise StoreError(f"cannot connect to event store {self.location}: {exc}") from exc
        self._pool = pool
        try:
            await self._create_schema()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @contextlib.asynccontextmanager
    async def _conn(self, what: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; database and pool errors become StoreError(``what``)."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"event store {self.location} is closed")
        try:
            async with pool.connection() as conn:
                yield conn
        except (PoolTimeout, psycopg.Error, OSError) as exc:
            raise StoreError(f"cannot {what} event store {self.location}: {exc}") from exc

    async def _create_schema(self) -> None:
        async with self._conn("create the schema of") as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS vfo_meta (key text PRIMARY KEY, value text NOT NULL)"
            )
            cur = await conn.execute("SELECT value FROM vfo_meta WHERE key = 'schema'")
            row = await cur.fetchone()
            if row is None:
                await conn.execute(_SCHEMA)
                await conn.execute(
                    "INSERT INTO vfo_meta (key, value) VALUES ('schema', %s)", (SCHEMA_VERSION,)
                )
                _log.info("event store %s: schema %s created", self.location, SCHEMA_VERSION)
                return
        if row[0] != SCHEMA_VERSION:
            raise StoreError(
                f"event store {self.location} has schema {row[0]}; this version reads schema {SCHEMA_VERSION}"
            )

    # -- writes --------------------------------------------------------------------------

    async def append(self, records: Sequence[EventRecord]) -> Appended:
        if not records:
            return Appended([], {})
        run_ids = sorted({r.run_id for r in records})
        async with self._conn("write to") as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO vfo_runs (run_id) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING", (run_ids,)
            )
            cur = await conn.execute(
                "SELECT run_id, revision FROM vfo_runs WHERE run_id = ANY(%s) ORDER BY run_id FOR UPDATE",
                (run_ids,),
            )
            revisions: dict[str, int] = {r[0]: r[1] for r in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT e.run_id, e.event_id FROM vfo_events e"
                " JOIN unnest(%b::text[], %b::text[]) AS k(run_id, event_id) USING (run_id, event_id)",
                ([r.run_id for r in records], [r.event_id for r in records]),
            )
            stored: dict[str, set[str]] = {}
            for run_id, event_id in await cur.fetchall():
                stored.setdefault(run_id, set()).add(event_id)
            groups, appended = group_new(records, lambda run_id, _ids: stored.get(run_id, set()), revisions)
            if not groups:
                return appended
            cols: tuple[list[Any], ...] = ([], [], [], [], [])
            for run_id, base, new in groups:
                for i, r in enumerate(new, start=base + 1):
                    cols[0].append(run_id)
                    cols[1].append(i)
                    cols[2].append(r.event_id)
                    cols[3].append(r.time_ns)
                    cols[4].append(r.event.SerializeToString())
            await conn.execute(
                "INSERT INTO vfo_events (run_id, rev, event_id, time_ns, payload)"
                " SELECT * FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::bigint[], %b::bytea[])"
                " ON CONFLICT (run_id, event_id) DO NOTHING",
                cols,
            )
            await conn.execute(
                "UPDATE vfo_runs r SET revision = v.revision, last_time_ns = greatest(r.last_time_ns, v.last)"
                " FROM unnest(%b::text[], %b::bigint[], %b::bigint[]) AS v(run_id, revision, last)"
                " WHERE r.run_id = v.run_id",
                (
                    [g[0] for g in groups],
                    [g[1] + len(g[2]) for g in groups],
                    [max(r.time_ns for r in g[2]) for g in groups],
                ),
            )
            await self._notify(conn, [g[0] for g in groups])
        return appended

    async def _notify(self, conn: psycopg.AsyncConnection[Any], run_ids: Sequence[str]) -> None:
        for payload in _notify_payloads(self._id, run_ids):
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    async def put_items(self, items: Sequence[RunItem]) -> None:
        if not items:
            return
        async with self._conn("write to") as conn:
            await conn.execute(
                "UPDATE vfo_runs r SET folded_revision = v.revision, state = v.state,"
                " start_ns = v.start_ns, item = v.item"
                " FROM unnest(%b::text[], %b::bigint[], %b::integer[], %b::bigint[], %b::bytea[])"
                " AS v(run_id, revision, state, start_ns, item)"
                " WHERE r.run_id = v.run_id AND r.folded_revision < v.revision",
                (
                    [i.run_id for i in items],
                    [i.revision for i in items],
                    [i.state for i in items],
                    [i.start_ns for i in items],
                    [i.item for i in items],
                ),
            )

    # -- reads ---------------------------------------------------------------------------

    async def _fetch(self, query: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._conn("read") as conn:
            cur = await conn.execute(query, args)
            return await cur.fetchall()

    async def events(self, run_id: str, after_revision: int = 0) -> list[bytes]:
        async with self._conn("read") as conn:
            cur = conn.cursor(binary=True)
            await cur.execute(
                "SELECT payload FROM vfo_events WHERE run_id = %s AND rev > %s ORDER BY rev",
                (run_id, after_revision),
            )
            return [r[0] for r in await cur.fetchall()]

    async def run(self, run_id: str) -> RunRow | None:
        rows = await self._fetch(
            f"SELECT {_ROWS} FROM vfo_runs WHERE run_id = %s AND revision > 0", (run_id,)
        )
        return RunRow(*rows[0]) if rows else None

    async def list_items(self, offset: int, limit: int, state: int = 0) -> list[RunRow]:
        where = "item IS NOT NULL" + (" AND state = %s" if state else "")
        args: list[Any] = [state] if state else []
        rows = await self._fetch(
            f"SELECT {_ROWS} FROM vfo_runs WHERE {where}"
            " ORDER BY start_ns DESC, run_id DESC LIMIT %s OFFSET %s",
            [*args, limit, offset],
        )
        return [RunRow(*r) for r in rows]

    async def stale_items(self, limit: int = 1000, *, missing_only: bool = False) -> list[str]:
        where = "item IS NULL AND revision > 0" if missing_only else "folded_revision < revision"
        rows = await self._fetch(f"SELECT run_id FROM vfo_runs WHERE {where} LIMIT %s", (limit,))
        return [r[0] for r in rows]

    async def unfinished_runs(self) -> list[str]:
        rows = await self._fetch(
            "SELECT run_id FROM vfo_runs WHERE revision > 0 AND (item IS NULL OR NOT state = ANY(%s))",
            (_TERMINAL,),
        )
        return [r[0] for r in rows]

    async def checkpoint(self, run_id: str) -> tuple[int, str, bytes] | None:
        async with self._conn("read") as conn:
            cur = conn.cursor(binary=True)
            await cur.execute("SELECT revision, code, blob FROM vfo_checkpoints WHERE run_id = %s", (run_id,))
            row = await cur.fetchone()
        return (int(row[0]), str(row[1]), bytes(row[2])) if row else None

    async def put_checkpoint(self, run_id: str, revision: int, code: str, blob: bytes) -> None:
        async with self._conn("write to") as conn:
            await conn.execute(
                "INSERT INTO vfo_checkpoints (run_id, revision, code, blob)"
                " SELECT %s, %s, %s, %s WHERE EXISTS"
                " (SELECT 1 FROM vfo_runs WHERE run_id = %s AND revision >= %s)"
                " ON CONFLICT (run_id) DO UPDATE SET revision = excluded.revision, code = excluded.code,"
                " blob = excluded.blob WHERE excluded.revision > vfo_checkpoints.revision"
                " OR excluded.code <> vfo_checkpoints.code",
                (run_id, revision, code, blob, run_id, revision),
            )

    async def count(self, run_id: str | None = None) -> int:
        if run_id is None:
            rows = await self._fetch("SELECT count(*) FROM vfo_events")
        else:
            rows = await self._fetch("SELECT count(*) FROM vfo_events WHERE run_id = %s", (run_id,))
        return int(rows[0][0])

    # -- retention -----------------------------------------------------------------------

    async def expired_runs(self, *, max_runs: int | None, min_time_ns: int | None) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        seen: set[str] = set()
        if max_runs is not None:
            rows = await self._fetch(
                "SELECT run_id, revision FROM vfo_runs WHERE revision > 0"
                " ORDER BY last_time_ns DESC, run_id OFFSET %s",
                (max_runs,),
            )
            out += [(r[0], r[1]) for r in rows]
            seen.update(r[0] for r in rows)
        if min_time_ns is not None:
            rows = await self._fetch(
                "SELECT run_id, revision FROM vfo_runs WHERE revision > 0 AND last_time_ns < %s"
                " ORDER BY last_time_ns DESC, run_id",
                (min_time_ns,),
            )
            out += [(r[0], r[1]) for r in rows if r[0] not in seen]
        return out

    async def delete_runs(self, runs: Sequence[tuple[str, int]], batch_events: int = 20_000) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(runs):
            batch: dict[str, int] = {}
            size = 0
            while i < len(runs) and (not batch or size + runs[i][1] <= batch_events):
                batch[runs[i][0]] = runs[i][1]
                size += runs[i][1]
                i += 1
            async with self._conn("delete from") as conn, conn.transaction():
                cur = await conn.execute(
                    "SELECT run_id, revision FROM vfo_runs WHERE run_id = ANY(%s) ORDER BY run_id FOR UPDATE",
                    (sorted(batch),),
                )
                # a run that got an event since it was chosen stays (the lock orders us after that ingest)
                gone = [run_id for run_id, revision in await cur.fetchall() if batch[run_id] == revision]
                if gone:
                    await conn.execute("DELETE FROM vfo_events WHERE run_id = ANY(%s)", (gone,))
                    await conn.execute("DELETE FROM vfo_runs WHERE run_id = ANY(%s)", (gone,))
                    await self._notify(conn, gone)
            out += gone
        return out

    # -- notifications -------------------------------------------------------------------

    async def listen(self, callback: ChangeCallback) -> None:
        """LISTEN for other receivers' changes (returns once listening, or raises StoreError)."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._listener = asyncio.create_task(self._listen(callback, ready), name="vfo-store-listen")
        await ready

    async def _listen(self, callback: ChangeCallback, ready: asyncio.Future[None]) -> None:
        backoff = 0.05
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=max(1, round(self._timeout_s))
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if ready.done():
                        _log.info("event store %s: listening again; catching up", self.location)
                        callback(None)  # changes may have been missed while disconnected
                    else:
                        ready.set_result(None)
                    backoff = 0.05
                    async for note in conn.notifies():
                        try:
                            sender, *run_ids = json.loads(note.payload)
                        except ValueError:
                            continue
                        if sender != self._id:
                            callback([str(r) for r in run_ids])
            except (psycopg.Error, OSError) as exc:
                if not ready.done():
                    ready.set_exception(StoreError(f"cannot listen to event store {self.location}: {exc}"))
                    return
                _log.warning("event store %s: notifications lost (%s); reconnecting", self.location, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
