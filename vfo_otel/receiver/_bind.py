"""Binding and serving the receiver's aiohttp applications (the API and OTLP/HTTP). Runs on
the event loop."""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import web

from vfo_otel.receiver._config import split_address

__all__ = ["serve_app"]


async def serve_app(
    app: web.Application, addr: str, ssl_context: Any, what: str, hint: str, **runner_kw: Any
) -> tuple[web.AppRunner, int]:
    """Bind ``addr`` (``host:port``; port 0 picks one) and serve ``app`` there; the one place the
    receiver's aiohttp servers (the API and OTLP/HTTP) start. Runs on the event loop.

    Returns:
        (runner, bound port). Stop with ``await runner.cleanup()``.

    Raises:
        OSError: the address cannot be bound; the message names ``what`` and adds ``hint``.
    """
    host, port = split_address(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot bind {what} server to {addr}: {exc.strerror} ({hint})") from exc
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0, **runner_kw)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=ssl_context)
    await site.start()
    return runner, sock.getsockname()[1]
