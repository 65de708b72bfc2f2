"""vfo-otel semantic conventions: the one table every sink derives from.

Every OpenTelemetry attribute key, span name, log event name, metric name,
unit and instrument that vfo-otel emits or reads is declared here, next to the
``vfo.events.v1.RunEvent`` field it carries. ``docs/conventions.md`` renders
this table (``python -m vfo_otel.contract.conventions`` prints it) and
``tests/test_conventions.py`` fails when the two disagree.

Sources of mirrored keys: the OpenTelemetry semantic conventions
(``process.exit.code``, ``process.command_line``, ``process.command_args``,
``error.type``, ``service.*``, ``host.name``, ``cicd.pipeline.*``) and the
OpenTelemetry metrics SDK specification (``otel.metric.overflow`` marks the
one series that absorbs data points past a cardinality limit).

Rules this table enforces by construction:

* The resource carries service and host identity only, never an entity id
  (Loki turns resource attributes into index labels).
* Metric labels come only from :data:`METRIC_LABELS`; run, asset, node and
  attempt ids, paths, file names and command lines are never labels.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import _states

__all__ = [
    "ATTRIBUTES",
    "ATTR_PREFIX_EXTRA",
    "CICD_RESULT",
    "ENTITY_KEYS",
    "HEARTBEAT_EVENT_NAME",
    "LOG_EVENT_NAMES",
    "METRICS",
    "METRIC_LABELS",
    "OVERFLOW_LABEL",
    "RESOURCE_KEYS",
    "SCOPE_NAMES",
    "SPAN_EVENT_NAME",
    "SPAN_NAMES",
    "STATE_NAMES",
    "TERMINAL_STATES",
    "AttributeSpec",
    "Key",
    "MetricSpec",
    "Where",
    "render_markdown",
]

#: Instrumentation scope name used for the tracer, logger and meter.
INSTRUMENTATION_SCOPE = "vfo_otel"


class Where(enum.StrEnum):
    """Where an attribute appears in OTLP."""

    RESOURCE = "resource"
    SPAN = "span"
    SPAN_EVENT = "span event"
    LOG_RECORD = "log record"
    METRIC_LABEL = "metric label"


class Key(enum.StrEnum):
    """Attribute keys. Values are the exact OTLP attribute keys."""

    # Resource (service identity only).
    SERVICE_NAME = "service.name"
    SERVICE_VERSION = "service.version"
    SERVICE_NAMESPACE = "service.namespace"
    SERVICE_INSTANCE_ID = "service.instance.id"
    HOST_NAME = "host.name"
    # Event identity and order.
    EVENT_ID = "vfo.event.id"
    EVENT_SOURCE = "vfo.event.source"
    EVENT_SEQUENCE = "vfo.event.sequence"
    # Entity.
    SCOPE = "vfo.scope"
    RUN_ID = "vfo.run.id"
    PIPELINE_ID = "vfo.pipeline.id"
    ASSET_ID = "vfo.asset.id"
    NODE_ID = "vfo.node.id"
    STAGE_ID = "vfo.stage.id"
    ATTEMPT_ID = "vfo.attempt.id"
    # Transition.
    STATE = "vfo.state"
    PREVIOUS_STATE = "vfo.state.previous"
    DURATION_NS = "vfo.duration_ns"
    SYNTHETIC = "vfo.synthetic"
    HEARTBEAT = "vfo.heartbeat"
    # What ran.
    EXIT_CODE = "process.exit.code"
    COMMAND_LINE = "process.command_line"
    COMMAND_ARGS = "process.command_args"
    ACTION = "vfo.action"
    INPUTS = "vfo.inputs"
    OUTPUTS = "vfo.outputs"
    UPSTREAM = "vfo.node.upstream"
    # Failure.
    ERROR_TYPE = "error.type"
    ERROR_DETAIL = "vfo.error.detail"
    # OTel CI/CD semantic conventions, mirrored on spans.
    CICD_PIPELINE_NAME = "cicd.pipeline.name"
    CICD_PIPELINE_RUN_ID = "cicd.pipeline.run.id"
    CICD_PIPELINE_RESULT = "cicd.pipeline.result"
    CICD_TASK_NAME = "cicd.pipeline.task.name"
    CICD_TASK_RUN_ID = "cicd.pipeline.task.run.id"
    CICD_TASK_RUN_RESULT = "cicd.pipeline.task.run.result"
    # Metrics SDK overflow marker.
    METRIC_OVERFLOW = "otel.metric.overflow"


#: Prefix of free-form extra attributes: ``RunEvent.attributes[k]`` is ``vfo.attr.<k>``.
ATTR_PREFIX_EXTRA = "vfo.attr."

OVERFLOW_LABEL = Key.METRIC_OVERFLOW

_R, _S, _SE, _L, _M = Where.RESOURCE, Where.SPAN, Where.SPAN_EVENT, Where.LOG_RECORD, Where.METRIC_LABEL


@dataclass(frozen=True)
class AttributeSpec:
    """One row of the attribute table.

    Attributes:
        key: The OTLP attribute key.
        type: OTLP value type: ``string``, ``int``, ``bool`` or ``string[]``.
        where: Where the key appears (resource, span, span event, log record, metric label).
        field: The ``vfo.events.v1.RunEvent`` field it carries, or "" when none.
        example: An example value, as text.
        semconv: The OpenTelemetry semantic-convention key it mirrors, or "".
    """

    key: str
    type: str
    where: tuple[Where, ...]
    field: str
    example: str
    semconv: str = ""


ATTRIBUTES: tuple[AttributeSpec, ...] = (
    AttributeSpec(Key.SERVICE_NAME, "string", (_R,), "", "vfo", "service.name"),
    AttributeSpec(Key.SERVICE_VERSION, "string", (_R,), "", "0.1.0", "service.version"),
    AttributeSpec(Key.SERVICE_NAMESPACE, "string", (_R,), "", "media", "service.namespace"),
    AttributeSpec(Key.SERVICE_INSTANCE_ID, "string", (_R,), "", "3f2a9c1e", "service.instance.id"),
    AttributeSpec(Key.HOST_NAME, "string", (_R,), "", "worker-3", "host.name"),
    AttributeSpec(Key.EVENT_ID, "string", (_SE, _L), "event_id", "9b1d...e2"),
    AttributeSpec(Key.EVENT_SOURCE, "string", (_SE, _L), "source_id", "a41f0c2b77d0e5aa"),
    AttributeSpec(Key.EVENT_SEQUENCE, "int", (_SE, _L), "sequence", "42"),
    AttributeSpec(Key.SCOPE, "string", (_S, _L, _M), "scope", "node"),
    AttributeSpec(Key.RUN_ID, "string", (_S, _L), "run_id", "nightly-2026-11-29"),
    AttributeSpec(Key.PIPELINE_ID, "string", (_S, _L, _M), "pipeline_id", "video"),
    AttributeSpec(Key.ASSET_ID, "string", (_S, _L), "asset_id", "clip-0042"),
    AttributeSpec(Key.NODE_ID, "string", (_S, _L), "node_id", "encode_h264"),
    AttributeSpec(Key.STAGE_ID, "string", (_S, _L, _M), "stage_id", "encode"),
    AttributeSpec(Key.ATTEMPT_ID, "int", (_S, _L), "attempt_id", "2"),
    AttributeSpec(Key.STATE, "string", (_S, _SE, _L, _M), "state", "failed"),
    AttributeSpec(Key.PREVIOUS_STATE, "string", (_SE, _L), "previous_state", "running"),
    AttributeSpec(Key.DURATION_NS, "int", (_SE, _L), "duration", "1500000000"),
    AttributeSpec(Key.SYNTHETIC, "bool", (_SE, _L), "synthetic", "false"),
    AttributeSpec(Key.HEARTBEAT, "bool", (_L,), "heartbeat", "true"),
    AttributeSpec(Key.EXIT_CODE, "int", (_S, _SE, _L), "exit_code", "1", "process.exit.code"),
    AttributeSpec(
        Key.COMMAND_LINE,
        "string",
        (_S, _SE, _L),
        "command.command_line",
        "ffmpeg -i a.mov a.mp4",
        "process.command_line",
    ),
    AttributeSpec(
        Key.COMMAND_ARGS,
        "string[]",
        (_S, _SE, _L),
        "command.argv",
        '["ffmpeg","-i","a.mov"]',
        "process.command_args",
    ),
    AttributeSpec(Key.ACTION, "string", (_S, _SE, _L), "command.action", "publish_manifest"),
    AttributeSpec(Key.INPUTS, "string", (_SE, _L), "inputs", '[{"assetId":"clip-0042","uri":"/in/a.mov"}]'),
    AttributeSpec(Key.OUTPUTS, "string", (_SE, _L), "outputs", '[{"uri":"/out/a.mp4","sizeBytes":"1024"}]'),
    AttributeSpec(Key.UPSTREAM, "string[]", (_SE, _L), "upstream_node_ids", '["probe"]'),
    AttributeSpec(Key.ERROR_TYPE, "string", (_S, _SE, _L, _M), "error.error_class", "Timeout", "error.type"),
    AttributeSpec(Key.ERROR_DETAIL, "string", (_SE, _L), "error.detail", "exceeded 600 s"),
    AttributeSpec(Key.CICD_PIPELINE_NAME, "string", (_S,), "pipeline_id", "video", "cicd.pipeline.name"),
    AttributeSpec(
        Key.CICD_PIPELINE_RUN_ID, "string", (_S,), "run_id", "nightly-2026-11-29", "cicd.pipeline.run.id"
    ),
    AttributeSpec(Key.CICD_PIPELINE_RESULT, "string", (_S,), "state", "failure", "cicd.pipeline.result"),
    AttributeSpec(Key.CICD_TASK_NAME, "string", (_S,), "node_id", "encode_h264", "cicd.pipeline.task.name"),
    AttributeSpec(
        Key.CICD_TASK_RUN_ID,
        "string",
        (_S,),
        "",
        "video/clip-0042/encode_h264/2",
        "cicd.pipeline.task.run.id",
    ),
    AttributeSpec(
        Key.CICD_TASK_RUN_RESULT, "string", (_S,), "state", "success", "cicd.pipeline.task.run.result"
    ),
    AttributeSpec(Key.METRIC_OVERFLOW, "bool", (_M,), "", "true", "otel.metric.overflow"),
)

#: Resource attribute keys vfo-otel sets. Any ``vfo.*`` key offered for the resource is dropped.
RESOURCE_KEYS: frozenset[str] = frozenset(a.key for a in ATTRIBUTES if Where.RESOURCE in a.where)

#: The metric label allow-list (data-point attribute keys), overflow marker included.
METRIC_LABELS: frozenset[str] = frozenset(a.key for a in ATTRIBUTES if Where.METRIC_LABEL in a.where)

#: Canonical state names by ``vfo.events.v1.State`` number, the terminal states and the scope
#: names: from the one state table (:mod:`vfo_otel.contract._states`), read off the generated enums.
STATE_NAMES = _states.STATE_NAMES
TERMINAL_STATES = _states.TERMINAL_STATES
SCOPE_NAMES = _states.SCOPE_NAMES

#: The attribute keys that name an event's entity (scope and ids): a span carries them for all
#: its span events, and a receiver merges them into each span event's own attributes.
ENTITY_KEYS: frozenset[str] = frozenset(
    {Key.SCOPE, Key.RUN_ID, Key.PIPELINE_ID, Key.ASSET_ID, Key.NODE_ID, Key.STAGE_ID, Key.ATTEMPT_ID}
)

#: OTel CI/CD ``cicd.pipeline.result`` / ``cicd.pipeline.task.run.result`` values for terminal states.
CICD_RESULT: dict[int, str] = {
    ev.STATE_COMPLETE: "success",
    ev.STATE_FAILED: "failure",
    ev.STATE_SKIPPED: "skip",
}

#: Span name per scope; node spans append the node id (low cardinality: DAG node names).
SPAN_NAMES: dict[str, str] = {
    "run": "vfo.run",
    "pipeline": "vfo.pipeline {pipeline_id}",
    "asset": "vfo.asset",
    "node": "vfo.node {node_id}",
}
#: Name of the span event added for every transition.
SPAN_EVENT_NAME = "vfo.transition"
#: OTLP LogRecord ``event_name`` per scope.
LOG_EVENT_NAMES: dict[str, str] = {scope: f"vfo.{scope}.transition" for scope in SCOPE_NAMES.values()}
#: OTLP LogRecord ``event_name`` of a liveness heartbeat of a running node attempt.
HEARTBEAT_EVENT_NAME = "vfo.node.heartbeat"


@dataclass(frozen=True)
class MetricSpec:
    """One metric instrument.

    Attributes:
        name: OTel metric name.
        instrument: ``counter``, ``histogram`` or ``updowncounter``.
        unit: UCUM unit (``s`` for durations; annotations in braces for counts).
        labels: Data-point attribute keys; a subset of :data:`METRIC_LABELS`.
        description: Metric description.
        prometheus: The name after the OTLP-to-Prometheus translation (suffixes added).
    """

    name: str
    instrument: str
    unit: str
    labels: tuple[str, ...]
    description: str
    prometheus: str


#: Explicit histogram bucket boundaries (seconds): steps from 100 ms to hours.
DURATION_BUCKETS_S: tuple[float, ...] = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
)

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "vfo.transitions",
        "counter",
        "{transition}",
        (Key.SCOPE, Key.PIPELINE_ID, Key.STAGE_ID, Key.STATE),
        "State transitions of runs, pipelines, assets and node attempts.",
        "vfo_transitions_total",
    ),
    MetricSpec(
        "vfo.duration",
        "histogram",
        "s",
        (Key.SCOPE, Key.PIPELINE_ID, Key.STAGE_ID, Key.STATE),
        "Duration of finished entities, recorded at their terminal transition.",
        "vfo_duration_seconds",
    ),
    MetricSpec(
        "vfo.nodes.active",
        "updowncounter",
        "{node}",
        (Key.PIPELINE_ID, Key.STAGE_ID),
        "Node attempts currently running.",
        "vfo_nodes_active",
    ),
    MetricSpec(
        "vfo.errors",
        "counter",
        "{error}",
        (Key.SCOPE, Key.PIPELINE_ID, Key.STAGE_ID, Key.ERROR_TYPE),
        "Failed transitions, by error class.",
        "vfo_errors_total",
    ),
)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render_markdown() -> str:
    """Render the attribute and metric tables as Markdown (the body of docs/conventions.md).

    Returns:
        Markdown text: one attribute table and one metric table.
    """
    lines = ["| key | type | where | event field | example | mirrors semconv |", "|---|---|---|---|---|---|"]
    for a in ATTRIBUTES:
        lines.append(
            _md_row(
                [
                    f"`{a.key}`",
                    a.type,
                    ", ".join(a.where),
                    a.field and f"`{a.field}`",
                    f"`{a.example}`",
                    a.semconv and f"`{a.semconv}`",
                ]
            )
        )
    lines += [
        "",
        "| metric | instrument | unit | labels | Prometheus name | description |",
        "|---|---|---|---|---|---|",
    ]
    for m in METRICS:
        lines.append(
            _md_row(
                [
                    f"`{m.name}`",
                    m.instrument,
                    f"`{m.unit}`",
                    ", ".join(f"`{k}`" for k in m.labels),
                    f"`{m.prometheus}`",
                    m.description,
                ]
            )
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
