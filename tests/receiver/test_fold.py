"""The fold (vfo_otel.fold): unit tests of each rule and hypothesis properties.

Rules under test are those of docs/fold.md: idempotent and order-insensitive, the
terminal state of an attempt is final, a node shows its latest attempt, parents derive
their state from children when they emitted none, durations never negative, revision =
number of distinct events.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.receiver import T0_NS, event, node
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.receiver import SCHEMA_VERSION, Fold, Selection, derive_state, record_of, snapshot_of
from vfo_otel.testing import run_events

Q, R, W = ev.STATE_QUEUED, ev.STATE_RUNNING, ev.STATE_WAITING
C, F, S = ev.STATE_COMPLETE, ev.STATE_FAILED, ev.STATE_SKIPPED
NOW_NS = T0_NS + 10**12


def snap(
    events: list[ev.RunEvent], run: str = "r1", selection: Selection | None = None
) -> db.DashboardSnapshot:
    out = snapshot_of(events, run, selection, now_ns=NOW_NS)
    assert out is not None
    return out


def detail(s: db.DashboardSnapshot, node_id: str) -> db.NodeDetail:
    (d,) = [d for d in s.node_details if d.node_id == node_id]
    return d


SEL = Selection("p", "a")


# ---------------------------------------------------------------------------
# derive_state: every rule
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("children", "expected"),
    [
        ([], Q),  # no children: queued
        ([R, C, F, Q, W, S], R),  # any running: running
        ([W, C, Q, F], W),  # else any waiting: waiting
        ([Q, C], R),  # queued with a finished sibling: running (under way)
        ([Q, F, S], R),
        ([Q, Q], Q),  # only queued: queued
        ([ev.STATE_UNSPECIFIED], Q),  # a child with no state yet counts as queued
        ([ev.STATE_UNSPECIFIED, C], R),
        ([C, F, S], F),  # all finished: failed if any failed
        ([S, S], S),  # all skipped: skipped
        ([C, S], C),  # otherwise complete
        ([C], C),
    ],
)
def test_derive_state(children: list[int], expected: int) -> None:
    assert derive_state(children) == expected
    assert derive_state(reversed(children)) == expected


def test_asset_state_derived_from_latest_attempts_and_reported_state_wins() -> None:
    events = [
        node("x", F, t_s=1, attempt=1, error=("ExitCode", "exited with status 1")),
        node("x", C, t_s=2, attempt=2),
        node("y", S, t_s=3),
    ]
    s = snap(events)
    (pipe,) = s.pipelines
    (asset,) = pipe.assets
    # latest attempts: x complete, y skipped -> complete (the failed attempt 1 is superseded)
    assert (asset.state, asset.state_reported) == (C, False)
    assert (pipe.state, pipe.state_reported) == (C, False)
    assert (s.run.state, s.run.state_reported) == (C, False)

    # The asset's own event wins over the derivation, and the pipeline and run follow it.
    s = snap([*events, event(ev.SCOPE_ASSET, F, t_s=4, error=("NodeFailed", "x"))])
    asset = s.pipelines[0].assets[0]
    assert (asset.state, asset.state_reported) == (F, True)
    assert asset.error.error_class == "NodeFailed"
    assert s.pipelines[0].state == F and s.run.state == F

    # A reported pipeline state wins over its assets; a reported run state over its pipelines.
    s = snap([*events, event(ev.SCOPE_PIPELINE, R, t_s=5), event(ev.SCOPE_RUN, W, t_s=5)])
    assert (s.pipelines[0].state, s.pipelines[0].state_reported) == (R, True)
    assert (s.run.state, s.run.state_reported) == (W, True)


def test_run_derived_from_pipelines() -> None:
    events = [node("x", C, t_s=1, pipeline="p1"), node("x", R, t_s=1, pipeline="p2")]
    s = snap(events)
    assert [p.state for p in s.pipelines] == [C, R]
    assert s.run.state == R and not s.run.state_reported
    s = snap([*events, node("x", F, t_s=2, pipeline="p2")])
    assert s.run.state == F


def test_run_without_children_is_queued() -> None:
    s = snap([event(ev.SCOPE_PIPELINE, Q, t_s=1)])
    assert s.run.state == Q  # derived from a queued pipeline
    (p,) = s.pipelines
    assert p.state == Q and p.state_reported


# ---------------------------------------------------------------------------
# Which event decides a state
# ---------------------------------------------------------------------------


def test_terminal_state_is_final_late_running_never_overrides_complete() -> None:
    done = node("x", C, t_s=5, duration_s=4, exit_code=0)
    late = node("x", R, t_s=9)  # a later timestamp, and arriving after
    for order in ([done, late], [late, done]):
        d = detail(snap(order, selection=SEL), "x")
        assert d.state == C
        (a,) = d.attempts
        assert a.state == C
        assert a.end_time.ToNanoseconds() == T0_NS + 5 * 10**9
        assert a.duration.ToNanoseconds() == 4 * 10**9


def test_queued_never_overrides_running() -> None:
    d = detail(snap([node("x", R, t_s=1), node("x", Q, t_s=2)], selection=SEL), "x")
    assert d.state == R


def test_real_terminal_overrides_synthetic_terminal() -> None:
    lost = node("x", F, t_s=20, synthetic=True, error=("HeartbeatLost", "no heartbeat for 60s"))
    done = node("x", C, t_s=10)
    a = detail(snap([lost, done], selection=SEL), "x").attempts[0]
    assert (a.state, a.synthetic) == (C, False)
    assert not a.HasField("error")
    a = detail(snap([node("x", R, t_s=1), lost], selection=SEL), "x").attempts[0]
    assert (a.state, a.synthetic, a.error.error_class) == (F, True, "HeartbeatLost")


def test_within_a_rank_later_time_then_greater_event_id_wins() -> None:
    a = detail(snap([node("x", F, t_s=5, error=("E", "")), node("x", C, t_s=6)], selection=SEL), "x")
    assert a.state == C
    a = detail(snap([node("x", C, t_s=6), node("x", F, t_s=5, error=("E", ""))], selection=SEL), "x")
    assert a.state == C
    tie = [node("x", F, t_s=5, eid="b", error=("E", "")), node("x", C, t_s=5, eid="a")]
    assert detail(snap(tie, selection=SEL), "x").state == F
    assert detail(snap(tie[::-1], selection=SEL), "x").state == F


def test_error_only_shown_when_failed() -> None:
    # an error on a complete event is not an error of the attempt
    a = detail(snap([node("x", C, t_s=1, error=("E", "x"))], selection=SEL), "x").attempts[0]
    assert not a.HasField("error")


def test_node_shows_latest_attempt() -> None:
    events = [
        node("x", F, t_s=1, attempt=1, exit_code=75, error=("ExitCode", "exited with status 75")),
        node("x", R, t_s=2, attempt=2),
        node("y", Q, t_s=0, upstream_node_ids=["x"]),
    ]
    s = snap(events, selection=SEL)
    d = detail(s, "x")
    assert d.state == R
    assert [(a.attempt_id, a.state) for a in d.attempts] == [(1, F), (2, R)]
    assert d.attempts[0].exit_code == 75 and not d.attempts[1].HasField("exit_code")
    assert (s.summary.nodes.running, s.summary.nodes.failed, s.summary.nodes.queued) == (1, 0, 1)
    assert (s.summary.attempts.failed, s.summary.attempts.running, s.summary.attempts.total) == (1, 1, 3)
    asset = s.pipelines[0].assets[0]
    assert asset.attempts == 3
    assert (asset.current_node_id, asset.current_stage_id) == ("x", "s")
    # a third attempt arriving earlier than the second in time still wins: higher attempt_id
    d = detail(snap([*events, node("x", C, t_s=0.5, attempt=3)], selection=SEL), "x")
    assert d.state == C


def test_workflow_nodes_edges_and_depth() -> None:
    events = [
        node("probe", C, t_s=1, stage="analyze"),
        node("thumb", C, t_s=2, stage="encode", upstream_node_ids=["probe"]),
        node("check", F, t_s=2, stage="analyze", upstream_node_ids=["probe"], error=("E", "")),
        node("pack", S, t_s=3, stage="package", upstream_node_ids=["check", "thumb"]),
        node("pack", S, t_s=3, stage="package", asset="b", upstream_node_ids=["check", "thumb"]),
        node("pub", Q, t_s=0, stage="publish", upstream_node_ids=["pack", "ghost"]),
    ]
    wf = snap(events).pipelines[0].workflow
    depth = {n.node_id: n.depth for n in wf.nodes}
    assert depth == {"probe": 0, "ghost": 0, "check": 1, "thumb": 1, "pack": 2, "pub": 3}
    assert [n.node_id for n in wf.nodes] == ["ghost", "probe", "check", "thumb", "pack", "pub"]
    edges = [(e.from_node_id, e.to_node_id) for e in wf.edges]
    assert edges == [
        ("probe", "check"),
        ("check", "pack"),
        ("thumb", "pack"),
        ("ghost", "pub"),
        ("pack", "pub"),
        ("probe", "thumb"),
    ]
    counts = {n.node_id: n.counts for n in wf.nodes}
    assert counts["pack"].skipped == 2 and counts["pack"].total == 2
    assert counts["ghost"].total == 0  # only known as an upstream id
    stages = {n.node_id: n.stage_id for n in wf.nodes}
    assert stages["thumb"] == "encode" and stages["ghost"] == ""


def test_stage_totals() -> None:
    events = [
        node("x", F, t_s=2, attempt=1, stage="encode", duration_s=2, error=("E", "")),
        node("x", C, t_s=5, attempt=2, stage="encode", duration_s=3),
        node("y", C, t_s=5, stage="encode", asset="b", duration_s=1),
        node("z", R, t_s=5, stage="analyze"),
    ]
    totals = {t.stage_id: t for t in snap(events).stage_totals}
    assert list(totals) == ["analyze", "encode"]
    enc = totals["encode"]
    assert (enc.counts.complete, enc.counts.failed, enc.counts.total) == (2, 0, 2)  # latest attempts
    assert enc.total_duration.ToNanoseconds() == 6 * 10**9  # every terminal attempt, retries included
    assert enc.max_duration.ToNanoseconds() == 3 * 10**9
    assert totals["analyze"].counts.running == 1
    assert totals["analyze"].total_duration.ToNanoseconds() == 0


# ---------------------------------------------------------------------------
# Times
# ---------------------------------------------------------------------------


def test_times_start_end_and_emitter_duration() -> None:
    events = [node("x", Q, t_s=0), node("x", R, t_s=2), node("x", C, t_s=7, duration_s=4.5)]
    a = detail(snap(events, selection=SEL), "x").attempts[0]
    assert a.start_time.ToNanoseconds() == T0_NS + 2 * 10**9  # earliest running
    assert a.end_time.ToNanoseconds() == T0_NS + 7 * 10**9
    assert a.duration.ToNanoseconds() == 4_500_000_000  # the emitter's own clock wins
    assert a.last_update_time.ToNanoseconds() == T0_NS + 7 * 10**9


def test_times_without_emitter_duration() -> None:
    a = detail(snap([node("x", Q, t_s=1), node("x", C, t_s=4)], selection=SEL), "x").attempts[0]
    assert a.start_time.ToNanoseconds() == T0_NS + 10**9  # no running: earliest event
    assert a.duration.ToNanoseconds() == 3 * 10**9
    # only the terminal event with a duration: start = end - duration
    a = detail(snap([node("x", C, t_s=4, duration_s=1.5)], selection=SEL), "x").attempts[0]
    assert a.start_time.ToNanoseconds() == T0_NS + 2_500_000_000


def test_non_terminal_has_no_end_or_duration() -> None:
    a = detail(snap([node("x", R, t_s=1)], selection=SEL), "x").attempts[0]
    assert a.HasField("start_time") and not a.HasField("end_time") and not a.HasField("duration")


def test_durations_never_negative() -> None:
    # a running event stamped after the terminal one (clock skew between sources)
    a = detail(snap([node("x", C, t_s=1), node("x", R, t_s=5)], selection=SEL), "x").attempts[0]
    assert a.duration.ToNanoseconds() == 0
    a = detail(snap([node("x", C, t_s=1, duration_s=-3)], selection=SEL), "x").attempts[0]
    assert a.duration.ToNanoseconds() == 0


def test_unreported_parent_spans_its_children() -> None:
    events = [
        node("x", R, t_s=1),
        node("x", C, t_s=3, duration_s=2),
        node("y", R, t_s=2, asset="b"),
        node("y", C, t_s=6, asset="b", duration_s=4),
    ]
    s = snap(events)
    p = s.pipelines[0]
    assert p.start_time.ToNanoseconds() == T0_NS + 10**9
    assert p.end_time.ToNanoseconds() == T0_NS + 6 * 10**9
    assert p.duration.ToNanoseconds() == 5 * 10**9
    assert s.run.last_update_time.ToNanoseconds() == T0_NS + 6 * 10**9


# ---------------------------------------------------------------------------
# Header, origin, selection, revision, duplicates
# ---------------------------------------------------------------------------


def test_header_command_attributes_error_origin() -> None:
    start = event(
        ev.SCOPE_RUN,
        R,
        t_s=0,
        command=ev.Command(command_line="vfo run nightly", argv=["vfo"]),
        attributes={"k": "old", "only": "1"},
        origin=ev.Origin(service_name="runner", service_version="1.0", host_name="h1"),
    )
    end = event(
        ev.SCOPE_RUN,
        F,
        t_s=9,
        error=("PipelineFailed", "failed pipelines: p"),
        attributes={"k": "new"},
        origin=ev.Origin(service_name="runner", service_version="1.1", host_name="h1"),
    )
    h = snap([end, start]).run
    assert (h.run_id, h.state, h.state_reported) == ("r1", F, True)
    assert h.command.command_line == "vfo run nightly"
    assert dict(h.attributes) == {"k": "new", "only": "1"}
    assert (h.error.error_class, h.error.detail) == ("PipelineFailed", "failed pipelines: p")
    assert (h.service_name, h.service_version, h.host_name) == ("runner", "1.1", "h1")
    assert h.duration.ToNanoseconds() == 9 * 10**9


def test_selection_and_schema_version() -> None:
    events = [node("x", C, t_s=1), node("y", C, t_s=1, asset="b")]
    s = snap(events)
    assert s.schema_version == SCHEMA_VERSION == 2
    assert s.generated_time.ToNanoseconds() == NOW_NS
    assert list(s.node_details) == []
    s = snap(events, selection=Selection("p", "b"))
    assert [d.node_id for d in s.node_details] == ["y"]
    assert (s.selection.pipeline_id, s.selection.asset_id) == ("p", "b")
    assert list(snap(events, selection=Selection("p", "nope")).node_details) == []


def test_revision_counts_distinct_events_and_duplicates_change_nothing() -> None:
    events = [node("x", R, t_s=1), node("x", C, t_s=2), event(ev.SCOPE_RUN, C, t_s=3)]
    fold = Fold()
    for e in events:
        assert fold.apply(e) is not None
    once = fold.runs["r1"].snapshot(SEL, NOW_NS)
    assert once.revision == 3
    for e in events:
        assert fold.apply(e) is None  # duplicates are dropped
    assert fold.runs["r1"].snapshot(SEL, NOW_NS) == once
    assert snapshot_of([*events, *events], "r1", SEL, NOW_NS) == once


def test_runs_are_separate_and_unknown_run_is_none() -> None:
    events = [node("x", C, t_s=1, run="r1"), node("x", F, t_s=1, run="r2", error=("E", ""))]
    assert snap(events, "r1").revision == 1 and snap(events, "r1").run.state == C
    assert snap(events, "r2").run.state == F
    assert snapshot_of(events, "r3") is None
    fold = Fold()
    for e in events:
        fold.apply(e)
    fold.drop("r1")
    assert list(fold.runs) == ["r2"]


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

_SCOPES = (ev.SCOPE_RUN, ev.SCOPE_PIPELINE, ev.SCOPE_ASSET, ev.SCOPE_NODE, ev.SCOPE_NODE, ev.SCOPE_NODE)


@st.composite
def _colliding_event(draw: st.DrawFn, index: int) -> ev.RunEvent:
    """Events over a few ids and few timestamps, so they collide on entities and times."""
    scope = draw(st.sampled_from(_SCOPES))
    e = event(
        scope,
        draw(st.integers(1, 6)),
        t_s=draw(st.integers(0, 4)),
        eid=f"ev{index:03d}",
        run="r1",
        pipeline=draw(st.sampled_from(["p1", "p2"])),
        asset=draw(st.sampled_from(["a1", "a2"])),
        synthetic=draw(st.booleans()),
    )
    if scope == ev.SCOPE_NODE:
        e.node_id = draw(st.sampled_from(["n1", "n2", "n3"]))
        e.attempt_id = draw(st.integers(1, 3))
        e.stage_id = draw(st.sampled_from(["", "s1", "s2"]))
        e.upstream_node_ids.extend(draw(st.lists(st.sampled_from(["n1", "n2", "n3"]), max_size=2)))
    if draw(st.booleans()):
        e.duration.FromNanoseconds(draw(st.integers(-(10**9), 5 * 10**9)))
    if draw(st.booleans()):
        e.exit_code = draw(st.integers(-9, 3))
    if draw(st.booleans()):
        e.error.error_class = draw(st.sampled_from(["ExitCode", "Timeout"]))
    if draw(st.booleans()):
        e.command.command_line = draw(st.sampled_from(["a", "b"]))
    if draw(st.booleans()):
        e.outputs.add(uri=draw(st.sampled_from(["/o1", "/o2"])))
    if draw(st.booleans()):
        e.attributes[draw(st.sampled_from(["k1", "k2"]))] = draw(st.sampled_from(["v1", "v2"]))
    if draw(st.booleans()):
        e.origin.service_name = draw(st.sampled_from(["svc1", "svc2"]))
    return e


@st.composite
def _event_sets(draw: st.DrawFn) -> list[ev.RunEvent]:
    n = draw(st.integers(1, 25))
    return [draw(_colliding_event(i)) for i in range(n)]


def _reordered_with_duplicates(draw: st.DrawFn, events: list[ev.RunEvent]) -> list[ev.RunEvent]:
    dups = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    copies = []
    for e in dups:
        c = ev.RunEvent()
        c.CopyFrom(e)
        copies.append(c)
    return draw(st.permutations(events + copies))


def _selections(events: list[ev.RunEvent]) -> list[Selection]:
    chosen = {Selection(e.pipeline_id, e.asset_id) for e in events if e.asset_id}
    return [Selection(), *sorted(chosen, key=lambda s: (s.pipeline_id, s.asset_id))]


def _durations(msg: Message) -> Iterator[Duration]:
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.message_type.GetOptions().map_entry:
            continue
        values = value if fd.is_repeated else [value]
        for v in values:
            if isinstance(v, Duration):
                yield v
            else:
                yield from _durations(v)


_PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(data=st.data(), events=_event_sets())
def test_any_permutation_and_duplication_gives_the_same_snapshot(
    data: st.DataObject, events: list[ev.RunEvent]
) -> None:
    shuffled = _reordered_with_duplicates(data.draw, events)
    for sel in _selections(events):
        a = snap(events, selection=sel)
        b = snap(shuffled, selection=sel)
        assert a == b
        assert a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
        assert a.revision == len({e.event_id for e in events})


@_PROPERTY
@given(events=_event_sets())
def test_properties_of_every_snapshot(events: list[ev.RunEvent]) -> None:
    sel = _selections(events)[-1]
    s = snap(events, selection=sel)
    for d in _durations(s):
        assert d.ToNanoseconds() >= 0
    # counts add up; a node's count is its latest attempt's state
    for counts in (s.summary.pipelines, s.summary.assets, s.summary.nodes, s.summary.attempts):
        assert counts.total == sum(
            getattr(counts, f) for f in ("queued", "running", "waiting", "complete", "failed", "skipped")
        )
    for d in s.node_details:
        assert d.state == d.attempts[-1].state
        assert [a.attempt_id for a in d.attempts] == sorted(a.attempt_id for a in d.attempts)
    # a terminal state, once seen, decides: no non-synthetic terminal attempt is shown non-terminal
    terminal = {C, F, S}
    for d in s.node_details:
        for a in d.attempts:
            real_end = [
                e
                for e in events
                if e.node_id == d.node_id
                and e.attempt_id == a.attempt_id
                and e.pipeline_id == sel.pipeline_id
                and e.asset_id == sel.asset_id
                and e.scope == ev.SCOPE_NODE
                and e.state in terminal
            ]
            if real_end:
                assert a.state in terminal


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), events=st.lists(run_events(), min_size=1, max_size=12, unique_by=lambda e: e.event_id))
def test_arbitrary_valid_events_fold_order_insensitively(
    data: st.DataObject, events: list[ev.RunEvent]
) -> None:
    shuffled = _reordered_with_duplicates(data.draw, events)
    for run_id in {e.run_id for e in events}:
        a, b = snapshot_of(events, run_id, now_ns=NOW_NS), snapshot_of(shuffled, run_id, now_ns=NOW_NS)
        assert a is not None and a == b
        assert a.revision == sum(1 for e in events if e.run_id == run_id)
        for d in _durations(a):
            assert d.ToNanoseconds() >= 0


@_PROPERTY
@given(data=st.data(), events=_event_sets())
def test_snapshots_built_while_folding_match_a_fresh_fold(
    data: st.DataObject, events: list[ev.RunEvent]
) -> None:
    """The per-asset digests cached between snapshots never leave a stale part behind."""
    shuffled = _reordered_with_duplicates(data.draw, events)
    sel = _selections(events)[-1]
    fold = Fold()
    for i, e in enumerate(shuffled):
        run = fold.apply(e)
        if run is not None and data.draw(st.booleans(), label=f"snapshot after event {i}"):
            run.snapshot(sel, NOW_NS)  # fills the caches mid-stream
    for run_id, run in fold.runs.items():
        assert run.snapshot(sel, NOW_NS) == snapshot_of(events, run_id, sel, NOW_NS)


@_PROPERTY
@given(data=st.data(), events=_event_sets())
def test_folding_facts_is_folding_events(data: st.DataObject, events: list[ev.RunEvent]) -> None:
    """Fold.apply_facts (the receiver's path: the decoder's plain values) folds as Fold.apply does,
    drops the same duplicates, and names the runs it changed."""
    shuffled = _reordered_with_duplicates(data.draw, events)
    by_event, by_facts = Fold(), Fold()
    for e in shuffled:
        by_event.apply(e)
    changed = by_facts.apply_records([record_of(e) for e in shuffled])
    assert changed == {e.run_id for e in events}
    assert by_facts.apply_records([record_of(e) for e in events]) == set()  # all duplicates now
    sel = _selections(events)[-1]
    for run_id, run in by_event.runs.items():
        assert by_facts.runs[run_id].snapshot(sel, NOW_NS) == run.snapshot(sel, NOW_NS)
        assert by_facts.runs[run_id].revision == run.revision


def test_node_details_come_in_workflow_order() -> None:
    events = [
        node("a-last", C, t_s=3, upstream_node_ids=["m-middle"]),
        node("m-middle", C, t_s=2, upstream_node_ids=["z-root"]),
        node("z-root", C, t_s=1),
        node("b-other-root", C, t_s=1),
    ]
    s = snap(events, selection=SEL)
    assert [d.node_id for d in s.node_details] == ["b-other-root", "z-root", "m-middle", "a-last"]
