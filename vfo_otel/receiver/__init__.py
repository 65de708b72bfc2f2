"""The receiver: OTLP in, events stored, folded into a versioned dashboard snapshot, served live.

Core (pure, sans-I/O): the OTLP decoder (:func:`parse_logs`, :func:`parse_traces`; its
one-pass fast path proven equal to :mod:`vfo_otel.otel`) produces :class:`EventRecord`, the
one hand-off type; the store (:class:`Store`: :class:`SqliteStore` over :class:`EventStore`, or
PostgreSQL, chosen by :func:`open_store`) writes records and is the source of truth; the fold
(:class:`Fold`, :class:`RunFold`) applies them and builds ``vfo.dashboard.v1.DashboardSnapshot``
messages for a :class:`Selection`.

Service and edges: :class:`Receiver` (store + bounded cache of folds built on demand + snapshot
cache + watchers + liveness + retention, on one event loop), the thin gRPC
(:func:`create_server`) and HTTP (:func:`start_http`) adapters, OTLP/HTTP ingest
(:func:`start_otlp_http`; OTLP/JSON through :func:`parse_logs_json` /
:func:`parse_traces_json`), :class:`ReceiverThread` (the servers in a background
thread), :class:`ReceiverConfig` and the errors, mapped once to gRPC codes and HTTP statuses.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below are imported on first use (PEP 562): importing the package
    # for its configuration (the CLI does) does not load aiohttp, grpc.aio or a database driver
    from vfo_otel.receiver._config import (
        DEFAULT_GRPC_ADDRESS,
        DEFAULT_HTTP_ADDRESS,
        DEFAULT_OTLP_HTTP_ADDRESS,
        ReceiverConfig,
        split_address,
    )
    from vfo_otel.receiver._decode import (
        Decoded,
        RequestError,
        decode_logs,
        decode_traces,
        parse_logs,
        parse_traces,
    )
    from vfo_otel.receiver._errors import (
        Internal,
        Invalid,
        NotFound,
        Overloaded,
        ReceiverError,
        Unauthenticated,
        grpc_code,
        http_status,
    )
    from vfo_otel.receiver._fastdecode import log_record_event, span_events
    from vfo_otel.receiver._fold import (
        SCHEMA_VERSION,
        ActiveAttempt,
        AttemptKey,
        Fold,
        RunFold,
        SilentEntity,
        derive_state,
        resolve_state,
        snapshot_of,
    )
    from vfo_otel.receiver._grpc import create_server
    from vfo_otel.receiver._http import create_http_app, start_http
    from vfo_otel.receiver._otlp_http import create_otlp_http_app, start_otlp_http
    from vfo_otel.receiver._otlp_json import parse_logs_json, parse_metrics_json, parse_traces_json
    from vfo_otel.receiver._record import EventRecord, record_of
    from vfo_otel.receiver._selection import (
        DEFAULT_ASSET_PAGE_SIZE,
        MAX_ASSET_PAGE_SIZE,
        Selection,
        asset_page_token,
        parse_asset_page_token,
    )
    from vfo_otel.receiver._server import GC_THRESHOLD, ReceiverServer, ReceiverThread, TlsFiles, tune_gc
    from vfo_otel.receiver._service import (
        HEARTBEAT_LOST,
        LIVENESS_SOURCE_ID,
        Receiver,
        ReceiverStats,
        heartbeat_lost_event,
        make_selection,
        run_fold_of,
        silent_entity_event,
    )
    from vfo_otel.receiver._sqlite import EventStore, SqliteStore
    from vfo_otel.receiver._store import Store, StoreError, open_store

#: public name -> the private module that defines it
_WHERE: dict[str, str] = {
    "DEFAULT_GRPC_ADDRESS": "vfo_otel.receiver._config",
    "DEFAULT_HTTP_ADDRESS": "vfo_otel.receiver._config",
    "DEFAULT_OTLP_HTTP_ADDRESS": "vfo_otel.receiver._config",
    "ReceiverConfig": "vfo_otel.receiver._config",
    "split_address": "vfo_otel.receiver._config",
    "Decoded": "vfo_otel.receiver._decode",
    "RequestError": "vfo_otel.receiver._decode",
    "decode_logs": "vfo_otel.receiver._decode",
    "decode_traces": "vfo_otel.receiver._decode",
    "parse_logs": "vfo_otel.receiver._decode",
    "parse_traces": "vfo_otel.receiver._decode",
    "Internal": "vfo_otel.receiver._errors",
    "Invalid": "vfo_otel.receiver._errors",
    "NotFound": "vfo_otel.receiver._errors",
    "Overloaded": "vfo_otel.receiver._errors",
    "ReceiverError": "vfo_otel.receiver._errors",
    "Unauthenticated": "vfo_otel.receiver._errors",
    "grpc_code": "vfo_otel.receiver._errors",
    "http_status": "vfo_otel.receiver._errors",
    "log_record_event": "vfo_otel.receiver._fastdecode",
    "span_events": "vfo_otel.receiver._fastdecode",
    "SCHEMA_VERSION": "vfo_otel.receiver._fold",
    "ActiveAttempt": "vfo_otel.receiver._fold",
    "AttemptKey": "vfo_otel.receiver._fold",
    "Fold": "vfo_otel.receiver._fold",
    "RunFold": "vfo_otel.receiver._fold",
    "SilentEntity": "vfo_otel.receiver._fold",
    "derive_state": "vfo_otel.receiver._fold",
    "resolve_state": "vfo_otel.receiver._fold",
    "snapshot_of": "vfo_otel.receiver._fold",
    "create_server": "vfo_otel.receiver._grpc",
    "create_http_app": "vfo_otel.receiver._http",
    "start_http": "vfo_otel.receiver._http",
    "create_otlp_http_app": "vfo_otel.receiver._otlp_http",
    "start_otlp_http": "vfo_otel.receiver._otlp_http",
    "parse_logs_json": "vfo_otel.receiver._otlp_json",
    "parse_metrics_json": "vfo_otel.receiver._otlp_json",
    "parse_traces_json": "vfo_otel.receiver._otlp_json",
    "EventRecord": "vfo_otel.receiver._record",
    "record_of": "vfo_otel.receiver._record",
    "DEFAULT_ASSET_PAGE_SIZE": "vfo_otel.receiver._selection",
    "MAX_ASSET_PAGE_SIZE": "vfo_otel.receiver._selection",
    "Selection": "vfo_otel.receiver._selection",
    "asset_page_token": "vfo_otel.receiver._selection",
    "parse_asset_page_token": "vfo_otel.receiver._selection",
    "GC_THRESHOLD": "vfo_otel.receiver._server",
    "ReceiverServer": "vfo_otel.receiver._server",
    "ReceiverThread": "vfo_otel.receiver._server",
    "TlsFiles": "vfo_otel.receiver._server",
    "tune_gc": "vfo_otel.receiver._server",
    "HEARTBEAT_LOST": "vfo_otel.receiver._service",
    "LIVENESS_SOURCE_ID": "vfo_otel.receiver._service",
    "Receiver": "vfo_otel.receiver._service",
    "ReceiverStats": "vfo_otel.receiver._service",
    "heartbeat_lost_event": "vfo_otel.receiver._service",
    "make_selection": "vfo_otel.receiver._service",
    "run_fold_of": "vfo_otel.receiver._service",
    "silent_entity_event": "vfo_otel.receiver._service",
    "EventStore": "vfo_otel.receiver._sqlite",
    "SqliteStore": "vfo_otel.receiver._sqlite",
    "Store": "vfo_otel.receiver._store",
    "StoreError": "vfo_otel.receiver._store",
    "open_store": "vfo_otel.receiver._store",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))

__all__ = [
    "DEFAULT_ASSET_PAGE_SIZE",
    "DEFAULT_GRPC_ADDRESS",
    "DEFAULT_HTTP_ADDRESS",
    "DEFAULT_OTLP_HTTP_ADDRESS",
    "GC_THRESHOLD",
    "HEARTBEAT_LOST",
    "LIVENESS_SOURCE_ID",
    "MAX_ASSET_PAGE_SIZE",
    "SCHEMA_VERSION",
    "ActiveAttempt",
    "AttemptKey",
    "Decoded",
    "EventRecord",
    "EventStore",
    "Fold",
    "Internal",
    "Invalid",
    "NotFound",
    "Overloaded",
    "Receiver",
    "ReceiverConfig",
    "ReceiverError",
    "ReceiverServer",
    "ReceiverStats",
    "ReceiverThread",
    "RequestError",
    "RunFold",
    "Selection",
    "SilentEntity",
    "SqliteStore",
    "Store",
    "StoreError",
    "TlsFiles",
    "Unauthenticated",
    "asset_page_token",
    "create_http_app",
    "create_otlp_http_app",
    "create_server",
    "decode_logs",
    "decode_traces",
    "derive_state",
    "grpc_code",
    "heartbeat_lost_event",
    "http_status",
    "log_record_event",
    "make_selection",
    "open_store",
    "parse_asset_page_token",
    "parse_logs",
    "parse_logs_json",
    "parse_metrics_json",
    "parse_traces",
    "parse_traces_json",
    "record_of",
    "resolve_state",
    "run_fold_of",
    "silent_entity_event",
    "snapshot_of",
    "span_events",
    "split_address",
    "start_http",
    "start_otlp_http",
    "tune_gc",
]
