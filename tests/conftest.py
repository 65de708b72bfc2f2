"""Shared fixtures: an in-memory emitter and the issue's reference pipeline scenario."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

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


# -- PostgreSQL: a real server, one per session ---------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A temporary PostgreSQL cluster (tests/pgcluster.py); skips without the server binaries,
    except in CI (``CI=true``), where a missing server fails the test."""
    try:
        from tests.pgcluster import PgCluster, find_bindir
    except ImportError as exc:  # psycopg missing
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL tests need psycopg: {exc}")
        pytest.skip(f"psycopg is not installed: {exc}")
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    cluster = PgCluster(bindir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


_PG_DATABASES = itertools.count(1)


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """The URL of a new, empty database on the session's cluster."""
    return str(pg_cluster.create_database(f"vfo_test_{os.getpid()}_{next(_PG_DATABASES)}"))
