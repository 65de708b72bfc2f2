"""Golden scenarios: an event stream in, the expected DashboardSnapshot JSON out.

Each ``golden/<name>.json`` holds the input events (protobuf JSON of RunEvent), the
selection and the expected snapshot (protobuf JSON mapping, the very JSON the HTTP API
serves), so a reviewer reads both sides. The test folds the file's events (as given,
reversed, and with every event sent twice) and compares after normalising
(``generatedTime`` removed).

Regenerate after an intended change of the fold with::

    VFO_OTEL_UPDATE_GOLDEN=1 python -m pytest tests/receiver/test_golden.py

then review the diff. By default the test only compares.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from tests.receiver import event, node
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.receiver import Selection, snapshot_of

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("VFO_OTEL_UPDATE_GOLDEN") == "1"

Q, R, W = ev.STATE_QUEUED, ev.STATE_RUNNING, ev.STATE_WAITING
C, F, S = ev.STATE_COMPLETE, ev.STATE_FAILED, ev.STATE_SKIPPED
RUN, PIPE, ASSET = ev.SCOPE_RUN, ev.SCOPE_PIPELINE, ev.SCOPE_ASSET


def _retry_and_fan_in() -> tuple[list[ev.RunEvent], Selection]:
    """One pipeline a -> (b, c) -> d over two assets, everything reported by the runner.

    Asset x: b fails once (exit 75) and succeeds on retry. Asset y: a fails for good, so
    b, c and d end skipped; the asset, pipeline and run fail.
    """
    up = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    stage = {"a": "analyze", "b": "encode", "c": "analyze", "d": "package"}
    out = [
        event(
            RUN,
            R,
            t_s=0,
            eid="run-1",
            run="golden-1",
            command=ev.Command(command_line="vfo run nightly", argv=["vfo", "run", "nightly"]),
            attributes={"trigger": "cron"},
            origin=ev.Origin(service_name="runner", service_version="2.1", host_name="build-7"),
        ),
        event(PIPE, R, t_s=0.1, eid="pipe-1", run="golden-1"),
    ]
    for k, asset in enumerate(("x", "y")):
        base = 1 + 20 * k
        out.append(
            event(
                ASSET,
                R,
                t_s=base,
                eid=f"{asset}-start",
                run="golden-1",
                asset=asset,
                inputs=[
                    ev.AssetRef(
                        asset_id=asset,
                        uri=f"/in/{asset}.mov",
                        role="source",
                        size_bytes=1024,
                        media_type="video/quicktime",
                    )
                ],
            )
        )
        for n in up:
            out.append(
                node(
                    n,
                    Q,
                    t_s=base,
                    eid=f"{asset}-{n}-q",
                    run="golden-1",
                    asset=asset,
                    stage=stage[n],
                    upstream_node_ids=up[n],
                )
            )
    argv = ["ffmpeg", "-i", "/in/x.mov"]
    cmd = ev.Command(command_line=" ".join(argv), argv=argv)
    x = dict(run="golden-1", asset="x")
    out += [
        node("a", R, t_s=2, eid="x-a-r", stage="analyze", **x),
        node("a", C, t_s=3, eid="x-a-c", stage="analyze", duration_s=1, exit_code=0, command=cmd, **x),
        node("b", R, t_s=3, eid="x-b1-r", stage="encode", upstream_node_ids=["a"], **x),
        node("c", R, t_s=3, eid="x-c-r", stage="analyze", upstream_node_ids=["a"], **x),
        node(
            "b",
            F,
            t_s=4,
            eid="x-b1-f",
            stage="encode",
            duration_s=1,
            exit_code=75,
            command=cmd,
            error=("ExitCode", "exited with status 75"),
            **x,
        ),
        node("c", C, t_s=5, eid="x-c-c", stage="analyze", duration_s=2, exit_code=0, **x),
        node("b", R, t_s=6, eid="x-b2-r", attempt=2, stage="encode", upstream_node_ids=["a"], **x),
        node(
            "b",
            C,
            t_s=8,
            eid="x-b2-c",
            attempt=2,
            stage="encode",
            duration_s=2,
            exit_code=0,
            command=cmd,
            outputs=[ev.AssetRef(uri="/out/x.mp4", role="proxy", size_bytes=512)],
            **x,
        ),
        node("d", R, t_s=8, eid="x-d-r", stage="package", upstream_node_ids=["b", "c"], **x),
        node("d", C, t_s=9, eid="x-d-c", stage="package", duration_s=1, exit_code=0, **x),
        event(ASSET, C, t_s=9, eid="x-end", duration_s=8, **x),
    ]
    y = dict(run="golden-1", asset="y")
    out += [
        node("a", R, t_s=22, eid="y-a-r", stage="analyze", **y),
        node(
            "a",
            F,
            t_s=23,
            eid="y-a-f",
            stage="analyze",
            duration_s=1,
            exit_code=-9,
            error=("Signal", "killed by SIGKILL"),
            **y,
        ),
        *(
            node(
                n,
                S,
                t_s=23,
                eid=f"y-{n}-s",
                stage=stage[n],
                upstream_node_ids=up[n],
                previous_state=Q,
                attributes={"skip_reason": "not run"},
                **y,
            )
            for n in ("b", "c", "d")
        ),
        event(ASSET, F, t_s=23, eid="y-end", duration_s=2, error=("NodeFailed", "failed nodes: a"), **y),
        event(
            PIPE,
            F,
            t_s=24,
            eid="pipe-end",
            run="golden-1",
            duration_s=23.9,
            error=("AssetFailed", "1 failed assets: y"),
        ),
        event(
            RUN,
            F,
            t_s=24,
            eid="run-end",
            run="golden-1",
            duration_s=24,
            error=("PipelineFailed", "failed pipelines: p"),
        ),
    ]
    return out, Selection("p", "x")


def _derived_only() -> tuple[list[ev.RunEvent], Selection]:
    """Only node events (as from ``vfo-otel exec``): run, pipeline and asset states are derived.

    Pipeline p: asset m done, asset n under way (one node complete, one queued); pipeline q:
    asset z waiting on a lock. The run is running; times widen from the nodes up.
    """
    out = [
        node("fetch", C, t_s=1, eid="m-fetch", run="golden-2", asset="m", stage="io", duration_s=1),
        node("fetch", C, t_s=2, eid="n-fetch", run="golden-2", asset="n", stage="io", duration_s=1.5),
        node(
            "parse",
            Q,
            t_s=2,
            eid="n-parse-q",
            run="golden-2",
            asset="n",
            stage="cpu",
            upstream_node_ids=["fetch"],
        ),
        node("lock", R, t_s=3, eid="z-lock-r", run="golden-2", pipeline="q", asset="z", stage="io"),
        node(
            "lock",
            W,
            t_s=4,
            eid="z-lock-w",
            run="golden-2",
            pipeline="q",
            asset="z",
            stage="io",
            attributes={"wait_reason": "db lock"},
        ),
    ]
    return out, Selection("p", "n")


def _out_of_order_and_heartbeat() -> tuple[list[ev.RunEvent], Selection]:
    """Late and synthetic events: a late ``running`` after ``complete``; a ``HeartbeatLost`` failure
    decided by the receiver, later overridden by the real ``complete``; a node still ``failed``
    by HeartbeatLost; the same transition delivered twice (log + span event paths)."""
    r = dict(run="golden-3", asset="clip")
    done = node("encode", C, t_s=10, eid="enc-c", stage="encode", duration_s=9, exit_code=0, **r)
    return [
        done,
        node("encode", R, t_s=1, eid="enc-r", stage="encode", **r),
        node("encode", R, t_s=11, eid="enc-r-late", stage="encode", **r),
        node("upload", R, t_s=11, eid="up-r", stage="publish", upstream_node_ids=["encode"], **r),
        node(
            "upload",
            F,
            t_s=80,
            eid="up-lost",
            stage="publish",
            synthetic=True,
            error=("HeartbeatLost", "no heartbeat for 60s"),
            **r,
        ),
        node("thumb", R, t_s=11, eid="th-r", stage="encode", upstream_node_ids=["encode"], **r),
        node(
            "thumb",
            F,
            t_s=80,
            eid="th-lost",
            stage="encode",
            synthetic=True,
            error=("HeartbeatLost", "no heartbeat for 60s"),
            **r,
        ),
        node("thumb", C, t_s=12, eid="th-c", stage="encode", duration_s=1, exit_code=0, **r),
        done,
    ], Selection("p", "clip")


SCENARIOS: dict[str, Callable[[], tuple[list[ev.RunEvent], Selection]]] = {
    "retry_and_fan_in": _retry_and_fan_in,
    "derived_only": _derived_only,
    "out_of_order_and_heartbeat": _out_of_order_and_heartbeat,
}

NOW_NS = 1_767_312_000 * 10**9


def _to_json(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(msg)


def _normalise(snapshot_json: dict[str, Any]) -> dict[str, Any]:
    out = dict(snapshot_json)
    out.pop("generatedTime", None)
    return out


def _fold(events: list[ev.RunEvent], run_id: str, selection: Selection) -> dict[str, Any]:
    snap = snapshot_of(events, run_id, selection, now_ns=NOW_NS)
    assert snap is not None
    return _normalise(_to_json(snap))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden(name: str) -> None:
    path = GOLDEN / f"{name}.json"
    events, selection = SCENARIOS[name]()
    run_id = events[0].run_id
    if UPDATE:
        doc = {
            "description": " ".join((SCENARIOS[name].__doc__ or "").split()),
            "run_id": run_id,
            "selection": {"pipeline_id": selection.pipeline_id, "asset_id": selection.asset_id},
            "events": [_to_json(e) for e in events],
            "snapshot": _fold(events, run_id, selection),
        }
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    doc = json.loads(path.read_text(encoding="utf-8"))
    # The file records the scenario faithfully ...
    assert doc["events"] == [_to_json(e) for e in events], f"{path.name}: events differ from the scenario"
    stream = [json_format.ParseDict(e, ev.RunEvent()) for e in doc["events"]]
    sel = Selection(doc["selection"]["pipeline_id"], doc["selection"]["asset_id"])
    expected = doc["snapshot"]
    # ... and its stream folds to the expected snapshot, in any order, with duplicates.
    assert _fold(stream, doc["run_id"], sel) == expected
    assert _fold(stream[::-1], doc["run_id"], sel) == expected
    assert _fold(stream + stream[::-1], doc["run_id"], sel) == expected
    # The expected JSON is a valid DashboardSnapshot (protobuf JSON mapping).
    json_format.ParseDict(expected, db.DashboardSnapshot())


def test_golden_expectations_in_words() -> None:
    """Spot checks of the golden files, so a regenerated golden with a wrong fold shows up here too."""
    g1 = json.loads((GOLDEN / "retry_and_fan_in.json").read_text(encoding="utf-8"))["snapshot"]
    assert g1["run"]["state"] == "STATE_FAILED" and g1["run"]["stateReported"] is True
    assert g1["run"]["error"]["errorClass"] == "PipelineFailed"
    assert g1["summary"]["nodes"] == {"complete": 4, "failed": 1, "skipped": 3, "total": 8}
    assert g1["summary"]["attempts"] == {"complete": 4, "failed": 2, "skipped": 3, "total": 9}
    b = next(d for d in g1["nodeDetails"] if d["nodeId"] == "b")
    assert [(a["attemptId"], a["state"]) for a in b["attempts"]] == [
        (1, "STATE_FAILED"),
        (2, "STATE_COMPLETE"),
    ]
    assert b["attempts"][0]["exitCode"] == 75 and b["attempts"][1]["outputs"][0]["uri"] == "/out/x.mp4"
    edges = {(e["fromNodeId"], e["toNodeId"]) for e in g1["pipelines"][0]["workflow"]["edges"]}
    assert edges == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}

    g2 = json.loads((GOLDEN / "derived_only.json").read_text(encoding="utf-8"))["snapshot"]
    assert g2["run"]["state"] == "STATE_RUNNING" and "stateReported" not in g2["run"]
    assert [(p["pipelineId"], p["state"]) for p in g2["pipelines"]] == [
        ("p", "STATE_RUNNING"),
        ("q", "STATE_WAITING"),
    ]
    assert g2["run"]["startTime"] == "2026-01-01T00:00:00Z"  # fetch of m: end 1s - duration 1s
    assert g2["run"]["lastUpdateTime"] == "2026-01-01T00:00:04Z"

    g3 = json.loads((GOLDEN / "out_of_order_and_heartbeat.json").read_text(encoding="utf-8"))["snapshot"]
    states = {d["nodeId"]: (d["state"], d["attempts"][0].get("synthetic", False)) for d in g3["nodeDetails"]}
    assert states == {
        "encode": ("STATE_COMPLETE", False),
        "thumb": ("STATE_COMPLETE", False),
        "upload": ("STATE_FAILED", True),
    }
    assert g3["revision"] == "8"  # 9 events, one delivered twice


# ---------------------------------------------------------------------------------------------
# Hand-derived expectations: every state, time, count and total of each golden, worked out from
# the scenario's events and docs/fold.md by hand (the derivation in the comments), not from the
# fold. A golden regenerated from a wrong fold fails here.
# Times are seconds after T0 (2026-01-01T00:00:00Z); None = not set.
# ---------------------------------------------------------------------------------------------

_PREFIX = "STATE_"

HAND: dict[str, dict[str, Any]] = {
    "retry_and_fan_in": {
        # run: reported running at 0 and failed at 24 (emitter duration 24 s): its own error
        "run": ("FAILED", 0, 24, 24, "PipelineFailed"),
        # pipeline p: running at 0.1, failed at 24 after 23.9 s
        "pipelines": {"p": ("FAILED", 0.1, 24, 23.9, "AssetFailed")},
        # x: running at 1, complete at 9 (8 s); every node's latest attempt complete
        # y: running at 21, failed at 23 (2 s), its own NodeFailed
        "assets": {
            ("p", "x"): ("COMPLETE", 1, 9, 8, ""),
            ("p", "y"): ("FAILED", 21, 23, 2, "NodeFailed"),
        },
        # x's attempts: start = earliest running, end = terminal time, duration = the emitter's
        "attempts": {
            ("a", 1): ("COMPLETE", 2, 3, 1, 0),
            ("b", 1): ("FAILED", 3, 4, 1, 75),
            ("b", 2): ("COMPLETE", 6, 8, 2, 0),
            ("c", 1): ("COMPLETE", 3, 5, 2, 0),
            ("d", 1): ("COMPLETE", 8, 9, 1, 0),
        },
        # latest attempts: x a,b,c,d complete; y a failed, b,c,d skipped. All attempts add x.b1.
        "summary": {
            "pipelines": {"failed": 1},
            "assets": {"complete": 1, "failed": 1},
            "nodes": {"complete": 4, "failed": 1, "skipped": 3},
            "attempts": {"complete": 4, "failed": 2, "skipped": 3},
        },
        # stage -> (latest attempts by state, total and max duration of attempts that ran)
        # analyze: x.a 1 s, x.c 2 s, y.a 1 s; encode: x.b1 1 s, x.b2 2 s; package: x.d 1 s
        "stages": {
            "analyze": ({"complete": 2, "failed": 1, "skipped": 1}, 4, 2),
            "encode": ({"complete": 1, "skipped": 1}, 3, 2),
            "package": ({"complete": 1, "skipped": 1}, 1, 1),
        },
        "revision": 31,  # 2 + 2 x (1 asset start + 4 queued) + 11 (x) + 1 + 1 + 3 + 1 (y) + 2 ends
    },
    "derived_only": {
        # nothing reported above the nodes: every state derived (rule 4), times widened (rule 5)
        # m.fetch: complete at 1 after 1 s -> start 0; n.fetch: complete at 2 after 1.5 s -> 0.5
        # n.parse: queued at 2 (start = its first event); z.lock: running at 3, waiting at 4
        "run": ("RUNNING", 0, None, None, ""),  # p running + q waiting -> running
        "pipelines": {
            "p": ("RUNNING", 0, None, None, ""),  # m complete + n running -> running
            "q": ("WAITING", 3, None, None, ""),  # z waiting
        },
        "assets": {
            ("p", "m"): ("COMPLETE", 0, 1, 1, ""),  # all kids ended: end 1, duration 1 - 0
            ("p", "n"): ("RUNNING", 0.5, None, None, ""),  # one node complete, one queued
            ("q", "z"): ("WAITING", 3, None, None, ""),
        },
        "attempts": {  # the selected asset n
            ("fetch", 1): ("COMPLETE", 0.5, 2, 1.5, None),
            ("parse", 1): ("QUEUED", 2, None, None, None),
        },
        "summary": {
            "pipelines": {"running": 1, "waiting": 1},
            "assets": {"complete": 1, "running": 1, "waiting": 1},
            "nodes": {"complete": 2, "queued": 1, "waiting": 1},
            "attempts": {"complete": 2, "queued": 1, "waiting": 1},
        },
        # io: m.fetch 1 s, n.fetch 1.5 s ran; z.lock is waiting; cpu: n.parse queued
        "stages": {
            "cpu": ({"queued": 1}, None, None),
            "io": ({"complete": 2, "waiting": 1}, 2.5, 1.5),
        },
        "revision": 5,
    },
    "out_of_order_and_heartbeat": {
        # encode: running at 1 (and a late running at 11), complete at 10 after 9 s: complete wins
        # thumb: running at 11, HeartbeatLost at 80 (synthetic), complete at 12 after 1 s: the real end wins
        # upload: running at 11, HeartbeatLost at 80 (synthetic, no duration): 80 - 11 = 69 s
        # asset, pipeline, run: unreported, derived failed from upload, each naming its failed child;
        # start = earliest child start 1, end = latest child end 80 -> 79 s
        "run": ("FAILED", 1, 80, 79, "PipelineFailed"),
        "pipelines": {"p": ("FAILED", 1, 80, 79, "AssetFailed")},
        "assets": {("p", "clip"): ("FAILED", 1, 80, 79, "NodeFailed")},
        "attempts": {
            ("encode", 1): ("COMPLETE", 1, 10, 9, 0),
            ("thumb", 1): ("COMPLETE", 11, 12, 1, 0),
            ("upload", 1): ("FAILED", 11, 80, 69, None),
        },
        "summary": {
            "pipelines": {"failed": 1},
            "assets": {"failed": 1},
            "nodes": {"complete": 2, "failed": 1},
            "attempts": {"complete": 2, "failed": 1},
        },
        "stages": {
            "encode": ({"complete": 2}, 10, 9),  # encode 9 s + thumb 1 s
            "publish": ({"failed": 1}, 69, 69),
        },
        "revision": 8,  # 9 events, the complete of encode delivered twice
    },
}




def _times(msg: Any, start: str = "start_time", end: str = "end_time") -> tuple[Any, Any, Any]:
    from tests.receiver import T0_NS

    def sec(field: str, origin: int) -> float | None:
        if not msg.HasField(field):
            return None
        value = getattr(msg, field).ToNanoseconds() - origin
        return round(value / 1e9, 3)

    return sec(start, T0_NS), sec(end, T0_NS), sec("duration", 0)


def _counts(c: db.StateCounts) -> dict[str, int]:
    names = ("queued", "running", "waiting", "complete", "failed", "skipped")
    return {k: getattr(c, k) for k in names if getattr(c, k)}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_matches_the_hand_derivation(name: str) -> None:
    doc = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    snap = json_format.ParseDict(doc["snapshot"], db.DashboardSnapshot())
    hand = HAND[name]

    def row(msg: Any) -> tuple[Any, ...]:
        return (ev.State.Name(msg.state).removeprefix(_PREFIX), *_times(msg), msg.error.error_class)

    assert row(snap.run) == hand["run"]
    assert {p.pipeline_id: row(p) for p in snap.pipelines} == hand["pipelines"]
    assert {(p.pipeline_id, a.asset_id): row(a) for p in snap.pipelines for a in p.assets} == hand["assets"]
    attempts = {}
    for d in snap.node_details:
        for a in d.attempts:
            exit_code = a.exit_code if a.HasField("exit_code") else None
            attempts[(d.node_id, a.attempt_id)] = (
                ev.State.Name(a.state).removeprefix(_PREFIX), *_times(a), exit_code
            )
    assert attempts == hand["attempts"]
    for kind, counts in hand["summary"].items():
        assert _counts(getattr(snap.summary, kind)) == counts, kind
    stages = {}
    for st_ in snap.stage_totals:
        total = round(st_.total_duration.ToNanoseconds() / 1e9, 3) if st_.HasField("total_duration") else None
        most = round(st_.max_duration.ToNanoseconds() / 1e9, 3) if st_.HasField("max_duration") else None
        stages[st_.stage_id] = (_counts(st_.counts), total, most)
    assert stages == hand["stages"]
    assert snap.revision == hand["revision"]
