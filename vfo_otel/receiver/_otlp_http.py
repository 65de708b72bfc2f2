"""OTLP/HTTP ingest (aiohttp): ``POST /v1/logs``, ``/v1/traces``, ``/v1/metrics`` on their own port.

The OTLP specification's HTTP transport, with the gRPC servicers' semantics (:mod:`._grpc`):

* bodies are ``application/x-protobuf`` or ``application/json`` (OTLP/JSON,
  :mod:`._otlp_json`), plain or ``Content-Encoding: gzip``; any other type is ``415``;
* the body is read up to ``max_request_bytes``, **after** decompression too (gzip is
  inflated here, with the stdlib, in bounded steps, so a zip bomb costs at most the limit):
  over it, ``413``, and nothing is stored;
* the answer comes only after the export's new events are committed to the store
  (:meth:`Receiver.ingest`); it is the ``Export*ServiceResponse`` in the request's encoding,
  with ``partial_success`` (count and message) when records were rejected;
* errors are a ``google.rpc.Status`` in the request's encoding, with the HTTP status of the
  one error table (:mod:`._errors`): malformed body ``400``, missing/wrong bearer token
  ``401``, overload or a failed store write ``503`` with ``Retry-After`` (seconds) and a
  ``google.rpc.RetryInfo`` detail;
* metrics are accepted and counted (``metrics_points_ignored``), never folded.

Why a port of its own (``ReceiverConfig.otlp_http_address``, ``serve --otlp-http-address``;
4318 is OTLP/HTTP's standard port): the dashboard's HTTP API is read-only with its own CORS
and token rules, and an ingest listener is its own concern, as in the collector's OTLP receiver.

Thread/async contract: runs on the receiver's event loop.
"""

from __future__ import annotations

import hmac
import math
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import duration_pb2, json_format
from google.protobuf.message import DecodeError as ProtoDecodeError
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from vfo_otel.contract import Limits
from vfo_otel.receiver._bind import serve_app
from vfo_otel.receiver._decode import Decoded, RequestError, parse_logs, parse_traces
from vfo_otel.receiver._errors import (
    Invalid,
    Overloaded,
    ReceiverError,
    Unauthenticated,
    grpc_code,
    http_status,
    internal_error,
)
from vfo_otel.receiver._otlp_json import parse_logs_json, parse_metrics_json, parse_traces_json
from vfo_otel.receiver._service import Receiver
from vfo_otel.receiver._sqlite import StoreError
from vfo_otel.receiver._telemetry import refusal_reason

__all__ = ["create_otlp_http_app", "start_otlp_http"]

_RECEIVER = web.AppKey("receiver", Receiver)
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_CHUNK_BYTES = 64 * 1024
_PREFLIGHT_MAX_AGE_S = 600


class _HttpOnly(Exception):
    """An OTLP/HTTP answer with no gRPC twin: 413 (too large) or 415 (unsupported media type)."""

    def __init__(self, status: int, message: str, code: int) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _too_large(limit: int) -> _HttpOnly:
    return _HttpOnly(
        413, f"request body larger than max_request_bytes ({limit} bytes, after decompression)", 8
    )


class _Gunzip:
    """Inflate a gzip stream in steps, refusing output past ``limit`` bytes (stdlib zlib)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._z = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    def feed(self, data: bytes) -> list[bytes]:
        """Inflate the next piece of the body; returns the output (at most the limit in all).

        Raises:
            _HttpOnly: 413, the output would pass the limit. zlib.error: not gzip.
        """
        out: list[bytes] = []
        while data:
            if self._z.eof:  # a further gzip member (RFC 1952 allows several)
                self._z = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            piece = self._z.decompress(data, self._limit - self._size + 1)  # bounded output
            self._size += len(piece)
            if self._size > self._limit:
                raise _too_large(self._limit)
            out.append(piece)
            if self._z.unconsumed_tail:
                data = self._z.unconsumed_tail
            elif self._z.eof:
                data = self._z.unused_data
            else:
                data = b""
        return out

    def close(self) -> None:
        if not self._z.eof:
            raise Invalid("gzip body is truncated")


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body, inflated when gzip, never more than ``limit`` bytes either way."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise _HttpOnly(415, f"unsupported Content-Encoding {encoding!r} (gzip or none)", 3)
    gunzip = _Gunzip(limit) if encoding == "gzip" else None
    parts: list[bytes] = []
    wire = 0
    try:
        async for chunk in request.content.iter_chunked(_CHUNK_BYTES):
            wire += len(chunk)
            if wire > limit:
                raise _too_large(limit)
            parts.extend(gunzip.feed(chunk) if gunzip else (chunk,))
        if gunzip is not None:
            gunzip.close()
    except zlib.error as exc:
        raise Invalid(f"body is not valid gzip: {exc}") from None
    return b"".join(parts)


def _encoding(request: web.Request) -> str:
    ctype = request.content_type.lower()
    if ctype in (PROTOBUF, JSON):
        return ctype
    raise _HttpOnly(415, f"unsupported Content-Type {ctype!r} ({PROTOBUF} or {JSON})", 3)


def _encode(msg: Message, encoding: str) -> bytes:
    if encoding == JSON:
        return json_format.MessageToJson(msg, indent=None).encode()
    return msg.SerializeToString()


def _answer(
    msg: Message, encoding: str, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=_encode(msg, encoding), status=status, content_type=encoding, headers=headers)


def _failure(
    status: int, code: int, message: str, encoding: str, retry_after_s: float | None = None
) -> web.Response:
    """A ``google.rpc.Status`` body (OTLP/HTTP failures), with Retry-After and RetryInfo when retryable."""
    body = status_pb2.Status(code=code, message=message)
    headers = None
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        body.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
    return _answer(body, encoding, status, headers)


def _receiver_failure(exc: ReceiverError, encoding: str) -> web.Response:
    retry = exc.retry_after_s if isinstance(exc, Overloaded) else None
    return _failure(http_status(exc), grpc_code(exc).value[0], str(exc), encoding, retry)


def _authorized(request: web.Request, expected: bytes | None) -> bool:
    """Constant-time bearer-token check on the Authorization header (as gRPC's metadata check)."""
    if expected is None:
        return True
    return hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected)


def _count_points(request: metrics_service_pb2.ExportMetricsServiceRequest) -> int:
    n = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is not None:
                    n += len(getattr(m, kind).data_points)
    return n


_Parse = Callable[[bytes, Limits], Decoded]
_SIGNALS: dict[str, tuple[_Parse, _Parse, type[Message], str]] = {
    "logs": (parse_logs, parse_logs_json, logs_service_pb2.ExportLogsServiceResponse, "rejected_log_records"),
    "traces": (
        parse_traces,
        parse_traces_json,
        trace_service_pb2.ExportTraceServiceResponse,
        "rejected_spans",
    ),
}


def _handler(signal: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def export(request: web.Request) -> web.StreamResponse:
        receiver = request.app[_RECEIVER]
        telemetry = receiver.telemetry
        started = time.perf_counter()
        encoding = JSON
        try:
            encoding = _encoding(request)
            token = receiver.config.auth_token
            expected = f"Bearer {token.get_secret_value()}".encode() if token is not None else None
            if not _authorized(request, expected):
                raise Unauthenticated("missing or invalid bearer token")
            body = await _read_body(request, receiver.config.max_request_bytes)
            if signal == "metrics":
                return _answer(_metrics(receiver, body, encoding), encoding)
            parse_pb, parse_json, response_type, rejected_field = _SIGNALS[signal]
            parse = parse_json if encoding == JSON else parse_pb
            try:
                decoded = parse(body, receiver.config.limits)
            except RequestError as exc:
                raise Invalid(f"malformed OTLP request: {exc}") from exc
            receiver.stats.rejected += decoded.rejected
            receiver.stats.ignored += decoded.ignored
            await receiver.ingest(decoded.records, signal)
            resp = response_type()
            if decoded.rejected:
                partial = resp.partial_success  # type: ignore[attr-defined]
                setattr(partial, rejected_field, decoded.rejected)
                partial.error_message = decoded.message()
            telemetry.export_answered("http", signal, time.perf_counter() - started)
            return _answer(resp, encoding)
        except _HttpOnly as exc:
            telemetry.refused("http", "too_large" if exc.status == 413 else "unsupported_media_type")
            return _failure(exc.status, exc.code, str(exc), encoding)
        except ReceiverError as exc:
            telemetry.refused("http", refusal_reason(exc))
            return _receiver_failure(exc, encoding)
        except StoreError as exc:  # retryable for the sender: nothing of the batch was acknowledged
            telemetry.refused("http", "store_unavailable")
            return _receiver_failure(
                Overloaded(f"event store unavailable: {exc}", retry_after_s=5.0), encoding
            )
        except Exception as exc:  # a fault of the receiver: mapped once, logged, counted
            telemetry.refused("http", "internal")

            def count() -> None:
                receiver.stats.internal_errors += 1

            return _receiver_failure(internal_error(exc, f"OTLP/HTTP {signal} export", count), encoding)

    return export


def _metrics(
    receiver: Receiver, body: bytes, encoding: str
) -> metrics_service_pb2.ExportMetricsServiceResponse:
    if encoding == JSON:
        try:
            request = parse_metrics_json(body)
        except RequestError as exc:
            raise Invalid(f"malformed OTLP request: {exc}") from exc
    else:
        try:
            request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
        except ProtoDecodeError as exc:
            raise Invalid(f"malformed OTLP request: {exc}") from exc
    receiver.stats.metrics_points_ignored += _count_points(request)
    return metrics_service_pb2.ExportMetricsServiceResponse()


@web.middleware
async def _cors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """CORS for browser senders (the OTLP/HTTP JS exporter) from ``cors_origins`` only."""
    origin = request.headers.get("Origin")
    allowed = bool(origin) and origin in request.app[_RECEIVER].config.cors_origins
    if request.method == "OPTIONS":
        if not allowed:
            return web.Response(status=403, text="CORS preflight refused: origin not allowed")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin or "",
                "Access-Control-Allow-Methods": "POST",
                "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
                "Access-Control-Max-Age": str(_PREFLIGHT_MAX_AGE_S),
                "Vary": "Origin",
            },
        )
    resp = await handler(request)
    if allowed:
        resp.headers["Access-Control-Allow-Origin"] = origin or ""
        resp.headers["Vary"] = "Origin"
    return resp


def create_otlp_http_app(receiver: Receiver) -> web.Application:
    """The OTLP/HTTP aiohttp application over a receiver (routes in the module docstring).

    Bodies are read by the handlers themselves, bounded by ``config.max_request_bytes``.
    """
    app = web.Application(middlewares=[_cors], client_max_size=receiver.config.max_request_bytes)
    app[_RECEIVER] = receiver
    for signal in ("logs", "traces", "metrics"):
        app.router.add_post(f"/v1/{signal}", _handler(signal))
    return app


async def start_otlp_http(
    receiver: Receiver, address: str | None = None, ssl_context: Any = None
) -> tuple[web.AppRunner, int]:
    """Bind and start the OTLP/HTTP server; runs on the event loop.

    Args:
        address: ``host:port`` (default: ``receiver.config.otlp_http_address``); port 0 picks a free port.
        ssl_context: an ``ssl.SSLContext`` for HTTPS, or None.

    Returns:
        (runner, bound port). Stop with ``await runner.cleanup()``.

    Raises:
        ValueError: no address given or configured. OSError: the address cannot be bound.
    """
    addr = address or receiver.config.otlp_http_address
    if addr is None:
        raise ValueError("no OTLP/HTTP address configured")
    hint = (
        "a collector or another receiver on it? choose another port with --otlp-http-address,"
        " e.g. 127.0.0.1:0"
    )
    # auto_decompress off: gzip is inflated by _read_body, bounded by max_request_bytes.
    return await serve_app(
        create_otlp_http_app(receiver), addr, ssl_context, "OTLP/HTTP", hint, auto_decompress=False
    )
