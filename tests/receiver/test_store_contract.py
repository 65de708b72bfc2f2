"""One store contract, two implementations: every test here runs on SQLite and on PostgreSQL
(a real server started by the ``pg_cluster`` fixture), through the same Store interface and
through a Receiver on top of it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.receiver import event, node
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.receiver import (
    NotFound,
    Receiver,
    ReceiverConfig,
    Selection,
    Store,
    _checkpoint,
    open_store,
    record_of,
    run_fold_of,
    snapshot_of,
)
from vfo_otel.receiver._store import RunItem

Q, R, C, F = ev.STATE_QUEUED, ev.STATE_RUNNING, ev.STATE_COMPLETE, ev.STATE_FAILED


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives: a SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite3")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(location: str) -> AsyncIterator[Store]:
    s = open_store(location)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def _ids(payloads: list[bytes]) -> list[str]:
    return [ev.RunEvent.FromString(p).event_id for p in payloads]


async def test_append_numbers_each_run_s_new_events_and_drops_duplicates(store: Store) -> None:
    a, b, c = node("x", R, t_s=1), node("x", C, t_s=2), node("y", C, t_s=3, run="r2")
    first = await store.append([record_of(e) for e in (a, b, a, c)])
    assert [r.event_id for r in first.records] == [a.event_id, b.event_id, c.event_id]
    assert first.bases == {"r1": 0, "r2": 0}
    d = node("z", C, t_s=4)
    second = await store.append([record_of(e) for e in (b, d, c)])
    assert [r.event_id for r in second.records] == [d.event_id] and second.bases == {"r1": 2}
    assert (await store.append([record_of(a)])).records == []
    assert _ids(await store.events("r1")) == [a.event_id, b.event_id, d.event_id]  # revision order
    assert _ids(await store.events("r1", 2)) == [d.event_id]
    row = await store.run("r1")
    assert row is not None and (row.revision, row.last_time_ns) == (3, d.time.ToNanoseconds())
    assert (row.folded_revision, row.item) == (0, None)
    assert await store.run("nope") is None
    assert await store.count() == 4 and await store.count("r2") == 1
    # the same event id in another run is another event
    same = node("x", C, t_s=1, run="r2", eid=a.event_id)
    assert [r.event_id for r in (await store.append([record_of(same)])).records] == [a.event_id]


async def test_items_move_only_forward_and_list_newest_first(store: Store) -> None:
    for run_id in ("old", "new", "mid"):
        await store.append([record_of(event(ev.SCOPE_RUN, R, t_s=1, run=run_id))])
    assert sorted(await store.stale_items()) == ["mid", "new", "old"]
    assert sorted(await store.unfinished_runs()) == ["mid", "new", "old"]
    item = db.RunListItem(revision=1).SerializeToString()
    await store.put_items([
        RunItem("old", 1, C, 10, item), RunItem("new", 1, R, 30, item), RunItem("mid", 1, F, 20, item)
    ])
    assert await store.stale_items() == []
    assert await store.unfinished_runs() == ["new"]
    assert [r.run_id for r in await store.list_items(0, 10)] == ["new", "mid", "old"]
    assert [r.run_id for r in await store.list_items(1, 1)] == ["mid"]
    assert [r.run_id for r in await store.list_items(0, 10, C)] == ["old"]
    await store.put_items([RunItem("new", 1, C, 99, item)])  # not newer than the row's: ignored
    row = await store.run("new")
    assert row is not None and (row.state, row.start_ns) == (R, 30)
    await store.append([record_of(event(ev.SCOPE_RUN, C, t_s=2, run="new"))])
    assert await store.stale_items() == ["new"]  # its item is behind its revision now
    await store.put_items([RunItem("new", 2, C, 30, item)])
    assert await store.stale_items() == [] and await store.unfinished_runs() == []


async def test_retention_deletes_unchanged_runs_in_batches_and_keeps_a_run_that_moved(store: Store) -> None:
    for i in range(5):
        await store.append([record_of(node(f"n{j}", C, t_s=10 * i + j, run=f"run{i}")) for j in range(3)])
    chosen = await store.expired_runs(max_runs=2, min_time_ns=None)
    assert chosen == [("run2", 3), ("run1", 3), ("run0", 3)]  # beyond the newest two by last event
    # an event for run1 is acknowledged after the sweep chose it and before it deletes
    late = node("late", C, t_s=0, run="run1")
    assert (await store.append([record_of(late)])).records
    deleted = await store.delete_runs(chosen, batch_events=3)  # one run per transaction
    assert deleted == ["run2", "run0"]
    assert _ids(await store.events("run1"))[-1] == late.event_id and await store.count("run1") == 4
    assert await store.run("run0") is None and await store.count("run0") == 0
    by_age = await store.expired_runs(max_runs=None, min_time_ns=node("x", C, t_s=25).time.ToNanoseconds())
    assert by_age == [("run1", 4)]
    # a deleted run that comes back starts again at revision 1
    again = await store.append([record_of(node("n0", C, t_s=1, run="run0"))])
    assert again.bases == {"run0": 0}


async def test_concurrent_appends_to_one_run_number_every_event_once(store: Store) -> None:
    """Writers of one run are serialised: revisions 1..n, no gap, no double (PostgreSQL: on
    separate pooled connections at once)."""
    events = [node(f"n{i}", C, t_s=i, run="busy") for i in range(60)]
    batches = [events[i : i + 7] + events[max(0, i - 3) : i] for i in range(0, 60, 7)]  # with duplicates
    results = await asyncio.gather(*(store.append([record_of(e) for e in b]) for b in batches))
    new = sorted(r.event_id for res in results for r in res.records)
    assert new == sorted(e.event_id for e in events)
    row = await store.run("busy")
    assert row is not None and row.revision == 60
    assert sorted(_ids(await store.events("busy"))) == sorted(e.event_id for e in events)


def _run_events(run_id: str, n_assets: int) -> list[ev.RunEvent]:
    out = [event(ev.SCOPE_RUN, R, t_s=0, run=run_id)]
    for a in range(n_assets):
        for k, nid in enumerate(("probe", "encode")):
            out.append(node(nid, R, t_s=a + k, run=run_id, asset=f"a{a}"))
            out.append(node(nid, F if a == 1 and k else C, t_s=a + k + 0.5, run=run_id, asset=f"a{a}"))
    return out


def _same(got: db.DashboardSnapshot, want: db.DashboardSnapshot | None) -> bool:
    assert want is not None
    got, want = db.DashboardSnapshot.FromString(got.SerializeToString()), db.DashboardSnapshot.FromString(
        want.SerializeToString()
    )
    got.ClearField("generated_time")
    want.ClearField("generated_time")
    return got == want


async def test_a_receiver_serves_the_fold_of_the_stored_events_across_restarts_and_evictions(
    location: str,
) -> None:
    runs = {f"run{i}": _run_events(f"run{i}", 3 + i) for i in range(6)}
    config = ReceiverConfig(store_path=location, fold_cache_events=30, retention_runs=None)
    rng = random.Random(13)
    receiver = Receiver(config)
    await receiver.start()
    try:
        pool = [e for evs in runs.values() for e in evs]
        sent = pool + rng.sample(pool, 20)  # duplicates
        rng.shuffle(sent)  # disorder
        for i in range(0, len(sent), 9):
            await receiver.ingest([record_of(e) for e in sent[i : i + 9]])
        sel = Selection("p", "a1")
        for run_id, evs in runs.items():
            assert _same(await receiver.snapshot(run_id, sel), snapshot_of(evs, run_id, sel))
        listed = await receiver.list_runs()  # writes the pending list items: the runs may leave the cache
        assert receiver.stats.cached_events <= 30 + max(len(e) for e in runs.values())  # bounded
    finally:
        await receiver.stop()

    again = Receiver(config)  # a restart reads no event until a run is asked for
    await again.start()
    try:
        assert again.stats.folds_built == 0
        assert await again.list_runs() == listed
        assert [r.revision for r in listed.runs] == [len(runs[r.run.run_id]) for r in listed.runs]
        for run_id, evs in runs.items():
            snap = await again.snapshot(run_id)
            assert snap.revision == len(evs)  # the number of distinct events: the same everywhere
            assert _same(snap, snapshot_of(evs, run_id))
        with pytest.raises(NotFound):
            await again.snapshot("nope")
    finally:
        await again.stop()


async def test_an_event_acknowledged_while_a_sweep_runs_survives_it(location: str) -> None:
    """Retention and ingest race on one run, many times: whatever the interleaving, every event
    whose ingest returned is either still stored or was stored before the sweep chose its run."""
    config = ReceiverConfig(store_path=location, retention_runs=1)
    receiver = Receiver(config)
    await receiver.start()
    try:
        for round_ in range(15):
            await receiver.ingest([record_of(node("n", C, t_s=1000 + round_, run=f"keep{round_}"))])
            target = f"old{round_}"
            await receiver.ingest([record_of(node("n0", C, t_s=round_, run=target))])
            assert receiver.store is not None
            chosen = await receiver.store.expired_runs(max_runs=1, min_time_ns=None)
            late = node("late", C, t_s=round_ + 0.5, run=target)
            sweep = asyncio.ensure_future(receiver.store.delete_runs(chosen))
            acked = await receiver.ingest([record_of(late)])  # lands before, during or after the sweep
            deleted = await sweep
            stored = _ids(await receiver.store.events(target))
            if target in deleted:
                # the sweep won the lock: the late event was stored after it, alone, as revision 1
                assert acked == 1 and stored == [late.event_id]
            else:
                assert late.event_id in stored
    finally:
        await receiver.stop()


async def test_a_fold_checkpoint_is_a_cache_never_the_truth(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big run's fold is saved when it leaves the cache; a cold read loads it and folds only
    the revisions after it, giving the fold of all the events. A checkpoint of other fold code,
    or a corrupt or forged one, is ignored."""
    monkeypatch.setattr(_checkpoint, "MIN_EVENTS", 10)
    a_events, b_events = _run_events("run-a", 6), _run_events("run-b", 6)
    config = ReceiverConfig(store_path=location, fold_cache_events=1, retention_runs=None)
    receiver = Receiver(config)
    await receiver.start()
    try:
        await receiver.ingest([record_of(e) for e in a_events[:20]])
        await receiver.ingest([record_of(e) for e in b_events])  # run-a leaves the cache: saved
        await receiver.list_runs()
        await asyncio.gather(*receiver._saves)
        assert receiver.store is not None
        saved = await receiver.store.checkpoint("run-a")
        assert saved is not None and saved[:2] == (20, _checkpoint.FOLD_CODE)
        await receiver.ingest([record_of(e) for e in a_events[20:]])  # the tail, after the checkpoint
        built = receiver.stats.folds_built
        for run_id, evs in (("run-a", a_events), ("run-b", b_events)):
            sel = Selection("p", "a2")
            assert _same(await receiver.snapshot(run_id, sel), snapshot_of(evs, run_id, sel))
        assert receiver.stats.folds_built > built
    finally:
        await receiver.stop()
    again = Receiver(config)
    await again.start()
    try:
        assert again.store is not None
        for blob, code in ((saved[2], "other-fold-code"), (b"not a checkpoint", _checkpoint.FOLD_CODE)):
            await again.store.put_checkpoint("run-a", len(a_events), code, blob)  # replaces: other code
            again._forget("run-a")
            assert _same(await again.snapshot("run-a"), snapshot_of(a_events, "run-a"))
    finally:
        await again.stop()


def test_a_forged_checkpoint_cannot_name_anything_but_the_fold_s_classes() -> None:
    import os
    import pickle
    import zlib

    for evil in (pickle.dumps(os.system), pickle.dumps(eval), b"garbage"):
        with pytest.raises(ValueError, match="unreadable fold checkpoint"):
            _checkpoint.load(zlib.compress(evil))
    fold = run_fold_of("r", [e.SerializeToString() for e in _run_events("r", 3)])
    again = _checkpoint.load(_checkpoint.dump(fold))
    assert again.revision == fold.revision
    assert _same(again.snapshot(Selection("p", "a1")), fold.snapshot(Selection("p", "a1")))
