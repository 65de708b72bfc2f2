"""The store interface: what the receiver needs of a durable event store, and nothing more.

The store is the source of truth; the receiver keeps only caches. Two implementations,
one contract (``tests/receiver/test_store_contract.py`` runs the same tests on both):

* :class:`~vfo_otel.receiver._sqlite.SqliteStore`: embedded SQLite file, one process
  (the default: a laptop, CI, the demo);
* :class:`~vfo_otel.receiver._postgres.PostgresStore`: a shared PostgreSQL database
  (psycopg 3), any number of receivers at once.

The contract:

* **Events** are keyed by ``(run_id, event_id)``; :meth:`Store.append` stores those not
  stored before, in one transaction committed before it returns (durable before the export
  is acknowledged). Each new event of a run gets the next **revision** of that run
  (1, 2, 3, ...), under a per-run lock, so a run's revision is the number of distinct events
  stored for it: a pure function of the stored event set, the same in every process. Because
  writers of one run are serialised, a reader that has folded revisions ``1..n`` of a run
  and reads ``revision > n`` never skips an event (no cross-run sequence cursor).
* **Runs** are a table maintained at ingest: per run its revision and newest event time
  (in the append transaction), and a list item (header, summary, state, start time) written
  after folding (:meth:`Store.put_items`, only ever moving forward in revision). The item
  is a cache of the fold, rebuilt from the events when missing or behind.
* **Checkpoints** (:meth:`Store.checkpoint`) are saved folds of big runs, a cache keyed by
  the revision they hold and the fold code that wrote them (:mod:`._checkpoint`).
* **Retention** (:meth:`Store.delete_runs`) deletes whole runs (checkpoints too), in batches,
  each batch in one transaction that re-checks under the run lock that the run's revision did not move
  since it was chosen: an event acknowledged after the sweep chose the run keeps it.
* **Changes from other processes** (PostgreSQL only) arrive through :meth:`Store.listen`:
  a callback gets the ids of runs changed (or deleted) by any receiver, and ``None`` after
  a reconnect (the caller then re-reads whatever it caches: nothing is replayed).

Errors: every method raises :class:`StoreError` (chained) when the database cannot be
reached or refuses; the receiver answers UNAVAILABLE with retry information.

Async contract: every method is a coroutine of the receiver's event loop; implementations
do their blocking work off the loop.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import NamedTuple

from vfo_otel.receiver._record import EventRecord

__all__ = ["Appended", "ChangeCallback", "RunItem", "RunRow", "Store", "StoreError", "open_store"]


class StoreError(RuntimeError):
    """The store could not be opened, read or written."""


class Appended(NamedTuple):
    """What :meth:`Store.append` stored.

    Attributes:
        records: the records new to the store, grouped by run, each run's in revision order.
        bases: per run with new records, its revision before this append: its new records
            got revisions ``base + 1 .. base + n`` in the order of ``records``.
    """

    records: list[EventRecord]
    bases: dict[str, int]


class RunRow(NamedTuple):
    """One row of the runs table.

    Attributes:
        run_id: the run.
        revision: distinct events stored for the run.
        last_time_ns: the newest event time of the run (ns since epoch; retention by age).
        folded_revision: the revision ``item`` was built at (0: no item yet).
        state: the run's state in ``item`` (0 until folded).
        start_ns: the run's start time in ``item`` (0 when unknown).
        item: a serialized ``vfo.dashboard.v1.RunListItem`` (None until folded).
    """

    run_id: str
    revision: int
    last_time_ns: int
    folded_revision: int
    state: int
    start_ns: int
    item: bytes | None


class RunItem(NamedTuple):
    """A folded list item to write to the runs table (:meth:`Store.put_items`)."""

    run_id: str
    revision: int
    state: int
    start_ns: int
    item: bytes


#: Called with the ids of runs another process changed or deleted, or None after a reconnect
#: of the notification channel (changes may have been missed: re-read what is cached).
ChangeCallback = Callable[[Sequence[str] | None], None]


class Store(abc.ABC):
    """A durable, shared-or-not event store (see the module docstring for the contract)."""

    #: Where the store lives, for messages (a path, or a URL without its password).
    location: str = ""
    #: True when other processes may write to the same store (changes arrive via listen()).
    shared: bool = False

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema. Raises StoreError."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release everything (idempotent)."""

    @abc.abstractmethod
    async def append(self, records: Sequence[EventRecord]) -> Appended:
        """Store the records not stored before (see :class:`Appended`), committed on return."""

    @abc.abstractmethod
    async def events(self, run_id: str, after_revision: int = 0) -> list[bytes]:
        """The serialized RunEvents of a run with revision > ``after_revision``, in revision order."""

    @abc.abstractmethod
    async def run(self, run_id: str) -> RunRow | None:
        """One row of the runs table, None when the run has no event."""

    @abc.abstractmethod
    async def list_items(self, offset: int, limit: int, state: int = 0) -> list[RunRow]:
        """Rows with an item, newest first (start time, then run id), filtered by state."""

    @abc.abstractmethod
    async def put_items(self, items: Sequence[RunItem]) -> None:
        """Write folded items; a row already folded at a revision >= the item's keeps its own."""

    @abc.abstractmethod
    async def stale_items(self, limit: int = 1000, *, missing_only: bool = False) -> list[str]:
        """Runs whose item is missing (or, unless ``missing_only``, behind their revision)."""

    @abc.abstractmethod
    async def unfinished_runs(self) -> list[str]:
        """Runs not known to be terminal (complete, failed, skipped): liveness checks these."""

    @abc.abstractmethod
    async def expired_runs(self, *, max_runs: int | None, min_time_ns: int | None) -> list[tuple[str, int]]:
        """(run id, revision) of runs outside retention: beyond the newest ``max_runs`` (by
        newest event time) or last updated before ``min_time_ns``."""

    @abc.abstractmethod
    async def delete_runs(self, runs: Sequence[tuple[str, int]], batch_events: int = 20_000) -> list[str]:
        """Delete the runs whose revision is still the one given; returns the ids deleted.

        Runs go in batches of about ``batch_events`` events, one transaction each.
        """

    @abc.abstractmethod
    async def checkpoint(self, run_id: str) -> tuple[int, str, bytes] | None:
        """The run's fold checkpoint: (revision, fold code, blob), None when there is none."""

    @abc.abstractmethod
    async def put_checkpoint(self, run_id: str, revision: int, code: str, blob: bytes) -> None:
        """Save a fold checkpoint (kept only while the run exists; a newer one replaces it)."""

    @abc.abstractmethod
    async def count(self, run_id: str | None = None) -> int:
        """Stored events (of one run, or all)."""

    async def listen(self, callback: ChangeCallback) -> None:  # noqa: B027 - optional
        """Call ``callback`` with the runs other processes change (shared stores only)."""


def open_store(location: str, *, fsync: bool = False, pool_size: int = 4) -> Store:
    """The store for ``--store``: a ``postgresql://`` (or ``postgres://``) URL, else a SQLite path.

    Not opened yet: ``await store.open()``.

    Raises:
        StoreError: PostgreSQL was asked for without psycopg installed.
    """
    if location.startswith(("postgresql://", "postgres://")):
        try:
            from vfo_otel.receiver._postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise StoreError(
                "a postgresql:// store needs psycopg 3 and psycopg_pool: "
                "pip install 'vfo-otel[postgresql]'"
            ) from exc
        store: Store = PostgresStore(location, pool_size=pool_size)
        return store
    from vfo_otel.receiver._sqlite import SqliteStore

    return SqliteStore(location, fsync=fsync)
