"""OpenLineage out of the stored events: a sink fed after commit, at least once, idempotent.

Off by default. With ``openlineage_url`` (HTTP transport: ``POST <url>/api/v1/lineage``) and/or
``openlineage_file`` (file transport: one JSON event per line, appended), every node attempt
and every run becomes OpenLineage ``RunEvent``s, built and sent with the official
``openlineage-python`` client.

Mapping (:func:`lineage_events`, pure; the OpenLineage object model, spec 2-0-2):

* vfo state -> ``eventType``: ``running`` -> ``START``; ``complete`` -> ``COMPLETE``;
  ``failed`` -> ``FAIL``, or ``ABORT`` when the error class is ``Cancelled`` (the runner was
  stopped); ``skipped`` -> ``ABORT`` (it never ran). ``queued``, ``waiting`` and heartbeats
  send nothing.
* job: namespace ``openlineage_namespace`` (default ``vfo``); name ``<pipeline_id>.<node_id>``
  for a node attempt, ``vfo.run`` for a run. A ``jobType`` job facet says which
  (``NODE`` / ``RUN``, integration ``VFO``, ``BATCH``).
* run id: a UUID derived from the entity (uuid5 over run, pipeline, asset, node and attempt),
  so every receiver and every restart gives an attempt the same OpenLineage run id.
* an attempt's ``parent`` run facet names its vfo run (its run id and the ``vfo.run`` job);
* inputs and outputs: the event's ``AssetRef``s as datasets, namespace and name from the URI by
  the OpenLineage naming rules (``openlineage.client.naming``: ``file:///p`` -> ``file``, ``/p``;
  ``file://host/p`` -> ``file://host``, ``/p``; ``s3://b/k`` -> ``s3://b``, ``k``; a bare path is
  a local file; any other ``scheme://authority/path`` -> ``scheme://authority``, ``/path``);
  ``size_bytes`` as the ``inputStatistics`` / ``outputStatistics`` facet's ``size``;
* a failure's ``errorMessage`` run facet: ``<error class>: <detail>``.

Delivery (:class:`OpenLineageSink`, one per transport): :meth:`feed` runs on the receiver's loop
after a commit (and for every replayed event at start) and only queues; one worker thread sends, retrying a
failed send with backoff (0.5 s doubling to 30 s) until it succeeds or the sink stops. Each event
is keyed by OpenLineage run id + event type; a key is written to the state file
(``<store>.openlineage-http`` / ``-file``, one key a line) once the transport took it. Keys in the state file,
or already queued, are not sent again, so a restart re-sends exactly what was committed and not
yet delivered (at least once; a crash between a send and its key's write sends it once more).
The queue holds at most ``max_queued`` events; past that, new ones are counted in
``stats.dropped`` and sent at the next start, from the store. Ingest never waits for the sink.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    error_message_run,
    input_statistics_input_dataset,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
)
from openlineage.client.naming.dataset import GCS, S3, LocalFileSystem, RemoteFileSystem
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.transport.transport import Transport

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.receiver._record import EventRecord, unpack_refs

__all__ = [
    "PRODUCER",
    "RUN_JOB_NAME",
    "LineageStats",
    "OpenLineageSink",
    "dataset_name",
    "event_key",
    "lineage_events",
    "lineage_run_id",
]

_log = logging.getLogger("vfo_otel.receiver.openlineage")

#: ``producer`` of every event and facet: this package.
PRODUCER = "https://github.com/vfo/vfo-otel"
#: Job name of a vfo run (its node attempts' jobs are ``<pipeline_id>.<node_id>``).
RUN_JOB_NAME = "vfo.run"
_UUID_NAMESPACE = uuid.UUID("6f1c3a52-9d0e-4a38-9b2e-1f6f0c7e4d21")  # vfo-otel's own uuid5 namespace
_RETRY_MIN_S, _RETRY_MAX_S = 0.5, 30.0


def lineage_run_id(
    run_id: str, pipeline_id: str = "", asset_id: str = "", node_id: str = "", attempt: int = 0
) -> str:
    """The OpenLineage run id of a vfo run (only ``run_id``) or node attempt: a uuid5 of its key."""
    parts = [run_id] if not node_id else [run_id, pipeline_id, asset_id, node_id, str(attempt)]
    return str(uuid.uuid5(_UUID_NAMESPACE, "\x1f".join(parts)))


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of an asset URI by the OpenLineage dataset naming rules (pure)."""
    parts = urlsplit(uri)
    path = unquote(parts.path)
    if not parts.scheme or len(parts.scheme) == 1:  # a bare path (or a Windows drive letter)
        naming: Any = LocalFileSystem(path=uri)
    elif parts.scheme == "file":
        naming = (
            RemoteFileSystem(host=parts.netloc, path=path) if parts.netloc else LocalFileSystem(path=path)
        )
    elif parts.scheme == "s3" and parts.netloc and path.strip("/"):
        naming = S3(bucket_name=parts.netloc, object_key=path.lstrip("/"))
    elif parts.scheme == "gs" and parts.netloc and path.strip("/"):
        naming = GCS(bucket_name=parts.netloc, object_key=path.lstrip("/"))
    else:
        return f"{parts.scheme}://{parts.netloc}", path or "/"
    return naming.get_namespace(), naming.get_name()


def _event_type(record: EventRecord) -> RunState | None:
    state = record.state
    if state == ev.STATE_RUNNING:
        return None if record.event.heartbeat else RunState.START
    if state == ev.STATE_COMPLETE:
        return RunState.COMPLETE
    if state == ev.STATE_FAILED:
        return (
            RunState.ABORT if record.error is not None and record.error[0] == "Cancelled" else RunState.FAIL
        )
    if state == ev.STATE_SKIPPED:
        return RunState.ABORT
    return None


def _time(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns / 1e9, tz=UTC).isoformat(timespec="microseconds")


def _datasets(packed: bytes, output: bool) -> list[Any]:
    out: list[Any] = []
    for ref in unpack_refs(packed):
        uri = ref.uri or ref.asset_id
        if not uri:
            continue
        namespace, name = dataset_name(uri)
        if output:
            facets: dict[str, Any] = {}
            if ref.HasField("size_bytes"):
                stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    size=ref.size_bytes
                )
                facets["outputStatistics"] = stats
            out.append(OutputDataset(namespace=namespace, name=name, outputFacets=facets))
        else:
            facets = {}
            if ref.HasField("size_bytes"):
                facets["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
                    size=ref.size_bytes
                )
            out.append(InputDataset(namespace=namespace, name=name, inputFacets=facets))
    return out


def lineage_events(record: EventRecord, namespace: str = "vfo") -> list[RunEvent]:
    """The OpenLineage RunEvents of one stored vfo event (pure; [] for what maps to nothing).

    Node attempts and runs map; pipeline and asset events do not (their work is their nodes').
    """
    event_type = _event_type(record)
    if event_type is None or record.scope not in (ev.SCOPE_NODE, ev.SCOPE_RUN):
        return []
    run_facets: dict[str, Any] = {}
    if record.scope == ev.SCOPE_NODE:
        run_uuid = lineage_run_id(
            record.run_id, record.pipeline_id, record.asset_id, record.node_id, record.attempt_id
        )
        job_name, job_type = f"{record.pipeline_id}.{record.node_id}", "NODE"
        run_facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=lineage_run_id(record.run_id)),
            job=parent_run.Job(namespace=namespace, name=RUN_JOB_NAME),
        )
    else:
        run_uuid, job_name, job_type = lineage_run_id(record.run_id), RUN_JOB_NAME, "RUN"
    if record.error is not None and event_type in (RunState.FAIL, RunState.ABORT):
        error_class, detail = record.error
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=f"{error_class}: {detail}" if detail else error_class, programmingLanguage="unknown"
        )
    job = Job(
        namespace=namespace,
        name=job_name,
        facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="VFO", jobType=job_type
            )
        },
    )
    return [
        RunEvent(
            eventType=event_type,
            eventTime=_time(record.time_ns),
            run=Run(runId=run_uuid, facets=run_facets),
            job=job,
            inputs=_datasets(record.inputs, output=False),
            outputs=_datasets(record.outputs, output=True),
            producer=PRODUCER,
        )
    ]


def event_key(event: RunEvent) -> str:
    """The idempotence key of an OpenLineage event: ``<run id>:<event type>``."""
    assert event.eventType is not None
    return f"{event.run.runId}:{event.eventType.value}"


@dataclass
class LineageStats:
    """Counters of the OpenLineage sink.

    Attributes:
        sent: events every transport took.
        failures: failed send attempts (each is retried).
        dropped: events not queued because the queue was full (sent at the next start).
        skipped: events already delivered (their key is in the state file) or already queued.
    """

    sent: int = 0
    failures: int = 0
    dropped: int = 0
    skipped: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


def _transport(url: str | None, file_path: str | None, timeout_s: float) -> Transport:
    if bool(url) == bool(file_path):
        raise ValueError("an OpenLineage sink has one transport: an HTTP URL or a file")
    if url:  # no urllib3 retries inside a send: the sink retries the whole send itself
        return HttpTransport(HttpConfig(url=url, timeout=timeout_s, retry={"total": 0}))
    assert file_path is not None
    return FileTransport(FileConfig(log_file_path=file_path, append=True))


class OpenLineageSink:
    """Sends OpenLineage events of the stored vfo events (see the module docstring).

    One sink per transport (the receiver builds one for the URL and one for the file), so each
    has its own delivered keys and one transport's outage neither blocks nor repeats the other.

    Args:
        url: OpenLineage HTTP endpoint base (``POST <url>/api/v1/lineage``); or
        file_path: the file to append events to (JSON lines).
        state_path: the file of delivered keys; None keeps them in memory only.
        namespace: job namespace.
        max_queued: events queued before new ones are dropped (and sent at the next start).
        timeout_s: HTTP timeout per send (seconds).

    Raises:
        ValueError: not exactly one of a URL and a file; a malformed URL.

    Thread contract: :meth:`feed` runs on the receiver's loop and never blocks; sending runs on
    the sink's own thread. ``start``/``stop`` from any one thread; stop is idempotent.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        file_path: str | None = None,
        state_path: str | None = None,
        namespace: str = "vfo",
        max_queued: int = 100_000,
        timeout_s: float = 5.0,
    ) -> None:
        self._client = OpenLineageClient(transport=_transport(url, file_path, timeout_s))
        #: ``http`` or ``file`` (the ``transport`` label of its metrics).
        self.transport = "http" if url else "file"
        self.namespace = namespace
        self.stats = LineageStats()
        self._state_path = Path(state_path) if state_path else None
        self._delivered: set[str] = set()
        self._queued: set[str] = set()
        self._queue: queue.Queue[RunEvent | None] = queue.Queue(maxsize=max_queued)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state: Any = None

    def start(self) -> None:
        """Load the delivered keys and start the sending thread."""
        if self._state_path is not None:
            if self._state_path.exists():
                self._delivered = set(self._state_path.read_text(encoding="utf-8").split())
            self._state = self._state_path.open("a", encoding="utf-8")
        self._thread = threading.Thread(target=self._run, name="vfo-openlineage", daemon=True)
        self._thread.start()

    def feed(self, records: Sequence[EventRecord]) -> None:
        """Queue the OpenLineage events of newly committed (or replayed) records; never blocks."""
        for record in records:
            if record.scope not in (ev.SCOPE_NODE, ev.SCOPE_RUN):
                continue
            for event in lineage_events(record, self.namespace):
                key = event_key(event)
                if key in self._delivered or key in self._queued:
                    self.stats.skipped += 1
                    continue
                try:
                    self._queue.put_nowait(event)
                except queue.Full:
                    self.stats.dropped += 1
                    continue
                self._queued.add(key)

    def pending(self) -> int:
        """Events queued or being sent."""
        return len(self._queued)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            key = event_key(event)
            delay = _RETRY_MIN_S
            while True:
                try:
                    self._client.emit(event)
                    break
                except Exception as exc:  # any transport failure: retried, never raised into ingest
                    self.stats.failures += 1
                    if self.stats.failures == 1 or delay >= _RETRY_MAX_S:
                        _log.warning("OpenLineage send failed (retrying in %.1f s): %s", delay, exc)
                    if self._stop.wait(delay):
                        return  # stopping: undelivered events go again at the next start
                    delay = min(delay * 2, _RETRY_MAX_S)
            self._delivered.add(key)
            if self._state is not None:
                self._state.write(key + "\n")
                self._state.flush()
            self._queued.discard(key)
            self.stats.sent += 1
            assert event.eventType is not None
            kind = event.eventType.value
            self.stats.by_type[kind] = self.stats.by_type.get(kind, 0) + 1

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (waiting up to ``timeout_s``), then stop the thread (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            try:
                self._queue.put(None, timeout=timeout_s)
            except queue.Full:
                pass
            thread.join(timeout_s)
            self._stop.set()
            thread.join(timeout_s)
        if self._client.transport is not None:
            self._client.transport.close(timeout=timeout_s)
        if self._state is not None:
            self._state.close()
            self._state = None
