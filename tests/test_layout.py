"""The package layout is the architecture: arrows point down only, and no module reaches into
another package's private modules.

Layers (docs/README.md, "Code layout"): contract <- otel <- emitter | receiver <- app. The
top-level modules ``vfo_otel.client`` and ``vfo_otel.testing`` sit beside app (they may use any
layer; no layer uses them). Read from the source with ``ast`` (every import, also those inside
functions and ``TYPE_CHECKING`` blocks), so a lazy import cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vfo_otel"
#: What each package may import from vfo_otel (besides itself and the generated code).
ALLOWED = {
    "contract": set(),
    "otel": {"contract"},
    "emitter": {"contract", "otel"},
    "receiver": {"contract", "otel"},
    "app": {"contract", "otel", "emitter", "receiver", "client"},
    "client": set(),
    "testing": {"contract", "otel", "emitter", "receiver"},
    "__init__": {"contract", "emitter"},
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "_gen" not in p.parts)


def _unit(path: Path) -> str:
    """The package (or top-level module) a source file belongs to."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[str]:
    """Every ``vfo_otel...`` module name the file imports (``from X import y`` gives X.y too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("vfo_otel")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vfo_otel"):
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_and_never_into_another_package_s_private_modules(path: Path) -> None:
    unit = _unit(path)
    for name in _imports(path):
        parts = name.split(".")
        if len(parts) < 2 or parts[1] == "_gen":
            continue
        target = parts[1]
        if target == unit:
            continue
        where = path.relative_to(PACKAGE)
        assert target in ALLOWED[unit], f"{where} imports {name}: {unit} may not use {target}"
        private = [p for p in parts[2:] if p.startswith("_") and not p.startswith("__")]
        assert not private, f"{where} imports {name}, private to {target}"


def test_every_package_is_in_the_layer_table() -> None:
    assert {_unit(p) for p in _modules()} <= set(ALLOWED)
