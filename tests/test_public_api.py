"""The package's public surface is exactly the intended one, and documented."""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import version

import pytest

import vfo_otel

INTENDED = {
    "AssetHandle",
    "AssetRef",
    "Command",
    "Emitter",
    "EmitterStats",
    "Error",
    "NodeHandle",
    "NodeSpec",
    "PipelineHandle",
    "RunEvent",
    "RunHandle",
    "Scope",
    "State",
    "__version__",
}


def test_all_is_exactly_the_intended_surface() -> None:
    assert set(vfo_otel.__all__) == INTENDED
    assert len(vfo_otel.__all__) == len(INTENDED), "duplicates in __all__"


def test_version_is_the_distribution_version() -> None:
    assert vfo_otel.__version__ == version("vfo-otel")


@pytest.mark.parametrize("name", sorted(INTENDED - {"__version__"}))
def test_public_name_is_importable_and_documented(name: str) -> None:
    obj = getattr(vfo_otel, name)
    namespace: dict[str, object] = {}
    exec(f"from vfo_otel import {name}", namespace)
    assert namespace[name] is obj
    descriptor = getattr(obj, "DESCRIPTOR", None)
    if descriptor is not None:
        # Generated protobuf types: documented in proto/vfo/events/v1/events.proto and docs/event-model.md.
        assert descriptor.full_name.startswith("vfo.events.v1.")
        assert inspect.getdoc(obj)
    else:
        assert obj.__module__.startswith("vfo_otel.")
        assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring of its own"


# Each public subpackage's surface, pinned: a name added or removed is a decision, made here.
SUBPACKAGE_SURFACES = {
    "vfo_otel.contract": {
        "ABANDONED", "CANCELLED", "CHILD_FAILED", "HEARTBEAT_LOST", "RUN_ID_REUSED", "child_failed_error",
        "ACTIVE_STATES", "AssetRef", "Command", "EntityKey", "Error", "Limits", "Origin", "RunEvent",
        "RunEventBatch", "SCOPE_BY_NAME", "SCOPE_NAMES", "STATES", "STATE_BY_NAME", "STATE_NAMES",
        "Scope", "State", "TERMINAL_STATES", "check_event", "clean_text", "entity_key", "parent_key",
        "scope_name", "span_id_for", "state_label", "state_name", "state_number", "trace_id_for_run",
    },
    "vfo_otel.otel": {
        "AttrValue", "DecodeError", "EntityParts", "EventFields", "LogRecordData", "MetricPoint",
        "SpanEventData", "SpanStartData", "SpanStatusData", "asset_ref_fields", "entity_attributes",
        "entity_parts", "event_from_attributes", "events_from_log_record", "events_from_span",
        "is_vfo_log_record", "log_record", "log_record_values", "metric_parts", "metric_points",
        "metric_updates", "normalize", "otlp_attributes_to_dict", "refs_from_json", "span_end",
        "span_end_values", "span_event", "span_start", "span_start_values", "transition_attributes",
    },
    "vfo_otel.emitter": {
        "AssetHandle", "Emitter", "EmitterStats", "EventSink", "MAX_EXTRA_ATTRIBUTES", "NodeHandle",
        "NodeSpec", "PipelineHandle", "RunHandle", "Terminated", "VERSION", "asset_ref", "build_resource",
        "error_class_of", "install_sigterm_handler",
    },
    "vfo_otel.receiver": {
        "ActiveAttempt", "AttemptKey", "DEFAULT_ASSET_PAGE_SIZE", "DEFAULT_GRPC_ADDRESS",
        "DEFAULT_HTTP_ADDRESS", "DEFAULT_OTLP_HTTP_ADDRESS", "create_otlp_http_app", "start_otlp_http",
        "parse_logs_json", "parse_traces_json", "parse_metrics_json", "Decoded", "EventRecord",
        "EventStore", "Fold", "GC_THRESHOLD",
        "HEARTBEAT_LOST", "Internal", "Invalid", "LIVENESS_SOURCE_ID", "MAX_ASSET_PAGE_SIZE", "NotFound",
        "Overloaded",
        "Receiver", "ReceiverConfig", "ReceiverError", "ReceiverServer", "ReceiverStats", "ReceiverThread",
        "RequestError", "RunFold", "SilentEntity", "resolve_state", "silent_entity_event",
        "SCHEMA_VERSION", "Selection", "SqliteStore", "Store", "StoreError",
        "TlsFiles", "open_store", "run_fold_of",
        "Unauthenticated", "asset_page_token", "create_http_app", "create_server", "decode_logs",
        "decode_traces", "derive_state", "grpc_code", "heartbeat_lost_event", "http_status",
        "log_record_event", "make_selection", "parse_asset_page_token", "parse_logs", "parse_traces",
        "record_of", "snapshot_of", "span_events", "split_address", "start_http", "tune_gc",
    },
}


@pytest.mark.parametrize("module", sorted(SUBPACKAGE_SURFACES))
def test_subpackage_all_is_exactly_its_pinned_surface(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == SUBPACKAGE_SURFACES[module]
    assert len(mod.__all__) == len(SUBPACKAGE_SURFACES[module]), "duplicates in __all__"
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but not defined"
