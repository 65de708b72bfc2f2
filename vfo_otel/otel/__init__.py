"""The reference mapping between a ``vfo.events.v1.RunEvent`` and OpenTelemetry, both directions.

Pure: no I/O, no clocks, no SDK state. It is the project's semantic conventions in code
(docs/conventions.md) and the specification every fast path is proven equal to: the emitter
sends what the forward mapping gives (it calls these functions), and the receiver's one-pass
OTLP decoder is tested equal to the reverse mapping.

Forward (RunEvent -> OTel): :func:`span_start`, :func:`span_event`, :func:`span_end`,
:func:`log_record`, :func:`metric_points`; the same on plain values
(:class:`EventFields`): :func:`transition_attributes`, :func:`entity_parts`,
:func:`span_start_values`, :func:`span_end_values`, :func:`log_record_values`,
:func:`metric_parts`, :func:`metric_updates`.

Reverse (OTLP protobuf -> RunEvent): :func:`events_from_log_record`,
:func:`events_from_span`, :func:`event_from_attributes`, :func:`otlp_attributes_to_dict`,
:func:`is_vfo_log_record`; errors are :class:`DecodeError`.
"""

from vfo_otel.otel._fields import EventFields
from vfo_otel.otel._forward import (
    AttrValue,
    EntityParts,
    LogRecordData,
    MetricPoint,
    SpanEventData,
    SpanStartData,
    SpanStatusData,
    entity_attributes,
    entity_parts,
    log_record,
    log_record_values,
    metric_parts,
    metric_points,
    metric_updates,
    normalize,
    span_end,
    span_end_values,
    span_event,
    span_start,
    span_start_values,
    transition_attributes,
)
from vfo_otel.otel._reverse import (
    DecodeError,
    asset_ref_fields,
    event_from_attributes,
    events_from_log_record,
    events_from_span,
    is_vfo_log_record,
    otlp_attributes_to_dict,
    refs_from_json,
)

__all__ = [
    "AttrValue",
    "DecodeError",
    "EntityParts",
    "EventFields",
    "LogRecordData",
    "MetricPoint",
    "SpanEventData",
    "SpanStartData",
    "SpanStatusData",
    "asset_ref_fields",
    "entity_attributes",
    "entity_parts",
    "event_from_attributes",
    "events_from_log_record",
    "events_from_span",
    "is_vfo_log_record",
    "log_record",
    "log_record_values",
    "metric_parts",
    "metric_points",
    "metric_updates",
    "normalize",
    "otlp_attributes_to_dict",
    "refs_from_json",
    "span_end",
    "span_end_values",
    "span_event",
    "span_start",
    "span_start_values",
    "transition_attributes",
]
