"""The committed generated protobuf code matches what scripts/gen_proto.py makes from proto/."""

from __future__ import annotations

import importlib.util
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
GEN = ROOT / "vfo_otel" / "_gen"


def _load_gen_proto():  # scripts/ is not a package
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_generated_code_is_not_stale(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "_gen"
    _load_gen_proto().generate(out)
    fresh, committed = _tree(out), _tree(GEN)
    assert sorted(fresh) == sorted(committed), "generated file set differs: run `make proto`"
    stale = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not stale, f"stale generated files (run `make proto`): {stale}"
    # Every proto file has its module, stub and gRPC module.
    for proto in (ROOT / "proto").rglob("*.proto"):
        stem = proto.relative_to(ROOT / "proto").with_suffix("").as_posix()
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert f"{stem}{suffix}" in fresh


def test_generated_modules_import_inside_the_package() -> None:
    for name, data in _tree(GEN).items():
        if name.endswith((".py", ".pyi")):
            text = data.decode()
            assert "\nimport vfo." not in text and "\nfrom vfo." not in text, name


def test_buf_lint_config_exists() -> None:
    config = yaml.safe_load((ROOT / "buf.yaml").read_text())
    assert config["version"] == "v2"
    assert {"path": "proto"} in config["modules"]
    assert "STANDARD" in config["lint"]["use"]
    assert config["breaking"]["use"]
    assert "buf" in (ROOT / "Makefile").read_text().split("lint-proto:", 1)[1].split("\n\n", 1)[0]
