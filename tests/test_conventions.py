"""The conventions table: its documentation, its rules, and that the mapping keeps to it."""

from __future__ import annotations

import pathlib
import re

from vfo_otel import otel
from vfo_otel.contract import AssetRef, Command, Error, RunEvent
from vfo_otel.contract import conventions as c
from vfo_otel.contract.conventions import Key, Where

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "conventions.md"
BEGIN, END = "<!-- conventions:begin -->", "<!-- conventions:end -->"

#: Keys that identify work items or carry free text: never a metric label or resource attribute.
HIGH_CARDINALITY = {
    Key.RUN_ID,
    Key.ASSET_ID,
    Key.NODE_ID,
    Key.ATTEMPT_ID,
    Key.EVENT_ID,
    Key.EVENT_SOURCE,
    Key.EVENT_SEQUENCE,
    Key.COMMAND_LINE,
    Key.COMMAND_ARGS,
    Key.ACTION,
    Key.INPUTS,
    Key.OUTPUTS,
    Key.ERROR_DETAIL,
    Key.UPSTREAM,
    Key.DURATION_NS,
    Key.CICD_PIPELINE_RUN_ID,
    Key.CICD_TASK_RUN_ID,
    Key.CICD_TASK_NAME,
}


def test_doc_contains_exactly_the_rendered_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert body.strip("\n") == c.render_markdown().strip("\n"), (
        "docs/conventions.md is stale: paste `python -c 'from vfo_otel.contract.conventions import "
        "render_markdown as r; print(r())'` between the markers"
    )


def test_rendered_tables_list_every_key_and_metric() -> None:
    rendered = c.render_markdown()
    for key in Key:
        assert f"| `{key}` |" in rendered
    for metric in c.METRICS:
        assert f"| `{metric.name}` |" in rendered


def test_every_metric_label_is_allowed() -> None:
    for metric in c.METRICS:
        assert set(metric.labels) <= c.METRIC_LABELS, metric.name


def test_no_entity_id_command_or_path_is_a_label_or_resource_key() -> None:
    assert not HIGH_CARDINALITY & c.METRIC_LABELS
    assert not HIGH_CARDINALITY & c.RESOURCE_KEYS
    assert not any(k.startswith("vfo.") for k in c.RESOURCE_KEYS)
    assert c.METRIC_LABELS == {
        Key.SCOPE,
        Key.PIPELINE_ID,
        Key.STAGE_ID,
        Key.STATE,
        Key.ERROR_TYPE,
        Key.METRIC_OVERFLOW,
    }


def test_table_rows_are_unique_and_cover_every_key() -> None:
    keys = [a.key for a in c.ATTRIBUTES]
    assert len(keys) == len(set(keys))
    assert set(keys) == {k.value for k in Key}
    assert c.OVERFLOW_LABEL == "otel.metric.overflow"


def test_table_fields_name_real_runevent_fields() -> None:
    """The proto is the source of truth: every field named in the table exists, and every
    RunEvent field has a row, but three: ``time`` (the record's own timestamp), ``attributes``
    (``vfo.attr.<key>``) and ``origin`` (read from the OTLP resource by receivers)."""
    fields = RunEvent.DESCRIPTOR.fields_by_name
    named: set[str] = set()
    for a in c.ATTRIBUTES:
        if not a.field:
            continue
        head, _, tail = a.field.partition(".")
        assert head in fields, a.field
        if tail:
            assert tail in fields[head].message_type.fields_by_name, a.field
        named.add(head)
    assert set(fields) - named == {"time", "attributes", "origin"}


def test_semconv_mirrors_are_the_keys_themselves() -> None:
    for a in c.ATTRIBUTES:
        if a.semconv:
            assert a.semconv == a.key
    semconv = {a.key for a in c.ATTRIBUTES if a.semconv}
    assert {
        "process.exit.code",
        "process.command_line",
        "process.command_args",
        "error.type",
        "cicd.pipeline.name",
        "cicd.pipeline.run.id",
        "cicd.pipeline.result",
    } <= semconv


def test_metric_units_and_prometheus_names() -> None:
    by_name = {m.name: m for m in c.METRICS}
    assert by_name["vfo.duration"].unit == "s" and by_name["vfo.duration"].instrument == "histogram"
    assert by_name["vfo.nodes.active"].instrument == "updowncounter"
    for metric in c.METRICS:
        assert re.fullmatch(r"[a-z_]+", metric.prometheus)
        if metric.instrument == "counter":
            assert metric.prometheus.endswith("_total")
    assert list(c.DURATION_BUCKETS_S) == sorted(c.DURATION_BUCKETS_S)


def test_names_per_scope_and_state() -> None:
    assert set(c.SCOPE_NAMES.values()) == set(c.SPAN_NAMES) == set(c.LOG_EVENT_NAMES)
    assert set(c.STATE_NAMES.values()) == {"queued", "running", "waiting", "complete", "failed", "skipped"}
    assert {c.STATE_NAMES[s] for s in c.TERMINAL_STATES} == {"complete", "failed", "skipped"}
    assert set(c.CICD_RESULT) == set(c.TERMINAL_STATES)


def _full(scope: int, state: int) -> RunEvent:
    ids = {"run_id": "r", "pipeline_id": "p", "asset_id": "a", "node_id": "n", "attempt_id": 2}
    keep = {1: 1, 2: 2, 3: 3, 4: 5}[scope]
    event = RunEvent(
        event_id="e",
        source_id="s",
        sequence=3,
        scope=scope,
        state=state,
        previous_state=2,
        stage_id="st",
        exit_code=1,
        synthetic=True,
        command=Command(command_line="x y", argv=["x", "y"], action="act"),
        inputs=[AssetRef(uri="/in")],
        outputs=[AssetRef(uri="/out")],
        upstream_node_ids=["u"],
        error=Error(error_class="Timeout", detail="d"),
        attributes={"k": "v"},
        **dict(list(ids.items())[:keep]),
    )
    event.time.FromNanoseconds(10**18)
    event.duration.FromNanoseconds(10**9)
    return event


def test_mapping_puts_each_key_where_the_table_says() -> None:
    """Every key the mapping writes is in the table at that place, and every table place is used."""
    seen: dict[Where, set[str]] = {w: set() for w in Where}
    for scope in (1, 2, 3, 4):
        for state in (2, 4, 5):
            event = _full(scope, state)
            seen[Where.SPAN] |= set(otel.span_start(event).attributes)
            if state in c.TERMINAL_STATES:
                seen[Where.SPAN] |= set(otel.span_end(event).attributes)
            seen[Where.SPAN_EVENT] |= set(otel.span_event(event).attributes)
            seen[Where.LOG_RECORD] |= set(otel.log_record(event).attributes)
            for point in otel.metric_points(event):
                seen[Where.METRIC_LABEL] |= set(point.labels)
    heartbeat = _full(4, 2)
    heartbeat.heartbeat = True  # heartbeats are log records only (the emitter adds no span event)
    seen[Where.LOG_RECORD] |= set(otel.log_record(heartbeat).attributes)
    assert otel.log_record(heartbeat).event_name == c.HEARTBEAT_EVENT_NAME
    assert otel.metric_points(heartbeat) == []
    extra = c.ATTR_PREFIX_EXTRA + "k"
    assert extra in seen[Where.LOG_RECORD] and extra in seen[Where.SPAN_EVENT]
    for where in (Where.SPAN, Where.SPAN_EVENT, Where.LOG_RECORD, Where.METRIC_LABEL):
        declared = {a.key for a in c.ATTRIBUTES if where in a.where}
        if where is Where.METRIC_LABEL:
            declared.discard(Key.METRIC_OVERFLOW)  # only the emitter's cap writes it
        assert seen[where] - {extra} == declared, where
