"""OpenLineage out of the stored events (issue 16, part 3).

The demo pipeline through a receiver with both OpenLineage transports: a test HTTP endpoint on
port 0 and a file. Every event validates against the OpenLineage 2-0-2 RunEvent schema; counts and
types are asserted; the HTTP and file transports carry the same events; a failing endpoint gets
every event once it recovers; a restart on the same store sends nothing twice, and with its
delivered keys gone sends everything again with the same run ids (at least once, idempotent keys).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.receiver import node
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.app.demo import MEDIA, MEDIA_ASSETS, REPORT, run_demo
from vfo_otel.receiver import ReceiverConfig, ReceiverThread, record_of
from vfo_otel.receiver._openlineage import dataset_name, lineage_events, lineage_run_id

SCHEMA = Path(__file__).parent / "data" / "openlineage-2-0-2-runevent.schema.json"
RUN_ID = "demo-lineage"
#: The demo's OpenLineage events (demo.py's docstring): 29 node attempts; 27 started (START: the 24
#: complete, the 2 failed, and report's notify, which starts and is then skipped); 24 COMPLETE,
#: 2 FAIL, 3 ABORT (the skipped: media's package and publish of clip-4 never ran); the run
#: itself starts and fails.
EXPECTED_TYPES = {"START": 27 + 1, "COMPLETE": 24, "FAIL": 2 + 1, "ABORT": 3}


def _validator() -> Any:
    """The OpenLineage RunEvent schema validator: the official spec files when
    VFO_OTEL_OPENLINEAGE_SPEC names a checkout's spec/ folder, else this test's transcription."""
    spec_dir = os.environ.get("VFO_OTEL_OPENLINEAGE_SPEC")
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    if not spec_dir:
        return jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()), format_checker=checker)
    from referencing import Registry, Resource

    docs = [json.loads(p.read_text()) for p in Path(spec_dir).rglob("*.json")]
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs if "$id" in d)
    root = next(d for d in docs if d.get("$id", "").endswith("/OpenLineage.json"))
    return jsonschema.Draft202012Validator(root, registry=registry, format_checker=checker)


VALIDATOR = _validator()


def _check(event: dict[str, Any]) -> None:
    VALIDATOR.validate(event)
    datetime.fromisoformat(event["eventTime"])  # the format checker needs an extra package for date-time
    uuid.UUID(event["run"]["runId"])


class _Endpoint:
    """An OpenLineage HTTP endpoint on port 0: records each POSTed event; the first ``fail``
    requests are answered 503."""

    def __init__(self, fail: int = 0) -> None:
        self.received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.fail = fail
        self.refused = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if endpoint.fail > 0:
                    endpoint.fail -= 1
                    endpoint.refused += 1
                    self.send_response(503)
                    self.end_headers()
                    return
                endpoint.received.put((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                path, event = self.received.get_nowait()
            except queue.Empty:
                return out
            assert path == "/api/v1/lineage"
            out.append(event)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def endpoint() -> Iterator[_Endpoint]:
    e = _Endpoint()
    yield e
    e.close()


def _config(store: Path, url: str | None, file: Path | None) -> ReceiverConfig:
    return ReceiverConfig(
        grpc_address="127.0.0.1:0",
        http_address=None,
        store_path=str(store),
        openlineage_url=url,
        openlineage_file=str(file) if file else None,
    )


def _demo(tmp_path: Path, config: ReceiverConfig) -> None:
    run_demo(config=config, run_id=RUN_ID, workdir=str(tmp_path / "work"), log=lambda _: None)


def _key(event: dict[str, Any]) -> tuple[str, str]:
    return event["run"]["runId"], event["eventType"]


def test_the_demo_s_openlineage_events_validate_and_both_transports_carry_them(
    tmp_path: Path, endpoint: _Endpoint
) -> None:
    lineage_file = tmp_path / "lineage.jsonl"
    _demo(tmp_path, _config(tmp_path / "demo.sqlite3", endpoint.url, lineage_file))  # sinks drained at stop
    over_http = endpoint.events()
    in_file = [json.loads(line) for line in lineage_file.read_text().splitlines()]
    for event in over_http:
        _check(event)
    assert Counter(e["eventType"] for e in over_http) == EXPECTED_TYPES
    assert len({_key(e) for e in over_http}) == len(over_http)  # one event per run id and type
    assert sorted(map(_key, in_file)) == sorted(map(_key, over_http))
    assert {json.dumps(e, sort_keys=True) for e in in_file} == {
        json.dumps(e, sort_keys=True) for e in over_http
    }

    # Jobs: one per (pipeline, node) and the run's; attempts name their vfo run as parent.
    jobs = {(e["job"]["namespace"], e["job"]["name"]) for e in over_http}
    want_jobs = {("vfo", f"media.{n}") for n in MEDIA} | {("vfo", f"report.{n}") for n in REPORT}
    assert jobs == want_jobs | {("vfo", "vfo.run")}
    run_uuid = lineage_run_id(RUN_ID)
    for e in over_http:
        if e["job"]["name"] == "vfo.run":
            assert e["run"]["runId"] == run_uuid and "parent" not in e["run"]["facets"]
            continue
        parent = e["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == run_uuid and (parent["job"]["namespace"], parent["job"]["name"]) == (
            "vfo",
            "vfo.run",
        )
        assert e["job"]["facets"]["jobType"]["jobType"] == "NODE"

    # The flaky thumbnail: two attempts, two run ids; the first failed with its error message.
    thumbs = [e for e in over_http if e["job"]["name"] == "media.thumbnail" and e["eventType"] == "FAIL"]
    (flaky,) = thumbs
    assert flaky["run"]["runId"] == lineage_run_id(RUN_ID, "media", "clip-2", "thumbnail", 1)
    assert flaky["run"]["facets"]["errorMessage"]["message"].startswith("ExitCode")
    # Datasets: file URIs by the naming spec, with their size.
    outputs = [o for e in over_http if e["eventType"] == "COMPLETE" for o in e.get("outputs", [])]
    assert outputs, "the demo's nodes declare outputs"
    for o in outputs:
        assert o["namespace"] == "file" and o["name"].startswith(str(tmp_path / "work"))
    sized = [o for o in outputs if "outputStatistics" in o.get("outputFacets", {})]
    assert sized and all(o["outputFacets"]["outputStatistics"]["size"] >= 0 for o in sized)
    assert len(MEDIA_ASSETS) == 5


def test_a_failing_endpoint_gets_every_event_once_it_recovers_and_a_restart_sends_nothing_twice(
    tmp_path: Path,
) -> None:
    store = tmp_path / "demo.sqlite3"
    flaky = _Endpoint(fail=3)
    try:
        _demo(tmp_path, _config(store, flaky.url, None))
        first = flaky.events()
        assert flaky.refused == 3
        assert Counter(e["eventType"] for e in first) == EXPECTED_TYPES
        assert len({_key(e) for e in first}) == len(first)

        # A restart on the same store replays every event into the sink: all delivered already.
        with ReceiverThread(_config(store, flaky.url, None)) as thread:
            (sink,) = thread.server.lineage
            assert sink.pending() == 0 and sink.stats.skipped == len(first)
        assert flaky.events() == []

        # Without the delivered keys (a lost state file), everything goes again: same keys.
        (tmp_path / "demo.sqlite3.openlineage-http").unlink()
        with ReceiverThread(_config(store, flaky.url, None)):
            pass  # stop drains the sink
        again = flaky.events()
        assert sorted(map(_key, again)) == sorted(map(_key, first))
    finally:
        flaky.close()


def test_ingest_never_waits_for_a_dead_endpoint(tmp_path: Path) -> None:
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    from tests.receiver import logs_request, vfo_log_record

    dead = _Endpoint(fail=10**9)
    try:
        config = _config(tmp_path / "s.sqlite3", dead.url, None)
        with ReceiverThread(config) as thread:
            request = logs_request(
                [vfo_log_record(node(f"n{i}", ev.STATE_COMPLETE, t_s=i, run="dead-run")) for i in range(50)]
            )
            with grpc.insecure_channel(f"127.0.0.1:{thread.grpc_port}") as channel:
                stub = logs_service_pb2_grpc.LogsServiceStub(channel)
                for _ in range(3):
                    stub.Export(request, timeout=5)  # answered while the sink retries
            (sink,) = thread.server.lineage
            assert thread.server.receiver.stats.events_stored == 50
            assert sink.stats.sent == 0 and sink.pending() == 50
            metrics = thread.call(_render(thread)).decode()
            assert 'vfo_receiver_openlineage_pending{transport="http"} 50.0' in metrics
            assert 'vfo_receiver_openlineage_events_total{result="sent",transport="http"} 0.0' in metrics
    finally:
        dead.close()


async def _render(thread: ReceiverThread) -> bytes:
    return thread.server.receiver.telemetry.render()  # on the receiver's loop, as GET /metrics


# -- the pure mapping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "want"),
    [
        ("file:///data/in/clip-1.mov", ("file", "/data/in/clip-1.mov")),
        ("/data/in/clip 1.mov", ("file", "/data/in/clip 1.mov")),
        ("file://nas-1/media/clip.mov", ("file://nas-1", "/media/clip.mov")),
        ("s3://bucket/media/clip.mov", ("s3://bucket", "media/clip.mov")),
        ("gs://bucket/clip.mov", ("gs://bucket", "clip.mov")),
        ("hdfs://nn:8020/warehouse/t", ("hdfs://nn:8020", "/warehouse/t")),
        ("https://cdn.example/v/clip.mp4", ("https://cdn.example", "/v/clip.mp4")),
    ],
)
def test_dataset_namespace_and_name_follow_the_naming_spec(uri: str, want: tuple[str, str]) -> None:
    assert dataset_name(uri) == want


@pytest.mark.parametrize(
    ("state", "error", "heartbeat", "want"),
    [
        (ev.STATE_QUEUED, None, False, None),
        (ev.STATE_RUNNING, None, False, "START"),
        (ev.STATE_RUNNING, None, True, None),
        (ev.STATE_WAITING, None, False, None),
        (ev.STATE_COMPLETE, None, False, "COMPLETE"),
        (ev.STATE_FAILED, ("Timeout", "took too long"), False, "FAIL"),
        (ev.STATE_FAILED, ("Cancelled", "SIGTERM"), False, "ABORT"),
        (ev.STATE_SKIPPED, None, False, "ABORT"),
    ],
)
def test_states_map_to_event_types(state: int, error: Any, heartbeat: bool, want: str | None) -> None:
    from openlineage.client.serde import Serde

    e = node("encode", state, t_s=1, run="map-run", pipeline="video", asset="clip-1", heartbeat=heartbeat)
    if error is not None:
        e.error.error_class, e.error.detail = error
    events = lineage_events(record_of(e))
    assert [x.eventType.value for x in events if x.eventType] == ([want] if want else [])
    for x in events:
        doc = json.loads(Serde.to_json(x))
        _check(doc)
        assert doc["run"]["runId"] == lineage_run_id("map-run", "video", "clip-1", "encode", 1)
        if error is not None:
            assert doc["run"]["facets"]["errorMessage"]["message"] == f"{error[0]}: {error[1]}"


def test_pipeline_and_asset_events_map_to_nothing() -> None:
    from tests.receiver import event

    for scope in (ev.SCOPE_PIPELINE, ev.SCOPE_ASSET):
        assert lineage_events(record_of(event(scope, ev.STATE_COMPLETE, t_s=1))) == []
