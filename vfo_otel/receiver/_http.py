"""The HTTP side of the receiver (aiohttp): JSON API, live stream (SSE), health, dashboard.

Routes (the google.api.http transcoding of ``vfo.dashboard.v1.SnapshotService``; bodies
are the protobuf JSON mapping of the very same messages the gRPC API returns):

* ``GET /v1/runs?page_size=&page_token=&state=`` -> ``ListRunsResponse``
* ``GET /v1/runs/{run_id}/snapshot?pipeline_id=&asset_id=&asset_page_size=&asset_page_token=``
  -> ``DashboardSnapshot``
* ``GET /v1/runs/{run_id}/snapshot:watch?`` the same query ``&after_revision=`` ->
  Server-Sent Events; each event has ``id:`` = revision, ``event: snapshot`` and one
  ``DashboardSnapshot`` as ``data:``. A reconnecting EventSource sends ``Last-Event-ID``
  and resumes after that revision.
* ``GET /v1/stats`` -> receiver counters; ``GET /healthz`` -> ``{"status": "SERVING"}``;
  ``GET /metrics`` -> the receiver's own metrics, Prometheus text (:mod:`._telemetry`).
* ``GET /`` -> the dashboard page (static files shipped in the package).

Errors are ``{"code": <grpc code number>, "message": ...}`` (google.rpc.Status shape)
with the HTTP status from :mod:`vfo_otel.receiver._errors`.

Security: every route is read-only (other methods answer 405) but ``POST /v1/session``.
With a token configured, ``/v1/*`` needs ``Authorization: Bearer <token>`` or, on a GET, the
dashboard's session cookie (HttpOnly, SameSite=Strict), which ``POST /v1/session`` with the
header sets: a browser ``EventSource`` cannot send headers, and a token is never accepted in a
URL. Both are compared in constant time. CORS is closed by default; an allowed origin gets
``Access-Control-Allow-Origin`` and an answer to its preflight ``OPTIONS``.

Thread/async contract: runs on the receiver's event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from google.protobuf import json_format

from vfo_otel.contract import state_number
from vfo_otel.receiver._bind import serve_app
from vfo_otel.receiver._errors import (
    Invalid,
    ReceiverError,
    Unauthenticated,
    grpc_code,
    http_status,
    internal_error,
)
from vfo_otel.receiver._selection import Selection
from vfo_otel.receiver._service import Receiver, make_selection
from vfo_otel.receiver._telemetry import metrics_handler

__all__ = ["create_http_app", "start_http"]

_KEEPALIVE_S = 15.0
_RECEIVER = web.AppKey("receiver", Receiver)


def _conditional(request: web.Request, text: str) -> web.Response:
    """A JSON body with a strong ``ETag`` (a hash of the body); ``304 Not Modified`` without a
    body when the request's ``If-None-Match`` names it (RFC 9110, section 13.1.2): pollers of
    an unchanged snapshot or runs list get a few hundred bytes instead of the whole body."""
    etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    wanted = request.headers.get("If-None-Match")
    if wanted is not None:
        tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
        if etag in tags or "*" in tags:
            return web.Response(status=304, headers=headers)
    return web.Response(text=text, content_type="application/json", headers=headers)


def _error(exc: ReceiverError) -> web.Response:
    body = {"code": grpc_code(exc).value[0], "message": str(exc)}
    return web.json_response(body, status=http_status(exc))


def _int(request: web.Request, name: str, default: int = 0) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise Invalid(f"{name} must be >= 0")
    return value


def _state(raw: str) -> int:
    if not raw:
        return 0
    try:
        return state_number(raw)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _selection(request: web.Request) -> Selection:
    q = request.query
    return make_selection(
        q.get("pipeline_id", ""),
        q.get("asset_id", ""),
        _int(request, "asset_page_size"),
        q.get("asset_page_token", ""),
    )


async def _runs(request: web.Request) -> web.StreamResponse:
    r = request.app[_RECEIVER]
    runs = await r.list_runs(
        _int(request, "page_size"),
        request.query.get("page_token", ""),
        _state(request.query.get("state", "")),
    )
    return _conditional(request, json_format.MessageToJson(runs, indent=None))


async def _snapshot(request: web.Request) -> web.StreamResponse:
    r = request.app[_RECEIVER]
    text = await r.snapshot_json(request.match_info["run_id"], _selection(request))
    return _conditional(request, text)


async def _watch(request: web.Request) -> web.StreamResponse:
    r = request.app[_RECEIVER]
    run_id = request.match_info["run_id"]
    after = _int(request, "after_revision")
    last_id = request.headers.get("Last-Event-ID", "").strip()
    if last_id:  # an EventSource reconnecting resumes after its last revision (an id we sent)
        if not (last_id.isascii() and last_id.isdigit() and len(last_id) <= 20):
            raise Invalid(f"Last-Event-ID must be a snapshot revision (a decimal number), got {last_id!r}")
        after = max(after, int(last_id))
    selection = _selection(request)  # a bad query is a 400, before the stream starts
    await r.check_run(run_id, selection)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    await resp.write(b"retry: 2000\n\n")
    it = r.watch(run_id, selection, after).__aiter__()
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=_KEEPALIVE_S)
            if not done:
                await resp.write(b": keepalive\n\n")
                continue
            snap = pending.result()
            pending = None
            data = await r.snapshot_json(run_id, selection, snap)
            await resp.write(f"id: {snap.revision}\nevent: snapshot\ndata: {data}\n\n".encode())
    except (ReceiverError, ConnectionResetError):
        return resp
    finally:
        if pending is not None:
            pending.cancel()


async def _stats(request: web.Request) -> web.StreamResponse:
    return web.json_response(dataclasses.asdict(request.app[_RECEIVER].stats))


async def _healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "SERVING"})


def _static_dir() -> Any:
    return resources.files("vfo_otel") / "static"


async def _index(request: web.Request) -> web.StreamResponse:
    page = _static_dir() / "index.html"
    if not page.is_file():
        return web.Response(text="vfo-otel receiver: see /v1/runs", content_type="text/plain")
    return web.Response(body=page.read_bytes(), content_type="text/html")


#: The dashboard's session cookie (HttpOnly, SameSite=Strict, path /v1/): set by POST /v1/session.
SESSION_COOKIE = "vfo_otel_session"


def _session_value(token: str) -> str:
    """The session cookie's value: HMAC-SHA256 of a fixed label keyed by the token (so the cookie
    is not the token itself, and changes when the token does)."""
    return hmac.new(token.encode(), b"vfo-otel dashboard session", hashlib.sha256).hexdigest()


def _authorized(request: web.Request, token: str) -> bool:
    """Constant-time check: ``Authorization: Bearer <token>``, or on a GET the dashboard's session
    cookie (a browser EventSource cannot set headers; tokens never go into URLs, which end up
    in logs, histories and Referer headers)."""
    header = request.headers.get("Authorization", "").encode()
    ok = hmac.compare_digest(header, f"Bearer {token}".encode())
    cookie = request.cookies.get(SESSION_COOKIE) if request.method == "GET" else None
    if cookie is not None:
        ok = hmac.compare_digest(cookie.encode(), _session_value(token).encode()) or ok
    return ok


async def _session(request: web.Request) -> web.Response:
    """``POST /v1/session`` (authorized by the Authorization header, like every /v1/ route): set
    the dashboard's session cookie. 204; without a configured token there is nothing to set."""
    resp = web.Response(status=204)
    token = request.app[_RECEIVER].config.auth_token
    if token is not None:
        resp.set_cookie(
            SESSION_COOKIE,
            _session_value(token.get_secret_value()),
            path="/v1/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
    return resp


_PREFLIGHT_MAX_AGE_S = 600


@web.middleware
async def _errors_and_auth(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    r = request.app[_RECEIVER]
    token = r.config.auth_token
    origin = request.headers.get("Origin")
    allowed = bool(origin) and origin in r.config.cors_origins
    if request.method == "OPTIONS":  # CORS preflight: answered for allowed origins only
        if not allowed or not request.path.startswith("/v1/"):
            return web.Response(status=403, text="CORS preflight refused: origin not allowed")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin or "",
                "Access-Control-Allow-Methods": "GET",
                "Access-Control-Allow-Headers": "Authorization, Last-Event-ID, Accept, If-None-Match",
                "Access-Control-Max-Age": str(_PREFLIGHT_MAX_AGE_S),
                "Vary": "Origin",
            },
        )
    try:
        if token is not None and request.path.startswith("/v1/"):
            if not _authorized(request, token.get_secret_value()):
                raise Unauthenticated("missing or invalid bearer token")
        resp = await handler(request)
    except ReceiverError as exc:
        resp = _error(exc)
    except web.HTTPException:  # aiohttp's own answers (404 of an unknown path, 405 ...)
        raise
    except Exception as exc:

        def count() -> None:
            r.stats.internal_errors += 1

        resp = _error(internal_error(exc, f"HTTP {request.method} {request.path}", count))
    return resp


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Before any response's headers go out (streams included): CORS for allowed origins."""
    origin = request.headers.get("Origin")
    if origin and origin in request.app[_RECEIVER].config.cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"


def create_http_app(receiver: Receiver) -> web.Application:
    """The aiohttp application over a receiver (see the module docstring for routes)."""
    app = web.Application(middlewares=[_errors_and_auth], client_max_size=1024 * 1024)
    app[_RECEIVER] = receiver
    app.on_response_prepare.append(_cors_headers)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/v1/runs", _runs)
    app.router.add_get("/v1/runs/{run_id}/snapshot", _snapshot)
    app.router.add_get("/v1/runs/{run_id}/snapshot:watch", _watch)
    app.router.add_get("/v1/stats", _stats)
    app.router.add_post("/v1/session", _session)
    app.router.add_get("/metrics", metrics_handler(receiver))  # Prometheus; open like /healthz
    app.router.add_get("/", _index)
    static = _static_dir()
    if static.is_dir():
        app.router.add_static("/static/", path=str(static), show_index=False)
    return app


async def start_http(
    receiver: Receiver, address: str | None = None, ssl_context: Any = None
) -> tuple[web.AppRunner, int]:
    """Bind and start the HTTP server; runs on the event loop.

    Args:
        address: ``host:port`` (default: ``receiver.config.http_address``); port 0 picks a free port.
        ssl_context: an ``ssl.SSLContext`` for HTTPS, or None.

    Returns:
        (runner, bound port). Stop with ``await runner.cleanup()``.

    Raises:
        OSError: the address cannot be bound.
    """
    addr = address or receiver.config.http_address
    if addr is None:
        raise ValueError("no HTTP address configured")
    hint = "another receiver running? choose another port with --http-address, e.g. 127.0.0.1:0"
    return await serve_app(create_http_app(receiver), addr, ssl_context, "HTTP", hint)
