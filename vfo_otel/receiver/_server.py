"""Lifecycle of the receiver process: the core, the gRPC server and the HTTP server together.

:class:`ReceiverServer` starts all three on the running event loop (fail fast: if the
HTTP server cannot start, the gRPC server is stopped again) and stops them in reverse
order; ``stop`` is safe to call twice or before ``start``. :class:`ReceiverThread` runs
one on its own loop in a background thread, for the demo and for tests.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import threading
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web

from vfo_otel.receiver._config import ReceiverConfig
from vfo_otel.receiver._grpc import create_server
from vfo_otel.receiver._http import start_http
from vfo_otel.receiver._otlp_http import start_otlp_http
from vfo_otel.receiver._service import Receiver

if TYPE_CHECKING:
    from vfo_otel.receiver._openlineage import OpenLineageSink

__all__ = ["GC_THRESHOLD", "ReceiverServer", "ReceiverThread", "TlsFiles", "tune_gc"]

_log = logging.getLogger("vfo_otel.receiver")

#: Young-generation threshold of the cyclic GC in a ``vfo-otel serve`` process (CPython's
#: default: 700). Ingest allocates a few tracked objects per event and the fold keeps many, so at
#: 700 the collector ran every ~170 events and promoted the objects of the exports in flight,
#: which made full collections over the whole fold frequent: ~5 us of GC per event, ~14% of the
#: receiver's CPU. At 10,000 it is ~0.8 us. Reference counting still frees all acyclic garbage
#: at once; only cyclic garbage waits a little longer.
GC_THRESHOLD = 10_000


def tune_gc() -> None:
    """Raise the GC's young-generation threshold to :data:`GC_THRESHOLD` (the serving process only:
    an application embedding the receiver keeps its own GC settings)."""
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GC_THRESHOLD, gen0), gen1, gen2)


class TlsFiles:
    """PEM files for TLS on both servers: certificate chain and private key."""

    def __init__(self, cert_file: str, key_file: str) -> None:
        with open(cert_file, "rb") as f:
            self.cert = f.read()
        with open(key_file, "rb") as f:
            self.key = f.read()
        self.cert_file, self.key_file = cert_file, key_file

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """TLS credentials for the gRPC server (no client certificates)."""
        return grpc.ssl_server_credentials([(self.key, self.cert)])

    def ssl_context(self) -> ssl.SSLContext:
        """A server ``ssl.SSLContext`` for the HTTP server."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


class ReceiverServer:
    """The receiver core plus its gRPC and HTTP servers.

    Attributes:
        receiver: the core (store, fold, watchers).
        grpc_port: bound gRPC port after start (0 before).
        http_port: bound HTTP port after start (0 before, or when HTTP is disabled).
        otlp_http_port: bound OTLP/HTTP port after start (0 before, or when it is disabled).
    """

    def __init__(self, config: ReceiverConfig, tls: TlsFiles | None = None) -> None:
        self.config = config
        self.receiver = Receiver(config)
        self._tls = tls
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._otlp_http: web.AppRunner | None = None
        self.grpc_port = 0
        self.http_port = 0
        self.otlp_http_port = 0
        #: OpenLineage sinks (one per configured transport; empty when off).
        self.lineage: list[OpenLineageSink] = []

    async def start(self) -> None:
        """Open and replay the store, then start both servers. Runs on the event loop.

        Raises:
            vfo_otel.receiver.StoreError, RuntimeError, OSError: start-up failed (nothing left running).
        """
        self._start_lineage()
        try:
            await self.receiver.start()
        except BaseException:
            self._stop_lineage()
            raise
        try:
            creds = self._tls.grpc_credentials() if self._tls else None
            self._grpc, self.grpc_port = await create_server(self.receiver, credentials=creds)
            await self._grpc.start()
            if self.config.http_address is not None:
                ctx = self._tls.ssl_context() if self._tls else None
                self._http, self.http_port = await start_http(self.receiver, ssl_context=ctx)
            if self.config.otlp_http_address is not None:
                ctx = self._tls.ssl_context() if self._tls else None
                self._otlp_http, self.otlp_http_port = await start_otlp_http(self.receiver, ssl_context=ctx)
        except BaseException:
            await self.stop()
            raise

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop OTLP/HTTP and HTTP, then gRPC (in-flight exports get ``grace_s`` seconds), then the store."""
        if self._otlp_http is not None:
            otlp_http, self._otlp_http = self._otlp_http, None
            await otlp_http.cleanup()
        if self._http is not None:
            http, self._http = self._http, None
            await http.cleanup()
        if self._grpc is not None:
            server, self._grpc = self._grpc, None
            await server.stop(grace_s)
        await self.receiver.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._stop_lineage)

    def _start_lineage(self) -> None:
        """Build and start the OpenLineage sinks and feed them from the receiver (before its replay)."""
        cfg = self.config
        if not (cfg.openlineage_url or cfg.openlineage_file):
            return
        try:
            from vfo_otel.receiver._openlineage import OpenLineageSink
        except ImportError as exc:  # the optional dependency
            raise RuntimeError(
                "OpenLineage needs the openlineage-python client:"
                f" pip install 'vfo-otel[openlineage]' ({exc})"
            ) from exc
        state = None if cfg.store_path == ":memory:" else cfg.store_path + ".openlineage"
        for kind, url, path in (("http", cfg.openlineage_url, None), ("file", None, cfg.openlineage_file)):
            if url or path:
                try:
                    sink = OpenLineageSink(
                        url=url,
                        file_path=path,
                        state_path=f"{state}-{kind}" if state else None,
                        namespace=cfg.openlineage_namespace,
                    )
                except ValueError as exc:  # e.g. a malformed URL: fail fast, with the option's name
                    raise RuntimeError(f"openlineage_{'url' if url else 'file'}: {exc}") from exc
                sink.start()
                self.lineage.append(sink)
                self.receiver.after_commit.append(sink.feed)
                self.receiver.telemetry.lineage_sinks.append(sink)

    def _stop_lineage(self) -> None:
        sinks, self.lineage = self.lineage, []
        self.receiver.telemetry.lineage_sinks = []
        for sink in sinks:
            sink.stop()

    async def __aenter__(self) -> ReceiverServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


class ReceiverThread:
    """A :class:`ReceiverServer` on its own event loop in a daemon thread.

    ``start()`` blocks until both servers listen (or raises what start-up raised);
    ``stop()`` blocks until they are stopped. Thread-safe; stop is idempotent.
    """

    def __init__(self, config: ReceiverConfig, tls: TlsFiles | None = None) -> None:
        self.server = ReceiverServer(config, tls)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vfo-receiver", daemon=True)
        self._started = False

    @property
    def grpc_port(self) -> int:
        """The bound gRPC port (0 before start)."""
        return self.server.grpc_port

    @property
    def http_port(self) -> int:
        """The bound HTTP port (0 before start, or when HTTP is disabled)."""
        return self.server.http_port

    @property
    def otlp_http_port(self) -> int:
        """The bound OTLP/HTTP port (0 before start, or when OTLP/HTTP is disabled)."""
        return self.server.otlp_http_port

    def call(self, coro: Any, timeout_s: float = 30.0) -> Any:
        """Run a coroutine on the receiver's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def start(self, timeout_s: float = 60.0) -> ReceiverThread:
        """Start the loop thread and both servers; blocks until they listen (seconds to wait).

        Raises:
            Whatever start-up raised (StoreError, RuntimeError, OSError); nothing is left running.
        """
        self._thread.start()
        self._started = True
        try:
            self.call(self.server.start(), timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop both servers and the loop thread (idempotent; waits up to ``timeout_s`` seconds)."""
        if not self._started:
            return
        self._started = False
        try:
            self.call(self.server.stop(), timeout_s)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)
            self._loop.close()

    def __enter__(self) -> ReceiverThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
