"""collector-config/otelcol-loadbalancing.yaml on the real collector with 3 receiver replicas.

The shipped file resolves replicas by DNS (every A record of VFO_RECEIVER_HOSTNAME, port 4317). Three
local receivers cannot share one port behind one name on a test machine, so the test runs the shipped
file with only its `resolver` swapped for the `static` resolver listing the three replicas (docs/deploy.md
names it for pinning the replica list); routing, queue, retries and every other component are as shipped.
Every run must land whole on one replica: that replica's snapshot equals the one of a receiver that got
the same events directly, and the other replicas do not know the run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import _reference_scenario
from tests.upstream.support import (
    CONFIG_DIR,
    Collector,
    FanOut,
    Receiver,
    get_snapshot,
    wait_until,
)

DEAD = "127.0.0.1:9"
RUNS = 9


def test_every_run_lands_whole_on_one_of_three_replicas(
    procs: Callable[..., Any], direct_receiver: Receiver, tmp_path: Path
) -> None:
    replicas: list[Receiver] = [procs(Receiver, f"replica-{i}").start() for i in range(3)]
    config = yaml.safe_load((CONFIG_DIR / "otelcol-loadbalancing.yaml").read_text())
    lb = config["exporters"]["load_balancing/vfo_receivers"]
    assert set(lb["resolver"]) == {"dns"}
    lb["resolver"] = {"static": {"hostnames": [r.grpc_endpoint for r in replicas]}}
    variant = tmp_path / "otelcol-loadbalancing-static.yaml"
    variant.write_text(yaml.safe_dump(config))
    collector: Collector = procs(
        Collector,
        "otelcol-lb",
        config=variant,
        env={
            "TEMPO_OTLP_GRPC_ENDPOINT": DEAD,
            "LOKI_OTLP_ENDPOINT": f"http://{DEAD}/otlp",
            "MIMIR_OTLP_ENDPOINT": f"http://{DEAD}/otlp",
        },
    ).start()

    fan = FanOut(collector.grpc_endpoint, direct_receiver.grpc_endpoint)
    run_ids = [f"run-lb-{i:02d}" for i in range(RUNS)]
    try:
        for run_id in run_ids:
            _reference_scenario(fan.emitter, run_id=run_id)
        fan.flush()
        assert fan.failed == [] and len(fan.acknowledged) > 0
    finally:
        fan.close()

    owner: dict[str, int] = {}
    for run_id in run_ids:
        direct = get_snapshot(direct_receiver.grpc_endpoint, run_id)
        assert direct is not None and direct.revision > 0

        def holders(run_id: str = run_id, direct: Any = direct) -> list[int] | None:
            found = [i for i, r in enumerate(replicas) if get_snapshot(r.grpc_endpoint, run_id) is not None]
            complete = [i for i in found if get_snapshot(replicas[i].grpc_endpoint, run_id) == direct]
            return found if complete else None

        found = wait_until(holders, 60, f"{run_id} complete on a replica")
        assert len(found) == 1, f"{run_id} is split over replicas {found}"
        owner[run_id] = found[0]
    assert len(set(owner.values())) > 1, f"all {RUNS} runs on one replica: {owner}"
