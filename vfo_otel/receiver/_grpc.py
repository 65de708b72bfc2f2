"""The gRPC side of the receiver: OTLP TraceService/LogsService/MetricsService, SnapshotService, health.

Thin adapters over :class:`vfo_otel.receiver.Receiver`; errors are mapped once, here,
with the table in :mod:`vfo_otel.receiver._errors`. OTLP behaviour follows the OTLP specification:

* malformed vfo records are rejected through ``partial_success`` (count + message) and
  the rest of the batch is kept; LogsService and TraceService take the raw request bytes
  (:class:`_RawOtlp`), so a record with invalid UTF-8 is rejected alone instead of failing
  the whole request in the protobuf parser;
* overload is ``UNAVAILABLE`` with a ``google.rpc.RetryInfo`` both in the standard
  ``grpc-status-details-bin`` status details and in the ``google.rpc.retryinfo-bin``
  trailer (read by the OTel Python exporter);
* an export is answered only after its events are committed to the store; an unreachable
  store is ``UNAVAILABLE`` with ``RetryInfo`` too (for reads as well), so the SDK retries;
* requests over ``max_request_bytes`` are refused by gRPC with RESOURCE_EXHAUSTED;
* MetricsService accepts and counts metrics without folding them (so an SDK pointed
  straight at the receiver does not log export errors).

Thread/async contract: runs on one asyncio loop (grpc.aio).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2_grpc as db_grpc
from vfo_otel.contract import Limits
from vfo_otel.receiver._decode import Decoded, RequestError, parse_logs, parse_traces
from vfo_otel.receiver._errors import (
    Invalid,
    Overloaded,
    ReceiverError,
    Unauthenticated,
    grpc_code,
    internal_error,
)
from vfo_otel.receiver._selection import Selection
from vfo_otel.receiver._service import Receiver, make_selection
from vfo_otel.receiver._store import StoreError
from vfo_otel.receiver._telemetry import refusal_reason

__all__ = ["create_server"]


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: ReceiverError) -> None:
    code = grpc_code(exc)
    if isinstance(exc, Overloaded):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(exc.retry_after_s * 1e9))
        info = error_details_pb2.RetryInfo(retry_delay=delay)
        status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=str(exc))
        status.details.add().Pack(info)
        rich = rpc_status.to_status(status)
        trailer = (*rich.trailing_metadata, ("google.rpc.retryinfo-bin", info.SerializeToString()))
        await context.abort(code, str(exc), trailer)
    await context.abort(code, str(exc))


class _Auth:
    """Bearer-token check on gRPC metadata (constant-time comparison)."""

    def __init__(self, token: str | None) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

    def check(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self._expected is None:
            return
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                got = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(got, self._expected):
                    return
        raise Unauthenticated("missing or invalid bearer token")


class _Otlp:
    def __init__(self, receiver: Receiver, auth: _Auth) -> None:
        self.receiver = receiver
        self.auth = auth

    async def export(
        self, context: grpc.aio.ServicerContext[Any, Any], decode: Callable[[], Decoded], signal: str
    ) -> Decoded | None:
        try:
            self.auth.check(context)
            try:
                decoded = decode()
            except RequestError as exc:
                raise Invalid(f"malformed OTLP request: {exc}") from exc
            self.receiver.stats.rejected += decoded.rejected
            self.receiver.stats.ignored += decoded.ignored
            await self.receiver.ingest(decoded.records, signal)
            return decoded
        except ReceiverError as exc:
            self.receiver.telemetry.refused("grpc", refusal_reason(exc))
            await _abort(context, exc)
            return None
        except StoreError as exc:  # retryable for the sender: nothing of the batch was acknowledged
            self.receiver.telemetry.refused("grpc", "store_unavailable")
            await _abort(context, Overloaded(f"event store unavailable: {exc}", retry_after_s=1.0))
            return None
        except Exception as exc:
            self.receiver.telemetry.refused("grpc", "internal")
            await _abort(context, _internal(self.receiver, exc, f"OTLP {signal} export"))
            return None


class _RawOtlp:
    """OTLP ``LogsService/Export`` and ``TraceService/Export`` on the raw request bytes.

    Registered under the standard service and method names (stock exporters talk to them
    unchanged) with no request deserializer, so a request that protobuf refuses as a whole
    (invalid UTF-8 in one record) is split and only its bad records are rejected
    (:func:`vfo_otel.receiver.parse_logs`).
    """

    LOGS = "opentelemetry.proto.collector.logs.v1.LogsService"
    TRACES = "opentelemetry.proto.collector.trace.v1.TraceService"

    def __init__(self, otlp: _Otlp) -> None:
        self._otlp = otlp

    async def _export(
        self,
        request: bytes,
        context: grpc.aio.ServicerContext[Any, Any],
        signal: str,
        parse: Callable[[bytes, Limits], Decoded],
        response: Any,
        rejected_field: str,
    ) -> Any:
        """Ingest one request; answer with OTLP partial_success when records were rejected."""
        limits = self._otlp.receiver.config.limits
        started = time.perf_counter()
        decoded = await self._otlp.export(context, lambda: parse(request, limits), signal)
        self._otlp.receiver.telemetry.export_answered("grpc", signal, time.perf_counter() - started)
        resp = response()
        if decoded is not None and decoded.rejected:
            setattr(resp.partial_success, rejected_field, decoded.rejected)
            resp.partial_success.error_message = decoded.message()
        return resp

    async def export_logs(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        resp: logs_service_pb2.ExportLogsServiceResponse = await self._export(
            request,
            context,
            "logs",
            parse_logs,
            logs_service_pb2.ExportLogsServiceResponse,
            "rejected_log_records",
        )
        return resp

    async def export_traces(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        resp: trace_service_pb2.ExportTraceServiceResponse = await self._export(
            request,
            context,
            "traces",
            parse_traces,
            trace_service_pb2.ExportTraceServiceResponse,
            "rejected_spans",
        )
        return resp

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def export(behavior: Any, response: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                behavior, request_deserializer=None, response_serializer=response.SerializeToString
            )

        return [
            grpc.method_handlers_generic_handler(
                self.LOGS, {"Export": export(self.export_logs, logs_service_pb2.ExportLogsServiceResponse)}
            ),
            grpc.method_handlers_generic_handler(
                self.TRACES,
                {"Export": export(self.export_traces, trace_service_pb2.ExportTraceServiceResponse)},
            ),
        ]


class MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    """OTLP MetricsService: accepted and counted, not folded (metrics belong in Prometheus/Mimir)."""

    def __init__(self, otlp: _Otlp) -> None:
        self._otlp = otlp

    async def Export(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        try:
            self._otlp.auth.check(context)
        except ReceiverError as exc:
            await _abort(context, exc)
        n = 0
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind is not None:
                        n += len(getattr(m, kind).data_points)
        self._otlp.receiver.stats.metrics_points_ignored += n
        return metrics_service_pb2.ExportMetricsServiceResponse()


class SnapshotServicer(db_grpc.SnapshotServiceServicer):
    """vfo.dashboard.v1.SnapshotService over the receiver."""

    def __init__(self, receiver: Receiver, auth: _Auth) -> None:
        self._receiver = receiver
        self._auth = auth

    async def _call(
        self, context: grpc.aio.ServicerContext[Any, Any], fn: Callable[[], Awaitable[Any]]
    ) -> Any:
        try:
            self._auth.check(context)
            return await fn()
        except ReceiverError as exc:
            await _abort(context, exc)
        except Exception as exc:
            await _abort(context, _internal(self._receiver, exc, "SnapshotService"))

    async def ListRuns(
        self, request: db.ListRunsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> db.ListRunsResponse:
        resp: db.ListRunsResponse = await self._call(
            context, lambda: self._receiver.list_runs(request.page_size, request.page_token, request.state)
        )
        return resp

    async def GetSnapshot(
        self, request: db.GetSnapshotRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> db.GetSnapshotResponse:
        snap = await self._call(
            context,
            lambda: self._receiver.snapshot(request.run_id, _selection(request)),
        )
        return db.GetSnapshotResponse(snapshot=snap)

    async def WatchSnapshot(
        self, request: db.WatchSnapshotRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[db.WatchSnapshotResponse]:
        try:
            self._auth.check(context)
            selection = _selection(request)
            async for snap in self._receiver.watch(request.run_id, selection, request.after_revision):
                yield db.WatchSnapshotResponse(snapshot=snap)
        except ReceiverError as exc:
            await _abort(context, exc)
        except Exception as exc:
            await _abort(context, _internal(self._receiver, exc, "SnapshotService/WatchSnapshot"))


def _internal(receiver: Receiver, exc: Exception, where: str) -> ReceiverError:
    def count() -> None:
        receiver.stats.internal_errors += 1

    return internal_error(exc, where, count)


def _selection(request: db.GetSnapshotRequest | db.WatchSnapshotRequest) -> Selection:
    return make_selection(
        request.pipeline_id, request.asset_id, request.asset_page_size, request.asset_page_token
    )


_BIND_HINT = (
    " (address in use or not local? Another receiver may be running; choose other ports with"
    " --grpc-address/--http-address, e.g. 127.0.0.1:0 for any free port)"
)


async def create_server(
    receiver: Receiver, address: str | None = None, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int]:
    """Build and bind (not start) the gRPC server; runs on the event loop.

    Args:
        receiver: the started or not-yet-started receiver core.
        address: ``host:port`` (default: ``receiver.config.grpc_address``); port 0 picks a free port.
        credentials: TLS server credentials, or None for plaintext.

    Returns:
        (server, bound port). Call ``await server.start()``; stop with ``await server.stop(grace)``.

    Raises:
        RuntimeError: the address cannot be bound.
    """
    cfg = receiver.config
    addr = address or cfg.grpc_address
    size = cfg.max_request_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", size),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ]
    )
    auth = _Auth(cfg.auth_token.get_secret_value() if cfg.auth_token else None)
    otlp = _Otlp(receiver, auth)
    server.add_generic_rpc_handlers(_RawOtlp(otlp).handlers())
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsServicer(otlp), server)
    db_grpc.add_SnapshotServiceServicer_to_server(SnapshotServicer(receiver, auth), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (
        "",
        "opentelemetry.proto.collector.logs.v1.LogsService",
        "opentelemetry.proto.collector.trace.v1.TraceService",
        "vfo.dashboard.v1.SnapshotService",
    ):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    try:
        port = server.add_secure_port(addr, credentials) if credentials else server.add_insecure_port(addr)
    except RuntimeError as exc:
        raise RuntimeError(f"cannot bind gRPC server to {addr}{_BIND_HINT}") from exc
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC server to {addr}{_BIND_HINT}")
    return server, port
