"""The package's public surface is exactly the intended one, and documented."""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest

import vfo_otel

INTENDED = {
    "AssetHandle",
    "AssetRef",
    "Command",
    "Emitter",
    "EmitterStats",
    "Error",
    "NodeHandle",
    "NodeSpec",
    "PipelineHandle",
    "RunEvent",
    "RunHandle",
    "Scope",
    "State",
    "__version__",
}


def test_all_is_exactly_the_intended_surface() -> None:
    assert set(vfo_otel.__all__) == INTENDED
    assert len(vfo_otel.__all__) == len(INTENDED), "duplicates in __all__"


def test_version_is_the_distribution_version() -> None:
    assert vfo_otel.__version__ == version("vfo-otel")


@pytest.mark.parametrize("name", sorted(INTENDED - {"__version__"}))
def test_public_name_is_importable_and_documented(name: str) -> None:
    obj = getattr(vfo_otel, name)
    namespace: dict[str, object] = {}
    exec(f"from vfo_otel import {name}", namespace)
    assert namespace[name] is obj
    descriptor = getattr(obj, "DESCRIPTOR", None)
    if descriptor is not None:
        # Generated protobuf types: documented in proto/vfo/events/v1/events.proto and docs/event-model.md.
        assert descriptor.full_name.startswith("vfo.events.v1.")
        assert inspect.getdoc(obj)
    else:
        assert obj.__module__.startswith("vfo_otel.")
        assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring of its own"
