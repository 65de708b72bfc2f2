"""Identity: entity keys and the trace and span ids derived from them. Pure.

Trace and span ids are derived, not random, so that separate processes, restarts and the
receiver agree on them, a span can be emitted after the fact, and the collector's
``load_balancing`` exporter (routing by trace id) keeps one run on one receiver replica.
OTLP requires non-zero ids (OTLP specification, ``Span.trace_id``/``span_id``).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

__all__ = ["EntityKey", "entity_key", "parent_key", "span_id_for", "trace_id_for_run"]

#: ``(run,)``, ``(run, pipeline)``, ``(run, pipeline, asset)`` or
#: ``(run, pipeline, asset, node, str(attempt))``.
EntityKey = tuple[str, ...]


def entity_key(event: ev.RunEvent) -> EntityKey:
    """The key of the entity an event is about, by scope (see :data:`EntityKey`).

    Raises:
        ValueError: unspecified or unknown scope.
    """
    scope = event.scope
    if scope == ev.SCOPE_RUN:
        return (event.run_id,)
    if scope == ev.SCOPE_PIPELINE:
        return (event.run_id, event.pipeline_id)
    if scope == ev.SCOPE_ASSET:
        return (event.run_id, event.pipeline_id, event.asset_id)
    if scope == ev.SCOPE_NODE:
        return (event.run_id, event.pipeline_id, event.asset_id, event.node_id, str(event.attempt_id))
    raise ValueError(f"unknown or unspecified scope {scope}")


def parent_key(key: EntityKey) -> EntityKey | None:
    """The parent entity key (node attempt -> asset -> pipeline -> run -> None)."""
    if len(key) == 5:
        return key[:3]
    if len(key) == 1:
        return None
    return key[:-1]


def _digest(prefix: str, parts: Iterable[str], size: int) -> int:
    # SHA-256 of prefix, then 0x1f + each part (UTF-8): the same bytes as one joined str encoded
    text = "\x1f".join((prefix, *parts))
    value = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:size], "big")
    return value or 1  # all-zero ids are invalid in OTLP


#: Ids remembered by trace_id_for_run and span_id_for (live runs and entities; LRU, bounded).
_ID_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=_ID_CACHE_SIZE)
def trace_id_for_run(run_id: str) -> int:
    """Deterministic 128-bit trace id of a run: the first 16 bytes of SHA-256("vfo-trace" 0x1f run_id)."""
    return _digest("vfo-trace", [run_id], 16)


@functools.lru_cache(maxsize=_ID_CACHE_SIZE)
def span_id_for(key: EntityKey) -> int:
    """Deterministic 64-bit span id of an entity key: the first 8 bytes of SHA-256("vfo-span" 0x1f
    each part of the key, joined by 0x1f)."""
    return _digest("vfo-span", key, 8)
