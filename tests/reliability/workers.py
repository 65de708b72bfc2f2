"""Child-process code of the reliability suite: ``python -m tests.reliability.workers MODE ARGS``.

Modes (each prints its results as one JSON line on stdout, or writes them to a file):

* ``crash-emitter ENDPOINT OUT N`` streams N assets' events through the real OTLP exporters,
  pausing after half for a line on stdin; records every event emitted and which were acknowledged.
* ``sigterm-runner ENDPOINT`` opens a node and sleeps in it until SIGTERM (install_sigterm_handler).
* ``fork-pool ENDPOINT N`` forks N children; each finishes one node and leaves with ``os._exit``.
* ``receiver-down PORT`` emits against a closed port and reports the emitter's counters.
* ``send-requests ENDPOINT FILE`` sends serialized ExportLogsServiceRequests (base64 lines).
* ``flood ENDPOINT EVENTS PER_REQUEST THREADS`` sends pre-built OTLP requests as fast as it can.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import threading
import time
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from vfo_otel import Emitter
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.emitter import build_resource
from vfo_otel.testing import CountingLogExporter

EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
R, C = ev.STATE_RUNNING, ev.STATE_COMPLETE


def _dur(ms: int) -> Duration:
    d = Duration()
    d.FromMilliseconds(ms)
    return d


def _node(run: str, asset: str, node: str, state: int, **kw: Any) -> ev.RunEvent:
    return ev.RunEvent(
        scope=ev.SCOPE_NODE,
        state=state,
        run_id=run,
        pipeline_id="p",
        asset_id=asset,  # type: ignore[arg-type]
        node_id=node,
        stage_id="s-" + node,
        attempt_id=1,
        **kw,
    )


def crash_emitter(endpoint: str, out: str, n_assets: int) -> None:
    """Stream a run of n_assets assets (2 nodes each); pause at half until stdin says go."""
    run = "crash-run"
    resource = build_resource("crash-emitter")
    logs = CountingLogExporter(endpoint=endpoint, timeout=60)
    lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
    lp.add_log_record_processor(
        BatchLogRecordProcessor(logs, max_queue_size=100_000, schedule_delay_millis=20)
    )
    emitter = Emitter(
        endpoint=endpoint,
        service_name="crash-emitter",
        logger_provider=lp,
        heartbeat_interval_s=None,
        export_metrics_otlp=False,
        export_timeout_s=60,
    )
    sent: list[ev.RunEvent] = []

    def emit(e: ev.RunEvent) -> None:
        done = emitter.emit(e)
        assert done.event_id, emitter.stats.failures
        sent.append(done)

    emit(ev.RunEvent(scope=ev.SCOPE_RUN, state=R, run_id=run))
    emit(ev.RunEvent(scope=ev.SCOPE_PIPELINE, state=R, run_id=run, pipeline_id="p"))
    for i in range(n_assets):
        if i == n_assets // 2:
            print("HALF", flush=True)
            sys.stdin.readline()  # the test kills the receiver meanwhile, then says go
        asset = f"a{i:04d}"
        emit(ev.RunEvent(scope=ev.SCOPE_ASSET, state=R, run_id=run, pipeline_id="p", asset_id=asset))
        for node, after in (("probe", []), ("encode", ["probe"])):
            emit(_node(run, asset, node, R, upstream_node_ids=after))
            emit(_node(run, asset, node, C, duration=_dur(3), exit_code=0, upstream_node_ids=after))
        emit(ev.RunEvent(scope=ev.SCOPE_ASSET, state=C, run_id=run, pipeline_id="p", asset_id=asset))
        time.sleep(0.002)  # workload pacing: a stream, not one burst (not a synchronisation)
    emit(ev.RunEvent(scope=ev.SCOPE_PIPELINE, state=C, run_id=run, pipeline_id="p"))
    emit(ev.RunEvent(scope=ev.SCOPE_RUN, state=C, run_id=run))
    emitter.shutdown(timeout_millis=90_000)
    lp.shutdown()
    attrs = dict(resource.attributes)
    with open(out, "w") as f:
        json.dump(
            {
                "events": [base64.b64encode(e.SerializeToString()).decode() for e in sent],
                "acknowledged": logs.acknowledged,
                "failed": logs.failed,
                "origin": [attrs.get("service.name"), attrs.get("service.version"), attrs.get("host.name")],
                "stats": {
                    "events": emitter.stats.events,
                    "exported": emitter.stats.exported,
                    "dropped": emitter.stats.dropped,
                    "failures": emitter.stats.failures,
                },
            },
            f,
        )


def sigterm_runner(endpoint: str) -> None:
    """A runner that is inside a node when SIGTERM arrives."""
    emitter = Emitter(
        endpoint=endpoint,
        service_name="sigterm-runner",
        handle_sigterm=True,
        heartbeat_interval_s=None,
        export_metrics_otlp=False,
    )
    with emitter.run("sigterm-run") as run, run.pipeline("p") as pipe, pipe.asset("a") as asset:
        with asset.node("long", stage="encode"):
            emitter.force_flush(10_000)
            print("RUNNING", flush=True)
            time.sleep(3600)  # the node's work; SIGTERM interrupts it


def fork_pool(endpoint: str, n: int) -> None:
    """A pool of n forked workers; each finishes one node and exits at once (os._exit)."""
    run = "fork-run"
    emitter = Emitter(
        endpoint=endpoint, service_name="fork-pool", heartbeat_interval_s=None, export_metrics_otlp=False
    )
    emitter.emit(ev.RunEvent(scope=ev.SCOPE_RUN, state=R, run_id=run))
    emitter.emit(ev.RunEvent(scope=ev.SCOPE_PIPELINE, state=R, run_id=run, pipeline_id="p"))
    emitter.force_flush(10_000)  # the parent's channels are live when it forks
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                emitter.emit(_node(run, f"a{i}", "work", R))
                done = emitter.emit(_node(run, f"a{i}", "work", C, duration=_dur(1), exit_code=0))
                code = 0 if done.event_id else 2
            finally:
                os._exit(code)  # no atexit, no flush at exit: the terminal event was flushed by emit
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    emitter.emit(ev.RunEvent(scope=ev.SCOPE_PIPELINE, state=C, run_id=run, pipeline_id="p"))
    emitter.emit(ev.RunEvent(scope=ev.SCOPE_RUN, state=C, run_id=run))
    emitter.shutdown()
    print(json.dumps({"child_exit_codes": codes}), flush=True)


def receiver_down(port: int) -> None:
    """Emit a small run against a port nobody listens on; report what the emitter counted."""
    emitter = Emitter(
        endpoint=f"http://127.0.0.1:{port}",
        service_name="no-receiver",
        heartbeat_interval_s=None,
        export_metrics_otlp=False,
        export_timeout_s=1.0,
    )
    raised = []
    t0 = time.monotonic()
    try:
        with emitter.run("down-run") as run, run.pipeline("p") as pipe, pipe.asset("a") as asset:
            for n in range(5):
                with asset.node(f"n{n}", stage="s"):
                    pass
    except BaseException as exc:  # the point: nothing may come out of the emitter
        raised.append(repr(exc))
    emit_s = time.monotonic() - t0
    flushed = emitter.force_flush(30_000)
    emitter.shutdown(timeout_millis=30_000)
    s = emitter.stats
    print(
        json.dumps(
            {
                "raised": raised,
                "emit_s": emit_s,
                "flushed": flushed,
                "events": s.events,
                "exported": s.exported,
                "dropped": s.dropped,
                "failures": s.failures,
            }
        ),
        flush=True,
    )


def send_requests(endpoint: str, path: str) -> None:
    with grpc.insecure_channel(endpoint) as channel:
        export = channel.unary_unary(EXPORT_METHOD, request_serializer=None, response_deserializer=None)
        n = 0
        with open(path) as f:
            for line in f:
                export(base64.b64decode(line), timeout=60)
                n += 1
    print(json.dumps({"sent": n}), flush=True)


# -- flood -------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


_EID, _RUN, _NODE = b"EEEEEEEEEEEEEEEE", b"RRRRRRRRRRRR", b"NNNNNN"


def _template(time_ns: int) -> bytes:
    """One serialized vfo log record (node complete) with fixed-length placeholders for the ids."""
    from tests.receiver import vfo_log_record

    e = _node(_RUN.decode(), "asset", _NODE.decode(), C, duration=_dur(5), exit_code=0)
    e.event_id = _EID.decode()
    e.time.FromNanoseconds(time_ns)
    return vfo_log_record(e).SerializeToString()


def flood_requests(total: int, per_request: int) -> list[tuple[int, bytes]]:
    """(events, serialized ExportLogsServiceRequest) pairs: run r has request r's events."""
    start_ns = time.time_ns()
    kv = common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="flood"))
    res = _ld(1, kv.SerializeToString())  # Resource.attributes
    out = []
    for r in range(0, (total + per_request - 1) // per_request):
        count = min(per_request, total - r * per_request)
        run = f"flood-{r:06d}".encode()
        tmpl = _template(start_ns + r * 1_000_000)  # later runs are newer (retention keeps the newest)
        body = b"".join(
            _ld(2, tmpl.replace(_EID, b"f%06d%09d" % (r, k)).replace(_RUN, run).replace(_NODE, b"n%05d" % k))
            for k in range(count)
        )
        request = _ld(1, _ld(1, res) + _ld(2, body))
        out.append((count, request))
    return out


def flood(endpoint: str, total: int, per_request: int, threads: int) -> None:
    requests = flood_requests(total, per_request)
    logs_service_pb2.ExportLogsServiceRequest.FromString(requests[0][1])  # a valid request
    lock = threading.Lock()
    counts = {"sent_events": 0, "acknowledged_events": 0, "unavailable": 0, "requests": len(requests)}
    it = iter(requests)
    t0 = time.monotonic()

    def worker() -> None:
        with grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
            export = ch.unary_unary(EXPORT_METHOD, request_serializer=None, response_deserializer=None)
            while True:
                with lock:
                    item = next(it, None)
                if item is None:
                    return
                n, req = item
                with lock:
                    counts["sent_events"] += n
                while True:
                    try:
                        export(req, timeout=120)
                        break
                    except grpc.RpcError as exc:
                        if exc.code() != grpc.StatusCode.UNAVAILABLE:
                            raise
                        delay = 1.0
                        for k, v in exc.trailing_metadata() or ():
                            if k == "google.rpc.retryinfo-bin":
                                info = error_details_pb2.RetryInfo.FromString(v)
                                delay = info.retry_delay.ToNanoseconds() / 1e9
                        with lock:
                            counts["unavailable"] += 1
                        time.sleep(delay)  # the server's RetryInfo, as an OTLP client honours it
                with lock:
                    counts["acknowledged_events"] += n

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    counts["seconds"] = round(time.monotonic() - t0, 2)  # type: ignore[assignment]
    print(json.dumps(counts), flush=True)


def main(argv: list[str]) -> None:
    mode, args = argv[0], argv[1:]
    if mode == "crash-emitter":
        crash_emitter(args[0], args[1], int(args[2]))
    elif mode == "sigterm-runner":
        sigterm_runner(args[0])
    elif mode == "fork-pool":
        fork_pool(args[0], int(args[1]))
    elif mode == "receiver-down":
        receiver_down(int(args[0]))
    elif mode == "send-requests":
        send_requests(args[0], args[1])
    elif mode == "flood":
        flood(args[0], int(args[1]), int(args[2]), int(args[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    socket.setdefaulttimeout(60)
    main(sys.argv[1:])
