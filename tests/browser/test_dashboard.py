"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

A receiver runs in-process (ReceiverThread), the real demo pipeline runs against it over
OTLP/gRPC, and the page served at ``/`` is checked against the snapshot fetched over HTTP:
counts, node details of a selected asset, a node changing state live (no reload), and the
page reconnecting after a receiver restart and resuming from its last revision.

Screenshots go to ``test-output/dashboard/`` (gitignored) for a person to look at.

Without Playwright or Chromium the tests skip, except under ``CI=1`` where they fail.
Playwright's own browser download is never used: ``playwright install`` cannot run here,
so the tests launch ``/usr/bin/chromium``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vfo_otel import Emitter, NodeSpec, State
from vfo_otel.app.demo import run_demo
from vfo_otel.receiver import ReceiverConfig, ReceiverThread

try:
    from playwright.sync_api import Browser, Page, Request, ViewportSize, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None  # type: ignore[assignment]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUT = Path(__file__).resolve().parents[2] / "test-output" / "dashboard"
TIMEOUT_MS = 20_000
STATES = ("queued", "running", "waiting", "complete", "failed", "skipped")
WIDE: ViewportSize = {"width": 1280, "height": 800}
NARROW: ViewportSize = {"width": 390, "height": 844}
DASH = "\u2013"  # the en dash of "Assets 1\u2013100 of 250"

pytestmark = pytest.mark.timeout(240)


def _chromium() -> str | None:
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    missing = []
    if sync_playwright is None:
        missing.append("the Python package 'playwright' (pip install playwright; never 'playwright install')")
    chromium = _chromium()
    if chromium is None:
        missing.append("Debian chromium (apt-get install chromium)")
    if missing:
        reason = "browser test needs " + " and ".join(missing)
        if _in_ci():
            pytest.fail(reason + " (CI is set: this must not be skipped)")
        pytest.skip(reason)
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Demo:
    thread: ReceiverThread
    http_url: str
    otlp_endpoint: str
    run_id: str


def _config(store: Path, http_port: int = 0) -> ReceiverConfig:
    return ReceiverConfig(grpc_address="127.0.0.1:0", http_address=f"127.0.0.1:{http_port}",
                          store_path=str(store))


@pytest.fixture(scope="module")
def demo(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """A receiver with the demo run folded in (the real demo pipeline, over OTLP/gRPC)."""
    tmp = tmp_path_factory.mktemp("dashboard")
    thread = ReceiverThread(_config(tmp / "store.sqlite3")).start()
    try:
        grpc_address = f"127.0.0.1:{thread.grpc_port}"
        result = run_demo(config=_config(tmp / "unused.sqlite3"), otlp_endpoint=f"http://{grpc_address}",
                          receiver_address=grpc_address, workdir=str(tmp / "work"), log=lambda _: None)
        assert result.snapshot.revision == result.events_emitted
        yield Demo(thread, f"http://127.0.0.1:{thread.http_port}", f"http://{grpc_address}", result.run_id)
    finally:
        thread.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(TIMEOUT_MS)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield p
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def _snapshot(base: str, run_id: str, pipeline_id: str = "", asset_id: str = "") -> dict[str, Any]:
    query = urllib.parse.urlencode({"pipeline_id": pipeline_id, "asset_id": asset_id}) if asset_id else ""
    url = f"{base}/v1/runs/{urllib.parse.quote(run_id, safe='')}/snapshot" + (f"?{query}" if query else "")
    snap: dict[str, Any] = _get(url)
    return snap


def _run_url(base: str, run_id: str, pipeline: str = "", asset: str = "") -> str:
    sel = f"?pipeline={urllib.parse.quote(pipeline)}&asset={urllib.parse.quote(asset)}" if asset else ""
    return f"{base}/#/run/{urllib.parse.quote(run_id, safe='')}{sel}"


def _shot(page: Page, name: str, *, full_page: bool = False) -> Path:
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def _expect_summary(page: Page, snap: dict[str, Any]) -> None:
    """Every count of the page's summary table equals the snapshot's (missing = 0)."""
    for kind in ("pipelines", "assets", "nodes", "attempts"):
        counts = snap.get("summary", {}).get(kind, {})
        for state in (*STATES, "total"):
            expect(page.get_by_test_id(f"summary-{kind}-{state}")).to_have_text(str(counts.get(state, 0)))


def _no_horizontal_overflow(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert page.viewport_size is not None
    assert width <= page.viewport_size["width"], f"the page scrolls sideways: {width}px wide"


def test_runs_list_counts_filter_and_run_page(page: Page, demo: Demo) -> None:
    page.goto(demo.http_url + "/")
    row = page.locator(f'[data-testid="run-row"][data-run-id="{demo.run_id}"]')
    expect(row).to_be_visible()
    item = next(r for r in _get(demo.http_url + "/v1/runs")["runs"] if r["run"]["runId"] == demo.run_id)
    expect(row.locator('[data-state="failed"]').first).to_have_text("✗ failed")
    for kind in ("pipelines", "assets", "nodes", "attempts"):
        cell = row.get_by_test_id(f"run-{kind}")
        counts = item["summary"][kind]
        for state in STATES:
            if counts.get(state, 0):
                expect(cell.get_by_test_id(f"count-{state}")).to_have_text(str(counts[state]))
            else:
                expect(cell.get_by_test_id(f"count-{state}")).to_have_count(0)
        expect(cell.get_by_test_id("count-total")).to_have_text(str(counts["total"]))
    _shot(page, "runs-1280x800")

    # The state filter asks the API for one state only.
    page.get_by_label("State").select_option("complete")
    expect(page).to_have_url(f"{demo.http_url}/#/?state=complete")
    expect(row).to_have_count(0)
    page.get_by_label("State").select_option("failed")
    expect(row).to_be_visible()

    # Into the run, by keyboard: focus the link and press Enter.
    row.get_by_test_id("run-link").focus()
    page.keyboard.press("Enter")
    snap = _snapshot(demo.http_url, demo.run_id)
    expect(page.get_by_test_id("revision")).to_have_text(snap["revision"])
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("run-state")).to_have_text("✗ failed")
    _expect_summary(page, snap)

    # The DAG: every node of every pipeline, coloured by state, with its per-state counts as text.
    for pipe in snap["pipelines"]:
        section = page.locator(f'[data-testid="pipeline"][data-pipeline-id="{pipe["pipelineId"]}"]')
        nodes = section.get_by_test_id("dag-node")
        expect(nodes).to_have_count(len(pipe["workflow"]["nodes"]))
        expect(section.locator("svg path.edge")).to_have_count(len(pipe["workflow"]["edges"]))
        expect(section.get_by_test_id("asset-row")).to_have_count(len(pipe["assets"]))
        for node in pipe["workflow"]["nodes"]:
            box = section.locator(f'[data-testid="dag-node"][data-node-id="{node["nodeId"]}"]')
            text = " ".join(box.get_by_test_id("dag-counts").all_text_contents())
            for state in STATES:
                if node["counts"].get(state, 0):
                    assert f"{node['counts'][state]} {state}" in text, (node, text)
    checksum = page.locator('[data-pipeline-id="media"] [data-testid="dag-node"][data-node-id="checksum"]')
    expect(checksum).to_have_attribute("data-state", "failed")
    expect(checksum).to_contain_text("✗ failed")
    expect(page.get_by_test_id("stage-row")).to_have_count(len(snap["stageTotals"]))
    _no_horizontal_overflow(page)
    _shot(page, "run-1280x800")
    _shot(page, "run-1280x800-full", full_page=True)


def test_select_asset_shows_node_details(page: Page, demo: Demo) -> None:
    page.goto(_run_url(demo.http_url, demo.run_id))
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
    button = page.locator('[data-pipeline-id="media"] [data-testid="asset-row"][data-asset-id="clip-2"]') \
        .get_by_test_id("asset-button")
    button.focus()
    page.keyboard.press("Enter")  # keyboard selection
    expect(page).to_have_url(_run_url(demo.http_url, demo.run_id, "media", "clip-2"))
    expect(button).to_have_attribute("aria-pressed", "true")
    expect(button).to_be_focused()  # live re-rendering keeps the keyboard focus

    detail_snap = _snapshot(demo.http_url, demo.run_id, "media", "clip-2")
    details = page.get_by_test_id("node-details")
    expect(details.get_by_test_id("details-asset")).to_have_text("media / clip-2")
    expect(details.get_by_test_id("node-detail")).to_have_count(len(detail_snap["nodeDetails"]))

    # thumbnail of clip-2 failed once (exit 75) and succeeded on retry.
    thumb = details.locator('[data-testid="node-detail"][data-node-id="thumbnail"]')
    expect(thumb.get_by_test_id("node-state")).to_have_text("✓ complete")
    attempts = thumb.get_by_test_id("attempt")
    expect(attempts).to_have_count(2)
    first, second = attempts.nth(0), attempts.nth(1)
    expect(first).to_contain_text("✗ failed")
    expect(first.get_by_test_id("exit-code")).to_have_text("75")
    expect(first.get_by_test_id("attempt-error")).to_contain_text("ExitCode")
    expect(first.get_by_test_id("command")).to_contain_text("exit 75")
    expect(second.get_by_test_id("exit-code")).to_have_text("0")
    expect(second.get_by_test_id("outputs")).to_contain_text("clip-2.thumb")
    expect(thumb.get_by_test_id("attempt").nth(0).get_by_test_id("inputs")).to_contain_text("clip-2.raw")
    # The DAG shows the selected asset's own state per node too.
    media_dag = page.locator('[data-pipeline-id="media"]')
    mine = media_dag.locator('[data-node-id="thumbnail"]').get_by_test_id("dag-selected-state")
    expect(mine).to_have_text("▸ ✓ complete")

    # A DAG node is a button: Enter moves focus to its details.
    dag_node = page.locator('[data-pipeline-id="media"] [data-testid="dag-node"][data-node-id="publish"]')
    dag_node.focus()
    page.keyboard.press("Enter")
    expect(details.locator('[data-node-id="publish"]')).to_be_focused()
    _shot(page, "run-details-1280x800")

    page.set_viewport_size(NARROW)
    expect(page.get_by_test_id("dag-caption").first).to_have_attribute("data-orientation", "vertical")
    expect(thumb).to_be_visible()
    _no_horizontal_overflow(page)
    _shot(page, "run-details-390x844")
    _shot(page, "run-details-390x844-full", full_page=True)
    page.goto(demo.http_url + "/")
    expect(page.locator(f'[data-testid="run-row"][data-run-id="{demo.run_id}"]')).to_be_visible()
    _no_horizontal_overflow(page)
    _shot(page, "runs-390x844")


def test_node_changes_state_live(page: Page, demo: Demo) -> None:
    run_id = f"live {uuid.uuid4().hex[:6]}/\u03b1"  # spaces, a slash and non-ASCII: must be percent-encoded
    emitter = Emitter(endpoint=demo.otlp_endpoint, service_name="browser-test", export_metrics_otlp=False)
    workflow = {"fetch": NodeSpec("analyze"), "encode": NodeSpec("encode", ("fetch",))}
    with contextlib.ExitStack() as stack:
        run = stack.enter_context(emitter.run(run_id, action="live-test"))
        pipe = stack.enter_context(run.pipeline("live", workflow))
        asset = stack.enter_context(pipe.asset("clip-9"))
        assert emitter.force_flush(10_000)

        page.goto(_run_url(demo.http_url, run_id, "live", "clip-9"))
        fetch = page.locator('[data-testid="dag-node"][data-node-id="fetch"]')
        expect(fetch).to_have_attribute("data-state", "queued")
        page.evaluate("window.__sameDocument = true")

        node = asset.node("fetch")
        node.__enter__()
        assert emitter.force_flush(10_000)
        expect(fetch).to_have_attribute("data-state", "running")
        expect(fetch).to_contain_text("▶ 1 running")
        detail = page.locator('[data-testid="node-detail"][data-node-id="fetch"]')
        expect(detail.get_by_test_id("node-state")).to_have_text("▶ running")
        _expect_summary(page, _snapshot(demo.http_url, run_id))
        _shot(page, "live-running-1280x800")

        node.set_command(["fetch", "--from", "s3://bucket/clip-9.mov"])
        node.set_exit_code(0)
        node.__exit__(None, None, None)
        assert emitter.force_flush(10_000)
        expect(fetch).to_have_attribute("data-state", "complete")
        expect(detail.get_by_test_id("node-state")).to_have_text("✓ complete")
        expect(detail.get_by_test_id("command")).to_have_text("fetch --from s3://bucket/clip-9.mov")
        expect(detail.get_by_test_id("exit-code")).to_have_text("0")
        snap = _snapshot(demo.http_url, run_id)
        expect(page.get_by_test_id("revision")).to_have_text(snap["revision"])
        _expect_summary(page, snap)
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
        _shot(page, "live-complete-1280x800")
    emitter.shutdown()
    expect(page.get_by_test_id("run-state")).to_have_text("✓ complete")  # the run's own end, live too


def test_asset_list_pages_and_keeps_the_selected_asset(page: Page, demo: Demo) -> None:
    """A 250-asset pipeline: the page shows 100 rows at a time (schema 2 pages), moves with
    Next/Previous, and a selected asset from another page stays listed with its details."""
    run_id = f"paged-{uuid.uuid4().hex[:6]}"
    emitter = Emitter(endpoint=demo.otlp_endpoint, service_name="browser-test", export_metrics_otlp=False)
    try:
        with emitter.run(run_id, action="paging-test") as run, \
                run.pipeline("many", {"probe": NodeSpec("analyze")}) as pipe:
            for i in range(250):
                with pipe.asset(f"a{i:03d}") as asset, asset.node("probe"):
                    pass
        assert emitter.force_flush(10_000)
    finally:
        emitter.shutdown()
    page.goto(_run_url(demo.http_url, run_id))
    rows = page.locator('[data-pipeline-id="many"] [data-testid="asset-row"]')
    rng = page.get_by_test_id("asset-range")
    expect(rng).to_have_text(f"Assets 1{DASH}100 of 250")
    expect(rows).to_have_count(100)
    expect(page.get_by_test_id("asset-prev")).to_be_disabled()
    page.get_by_test_id("asset-next").click()
    expect(rng).to_have_text(f"Assets 101{DASH}200 of 250")
    expect(rows.first).to_have_attribute("data-asset-id", "a100")
    page.locator('[data-pipeline-id="many"] [data-asset-id="a150"]').get_by_test_id("asset-button").click()
    expect(page.get_by_test_id("details-asset")).to_have_text("many / a150")
    page.get_by_test_id("asset-next").click()
    expect(rng).to_have_text(f"Assets 201{DASH}250 of 250")
    expect(page.get_by_test_id("asset-next")).to_be_disabled()
    # a150 is not on this page: its row follows the page's 50, marked, and its details stay.
    expect(rows).to_have_count(51)
    expect(rows.last).to_have_attribute("data-asset-id", "a150")
    expect(rows.last).to_have_class("selected off-page")
    expect(page.get_by_test_id("node-detail")).to_have_count(1)
    _shot(page, "asset-pages-1280x800")
    page.go_back()  # the page is in the URL: history works
    expect(rng).to_have_text(f"Assets 101{DASH}200 of 250")
    page.get_by_test_id("asset-prev").click()
    expect(rng).to_have_text(f"Assets 1{DASH}100 of 250")
    expect(rows).to_have_count(101)


def test_reconnects_after_receiver_restart(page: Page, tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite3"
    first = ReceiverThread(_config(store)).start()
    http_port = first.http_port
    base = f"http://127.0.0.1:{http_port}"
    run_id = f"restart-{uuid.uuid4().hex[:6]}"
    second: ReceiverThread | None = None
    emitter: Emitter | None = None
    late: Emitter | None = None
    try:
        emitter = Emitter(endpoint=f"http://127.0.0.1:{first.grpc_port}", service_name="browser-test",
                          export_metrics_otlp=False, export_timeout_s=1)
        # Handles entered but never left, and the emitter not shut down (shutdown would end them
        # Abandoned): the run stays open across the restart.
        run = emitter.run(run_id).__enter__()
        pipe = run.pipeline("p", {"a": NodeSpec("analyze"), "b": NodeSpec("encode", ("a",))}).__enter__()
        asset = pipe.asset("x").__enter__()
        with asset.node("a"):
            pass
        assert emitter.force_flush(10_000)
        before = _snapshot(base, run_id)

        watch_requests: list[Request] = []
        page.on("request", lambda r: watch_requests.append(r) if "snapshot:watch" in r.url else None)
        page.goto(_run_url(base, run_id))
        expect(page.get_by_test_id("revision")).to_have_text(before["revision"])
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
        page.evaluate("window.__sameDocument = true")

        first.stop()  # the stream drops: the page says so and keeps retrying
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "reconnecting")
        _shot(page, "restart-reconnecting-1280x800")

        second = ReceiverThread(_config(store, http_port)).start()  # same store, same HTTP port
        expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
        expect(page.get_by_test_id("revision")).to_have_text(before["revision"])  # nothing new yet

        # A new event reaches the new receiver; the page shows it without reloading.
        late = Emitter(endpoint=f"http://127.0.0.1:{second.grpc_port}", service_name="browser-test",
                       export_metrics_otlp=False, export_timeout_s=1)
        late.emit(asset.node("b").event(State.STATE_RUNNING, upstream_node_ids=["a"]))
        assert late.force_flush(10_000)
        after = _snapshot(base, run_id)
        assert int(after["revision"]) > int(before["revision"])
        expect(page.get_by_test_id("revision")).to_have_text(after["revision"])
        node_b = page.locator('[data-testid="dag-node"][data-node-id="b"]')
        expect(node_b).to_have_attribute("data-state", "running")
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
        # The browser's own reconnection resumed after the last revision it had (Last-Event-ID).
        resumed = [r.all_headers().get("last-event-id") for r in watch_requests[1:]]
        assert before["revision"] in resumed, f"no reconnect resumed after {before['revision']}: {resumed}"
        _shot(page, "restart-resumed-1280x800")
    finally:
        for open_emitter in (emitter, late):  # their runs stayed open; now they end Abandoned
            if open_emitter is not None:
                open_emitter.shutdown(timeout_millis=2_000)
        first.stop()
        if second is not None:
            second.stop()


def test_a_token_protected_receiver_signs_in_once_and_no_url_ever_carries_the_token(
    page: Page, tmp_path: Path
) -> None:
    token = "s3cret-dashboard-token"
    config = ReceiverConfig(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0",
                            store_path=str(tmp_path / "auth.sqlite3"), auth_token=token)
    with ReceiverThread(config) as thread:
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        page.goto(f"http://127.0.0.1:{thread.http_port}/")
        expect(page.get_by_test_id("signin")).to_be_visible()
        page.get_by_test_id("signin-token").fill("wrong")
        page.get_by_test_id("signin-submit").click()
        expect(page.get_by_test_id("signin")).to_contain_text("not accepted")
        page.get_by_test_id("signin-token").fill(token)
        page.get_by_test_id("signin-submit").click()
        expect(page.get_by_test_id("signin")).to_have_count(0)
        expect(page.get_by_test_id("no-runs")).to_be_visible()  # the API answered with the cookie
        _shot(page, "signed-in-1280x800")
        cookies = page.context.cookies()
        session = [c for c in cookies if c["name"] == "vfo_otel_session"]
        assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
        assert not any(token in u for u in urls), urls
