"""Promise 2: duplicates, disorder and clock skew over real gRPC, from several processes.

One run is built by two workers: worker B's clock is 90 s behind worker A's (its events carry
``time - 90 s``; durations come from each emitter's own monotonic clock). Its events are
shuffled, cut into batches, one batch is delivered twice (as a collector retry does), and the
batches are sent concurrently by two processes. The final snapshot must equal the fold of the
set of events, no duration may be negative, and the revisions a watcher sees never decrease.
"""

from __future__ import annotations

import base64
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from tests.receiver import event, logs_request, node, vfo_log_record
from tests.receiver.test_integration import GrpcWatch
from tests.reliability.support import (
    DEADLINE_S,
    ROOT,
    child_env,
    durations,
    with_origin,
    without_generated_time,
)
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.receiver import ReceiverConfig, ReceiverThread, Selection, snapshot_of

Q, R, W, C, F = ev.STATE_QUEUED, ev.STATE_RUNNING, ev.STATE_WAITING, ev.STATE_COMPLETE, ev.STATE_FAILED
RUN = "skew-run"
SKEW_S = 90.0
ORIGIN = ev.Origin(service_name="svc", service_version="1.2.3", host_name="host-a")


@pytest.fixture
def receiver() -> Iterator[ReceiverThread]:
    config = ReceiverConfig(grpc_address="127.0.0.1:0", http_address=None, store_path=":memory:")
    with ReceiverThread(config) as thread:
        yield thread


def _run_events() -> list[ev.RunEvent]:
    """Worker A runs even assets, worker B (clock 90 s behind) odd ones; one retry; one pipeline
    (``q``) reported by nobody, so its times are derived from B's skewed nodes."""
    out = [
        event(ev.SCOPE_RUN, R, t_s=0, run=RUN),
        event(ev.SCOPE_PIPELINE, R, t_s=0.1, run=RUN, pipeline="p"),
    ]
    for i in range(8):
        skew = -SKEW_S if i % 2 else 0.0
        t = 10.0 * i
        k = {"run": RUN, "pipeline": "p", "asset": f"a{i}"}
        out.append(event(ev.SCOPE_ASSET, R, t_s=t, **k))  # the coordinator (worker A's clock)
        out.append(node("probe", Q, t_s=t, stage="analyze", **k))
        out.append(node("probe", R, t_s=t + 1 + skew, stage="analyze", **k))
        out.append(node("probe", C, t_s=t + 3 + skew, stage="analyze", duration_s=2, exit_code=0, **k))
        out.append(node("encode", R, t_s=t + 3 + skew, stage="encode", upstream_node_ids=["probe"], **k))
        if i == 3:  # a failure and a retry on the skewed worker
            out.append(
                node(
                    "encode",
                    F,
                    t_s=t + 4 + skew,
                    stage="encode",
                    duration_s=1,
                    exit_code=1,
                    upstream_node_ids=["probe"],
                    error=("ExitCode", "exited with status 1"),
                    **k,
                )
            )
            out.append(
                node(
                    "encode", R, t_s=t + 5 + skew, attempt=2, stage="encode", upstream_node_ids=["probe"], **k
                )
            )
            out.append(node("encode", W, t_s=t + 5.5 + skew, attempt=2, stage="encode", **k))
            out.append(node("encode", C, t_s=t + 7 + skew, attempt=2, stage="encode", duration_s=2, **k))
        else:
            out.append(node("encode", C, t_s=t + 6 + skew, stage="encode", duration_s=3, exit_code=0, **k))
        out.append(event(ev.SCOPE_ASSET, C, t_s=t + 7, **k))
        # pipeline q: only node events, all from the skewed worker B
        out.append(node("thumb", R, t_s=t + 2 - SKEW_S, stage="thumb", run=RUN, pipeline="q", asset=f"a{i}"))
        out.append(
            node(
                "thumb",
                C,
                t_s=t + 2.5 - SKEW_S,
                stage="thumb",
                duration_s=0.5,
                run=RUN,
                pipeline="q",
                asset=f"a{i}",
            )
        )
    # a late running, stamped after the complete by a clock running ahead, arrives last
    out.append(
        node("probe", R, t_s=200, stage="analyze", run=RUN, pipeline="p", asset="a0", eid="late-running")
    )
    out += [
        event(ev.SCOPE_PIPELINE, C, t_s=80, run=RUN, pipeline="p"),
        event(ev.SCOPE_RUN, C, t_s=80, run=RUN),
    ]
    return out


def _export(port: int, request: object) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        resp = logs_service_pb2_grpc.LogsServiceStub(channel).Export(request, timeout=DEADLINE_S)
    assert not resp.HasField("partial_success")


def test_duplicates_disorder_and_skew_give_the_fold_of_the_set(
    receiver: ReceiverThread, tmp_path: Path
) -> None:
    events = _run_events()
    shuffled = events[:]
    random.Random(5).shuffle(shuffled)
    batches = [shuffled[i::6] for i in range(6)]
    requests = [logs_request([vfo_log_record(e) for e in b]) for b in batches]

    _export(receiver.grpc_port, requests[0])
    _export(receiver.grpc_port, requests[0])  # the same export again, as a collector retry
    watch = GrpcWatch(receiver.grpc_port, RUN)
    try:
        files = []
        for w in range(2):  # two sender processes share the other batches; batch 0 a third time
            path = tmp_path / f"worker-{w}.txt"
            mine = [requests[0]] * (w == 1) + requests[1 + w :: 2]
            path.write_text("".join(base64.b64encode(r.SerializeToString()).decode() + "\n" for r in mine))
            files.append(path)
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.reliability.workers",
                    "send-requests",
                    f"127.0.0.1:{receiver.grpc_port}",
                    str(f),
                ],
                cwd=ROOT,
                env=child_env(),
                stdout=subprocess.PIPE,
            )
            for f in files
        ]
        for p in procs:
            assert p.wait(DEADLINE_S) == 0
        revisions = []
        while not revisions or revisions[-1] < len(events):
            revisions.append(watch.next().revision)
    finally:
        watch.close()
    assert revisions == sorted(revisions), f"revision went back: {revisions}"
    assert revisions[-1] == len(events)  # every event once, duplicates never counted

    expected_events = with_origin(events, ORIGIN)
    with SnapshotClient(f"127.0.0.1:{receiver.grpc_port}") as client:
        selections = [Selection()] + [Selection(p, f"a{i}") for p in ("p", "q") for i in range(8)]
        for sel in selections:
            got = client.get_snapshot(RUN, sel.pipeline_id, sel.asset_id)
            want = snapshot_of(expected_events, RUN, sel)
            assert want is not None
            assert without_generated_time(got) == without_generated_time(want), sel
            negative = [(path, ns) for path, ns in durations(got) if ns < 0]
            assert not negative, f"negative durations in {sel}: {negative}"
    assert got.revision == len(events)
    stats = receiver.server.receiver.stats
    assert stats.events_stored == len(events) and stats.duplicates == 2 * len(batches[0])

    full = snapshot_of(expected_events, RUN)
    assert full is not None
    p = next(x for x in full.pipelines if x.pipeline_id == "p")
    a0 = next(a for a in p.assets if a.asset_id == "a0")
    assert a0.state == C  # the late running after the complete changed nothing
    assert full.summary.nodes == db.StateCounts(complete=24, total=24)
    assert full.summary.attempts.failed == 1
