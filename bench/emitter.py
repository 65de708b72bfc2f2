"""2. Emitter cost per state transition: vfo-otel's emitter against bare OpenTelemetry SDK code.

Method. Both sides run the same workload on the same SDK configuration in this process:
assets of a 20-node workflow, each node queued, running, complete (so 3 x 20 + 2 asset
transitions per asset), every transition producing one log record, one span event, metric
updates (transitions counter, duration histogram, active-nodes up-down counter) and, at the
end of an entity, its span. Exporters are no-ops on synchronous processors, so the whole
cost lands on the calling thread and nothing is dropped. The bare side is the code a
person would write against the SDK by hand; it produces exactly what ``Emitter.emit`` does
for the same events (same attribute keys and counts on spans, span events and log records,
the same log body text, the same metric points; checked by capturing both sides), except
that its span ids are the SDK's random ones rather than vfo's ids derived from the run id
and entity; the vfo side uses the runner API (``with asset.node(...)``) and, separately,
``Emitter.emit(RunEvent)`` with events built by the caller. Repeats alternate the sides;
figures are medians of the per-transition time.

With the real OTLP gRPC exporters (batch processors, the defaults of ``Emitter(endpoint=)``)
the caller-thread cost is measured against a parse-only server process; against a server
that never answers (``bench.ceilings --mode stall``, in a child process) each ``emit``'s
latency is recorded while the SDK's bounded queues (2048 per signal) fill and drop:
drops are counted by the SDK's own processor metrics (turned on in that child process only),
and, with the live server, also by ``EmitterStats.queue_dropped`` as of the flush after the
timed repeats (exact there; the stalled run is never flushed, which would wait out the timeouts).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from bench import common

_SIZES = {"quick": (3, 3), "full": (60, 7)}  # (assets per repeat, repeats)
N_NODES = 20


class _NoopSpans(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _NoopLogs(LogRecordExporter):
    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _providers() -> tuple[TracerProvider, LoggerProvider, MeterProvider]:
    from vfo_otel.emitter import build_resource

    resource = build_resource("vfo-bench")
    tp = TracerProvider(resource=resource, shutdown_on_exit=False)
    tp.add_span_processor(SimpleSpanProcessor(_NoopSpans()))
    lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
    lp.add_log_record_processor(SimpleLogRecordProcessor(_NoopLogs()))
    mp = MeterProvider(resource=resource, metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    return tp, lp, mp


# -- the vfo side ----------------------------------------------------------------------


def vfo_runner_workload(emitter: Any, run_id: str, n_assets: int, n_nodes: int = N_NODES) -> int:
    """Assets through the runner API; returns the number of transitions emitted."""
    wf = common.workflow(n_nodes)
    run = emitter.run(run_id)
    run.__enter__()
    pipeline = run.pipeline("media", wf)
    pipeline.__enter__()
    before2 = emitter.stats.events
    for a in range(n_assets):
        asset_id = f"clip-{a:05d}"
        with pipeline.asset(asset_id) as asset:
            for node_id in wf:
                node = asset.node(node_id)
                # before `running`, as the bare side and the emit side put it on that event too
                node.set_command(common.ffmpeg_argv(asset_id, node_id))
                with node:
                    node.set_exit_code(0)
                    node.add_output(f"/data/out/{asset_id}/{node_id}.mp4", role="proxy", size_bytes=52428800)
    n = emitter.stats.events - before2
    pipeline.__exit__(None, None, None)
    run.__exit__(None, None, None)
    return n


def _vfo_events(run_id: str, n_assets: int) -> list[list[Any]]:
    """The RunEvents of the workload, per asset, as a runner with its own state machine builds them."""
    from google.protobuf.duration_pb2 import Duration

    from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

    wf = common.workflow(N_NODES)
    out = []
    for a in range(n_assets):
        asset_id = f"clip-{a:05d}"
        ids = {"run_id": run_id, "pipeline_id": "media", "asset_id": asset_id}
        evs = [ev.RunEvent(scope=ev.SCOPE_ASSET, state=ev.STATE_RUNNING, **ids)]
        for node_id, spec in wf.items():
            evs.append(
                ev.RunEvent(
                    scope=ev.SCOPE_NODE,
                    state=ev.STATE_QUEUED,
                    node_id=node_id,
                    stage_id=spec.stage,
                    attempt_id=1,
                    upstream_node_ids=spec.after,
                    **ids,
                )
            )
        for node_id, spec in wf.items():
            nid = {"node_id": node_id, "stage_id": spec.stage, "attempt_id": 1, **ids}
            argv = common.ffmpeg_argv(asset_id, node_id)
            cmd = ev.Command(argv=argv, command_line=" ".join(argv))
            evs.append(
                ev.RunEvent(
                    scope=ev.SCOPE_NODE,
                    state=ev.STATE_RUNNING,
                    previous_state=ev.STATE_QUEUED,
                    upstream_node_ids=spec.after,
                    command=cmd,
                    **nid,
                )
            )
            out_ref = ev.AssetRef(
                uri=f"/data/out/{asset_id}/{node_id}.mp4", role="proxy", size_bytes=52428800
            )
            evs.append(
                ev.RunEvent(
                    scope=ev.SCOPE_NODE,
                    state=ev.STATE_COMPLETE,
                    command=cmd,
                    exit_code=0,
                    outputs=[out_ref],
                    duration=Duration(nanos=1000),
                    **nid,
                )
            )
        evs.append(
            ev.RunEvent(scope=ev.SCOPE_ASSET, state=ev.STATE_COMPLETE, duration=Duration(seconds=1), **ids)
        )
        out.append(evs)
    return out


# -- the bare SDK side -----------------------------------------------------------------


class BareRunner:
    """Hand-written OpenTelemetry SDK code producing the same signals as the vfo emitter."""

    def __init__(self, tp: TracerProvider, lp: LoggerProvider, mp: MeterProvider) -> None:
        self.tracer = tp.get_tracer("bare")
        self.logger = lp.get_logger("bare")
        meter = mp.get_meter("bare")
        self.transitions = meter.create_counter("vfo.transitions")
        self.duration = meter.create_histogram("vfo.duration", unit="s")
        self.active = meter.create_up_down_counter("vfo.nodes.active")
        self.source = uuid.uuid4().hex[:16]
        self.seq = 0

    def transition(
        self,
        span: Any,
        entity: dict[str, Any],
        state: str,
        extra: dict[str, Any],
        labels: dict[str, str],
        body: str,
        suffix: str = "",
        severity: SeverityNumber = SeverityNumber.INFO,
    ) -> None:
        self.seq += 1
        now = time.time_ns()
        attrs = {
            "vfo.event.id": uuid.uuid4().hex,
            "vfo.state": state,
            "vfo.event.source": self.source,
            "vfo.event.sequence": self.seq,
            **extra,
        }
        span.add_event("vfo.transition", attrs, timestamp=now)
        self.logger.emit(
            timestamp=now,
            observed_timestamp=time.time_ns(),
            context=trace_api.set_span_in_context(span),
            severity_number=severity,
            severity_text="INFO",
            body=f"{body} {state}{suffix}",  # the same text as vfo's log body
            attributes={**entity, **attrs},
            event_name=f"vfo.{entity['vfo.scope']}.transition",
        )
        self.transitions.add(1, {**labels, "vfo.state": state})

    def asset(self, parent: Any, run_id: str, asset_id: str) -> int:
        wf = common.workflow(N_NODES)
        labels = {"vfo.scope": "asset", "vfo.pipeline.id": "media"}
        entity = {
            "vfo.scope": "asset",
            "vfo.run.id": run_id,
            "vfo.pipeline.id": "media",
            "vfo.asset.id": asset_id,
        }
        abody = f"asset {asset_id} in media"
        t0 = time.monotonic_ns()
        aspan = self.tracer.start_span(
            "vfo.asset",
            context=parent,
            attributes={**entity, "cicd.pipeline.run.id": run_id, "cicd.pipeline.name": "media"},
        )
        actx = trace_api.set_span_in_context(aspan)
        self.transition(aspan, entity, "running", {}, labels, abody)
        spans = {}
        for node_id, spec in wf.items():
            nent = {
                "vfo.scope": "node",
                "vfo.run.id": run_id,
                "vfo.pipeline.id": "media",
                "vfo.asset.id": asset_id,
                "vfo.node.id": node_id,
                "vfo.attempt.id": 1,
                "vfo.stage.id": spec.stage,
            }
            span = self.tracer.start_span(
                f"vfo.node {node_id}",
                context=actx,
                attributes={
                    **nent,
                    "cicd.pipeline.run.id": run_id,
                    "cicd.pipeline.name": "media",
                    "cicd.pipeline.task.name": node_id,
                    "cicd.pipeline.task.run.id": f"media/{asset_id}/{node_id}/1",
                },
            )
            spans[node_id] = (span, nent)
            self.transition(
                span,
                nent,
                "queued",
                {"vfo.node.upstream": list(spec.after)} if spec.after else {},
                {"vfo.scope": "node", "vfo.pipeline.id": "media", "vfo.stage.id": spec.stage},
                f"node {node_id} attempt 1 for {asset_id} in media",
            )
        for node_id, spec in wf.items():
            span, nent = spans[node_id]
            nlabels = {"vfo.scope": "node", "vfo.pipeline.id": "media", "vfo.stage.id": spec.stage}
            start = time.monotonic_ns()
            argv = common.ffmpeg_argv(asset_id, node_id)
            cmd = {"process.command_line": " ".join(argv), "process.command_args": argv}
            upstream = {"vfo.node.upstream": list(spec.after)} if spec.after else {}
            nbody = f"node {node_id} attempt 1 for {asset_id} in media"
            self.transition(
                span, nent, "running", {"vfo.state.previous": "queued", **cmd, **upstream}, nlabels, nbody
            )
            self.active.add(1, {"vfo.pipeline.id": "media", "vfo.stage.id": spec.stage})
            outputs = json.dumps(
                [{"uri": f"/data/out/{asset_id}/{node_id}.mp4", "role": "proxy", "sizeBytes": "52428800"}],
                separators=(",", ":"),
            )
            dur = time.monotonic_ns() - start
            self.transition(
                span,
                nent,
                "complete",
                {
                    "vfo.state.previous": "running",
                    "vfo.duration_ns": dur,
                    "process.exit.code": 0,
                    **cmd,
                    "vfo.outputs": outputs,
                },
                nlabels,
                nbody,
                " (exit 0)",
            )
            self.duration.record(dur / 1e9, {**nlabels, "vfo.state": "complete"})
            self.active.add(-1, {"vfo.pipeline.id": "media", "vfo.stage.id": spec.stage})
            span.set_attributes(
                {
                    "vfo.state": "complete",
                    "cicd.pipeline.task.run.result": "success",
                    "process.exit.code": 0,
                    **cmd,
                }
            )
            span.end()
        dur = time.monotonic_ns() - t0
        done = {"vfo.state.previous": "running", "vfo.duration_ns": dur}
        self.transition(aspan, entity, "complete", done, labels, abody)
        self.duration.record(dur / 1e9, {**labels, "vfo.state": "complete"})
        aspan.set_attributes({"vfo.state": "complete", "cicd.pipeline.result": "success"})
        aspan.end()
        return 3 * len(wf) + 2


def bare_workload(bare: BareRunner, run_id: str, n_assets: int) -> int:
    root = bare.tracer.start_span("vfo.run")
    ctx = trace_api.set_span_in_context(root)
    n = sum(bare.asset(ctx, run_id, f"clip-{a:05d}") for a in range(n_assets))
    root.end()
    return n


# -- measurements ----------------------------------------------------------------------


def _per_transition(fn: Callable[[], int]) -> float:
    t = time.perf_counter()
    n = fn()
    return (time.perf_counter() - t) / n


def no_op(quick: bool) -> dict[str, Any]:
    from vfo_otel import Emitter

    n_assets, repeats = _SIZES["quick" if quick else "full"]
    tp, lp, mp = _providers()
    emitter = Emitter(tracer_provider=tp, logger_provider=lp, meter_provider=mp)
    bare = BareRunner(*_providers())
    vfo_runner_workload(emitter, "warm", 1)
    bare_workload(bare, "warm", 1)
    runner_s, emit_s, bare_s = [], [], []
    for r in range(repeats):
        bare_s.append(_per_transition(lambda r=r: bare_workload(bare, f"b{r}", n_assets)))
        runner_s.append(_per_transition(lambda r=r: vfo_runner_workload(emitter, f"v{r}", n_assets)))
        events = _vfo_events(f"e{r}", n_assets)

        def emit_all(events: list[list[Any]] = events) -> int:
            n = 0
            for per_asset in events:
                for e in per_asset:
                    emitter.emit(e)
                    n += 1
            return n

        emit_s.append(_per_transition(emit_all))
    failures = dict(emitter.stats.failures)
    bare_us = common.median(bare_s) * 1e6
    runner_us = common.median(runner_s) * 1e6
    emit_us = common.median(emit_s) * 1e6
    return {
        "transitions_per_repeat": n_assets * (3 * N_NODES + 2),
        "repeats": repeats,
        "bare_sdk_us": round(bare_us, 1),
        "vfo_runner_api_us": round(runner_us, 1),
        "vfo_runner_api_x_bare": round(runner_us / bare_us, 2),
        "vfo_emit_us": round(emit_us, 1),
        "vfo_emit_x_bare": round(emit_us / bare_us, 2),
        "emitter_failures": failures,
        "target_le_1_3x_bare": runner_us / bare_us <= 1.3,
    }


def _sdk_drop_reader() -> Any:
    """Turn on the SDK's own processor metrics (a global MeterProvider) to count queue drops.

    The SDK logs "Queue full" through a duplicate filter (once per 20 s), so the log is no
    counter; its ``otel.sdk.processor.*.processed`` metric with ``error.type=queue_full`` is.
    """
    from opentelemetry import metrics

    os.environ["OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"] = "true"
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


def _drops(reader: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    if (p.attributes or {}).get("error.type") == "queue_full":
                        out[m.name] = out.get(m.name, 0) + int(p.value)
    return out


def _real_exporters(target: str, n_assets: int, repeats: int, stalled: bool) -> dict[str, Any]:
    """Caller-thread cost with the real OTLP gRPC exporters; then per-emit latency (child process use)."""
    from vfo_otel import Emitter

    reader = _sdk_drop_reader()
    emitter = Emitter(endpoint=f"http://{target}", service_name="vfo-bench", metric_export_interval_ms=1000)
    vfo_runner_workload(emitter, "warm", 1)
    if not stalled:
        emitter.force_flush(10_000)
    per: list[float] = []
    for r in range(repeats):
        per.append(_per_transition(lambda r=r: vfo_runner_workload(emitter, f"x{r}", n_assets)))
    flush_s, flushed, settled = 0.0, None, None
    if not stalled:  # force_flush waits for export by contract: not what a runner thread calls per event
        t = time.perf_counter()
        flushed = emitter.force_flush(60_000)
        flush_s = time.perf_counter() - t
        settled = dict(emitter.stats.queue_dropped)  # exact as of this flush (EmitterStats)
    lat: list[float] = []
    for per_asset in _vfo_events("lat", n_assets * 2):
        for e in per_asset:
            t0 = time.perf_counter()
            emitter.emit(e)
            lat.append(time.perf_counter() - t0)
    return {
        "per_transition_us": round(common.median(per) * 1e6, 1),
        "flush_after_s": round(flush_s, 3),
        "flushed": flushed,
        "emit_latency_us": {
            "p50": round(common.percentile(lat, 0.5) * 1e6, 1),
            "p99": round(common.percentile(lat, 0.99) * 1e6, 1),
            "max": round(max(lat) * 1e6, 1),
        },
        "emits": len(lat),
        "transitions": emitter.stats.events,
        "dropped_by_sdk_queue": _drops(reader),
        "queue_dropped_at_flush": settled,
        "failures": dict(emitter.stats.failures),
    }


def _child(target: str, n_assets: int, repeats: int, stalled: bool = False) -> dict[str, Any]:
    proc_args = [
        sys.executable,
        "-m",
        "bench.emitter",
        "--target",
        target,
        "--assets",
        str(n_assets),
        "--repeats",
        str(repeats),
        *(["--stalled"] if stalled else []),
    ]
    import subprocess

    out = subprocess.run(proc_args, capture_output=True, text=True, timeout=300, cwd=common.ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"bench.emitter child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"no_op_exporters": no_op(quick)}
    n_assets, repeats = _SIZES["quick" if quick else "full"]
    with common.workdir() as work:
        sink = common.Ceiling(work, "parse")
        try:
            common.wait_grpc_ready(sink.grpc_target)
            result["otlp_grpc_exporters"] = _child(sink.grpc_target, n_assets, max(repeats // 2, 1))
        finally:
            sink.stop()
        stall = common.Ceiling(work, "stall")
        try:
            common.wait_grpc_ready(stall.grpc_target)
            # enough events to overflow the 2048-item queues several times over
            result["stalled_exporter"] = _child(stall.grpc_target, max(n_assets, 40), 1, stalled=True)
        finally:
            stall.stop()
    base = result["no_op_exporters"]["vfo_runner_api_us"]
    result["otlp_grpc_exporters"]["x_no_op"] = round(
        result["otlp_grpc_exporters"]["per_transition_us"] / base, 2
    )
    st = result["stalled_exporter"]
    st["x_no_op"] = round(st["per_transition_us"] / base, 2)
    st["never_blocked"] = st["emit_latency_us"]["max"] < 100_000  # an export timeout is 10 s
    result["targets"] = {
        "le_1_3x_bare_sdk": result["no_op_exporters"]["target_le_1_3x_bare"],
        "runner_never_blocked_by_export": st["never_blocked"],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="child process of bench.emitter (real OTLP exporters)")
    parser.add_argument("--target", required=True)
    parser.add_argument("--assets", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stalled", action="store_true")
    args = parser.parse_args()
    out = _real_exporters(args.target, args.assets, args.repeats, args.stalled)
    print(json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0)  # do not wait for the exporters' shutdown (a stalled one would block for its timeouts)


if __name__ == "__main__":
    main()
