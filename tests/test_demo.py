"""`vfo-otel demo` end to end: the printed summary and the stored snapshot match the pipeline it ran.

The expected outcome is the one stated in vfo_otel/demo.py's docstring.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.app.demo import MEDIA, MEDIA_ASSETS, REPORT
from vfo_otel.receiver import EventStore, Selection, snapshot_of

VFO_OTEL = str(Path(sys.executable).with_name("vfo-otel"))
RUN_ID = "demo-under-test"

#: counts row -> (queued, running, waiting, complete, failed, skipped, total), from demo.py's docstring
EXPECTED = {
    "pipelines": (0, 0, 0, 1, 1, 0, 2),
    "assets": (0, 0, 0, 5, 1, 0, 6),
    "nodes": (0, 0, 0, 24, 1, 3, 28),
    "attempts": (0, 0, 0, 24, 2, 3, 29),
}


def _counts(output: str) -> dict[str, tuple[int, ...]]:
    rows = {}
    for name in EXPECTED:
        m = re.search(rf"^\s+{name}((?:\s+\d+){{7}})\s*$", output, re.MULTILINE)
        assert m, f"no '{name}' row in the summary:\n{output}"
        rows[name] = tuple(int(x) for x in m.group(1).split())
    return rows


def test_demo_prints_the_expected_summary_and_stores_the_expected_snapshot(tmp_path: Path) -> None:
    store = tmp_path / "demo.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VFO_OTEL_"))}
    proc = subprocess.run(
        [
            VFO_OTEL,
            "demo",
            "--grpc-address",
            "127.0.0.1:0",
            "--http-address",
            "127.0.0.1:0",
            "--store",
            str(store),
            "--run-id",
            RUN_ID,
            "--workdir",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=tmp_path,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{proc.stderr}"

    # -- the printed summary ------------------------------------------------------------
    header = re.search(rf"^run {RUN_ID}: (\w+) \(revision (\d+), schema v2\)", out, re.MULTILINE)
    assert header, out
    assert header.group(1) == "failed"
    assert "error: PipelineFailed: failed pipelines: media" in out
    assert _counts(out) == EXPECTED
    assert "pipeline media: failed, 5 assets (failed: clip-4)" in out
    assert "pipeline report: complete, 1 asset" in out
    assert "package    skipped (upstream checksum failed)" in out
    assert "publish    skipped (upstream package not run)" in out
    assert re.search(r"thumbnail\s+attempt 1: failed \(exit 75\)", out)
    assert re.search(r"thumbnail\s+attempt 2: ok", out)
    # the receiver stops with the demo: no dead URLs, but how to serve this very store again
    assert "curl http://" not in out
    assert f"Serve it again with `vfo-otel serve --store {store}`" in out
    assert (tmp_path / "work" / "published" / "clip-1.tar.gz").exists()  # real commands ran on real files
    assert not (tmp_path / "work" / "published" / "clip-4.tar.gz").exists()

    # -- the snapshot, folded again from the store the receiver committed ---------------
    es = EventStore(store)
    events = [e for batch in es.replay() for e in batch]
    es.close()
    assert len(events) == int(header.group(2))  # the printed revision: every event, once
    snap = snapshot_of(events, RUN_ID, Selection("media", "clip-2"))
    assert snap is not None
    assert (snap.run.state, snap.run.state_reported, snap.run.error.error_class) == (
        ev.STATE_FAILED,
        True,
        "PipelineFailed",
    )
    assert snap.run.service_name == "vfo-demo"
    for name, expected in EXPECTED.items():
        c = getattr(snap.summary, name)
        assert (c.queued, c.running, c.waiting, c.complete, c.failed, c.skipped, c.total) == expected, name

    pipes = {p.pipeline_id: p for p in snap.pipelines}
    assert {k: p.state for k, p in pipes.items()} == {"media": ev.STATE_FAILED, "report": ev.STATE_COMPLETE}
    media = pipes["media"]
    assert [a.asset_id for a in media.assets] == list(MEDIA_ASSETS)
    assert {a.asset_id: a.state for a in media.assets if a.state != ev.STATE_COMPLETE} == {
        "clip-4": ev.STATE_FAILED
    }
    edges = {(e.from_node_id, e.to_node_id) for e in media.workflow.edges}
    assert edges == {(u, n) for n, spec in MEDIA.items() for u in spec.after}
    assert {n.node_id: n.depth for n in media.workflow.nodes} == {
        "probe": 0,
        "checksum": 1,
        "thumbnail": 1,
        "package": 2,
        "publish": 3,
    }
    report_edges = {(e.from_node_id, e.to_node_id) for e in pipes["report"].workflow.edges}
    assert report_edges == {(u, n) for n, spec in REPORT.items() for u in spec.after}

    # clip-2: thumbnail fails once with exit 75 and succeeds on retry
    thumb = next(d for d in snap.node_details if d.node_id == "thumbnail")
    assert [(a.attempt_id, a.state, a.exit_code) for a in thumb.attempts] == [
        (1, ev.STATE_FAILED, 75),
        (2, ev.STATE_COMPLETE, 0),
    ]
    assert thumb.attempts[0].error.error_class == "ExitCode"

    # clip-4: checksum fails for good; package and publish never run and end skipped
    broken = snapshot_of(events, RUN_ID, Selection("media", "clip-4"))
    assert broken is not None
    states = {d.node_id: (d.state, len(d.attempts)) for d in broken.node_details}
    assert states == {
        "probe": (ev.STATE_COMPLETE, 1),
        "checksum": (ev.STATE_FAILED, 1),
        "thumbnail": (ev.STATE_COMPLETE, 1),
        "package": (ev.STATE_SKIPPED, 1),
        "publish": (ev.STATE_SKIPPED, 1),
    }

    # report/daily: notify skipped with its reason
    daily = snapshot_of(events, RUN_ID, Selection("report", "daily"))
    assert daily is not None
    notify = next(d for d in daily.node_details if d.node_id == "notify")
    assert notify.state == ev.STATE_SKIPPED
    assert notify.attempts[0].attributes["skip_reason"] == "no subscribers configured"


def test_demo_piped_into_head_runs_to_its_end_without_a_broken_pipe_failure(tmp_path: Path) -> None:
    """`vfo-otel demo | head -3`: the reader leaving early is not a failure of the pipeline."""
    store = tmp_path / "piped.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VFO_OTEL_"))}
    demo = subprocess.Popen(
        [VFO_OTEL, "demo", "--grpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
         "--store", str(store), "--run-id", "piped", "--workdir", str(tmp_path / "work")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
    )
    assert demo.stdout is not None
    first = [demo.stdout.readline() for _ in range(3)]  # as `head -3` does, then it goes away
    demo.stdout.close()
    _, err = demo.communicate(timeout=240)
    assert all(first) and demo.returncode == 0, err.decode()
    es = EventStore(store)
    events = [e for batch in es.replay() for e in batch]
    es.close()
    classes = {e.error.error_class for e in events if e.HasField("error")}
    assert "BrokenPipeError" not in classes
    snap = snapshot_of(events, "piped", Selection())
    assert snap is not None and snap.summary.assets.total == 6  # the whole demo ran
    assert snap.run.error.error_class == "PipelineFailed"  # failed as the demo always does, on purpose
