"""Paged asset lists (fold rule 7, schema 2): each pipeline's ``assets`` is one page,
ordered by asset id, plus the selected asset's row; counts always cover every asset."""

from __future__ import annotations

import itertools

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.receiver import T0_NS, node
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.receiver import (
    DEFAULT_ASSET_PAGE_SIZE,
    MAX_ASSET_PAGE_SIZE,
    Fold,
    Invalid,
    RunFold,
    Selection,
    asset_page_token,
    make_selection,
    parse_asset_page_token,
)

C, F = ev.STATE_COMPLETE, ev.STATE_FAILED
NOW_NS = T0_NS + 10**12


def _run(n_assets: int, pipelines: tuple[str, ...] = ("p",), nodes: int = 2) -> RunFold:
    fold = Fold()
    for pid in pipelines:
        for i in range(n_assets):
            for k in range(nodes):
                state = F if (i % 7 == 3 and k == nodes - 1) else C
                error = ("ExitCode", "exited with status 1") if state == F else None
                fold.apply(node(f"n{k}", state, t_s=1 + k, pipeline=pid, asset=f"a{i:05d}", error=error))
    return fold.runs["r1"]


def _pipe(s: db.DashboardSnapshot, pid: str = "p") -> db.Pipeline:
    (p,) = [p for p in s.pipelines if p.pipeline_id == pid]
    return p


def _walk(run: RunFold, size: int, pid: str = "p") -> list[db.Pipeline]:
    """Every page of pid's asset list, following next_page_token from the first page."""
    pages, token = [], ""
    while True:
        p = _pipe(run.snapshot(Selection(asset_page_size=size, asset_page_token=token), NOW_NS), pid)
        pages.append(p)
        token = p.asset_page.next_page_token
        if not token:
            return pages


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), size=st.integers(1, 25))
def test_pages_cover_every_asset_once_in_id_order_and_go_back_exactly(n: int, size: int) -> None:
    run = _run(n, nodes=1)
    pages = _walk(run, size)
    ids = [a.asset_id for p in pages for a in p.assets]
    assert ids == sorted(f"a{i:05d}" for i in range(n))
    assert [p.asset_page.offset for p in pages] == list(range(0, n, size))
    assert all(p.asset_page.size == len(p.assets) <= size for p in pages)
    assert all(p.asset_counts.total == n for p in pages)  # counts cover every asset on every page
    assert pages[0].asset_page.previous_page_token == ""
    for before, page in itertools.pairwise(pages):
        back = Selection(asset_page_size=size, asset_page_token=page.asset_page.previous_page_token)
        assert _pipe(run.snapshot(back, NOW_NS)) == before


def test_default_page_is_bounded_and_counts_cover_the_run() -> None:
    run = _run(250)
    s = run.snapshot(None, NOW_NS)
    p = _pipe(s)
    assert len(p.assets) == p.asset_page.size == DEFAULT_ASSET_PAGE_SIZE
    assert p.asset_counts.total == 250 and s.summary.assets.total == 250
    assert p.asset_counts.failed == s.summary.assets.failed == len([i for i in range(250) if i % 7 == 3])
    assert p.asset_page.next_page_token and not p.asset_page.previous_page_token


def test_selected_asset_row_is_always_included_once() -> None:
    run = _run(30)
    off_page = Selection("p", "a00025", asset_page_size=10)
    p = _pipe(run.snapshot(off_page, NOW_NS))
    assert [a.asset_id for a in p.assets] == [f"a{i:05d}" for i in range(10)] + ["a00025"]
    assert p.asset_page.size == 10
    on_page = Selection("p", "a00004", asset_page_size=10)
    p = _pipe(run.snapshot(on_page, NOW_NS))
    assert [a.asset_id for a in p.assets] == [f"a{i:05d}" for i in range(10)]
    unknown = Selection("p", "zzz", asset_page_size=10)
    assert len(_pipe(run.snapshot(unknown, NOW_NS)).assets) == 10


def test_a_token_pages_its_own_pipeline_and_the_others_show_their_first_page() -> None:
    run = _run(12, pipelines=("p", "q"), nodes=1)
    first = run.snapshot(Selection(asset_page_size=5), NOW_NS)
    token = _pipe(first, "q").asset_page.next_page_token
    s = run.snapshot(Selection(asset_page_size=5, asset_page_token=token), NOW_NS)
    assert [a.asset_id for a in _pipe(s, "q").assets] == [f"a{i:05d}" for i in range(5, 10)]
    assert _pipe(s, "p") == _pipe(first, "p")


def test_page_follows_asset_ids_when_new_assets_arrive() -> None:
    """Keyset pages: an asset that sorts before the page does not shift its rows."""
    fold = Fold()
    for i in range(0, 20, 2):
        fold.apply(node("n", C, t_s=1, asset=f"a{i:05d}"))
    run = fold.runs["r1"]
    token = _pipe(run.snapshot(Selection(asset_page_size=4), NOW_NS)).asset_page.next_page_token
    fold.apply(node("n", C, t_s=1, asset="a00001"))  # sorts into the first page
    p = _pipe(run.snapshot(Selection(asset_page_size=4, asset_page_token=token), NOW_NS))
    assert [a.asset_id for a in p.assets] == ["a00008", "a00010", "a00012", "a00014"]
    assert p.asset_page.offset == 5


def test_payload_is_bounded_by_the_page_not_by_the_run() -> None:
    """The JSON a dashboard reads (page + selection) hardly grows with the run's asset count."""
    sizes = {}
    for n in (50, 2_000):
        run = _run(n)
        s = run.snapshot(Selection("p", "a00003", asset_page_size=20), NOW_NS)
        sizes[n] = len(json_format.MessageToJson(s, indent=None))
    full = len(json_format.MessageToJson(_run(2_000).snapshot(Selection(asset_page_size=1000), NOW_NS)))
    assert sizes[2_000] < 1.02 * sizes[50]  # only counts and the revision have more digits
    assert full > 20 * sizes[2_000]


def test_token_round_trip_and_bad_input_is_a_clear_error() -> None:
    for pid, after in [("p", ""), ("pipé", "a/b c"), ("p", '"quoted"')]:
        assert parse_asset_page_token(asset_page_token(pid, after)) == (pid, after)
    for bad in ["%%%", "bm90IGpzb24", asset_page_token("", "a"), "WzEsMl0"]:
        with pytest.raises(ValueError, match="malformed asset_page_token"):
            Selection(asset_page_token=bad)
    with pytest.raises(ValueError, match=f"asset_page_size must be between 0 .* and {MAX_ASSET_PAGE_SIZE}"):
        Selection(asset_page_size=MAX_ASSET_PAGE_SIZE + 1)
    with pytest.raises(Invalid, match="malformed asset_page_token"):
        make_selection("p", "", 10, "%%%")
    with pytest.raises(Invalid, match="asset_id needs pipeline_id"):
        make_selection("", "a")
    assert make_selection("p", "a", 7) == Selection("p", "a", 7)


def test_readable_summary_names_failed_assets_of_the_page_and_counts_the_rest() -> None:
    from vfo_otel.app.report import format_summary

    run = _run(12, nodes=1)  # a00003 and a00010 fail
    lines = {}
    for size in (2, 5, 12):
        text = format_summary(run.snapshot(Selection(asset_page_size=size), NOW_NS))
        lines[size] = next(line for line in text.splitlines() if line.strip().startswith("pipeline p:"))
    elsewhere = "listed on other pages of the asset list: --json or the dashboard"
    assert lines[2].endswith(f"12 assets (2 failed, {elsewhere})")
    assert lines[5].endswith("12 assets (failed: a00003 and 1 more)")
    assert lines[12].endswith("12 assets (failed: a00003, a00010)")
