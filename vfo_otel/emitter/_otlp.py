"""The OTLP exporters the emitter builds, over the protocol the standard variables choose.

``OTEL_EXPORTER_OTLP_PROTOCOL`` (and the per-signal ``OTEL_EXPORTER_OTLP_{TRACES,LOGS,METRICS}_PROTOCOL``,
which win for their signal) pick ``grpc`` or ``http/protobuf``, as the OpenTelemetry
specification's exporter configuration says. The emitter's default stays ``grpc`` (the
receiver's and its own historical default; the specification's default is ``http/protobuf``).
``http/json`` is a valid value in the specification, but the Python SDK has no such exporter:
it is refused with ``ValueError`` rather than silently sent as something else.

For HTTP, an explicit endpoint is a base URL and gets the signal's path (``/v1/traces``,
``/v1/logs``, ``/v1/metrics``), as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["PROTOCOLS", "build_otlp_exporter", "otlp_protocol"]

#: The OTLP protocols the emitter can export with.
PROTOCOLS = ("grpc", "http/protobuf")
_SIGNAL_ENV = {"traces": "TRACES", "logs": "LOGS", "metrics": "METRICS"}


def _check(value: str, where: str) -> str:
    value = value.strip().lower()
    if value == "http/json":
        raise ValueError(
            f"{where}: http/json has no exporter in the OpenTelemetry Python SDK; use http/protobuf"
        )
    if value not in PROTOCOLS:
        raise ValueError(f"{where}: unknown OTLP protocol {value!r} (one of {', '.join(PROTOCOLS)})")
    return value


def otlp_protocol(explicit: str | None, signal: str | None = None) -> str | None:
    """The protocol for ``signal`` (or for all): the explicit one, else the standard variables.

    Returns None when neither says anything (the caller's default applies).

    Raises:
        ValueError: an unknown or unsupported protocol.
    """
    if explicit is not None:
        return _check(explicit, "protocol")
    names = [f"OTEL_EXPORTER_OTLP_{_SIGNAL_ENV[signal]}_PROTOCOL"] if signal else []
    for name in [*names, "OTEL_EXPORTER_OTLP_PROTOCOL"]:
        value = os.environ.get(name, "").strip()
        if value:
            return _check(value, name)
    return None


def build_otlp_exporter(
    signal: str, protocol: str | None, endpoint: str | None, timeout: float | None
) -> Any:
    """The SDK's OTLP exporter of ``signal`` ("traces", "logs", "metrics").

    Args:
        protocol: as given to the Emitter (None: the standard variables, else grpc).
        endpoint: gRPC endpoint, or HTTP base URL; None lets the SDK read its variables.
        timeout: export timeout (s); None: the SDK's default.

    Raises:
        ValueError: an unknown or unsupported protocol.
    """
    chosen = otlp_protocol(protocol, signal) or "grpc"
    if chosen == "grpc":
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
        if signal == "logs":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

            return OTLPLogExporter(endpoint=endpoint, timeout=timeout)
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint, timeout=timeout)
    url = f"{endpoint.rstrip('/')}/v1/{signal}" if endpoint else None
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

        return HttpSpans(endpoint=url, timeout=timeout)
    if signal == "logs":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

        return HttpLogs(endpoint=url, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

    return HttpMetrics(endpoint=url, timeout=timeout)
