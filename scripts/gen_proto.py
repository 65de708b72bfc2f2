"""Regenerate the Python protobuf/gRPC code and .pyi stubs from proto/.

Usage: python scripts/gen_proto.py [OUT_DIR]

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
    import google.api  # googleapis-common-protos ships the .proto files

    googleapis = pathlib.Path(google.api.__path__[0]).parent.parent
    return [str(PROTO_ROOT), str(wkt), str(googleapis)]


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
    target = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "vfo_otel" / "_gen"
    generate(target)
    print(f"generated into {target}")
