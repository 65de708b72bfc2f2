"""The README's code samples run as written, against a real receiver on an ephemeral port."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.client import SnapshotClient
from vfo_otel.receiver import ReceiverConfig, ReceiverThread

README = Path(__file__).resolve().parents[1] / "README.md"
DEFAULT_ENDPOINT = "127.0.0.1:4317"


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)


def _block_using(name: str) -> str:
    for block in _python_blocks():
        if name in block:
            return block
    raise AssertionError(f"README.md has no ```python block that uses {name}")


@pytest.fixture
def receiver() -> Iterator[ReceiverThread]:
    config = ReceiverConfig(grpc_address="127.0.0.1:0", http_address=None, store_path=":memory:")
    with ReceiverThread(config) as thread:
        yield thread


def test_instrumentation_sample_runs_and_the_snapshot_shows_the_run(receiver: ReceiverThread) -> None:
    code = _block_using("Emitter")
    assert DEFAULT_ENDPOINT in code, "the sample should point at the default receiver address"
    address = f"127.0.0.1:{receiver.grpc_port}"
    exec(compile(code.replace(DEFAULT_ENDPOINT, address), "README.md", "exec"), {"__name__": "readme_sample"})

    # emitter.shutdown() flushed, and the receiver answered each export after its commit
    with SnapshotClient(address) as client:
        snap = client.get_snapshot("run-42", pipeline_id="video", asset_id="clip-1")
    assert (snap.run.state, snap.run.state_reported) == (ev.STATE_COMPLETE, True)
    assert snap.run.command.action == "nightly"
    assert snap.run.service_name == "my-runner"
    assert [p.pipeline_id for p in snap.pipelines] == ["video"]
    assert [a.asset_id for a in snap.pipelines[0].assets] == ["clip-1"]
    edges = [(e.from_node_id, e.to_node_id) for e in snap.pipelines[0].workflow.edges]
    assert edges == [("probe", "encode")]
    details = {d.node_id: d for d in snap.node_details}
    assert {n: d.state for n, d in details.items()} == {
        "probe": ev.STATE_COMPLETE,
        "encode": ev.STATE_COMPLETE,
    }
    probe = details["probe"].attempts[0]
    assert list(probe.command.argv) == ["true"] and probe.exit_code == 0
    assert [o.uri for o in details["encode"].attempts[0].outputs] == ["/tmp/clip-1.mp4"]


def test_snapshot_client_sample_runs(receiver: ReceiverThread) -> None:
    address = f"127.0.0.1:{receiver.grpc_port}"
    emitter_code = _block_using("Emitter").replace(DEFAULT_ENDPOINT, address)
    exec(compile(emitter_code, "README.md", "exec"), {"__name__": "readme_sample"})
    code = _block_using("SnapshotClient").replace(DEFAULT_ENDPOINT, address)
    code = code.replace('"RUN_ID"', '"run-42"').replace('"media"', '"video"').replace('"clip-2"', '"clip-1"')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme_sample"})
    with SnapshotClient(address) as client:
        revision = client.get_snapshot("run-42").revision
    assert out.getvalue() == f"{revision} 0\n"
