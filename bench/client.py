"""The sending client, run as its own process: ``python -m bench.client --target HOST:PORT --requests FILE``.

Sends pre-serialized OTLP export requests (see :func:`bench.common.write_requests`) over
one gRPC channel with ``--concurrency`` requests in flight (grpc.aio, bytes in and out, so
the client does no protobuf work while timing) and prints one JSON line: elapsed seconds
from the first send to the last answer, records and events sent, answers that were OK,
failed calls by status code, and records the server rejected through ``partial_success``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from bench.common import LOGS_METHOD, read_requests


async def _main(target: str, path: Path, concurrency: int) -> dict[str, object]:
    method, bodies, counts = read_requests(path)
    response_type = (
        logs_service_pb2.ExportLogsServiceResponse
        if method == LOGS_METHOD
        else trace_service_pb2.ExportTraceServiceResponse
    )
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), 10)
        call = channel.unary_unary(method)  # no serializers: bytes in, bytes out
        next_i = 0
        ok = 0
        rejected = 0
        errors: dict[str, int] = {}

        async def worker() -> None:
            nonlocal next_i, ok, rejected
            while next_i < len(bodies):
                i = next_i
                next_i += 1
                try:
                    raw = await call(bodies[i], timeout=120)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    continue
                ok += 1
                if raw:
                    resp = response_type.FromString(raw)
                    ps = resp.partial_success
                    rejected += getattr(ps, "rejected_log_records", 0) or getattr(ps, "rejected_spans", 0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {
        "elapsed_s": elapsed,
        "requests": len(bodies),
        "ok": ok,
        "errors": errors,
        "rejected": rejected,
        "records": sum(r for r, _ in counts),
        "events": sum(e for _, e in counts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--requests", required=True, type=Path)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_main(args.target, args.requests, args.concurrency))), flush=True)


if __name__ == "__main__":
    main()
