"""Ceiling servers, each its own process: ``python -m bench.ceilings --mode parse|walk|stall``.

They implement OTLP ``LogsService/Export`` and ``TraceService/Export`` on grpc.aio (like
the receiver) on an ephemeral 127.0.0.1 port, print ``{"port": N}`` on stdout, and stop
on SIGINT/SIGTERM:

* ``parse``: parse the request and answer OK (ceiling (a): gRPC + protobuf alone);
* ``walk``: parse, then walk every attribute of every record (log records; spans, their
  span events) into a Python dict, as any decoder must (ceiling (b));
* ``stall``: never answer (an exporter pointed at it blocks until its own timeout), to show
  the emitter's caller never waits on export.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

_EMPTY = b""  # an empty Export*ServiceResponse: OK, nothing rejected


def _any(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _walk_logs(body: bytes) -> int:
    req = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
    n = 0
    for rl in req.resource_logs:
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                attrs = {kv.key: _any(kv.value) for kv in rec.attributes}
                n += len(attrs)
    return n


def _walk_traces(body: bytes) -> int:
    req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
    n = 0
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                attrs = {kv.key: _any(kv.value) for kv in span.attributes}
                n += len(attrs)
                for e in span.events:
                    attrs = {kv.key: _any(kv.value) for kv in e.attributes}
                    n += len(attrs)
    return n


def _handlers(mode: str) -> list[grpc.GenericRpcHandler]:
    async def parse_logs(body: bytes, context: Any) -> bytes:
        logs_service_pb2.ExportLogsServiceRequest.FromString(body)
        return _EMPTY

    async def parse_traces(body: bytes, context: Any) -> bytes:
        trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        return _EMPTY

    async def walk_logs(body: bytes, context: Any) -> bytes:
        _walk_logs(body)
        return _EMPTY

    async def walk_traces(body: bytes, context: Any) -> bytes:
        _walk_traces(body)
        return _EMPTY

    async def stall(body: bytes, context: Any) -> bytes:
        await asyncio.sleep(3600)
        return _EMPTY

    logs, traces = {
        "parse": (parse_logs, parse_traces),
        "walk": (walk_logs, walk_traces),
        "stall": (stall, stall),
    }[mode]
    return [
        grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.logs.v1.LogsService",
            {"Export": grpc.unary_unary_rpc_method_handler(logs)},
        ),
        grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(traces)},
        ),
        grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.metrics.v1.MetricsService",
            {"Export": grpc.unary_unary_rpc_method_handler(parse_logs if mode != "stall" else stall)},
        ),
    ]


async def _serve(mode: str) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    server.add_generic_rpc_handlers(_handlers(mode))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"port": port}), flush=True)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["parse", "walk", "stall"], required=True)
    asyncio.run(_serve(parser.parse_args().mode))


if __name__ == "__main__":
    main()
