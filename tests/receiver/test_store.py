"""The SQLite event store: de-duplication, durability across reopen, retention."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tests.receiver import T0_NS, event, node
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.receiver import (
    EventStore,
    NotFound,
    Receiver,
    ReceiverConfig,
    Selection,
    StoreError,
    record_of,
    snapshot_of,
)

C, R = ev.STATE_COMPLETE, ev.STATE_RUNNING


def put(store: EventStore, events: list[ev.RunEvent]) -> list[ev.RunEvent]:
    """Append events as the decoder hands them over (EventRecords); the events that were new."""
    return [r.event for r in store.append([record_of(e) for e in events])]


def _all(store: EventStore) -> list[ev.RunEvent]:
    return [e for batch in store.replay(batch_size=2) for e in batch]


def test_append_dedups_within_batch_and_across_batches(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "s.sqlite3")
    a, b, c = node("x", R, t_s=1), node("x", C, t_s=2), node("y", C, t_s=3)
    assert put(store, [a, b, a]) == [a, b]
    assert put(store, [b, c]) == [c]
    assert put(store, [a, b, c]) == []
    assert put(store, []) == []
    assert store.count() == 3 and store.count("r1") == 3 and store.count("nope") == 0
    assert [e.event_id for e in _all(store)] == [a.event_id, b.event_id, c.event_id]  # insertion order
    store.close()
    store.close()  # idempotent


def test_append_reads_ids_and_times_from_the_records(tmp_path: Path) -> None:
    """The store takes ids, run ids and times from the decoder's records and stores and
    de-duplicates by them."""
    a, b, c = node("x", R, t_s=1), node("x", C, t_s=2), node("y", C, t_s=3)

    def decoded(*events: ev.RunEvent) -> list[ev.RunEvent]:
        return list(events)

    store = EventStore(tmp_path / "facts.sqlite3")
    assert put(store, decoded(a, b, a)) == [a, b]
    assert put(store, decoded(b, c)) == [c]
    assert _all(store) == [a, b, c]
    rows = store._db.execute("SELECT event_id, run_id, time_ns FROM events ORDER BY seq").fetchall()
    assert rows == [(e.event_id, e.run_id, e.time.ToNanoseconds()) for e in (a, b, c)]
    assert store._db.execute("SELECT run_id, last_time_ns, revision FROM runs").fetchall() == [
        ("r1", c.time.ToNanoseconds(), 3)
    ]
    revs = store._db.execute("SELECT event_id, rev FROM events ORDER BY seq").fetchall()
    assert revs == [(a.event_id, 1), (b.event_id, 2), (c.event_id, 3)]  # a run's revisions: 1, 2, 3
    assert [ev.RunEvent.FromString(p) for p in store.events("r1", 1)] == [b, c]
    store.close()


def test_an_event_is_keyed_by_run_and_event_id(tmp_path: Path) -> None:
    """Schema 2: the same event id in two runs is two events; within a run it is one."""
    store = EventStore(tmp_path / "s.sqlite3")
    a = node("x", C, t_s=1, run="r1", eid="same")
    b = node("x", C, t_s=1, run="r2", eid="same")
    assert put(store, [a, b, a]) == [a, b]
    assert put(store, [b]) == []
    mixed = [node("y", C, t_s=2, run="r1", eid="same-y"), b, node("y", C, t_s=2, run="r2", eid="same")]
    assert put(store, mixed) == [mixed[0]]  # the fallback query pairs run and event id
    assert store.count("r1") == 2 and store.count("r2") == 1
    store.close()


_SCHEMA_1 = """
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    run_id TEXT NOT NULL, time_ns INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE INDEX events_by_run ON events (run_id);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, last_time_ns INTEGER NOT NULL);
CREATE TRIGGER events_last_time AFTER INSERT ON events BEGIN
    INSERT INTO runs (run_id, last_time_ns) VALUES (NEW.run_id, NEW.time_ns) ON CONFLICT (run_id)
    DO UPDATE SET last_time_ns = max(last_time_ns, excluded.last_time_ns);
END;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema', '1');
"""


def test_a_schema_1_store_is_migrated_in_place_to_schema_3(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.sqlite3"
    old = [node(f"n{i}", C, t_s=10 - i, run=f"r{i % 3}") for i in range(7)]  # times out of order
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA_1)
    for e in old:
        db.execute(
            "INSERT INTO events (event_id, run_id, time_ns, payload) VALUES (?, ?, ?, ?)",
            (e.event_id, e.run_id, e.time.ToNanoseconds(), e.SerializeToString()),
        )
    db.commit()
    db.close()
    with caplog.at_level("WARNING", logger="vfo_otel.receiver._sqlite"):
        store = EventStore(path)
    assert "migrating schema 1 -> 3 (7 events" in caplog.text
    assert _all(store) == old  # every event, in the old insertion order
    assert put(store, old) == []  # still de-duplicated
    new = node("z", C, t_s=20, run="r0")
    assert put(store, [new]) == [new]
    assert store.expired_runs(max_runs=1, min_time_ns=None) == ["r1", "r2"]  # runs table rebuilt
    assert store.run("r1") == ("r1", 2, T0_NS + 9 * 10**9, 0, 0, 0, None)  # no item yet: to be folded
    assert sorted(store.stale_items()) == ["r0", "r1", "r2"]
    # each run's revisions number its events in their old insertion order
    assert [ev.RunEvent.FromString(p) for p in store.events("r0")] == [old[0], old[3], old[6], new]
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("3",)
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "events_by_run" not in indexes
    db.close()
    store = EventStore(path)  # opens as schema 3 without migrating again
    assert _all(store) == [*old, new]
    store.close()


def test_a_duplicate_id_keeps_the_first_payload(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "s.sqlite3")
    first = node("x", R, t_s=1, eid="same")
    second = node("x", C, t_s=2, eid="same")
    put(store, [first])
    assert put(store, [second]) == []
    assert _all(store) == [first]
    store.close()


def test_close_and_reopen_replays_the_same_events(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "folder" / "s.sqlite3"  # the folder is created
    events = [
        event(ev.SCOPE_RUN, R, t_s=0),
        node("x", R, t_s=1, command=ev.Command(argv=["a", "b"])),
        node("x", C, t_s=2, exit_code=3, attributes={"k": "v"}),
        node("y", C, t_s=2, run="r2"),
    ]
    store = EventStore(path)
    put(store, events[:2])
    put(store, events[2:])
    store.close()

    store = EventStore(path, fsync=True)
    replayed = _all(store)
    assert replayed == events
    assert put(store, events) == []  # still known after reopen
    sel = Selection("p", "a")
    assert snapshot_of(replayed, "r1", sel, 1) == snapshot_of(events, "r1", sel, 1)
    store.close()


def test_uses_wal_and_the_requested_synchronous_mode(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "s.sqlite3")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()
    store = EventStore(tmp_path / "s.sqlite3", fsync=True)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_unknown_schema_and_unreadable_file_raise_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    EventStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="has schema 99; this version reads schema 3"):
        EventStore(path)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="cannot open event store"):
        EventStore(junk)


def _run(store: EventStore, run_id: str, t_s: float) -> None:
    put(store, [event(ev.SCOPE_RUN, C, t_s=t_s, run=run_id), node("x", C, t_s=t_s - 1, run=run_id)])


def test_retention_by_runs_keeps_the_newest_by_last_event(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "s.sqlite3")
    _run(store, "old", 10)
    _run(store, "mid", 20)
    _run(store, "new", 30)
    put(store, [node("y", C, t_s=40, run="old")])  # "old" got a late event: now the newest
    assert store.expired_runs(max_runs=2, min_time_ns=None) == ["mid"]
    assert store.expired_runs(max_runs=3, min_time_ns=None) == []
    assert store.delete_runs(["mid"]) == 2
    assert store.count("mid") == 0 and store.count() == 5
    assert store.expired_runs(max_runs=1, min_time_ns=None) == ["new"]
    assert store.delete_runs([]) == 0
    store.close()


def _last_times(store: EventStore) -> dict[str, int]:
    return dict(store._db.execute("SELECT run_id, last_time_ns FROM runs"))


def test_runs_last_time_moves_only_with_new_events(tmp_path: Path) -> None:
    """The runs table follows the events a batch inserts (one upsert per run, same transaction):
    a stored duplicate with a later time moves nothing, and a batch larger than one INSERT
    statement counts all its rows."""
    store = EventStore(tmp_path / "s.sqlite3")
    store._rows_per_insert = 3  # several INSERT statements per batch
    first = [node(f"n{i}", C, t_s=10 + i, run=f"r{i % 2}") for i in range(8)]
    assert put(store, first) == sorted(first, key=lambda e: e.run_id)  # grouped by run, in order
    assert _last_times(store) == {"r0": T0_NS + 16 * 10**9, "r1": T0_NS + 17 * 10**9}
    late = node("n0", C, t_s=99, run="r0", eid=first[0].event_id)  # a duplicate key, a later time
    assert put(store, [late]) == []
    new = node("m", C, t_s=12, run="r1")  # new, but older than r1's newest
    assert put(store, [late, new]) == [new]
    assert _last_times(store) == {"r0": T0_NS + 16 * 10**9, "r1": T0_NS + 17 * 10**9}
    assert put(store, [node("k", C, t_s=50, run="r2"), late]) != []
    assert _last_times(store)["r2"] == T0_NS + 50 * 10**9
    store.close()


def test_a_schema_2_store_with_the_old_runs_trigger_drops_it(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,"
        " event_id TEXT NOT NULL, time_ns INTEGER NOT NULL, payload BLOB NOT NULL,"
        " UNIQUE (run_id, event_id));"
        + _SCHEMA_1[_SCHEMA_1.index("CREATE TABLE runs") :].replace("'1'", "'2'")
    )
    db.close()
    store = EventStore(path)
    assert put(store, [node("x", C, t_s=5, run="a"), node("y", C, t_s=7, run="a")]) != []
    assert _last_times(store) == {"a": T0_NS + 7 * 10**9}
    triggers = store._db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    assert triggers == []
    store.close()


def test_retention_by_days(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "s.sqlite3")
    _run(store, "a", 10)
    _run(store, "b", 100)
    assert store.expired_runs(max_runs=None, min_time_ns=T0_NS + 50 * 10**9) == ["a"]
    assert store.expired_runs(max_runs=None, min_time_ns=None) == []
    store.close()


async def _runs(receiver: Receiver) -> list[str]:
    return [r.run.run_id for r in (await receiver.list_runs()).runs]


async def test_receiver_applies_retention_on_start_and_serves_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = EventStore(path)
    now_s = time.time()
    day = 86_400.0
    stale = [event(ev.SCOPE_RUN, C, t_s=0, run="stale")]
    stale[0].time.FromNanoseconds(int((now_s - 10 * day) * 1e9))
    fresh = [event(ev.SCOPE_RUN, R, t_s=0, run=f"fresh-{i}") for i in range(3)]
    for i, e in enumerate(fresh):
        e.time.FromNanoseconds(int((now_s - i) * 1e9))  # fresh-0 newest
    put(store, stale + fresh)
    store.close()

    receiver = Receiver(ReceiverConfig(store_path=str(path), retention_days=7, retention_runs=None))
    await receiver.start()
    try:
        assert sorted(await _runs(receiver)) == ["fresh-0", "fresh-1", "fresh-2"]
        assert receiver.stats.runs_expired == 1
    finally:
        await receiver.stop()

    receiver = Receiver(ReceiverConfig(store_path=str(path), retention_runs=2))
    await receiver.start()
    try:
        assert sorted(await _runs(receiver)) == ["fresh-0", "fresh-1"]
        assert await receiver.apply_retention() == []
    finally:
        await receiver.stop()
        await receiver.stop()  # safe twice
    reopened = EventStore(path)
    assert reopened.count() == 2
    reopened.close()


async def test_watchers_of_a_run_removed_by_retention_end_with_not_found() -> None:
    receiver = Receiver(ReceiverConfig(store_path=":memory:", retention_runs=1))
    await receiver.start()
    try:
        assert await receiver.ingest([record_of(event(ev.SCOPE_RUN, R, t_s=0, run="old"))]) == 1
        it = receiver.watch("old").__aiter__()
        assert (await asyncio.wait_for(it.__anext__(), 10)).revision == 1
        pending = asyncio.ensure_future(it.__anext__())
        await receiver.ingest([record_of(event(ev.SCOPE_RUN, R, t_s=5, run="new"))])
        assert await receiver.apply_retention() == ["old"]
        with pytest.raises(NotFound, match="run 'old' was removed"):
            await asyncio.wait_for(pending, 10)
        with pytest.raises(NotFound):
            await receiver.snapshot("old")
    finally:
        await receiver.stop()


def test_a_second_process_cannot_open_a_store_in_use(tmp_path) -> None:
    """Two receivers on one SQLite file would both write it: the second is refused clearly."""
    import subprocess
    import sys

    path = tmp_path / "shared.sqlite3"
    store = EventStore(path)
    try:
        code = (
            "import sys\nfrom vfo_otel.receiver import EventStore, StoreError\n"
            f"try:\n    EventStore({str(path)!r})\nexcept StoreError as exc:\n    print(exc); sys.exit(3)\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert "is in use by another process" in proc.stdout and "--store" in proc.stdout
    finally:
        store.close()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # released on close
