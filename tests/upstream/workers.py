"""Short-lived worker processes, each exporting its metrics once when it ends (run as a subprocess).

    python -m tests.upstream.workers --endpoint 127.0.0.1:4317 --workers 200 --parallel 8 --pipeline many

The parent imports vfo_otel once and forks ``--workers`` children, at most ``--parallel`` alive at a time.
Each child is a separate OS process with its own Emitter, and so its own OTel SDK providers and its own
``service.instance.id`` (as an OTel SDK or the operator's OTEL_RESOURCE_ATTRIBUTES gives every process);
it runs one small run (2 assets x 2 nodes: 4 node attempts complete, 2 assets complete) of pipeline
``--pipeline`` and shuts down, which exports its metrics. The parent prints one JSON line:
{"workers": N, "failed": K}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid

from vfo_otel import Emitter, NodeSpec

WORKFLOW = {"a": NodeSpec("analyze"), "b": NodeSpec("encode", ("a",))}
#: What one worker's run adds to the counters (tests/upstream/test_metrics.py checks the sums).
NODE_COMPLETES_PER_WORKER = 4
ASSET_COMPLETES_PER_WORKER = 2


def work(endpoint: str, pipeline_id: str, index: int) -> None:
    emitter = Emitter(
        endpoint=f"http://{endpoint}",
        service_name="vfo-worker",
        resource_attributes={"service.instance.id": uuid.uuid4().hex},
        heartbeat_interval_s=None,
        metric_export_interval_ms=600_000,  # only the final export at shutdown
        export_timeout_s=60,
    )
    with emitter.run(f"{pipeline_id}-worker-{index:04d}") as run, run.pipeline(pipeline_id, WORKFLOW) as p:
        for asset_id in ("x", "y"):
            with p.asset(asset_id) as asset:
                for node_id in WORKFLOW:
                    with asset.node(node_id):
                        pass
    emitter.shutdown()
    if emitter.stats.failures or emitter.stats.dropped:
        raise SystemExit(f"worker {index}: {emitter.stats}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--pipeline", required=True)
    args = ap.parse_args()
    alive: set[int] = set()
    failed = 0

    def reap() -> None:
        nonlocal failed
        pid, status = os.wait()
        alive.discard(pid)
        failed += os.waitstatus_to_exitcode(status) != 0

    for i in range(args.workers):
        while len(alive) >= args.parallel:
            reap()
        pid = os.fork()
        if pid == 0:  # the worker process
            code = 0
            try:
                work(args.endpoint, args.pipeline, i)
            except BaseException as exc:  # report and exit non-zero, never return into the parent's loop
                print(f"worker {i} failed: {exc!r}", file=sys.stderr)
                code = 1
            finally:
                os._exit(code)
        alive.add(pid)
    while alive:
        reap()
    print(json.dumps({"workers": args.workers, "failed": failed}), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
