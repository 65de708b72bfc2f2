"""Receiver errors and the one table mapping them to gRPC status codes and HTTP statuses."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

__all__ = [
    "Internal",
    "Invalid",
    "NotFound",
    "Overloaded",
    "ReceiverError",
    "Unauthenticated",
    "grpc_code",
    "http_status",
    "internal_error",
]


class ReceiverError(Exception):
    """Base class of errors the receiver reports to clients."""


class NotFound(ReceiverError):
    """The run does not exist (or was removed by retention)."""


class Invalid(ReceiverError):
    """A request argument is invalid."""


class Overloaded(ReceiverError):
    """The bounded ingest queue is full; retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unauthenticated(ReceiverError):
    """Missing or wrong bearer token."""


class Internal(ReceiverError):
    """A fault of the receiver itself (a bug): clients get this generic error, never the
    exception's text or class; the exception is logged with its traceback and counted."""


_log = logging.getLogger("vfo_otel.receiver")


def internal_error(exc: BaseException, where: str, count: Callable[[], None]) -> Internal:
    """The one mapping of an unexpected exception at an edge: log it (with traceback), count it
    (``count``: e.g. ``stats.internal_errors += 1``), and return the :class:`Internal` error to
    answer with (gRPC INTERNAL, HTTP 500)."""
    count()
    _log.error("internal error in %s (counted in /v1/stats internal_errors)", where, exc_info=exc)
    return Internal(f"internal error in {where}; the receiver logged it")


_TABLE: dict[type[ReceiverError], tuple[grpc.StatusCode, int]] = {
    NotFound: (grpc.StatusCode.NOT_FOUND, 404),
    Invalid: (grpc.StatusCode.INVALID_ARGUMENT, 400),
    Overloaded: (grpc.StatusCode.UNAVAILABLE, 503),
    Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, 401),
    Internal: (grpc.StatusCode.INTERNAL, 500),
}


def grpc_code(exc: ReceiverError) -> grpc.StatusCode:
    """The gRPC status code of a receiver error."""
    return _TABLE.get(type(exc), (grpc.StatusCode.INTERNAL, 500))[0]


def http_status(exc: ReceiverError) -> int:
    """The HTTP status of a receiver error."""
    return _TABLE.get(type(exc), (grpc.StatusCode.INTERNAL, 500))[1]
