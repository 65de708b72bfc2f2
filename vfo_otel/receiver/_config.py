"""Receiver configuration (pydantic): validated once, at start-up; bad values raise ValueError.

Defaults are the embedded setup: loopback only, SQLite file in the working directory.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from vfo_otel.contract import Limits

__all__ = [
    "DEFAULT_GRPC_ADDRESS",
    "DEFAULT_HTTP_ADDRESS",
    "DEFAULT_OTLP_HTTP_ADDRESS",
    "ReceiverConfig",
    "split_address",
]

#: OTLP gRPC (TraceService, LogsService, MetricsService) + SnapshotService + health: the standard OTLP port.
DEFAULT_GRPC_ADDRESS = "127.0.0.1:4317"
#: HTTP JSON API, live stream (SSE) and dashboard.
DEFAULT_HTTP_ADDRESS = "127.0.0.1:8686"
#: OTLP/HTTP ingest (POST /v1/logs, /v1/traces, /v1/metrics): the standard OTLP/HTTP port. Off
#: unless asked for (``otlp_http_address``, ``serve --otlp-http-address``): a local collector
#: usually holds it already.
DEFAULT_OTLP_HTTP_ADDRESS = "127.0.0.1:4318"


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port). Raises ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"address {address!r} is not HOST:PORT")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address {address!r} has no valid port (0-65535)")
    return host.strip("[]"), int(port)


class ReceiverConfig(BaseModel):
    """Configuration of ``vfo-otel serve``.

    Attributes:
        grpc_address: bind address of the gRPC server (port 0: any free port).
        http_address: bind address of the HTTP server; None disables HTTP.
        otlp_http_address: bind address of the OTLP/HTTP ingest server (POST ``/v1/logs``,
            ``/v1/traces``, ``/v1/metrics``); None (the default) disables it.
        store_path: the event store: a SQLite file (":memory:" keeps nothing across restarts),
            or a ``postgresql://`` URL (a database shared by any number of receivers).
        store_pool_size: connections to a PostgreSQL store (plus one for notifications).
        fold_cache_events: the fold cache holds runs of at most this many events in all
            (about 0.5 KB of memory each; default 200,000: ~100 MB); cold runs are evicted,
            the most recently used run and watched runs stay.
        fold_cache_runs: and at most this many runs.
        fsync: fsync every commit (survives power loss, slower).
        retention_runs: keep at most this many runs (newest by last event); None: no limit.
        retention_days: drop runs not updated for this many days; None: no limit.
        max_request_bytes: largest OTLP request accepted (bytes); larger is RESOURCE_EXHAUSTED.
        max_pending_events: events being stored at once before answering UNAVAILABLE.
        auth_token: bearer token required on ingest and read APIs when set.
        cors_origins: origins allowed to read the HTTP API from a browser (none by default).
        limits: per-event limits (id length, text truncation).
        stale_after_s: a running or waiting node attempt with no event (heartbeats included)
            for longer than this is flagged ``stale`` in snapshots (default 120 s: four missed
            30 s heartbeats).
        openlineage_url: send OpenLineage RunEvents of node attempts and runs to this HTTP
            endpoint (``POST <url>/api/v1/lineage``); None (default): off.
        openlineage_file: append OpenLineage RunEvents to this file (JSON lines); None: off.
        openlineage_namespace: the OpenLineage job namespace (default ``vfo``).
        heartbeat_lost_after_s: when set, a running or waiting attempt silent for longer than
            this is ended by the receiver with a synthetic ``failed`` / ``HeartbeatLost``
            event (None: policy off, the default). Must be >= ``stale_after_s``.
    """

    model_config = ConfigDict(extra="forbid")

    grpc_address: str = DEFAULT_GRPC_ADDRESS
    http_address: str | None = DEFAULT_HTTP_ADDRESS
    otlp_http_address: str | None = None
    store_path: str = "vfo-otel.sqlite3"
    store_pool_size: int = Field(4, ge=1, le=100)
    fold_cache_events: int = Field(200_000, ge=1)
    fold_cache_runs: int = Field(1000, ge=1)
    fsync: bool = False
    retention_runs: int | None = Field(1000, ge=1)
    retention_days: float | None = Field(None, gt=0)
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_pending_events: int = Field(200_000, ge=1)
    auth_token: SecretStr | None = None
    cors_origins: list[str] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    stale_after_s: float = Field(120.0, gt=0)
    heartbeat_lost_after_s: float | None = Field(None, gt=0)
    openlineage_url: str | None = None
    openlineage_file: str | None = None
    openlineage_namespace: str = Field("vfo", min_length=1)

    @field_validator("grpc_address", "http_address", "otlp_http_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            split_address(value)
        return value

    @model_validator(mode="after")
    def _liveness(self) -> ReceiverConfig:
        lost = self.heartbeat_lost_after_s
        if lost is not None and lost < self.stale_after_s:
            raise ValueError(
                "heartbeat_lost_after_s must be >= stale_after_s (a node is stale before it is lost)"
            )
        return self

    @property
    def liveness_interval_s(self) -> float:
        """How often the receiver looks for stale attempts: min(stale_after_s / 4, 5 s)."""
        return min(self.stale_after_s / 4, 5.0)
