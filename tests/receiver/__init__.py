"""Tests of the receiver (issue 3): fold, goldens, store, ingest, servers, CLI.

Shared builders of canonical events with fixed ids and timestamps live here.
"""

from __future__ import annotations

import itertools
from typing import Any

from google.protobuf.duration_pb2 import Duration
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

from vfo_otel import otel
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

__all__ = ["T0_NS", "event", "logs_request", "node", "resource", "vfo_log_record"]

#: 2026-01-01T00:00:00Z, ns since the epoch: the base of every test timestamp.
T0_NS = 1_767_225_600 * 10**9

_ids = itertools.count(1)


def event(
    scope: int,
    state: int,
    *,
    t_s: float,
    run: str = "r1",
    pipeline: str = "p",
    asset: str = "a",
    eid: str | None = None,
    duration_s: float | None = None,
    error: tuple[str, str] | None = None,
    synthetic: bool = False,
    **fields: Any,
) -> ev.RunEvent:
    """A RunEvent of ``scope`` at ``T0 + t_s`` seconds; ids the scope does not need are left empty."""
    e = ev.RunEvent(
        event_id=eid or f"e{next(_ids):06d}",
        scope=scope,
        state=state,  # type: ignore[arg-type]
        run_id=run,
        synthetic=synthetic,
    )
    e.time.FromNanoseconds(T0_NS + round(t_s * 1e9))
    if scope >= ev.SCOPE_PIPELINE:
        e.pipeline_id = pipeline
    if scope >= ev.SCOPE_ASSET:
        e.asset_id = asset
    if duration_s is not None:
        d = Duration()
        d.FromNanoseconds(round(duration_s * 1e9))
        e.duration.CopyFrom(d)
    if error is not None:
        e.error.error_class, e.error.detail = error
    for name, value in fields.items():
        if name in ("inputs", "outputs", "upstream_node_ids"):
            getattr(e, name).extend(value)
        elif name in ("command", "origin"):
            getattr(e, name).CopyFrom(value)
        elif name == "attributes":
            e.attributes.update(value)
        else:
            setattr(e, name, value)
    return e


def node(
    node_id: str, state: int, *, t_s: float, attempt: int = 1, stage: str = "s", **kw: Any
) -> ev.RunEvent:
    """A node-attempt event (scope NODE)."""
    return event(ev.SCOPE_NODE, state, t_s=t_s, node_id=node_id, attempt_id=attempt, stage_id=stage, **kw)


def resource(**attrs: str) -> resource_pb2.Resource:
    """An OTLP resource; ``service_name="x"`` becomes ``service.name``."""
    return resource_pb2.Resource(
        attributes=[
            common_pb2.KeyValue(key=k.replace("_", "."), value=common_pb2.AnyValue(string_value=v))
            for k, v in attrs.items()
        ]
    )


def vfo_log_record(event: ev.RunEvent) -> logs_pb2.LogRecord:
    """The OTLP log record of one event, encoded as the emitter does (:func:`vfo_otel.otel.log_record`)."""
    data = otel.log_record(event)
    attrs = []
    for k, v in data.attributes.items():
        if isinstance(v, bool):
            val = common_pb2.AnyValue(bool_value=v)
        elif isinstance(v, int):
            val = common_pb2.AnyValue(int_value=v)
        elif isinstance(v, str):
            val = common_pb2.AnyValue(string_value=v)
        else:
            val = common_pb2.AnyValue(
                array_value=common_pb2.ArrayValue(values=[common_pb2.AnyValue(string_value=x) for x in v])
            )
        attrs.append(common_pb2.KeyValue(key=k, value=val))
    return logs_pb2.LogRecord(
        time_unix_nano=data.timestamp_ns,
        event_name=data.event_name,
        attributes=attrs,
        body=common_pb2.AnyValue(string_value=data.body),
    )


def logs_request(
    records: list[logs_pb2.LogRecord], res: resource_pb2.Resource | None = None
) -> logs_service_pb2.ExportLogsServiceRequest:
    """An OTLP ExportLogsServiceRequest of these records under one resource."""
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=res or resource(service_name="svc", service_version="1.2.3", host_name="host-a"),
                scope_logs=[logs_pb2.ScopeLogs(log_records=records)],
            )
        ]
    )
