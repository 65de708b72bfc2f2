"""Run state that never lies (docs/fold.md, rules 4, 6 and 8): a parent is never shown complete
while a descendant is non-terminal or after one failed; silent runs, pipelines and assets are
ended by liveness; a reused run id is flagged. Pure fold tests and hypothesis properties; the
end-to-end versions through the emitter and a real receiver are in
tests/reliability/test_run_state_e2e.py.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from tests.receiver import T0_NS, event, node
from tests.receiver.test_fold import _event_sets
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.receiver import Fold, Selection, SilentEntity, record_of, silent_entity_event, snapshot_of

Q, R, W = ev.STATE_QUEUED, ev.STATE_RUNNING, ev.STATE_WAITING
C, F, S = ev.STATE_COMPLETE, ev.STATE_FAILED, ev.STATE_SKIPPED
RUN, PIPE, ASSET = ev.SCOPE_RUN, ev.SCOPE_PIPELINE, ev.SCOPE_ASSET
TERMINAL = {C, F, S}
S_NS = 10**9


def _snap(events: list[ev.RunEvent], run: str = "r1") -> db.DashboardSnapshot:
    out = snapshot_of(events, run, Selection("p", "a"), now_ns=T0_NS + 1000 * S_NS)
    assert out is not None
    return out


def _states(s: db.DashboardSnapshot) -> tuple[int, int, int, int]:
    """(run, pipeline p, asset a, node n) states as shown."""
    (pipe,) = [p for p in s.pipelines if p.pipeline_id == "p"]
    (asset,) = [a for a in pipe.assets if a.asset_id == "a"]
    (nd,) = [d for d in s.node_details if d.node_id == "n"]
    return s.run.state, pipe.state, asset.state, nd.state


# -- scenario 1 and 2: a run's complete arrives while its node still runs, then the node fails --

BASE = [
    event(RUN, R, t_s=0, eid="run-r"),
    node("n", R, t_s=1, eid="n-r"),
    event(RUN, C, t_s=2, eid="run-c"),  # the runner says complete: its node still runs
]


def test_a_run_is_never_complete_while_a_node_still_runs() -> None:
    s = _snap(BASE)
    # run reported complete, but its only node is running: every level shows running
    assert _states(s) == (R, R, R, R)
    assert s.run.state_reported is True
    assert not s.run.HasField("end_time") and not s.run.error.error_class


def test_then_the_node_fails_and_every_parent_ends_failed_naming_the_failed_child() -> None:
    s = _snap([*BASE, node("n", F, t_s=5, eid="n-f", error=("ExitCode", "exit 3"))])
    assert _states(s) == (F, F, F, F)
    pipe = s.pipelines[0]
    asset = pipe.assets[0]
    # the child-failed classes of docs/event-model.md, each naming the failed child
    assert (asset.error.error_class, asset.error.detail) == ("NodeFailed", "failed nodes: n")
    assert (pipe.error.error_class, pipe.error.detail) == ("AssetFailed", "1 failed assets: a")
    assert (s.run.error.error_class, s.run.error.detail) == ("PipelineFailed", "failed pipelines: p")
    # the run ends when its last child ended (t=5 s), not at its own early complete (t=2 s)
    assert s.run.end_time.ToNanoseconds() == T0_NS + 5 * S_NS
    assert s.run.duration.ToNanoseconds() == 5 * S_NS  # running at t=0, ended at t=5


def test_a_complete_report_with_only_queued_children_shows_running() -> None:
    s = _snap([event(RUN, C, t_s=2, eid="run-c"), node("n", Q, t_s=1, eid="n-q")])
    assert s.run.state == R  # it reported it ran; its node never started or ended


def test_a_failed_report_stands_with_running_children() -> None:
    s = _snap([event(RUN, F, t_s=2, eid="run-f", error=("Cancelled", "SIGTERM")), node("n", R, t_s=1)])
    assert s.run.state == F and s.run.error.error_class == "Cancelled"


def test_a_node_retried_after_a_failure_does_not_fail_its_parents() -> None:
    s = _snap(
        [
            *BASE,
            node("n", F, t_s=3, eid="n1-f"),
            node("n", C, t_s=4, eid="n2-c", attempt=2),
        ]
    )
    assert _states(s) == (C, C, C, C)


# -- scenario 3: liveness ends silent runs, pipelines and assets ---------------------------------

LOST_NS = 60 * S_NS


def test_a_run_whose_node_failed_and_that_never_ended_is_ended_by_liveness() -> None:
    events = [
        event(RUN, R, t_s=0, eid="run-r"),
        node("n", R, t_s=1, eid="n-r"),
        node("n", F, t_s=2, eid="n-f", error=("ExitCode", "exit 1")),
    ]
    fold = Fold()
    for e in events:
        fold.apply(e)
    run = fold.runs["r1"]
    assert run.state() == R  # the run said running and never more
    assert run.silent_entities(T0_NS + 2 * S_NS + LOST_NS, LOST_NS) == []  # not silent yet
    silent = run.silent_entities(T0_NS + 2 * S_NS + LOST_NS + 1, LOST_NS)
    # the asset and pipeline are shown failed (derived from the node): only the run is silent
    assert silent == [SilentEntity(RUN, "", "", T0_NS + 2 * S_NS)]
    lost = silent_entity_event("r1", silent[0], LOST_NS)
    assert (lost.synthetic, lost.state, lost.error.error_class) == (True, F, "HeartbeatLost")
    assert lost.time.ToNanoseconds() == T0_NS + 2 * S_NS + LOST_NS
    # deterministic: another replica or a restart writes the very same event
    assert silent_entity_event("r1", silent[0], LOST_NS) == lost
    fold.apply(lost)
    assert run.state() == F and run.header().error.error_class == "HeartbeatLost"
    assert run.silent_entities(T0_NS + 10_000 * S_NS, LOST_NS) == []
    # a late real terminal wins over the synthetic one: the node failed, so the run fails for it
    fold.apply(event(RUN, C, t_s=200, eid="run-c-late"))
    assert run.state() == F and run.header().error.error_class == "PipelineFailed"


def test_silent_pipelines_and_assets_are_listed_with_their_newest_activity() -> None:
    events = [
        event(RUN, R, t_s=0, eid="run-r"),
        event(PIPE, R, t_s=0, eid="p-r"),
        event(ASSET, R, t_s=1, eid="a-r"),
        node("n", Q, t_s=3, eid="n-q"),  # the newest activity of the asset, pipeline and run
    ]
    fold = Fold()
    for e in events:
        fold.apply(e)
    silent = fold.runs["r1"].silent_entities(T0_NS + 3 * S_NS + LOST_NS + 1, LOST_NS)
    assert silent == [
        SilentEntity(ASSET, "p", "a", T0_NS + 3 * S_NS),
        SilentEntity(PIPE, "p", "", T0_NS + 3 * S_NS),
        SilentEntity(RUN, "", "", T0_NS + 3 * S_NS),
    ]


def test_a_synthetic_parent_failure_yields_to_children_that_all_ended_well() -> None:
    """An asset ended by liveness whose node then reports complete is complete (no own report
    of the asset ever came: the synthetic failure was liveness's guess)."""
    lost = silent_entity_event("r1", SilentEntity(ASSET, "p", "a", T0_NS + S_NS), LOST_NS)
    s = _snap([node("n", R, t_s=1, eid="n-r"), lost, node("n", C, t_s=70, eid="n-c")])
    assert _states(s)[2] == C


# -- scenario 6: a run id used by two executions is flagged --------------------------------------


def test_run_scope_starts_from_two_sources_are_a_conflict() -> None:
    one = event(RUN, R, t_s=0, eid="a-r", source_id="host-a")
    two = event(RUN, R, t_s=50, eid="b-r", source_id="host-b")
    assert _snap([one]).run.conflict == ""
    flagged = _snap([one, two]).run.conflict
    assert flagged.startswith("RunIdReused:") and "host-a, host-b" in flagged


def test_a_run_started_again_after_it_ended_is_a_conflict() -> None:
    s = _snap(
        [
            event(RUN, R, t_s=0, eid="r1", source_id="x"),
            event(RUN, C, t_s=5, eid="c1", source_id="x"),
            event(RUN, R, t_s=9, eid="r2", source_id="x"),
        ]
    )
    assert s.run.conflict.startswith("RunIdReused:") and "started again" in s.run.conflict


def test_an_empty_origin_decides_nothing() -> None:
    """A copy of an event that came without an OTLP resource must not blank the run's origin."""
    full = event(RUN, R, t_s=0, eid="r", origin=ev.Origin(service_name="svc", host_name="h"))
    bare = node("n", R, t_s=5, eid="n", origin=ev.Origin())
    s = _snap([full, bare])
    assert (s.run.service_name, s.run.host_name) == ("svc", "h")


# -- properties ----------------------------------------------------------------------------------


def _children_states(s: db.DashboardSnapshot) -> list[tuple[int, list[int]]]:
    """(state, children's states) of the run and each pipeline shown (assets need their node
    details, so the asset level is checked through the summary of nodes instead)."""
    out = [(s.run.state, [p.state for p in s.pipelines])]
    for p in s.pipelines:
        out.append((p.state, [a.state for a in p.assets]))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_event_sets())
def test_property_a_parent_shown_complete_has_only_finished_children_and_none_failed(
    events: list[ev.RunEvent],
) -> None:
    fold = Fold()
    for e in events:
        fold.apply(e)
    for run_id, run in fold.runs.items():
        for p in run.pipelines:
            for a in run.pipelines[p].assets:
                snap = run.snapshot(Selection(p, a, asset_page_size=1000), NOW)
                for state, kids in _children_states(snap):
                    if state == C:
                        assert all(k in TERMINAL for k in kids), (run_id, state, kids)
                        assert F not in kids
                row = next(r for r in snap.pipelines if r.pipeline_id == p).assets
                asset_state = next(r.state for r in row if r.asset_id == a)
                if asset_state == C:
                    nodes = [d.state for d in snap.node_details]
                    assert all(k in TERMINAL for k in nodes) and F not in nodes


NOW = T0_NS + 10**12


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_event_sets(), st.integers(0, 10**12))
def test_property_liveness_events_never_change_a_terminal_entity_or_repeat(
    events: list[ev.RunEvent], after_ns: int
) -> None:
    """Applying the synthetic events of silent entities ends each of them, and asking again at
    the same time lists nothing more (so liveness converges: one event per silence)."""
    fold = Fold()
    for e in events:
        fold.apply(e)
    for run_id, run in fold.runs.items():
        now = T0_NS + after_ns
        first = run.silent_entities(now, LOST_NS)
        for entity in first:
            fold.apply_records([record_of(silent_entity_event(run_id, entity, LOST_NS))])
        assert run.silent_entities(now, LOST_NS) == []


# -- hostile event sets: no snapshot may fail ----------------------------------------------------


def _recursive_depths(upstream: dict[str, set[str]]) -> dict[str, int]:
    """The previous, recursive definition of the workflow depths: the reference for small graphs."""
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(n: str) -> int:
        if n in depth:
            return depth[n]
        if n in visiting:
            return 0
        visiting.add(n)
        d = 1 + max((visit(u) for u in sorted(upstream.get(n, ()))), default=-1)
        visiting.discard(n)
        depth[n] = d
        return d

    for n in sorted(upstream):
        visit(n)
    return depth


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from("abcdefgh"), st.sets(st.sampled_from("abcdefgh"), max_size=4), max_size=8
    )
)
def test_property_iterative_depths_equal_the_recursive_definition(upstream: dict[str, set[str]]) -> None:
    from vfo_otel.receiver._digest import depths

    assert depths(upstream) == _recursive_depths(upstream)


def test_an_upstream_chain_of_1200_nodes_is_served() -> None:
    """Each node names the one before it: the workflow is 1,200 deep (once a RecursionError)."""
    events = [node("n0000", C, t_s=0, eid="c0")]
    events += [
        node(f"n{i:04d}", C, t_s=0, eid=f"c{i}", upstream_node_ids=[f"n{i - 1:04d}"]) for i in range(1, 1200)
    ]
    s = snapshot_of(events, "r1", Selection("p", "a"), now_ns=NOW)
    assert s is not None
    wf = s.pipelines[0].workflow
    assert len(wf.nodes) == 1200 and len(wf.edges) == 1199
    assert max(n.depth for n in wf.nodes) == 1199
    assert [d.node_id for d in s.node_details][:3] == ["n0000", "n0001", "n0002"]


@st.composite
def _hostile_events(draw: st.DrawFn) -> list[ev.RunEvent]:
    """Cycles, self-loops, long chains, unknown upstream ids, every scope and state, any times."""
    n = draw(st.integers(1, 40))
    names = [f"n{i}" for i in range(draw(st.integers(1, 12)))]
    out = []
    for i in range(n):
        scope = draw(st.sampled_from([RUN, PIPE, ASSET, ev.SCOPE_NODE, ev.SCOPE_NODE]))
        e = event(
            scope,
            draw(st.integers(1, 6)),
            t_s=draw(st.integers(-5, 5)),
            eid=f"h{i}",
            pipeline=draw(st.sampled_from(["p", "q"])),
            asset=draw(st.sampled_from(["a", "b"])),
            synthetic=draw(st.booleans()),
            source_id=draw(st.sampled_from(["", "s1", "s2"])),
        )
        if scope == ev.SCOPE_NODE:
            e.node_id = draw(st.sampled_from(names))
            e.attempt_id = draw(st.integers(1, 3))
            e.upstream_node_ids.extend(draw(st.lists(st.sampled_from([*names, "ghost"]), max_size=6)))
        if draw(st.booleans()):
            e.duration.FromNanoseconds(draw(st.integers(-(10**12), 10**12)))
        out.append(e)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_hostile_events(), st.integers(0, 10**13))
def test_property_building_any_snapshot_never_raises(events: list[ev.RunEvent], now_offset: int) -> None:
    fold = Fold()
    for e in events:
        fold.apply(e)
    for run in fold.runs.values():
        selections = [Selection()] + [Selection(p, a) for p in ("p", "q") for a in ("a", "b")]
        for sel in selections:
            run.snapshot(sel, T0_NS + now_offset, stale_after_ns=S_NS)
        run.silent_entities(T0_NS + now_offset, S_NS)
        run.summary()
