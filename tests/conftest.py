"""Shared fixtures: an in-memory emitter and the issue's reference pipeline scenario."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from vfo_otel import Emitter, NodeSpec
from vfo_otel.testing import InMemoryTelemetry, in_memory_emitter

#: The reference workflow: a -> b, a -> c.
WORKFLOW = {"a": NodeSpec("analyze"), "b": NodeSpec("encode", ("a",)), "c": NodeSpec("package", ("a",))}


@pytest.fixture
def telemetry() -> Iterator[InMemoryTelemetry]:
    """An Emitter whose spans, logs and metrics stay in memory."""
    t = in_memory_emitter()
    yield t
    t.close()


def _reference_scenario(
    emitter: Emitter,
    run_id: str = "run-1",
    pipeline_id: str = "video",
    assets: tuple[str, ...] = ("clip-1", "clip-2"),
) -> None:
    """One run, one pipeline (a -> b, a -> c), two assets; node b fails once on the first asset."""
    with emitter.run(run_id) as run, run.pipeline(pipeline_id, WORKFLOW) as pipeline:
        for i, asset_id in enumerate(assets):
            with pipeline.asset(asset_id) as asset:
                with asset.node("a"):
                    pass
                if i == 0:
                    try:
                        with asset.node("b"):
                            raise RuntimeError("transient")
                    except RuntimeError:
                        pass
                with asset.node("b"):
                    pass
                with asset.node("c"):
                    pass


@pytest.fixture
def reference_scenario() -> Callable[..., None]:
    """The issue's MUST-SHOW scenario as a callable: ``reference_scenario(emitter, run_id=...)``."""
    return _reference_scenario
