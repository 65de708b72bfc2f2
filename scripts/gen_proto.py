"""Regenerate the Python protobuf/gRPC code and .pyi stubs from proto/.

Usage: python scripts/gen_proto.py [OUT_DIR]
       python scripts/gen_proto.py --deps DIR   (copy google/api protos for `buf lint`)

OUT_DIR defaults to vfo_otel/_gen. The generated modules import each other as
``vfo_otel._gen.vfo...`` so that no top-level ``vfo`` package is installed.
tests/test_generated.py runs this into a temporary folder and fails when the
committed files differ (stale code).
"""

from __future__ import annotations

import importlib.resources
import pathlib
import re
import shutil
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = "vfo_otel._gen"
_IMPORT = re.compile(r"^(from|import) vfo\.", re.MULTILINE)


def _include_dirs() -> list[str]:
    """Well-known types from grpc_tools; google/api from googleapis-common-protos."""
    wkt = importlib.resources.files("grpc_tools") / "_proto"
    return [str(PROTO_ROOT), str(wkt), str(googleapis_root())]


def googleapis_root() -> pathlib.Path:
    """The folder holding google/api/annotations.proto (googleapis-common-protos ships the .proto files).

    ``google.api`` is a namespace package: search every part of its path, not ``__file__``.
    """
    import google.api

    for part in google.api.__path__:
        if (pathlib.Path(part) / "annotations.proto").is_file():
            return pathlib.Path(part).parent.parent
    raise RuntimeError("google/api/annotations.proto not found: install googleapis-common-protos")


def copy_proto_deps(out_dir: pathlib.Path) -> None:
    """Copy google/api/*.proto into out_dir (an extra module for `buf lint`, never linted itself)."""
    target = out_dir / "google" / "api"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for proto in (googleapis_root() / "google" / "api").glob("*.proto"):
        shutil.copy(proto, target / proto.name)


def generate(out_dir: pathlib.Path) -> None:
    """Generate into out_dir (replacing it). Raises RuntimeError if protoc fails."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", *(f"-I{d}" for d in _include_dirs())]
        args += [f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *protos]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        tmp_root = pathlib.Path(tmp)
        for path in tmp_root.rglob("*.py*"):
            text = _IMPORT.sub(lambda m: f"{m.group(1)} {PACKAGE}.vfo.", path.read_text())
            path.write_text(text)
        for folder in [tmp_root, *[p for p in tmp_root.rglob("*") if p.is_dir()]]:
            (folder / "__init__.py").touch()
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(tmp_root, out_dir)
        (out_dir / "__init__.py").write_text(
            '"""Generated protobuf code: do not edit; run `make proto`."""\n'
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--deps"]:
        copy_proto_deps(pathlib.Path(sys.argv[2]))
        sys.exit(0)
    target = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "vfo_otel" / "_gen"
    generate(target)
    print(f"generated into {target}")
