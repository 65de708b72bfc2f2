"""The real collector (vfo-otelcol, built with ocb from collector-config/builder-config.yaml) validates the
shipped configs and runs collector-config/otelcol.yaml between the emitter and a real receiver."""

from __future__ import annotations

import subprocess
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
    upstream_binary,
    wait_snapshots_equal,
)


def _validate(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [upstream_binary("otelcol"), "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_real_collector_validates_otelcol_yaml() -> None:
    result = _validate(CONFIG_DIR / "otelcol.yaml")
    assert result.returncode == 0, result.stderr


def test_real_collector_validates_otelcol_loadbalancing_yaml() -> None:
    result = _validate(CONFIG_DIR / "otelcol-loadbalancing.yaml")
    assert result.returncode == 0, result.stderr


def test_vfo_otelcol_has_exactly_the_components_the_configs_use() -> None:
    """The ocb manifest lists exactly the component types both configs reference."""
    used: set[tuple[str, str]] = set()
    for name in ("otelcol.yaml", "otelcol-loadbalancing.yaml"):
        config = yaml.safe_load((CONFIG_DIR / name).read_text())
        for kind in ("receivers", "processors", "exporters", "extensions"):
            used |= {(kind, cid.split("/")[0]) for cid in config.get(kind) or {}}
    listing = yaml.safe_load(
        subprocess.run(
            [upstream_binary("otelcol"), "components"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    built = {
        (kind, c["name"])
        for kind in ("receivers", "processors", "exporters", "extensions")
        for c in listing[kind]
    }
    assert built == used


def test_emitter_collector_receiver_snapshot_equals_direct(
    procs: Callable[..., Any], receiver: Receiver, direct_receiver: Receiver
) -> None:
    """emitter -> collector (otelcol.yaml) -> receiver gives the same snapshot as emitter -> receiver."""
    collector: Collector = procs(
        Collector, "otelcol", env={"VFO_RECEIVER_ENDPOINT": receiver.grpc_endpoint}
    ).start()
    fan = FanOut(collector.grpc_endpoint, direct_receiver.grpc_endpoint)
    try:
        _reference_scenario(fan.emitter, run_id="run-via-collector")
        fan.flush()
        assert fan.failed == [] and len(fan.acknowledged) > 0
        snap = wait_snapshots_equal(
            receiver.grpc_endpoint, direct_receiver.grpc_endpoint, "run-via-collector"
        )
        assert snap.revision > 0
    finally:
        fan.close()
    collector.check_alive()
