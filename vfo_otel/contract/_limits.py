"""Input limits and validation of decoded events (pure).

One escaping rule for text: ids are rejected when they contain control characters or
exceed :attr:`Limits.max_id_length`; free text (error detail, command line, attribute
values) longer than its limit is truncated and the original length is recorded in the
event's attributes as ``<field>_original_length``. Text is UTF-8 end to end: a record
whose strings are not valid UTF-8 never becomes an event (it is rejected on its own by
:mod:`vfo_otel.receiver`), and the emitter replaces lone surrogates with U+FFFD
(:func:`vfo_otel.contract.clean_text`) before an event is built.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

__all__ = ["Limits", "check_event"]


class Limits(BaseModel):
    """Limits applied to every decoded event.

    Attributes:
        max_id_length: longest run/pipeline/asset/node/stage/event id (characters).
        max_detail_length: longest error detail kept (characters); longer is truncated.
        max_command_length: longest command line kept (characters); longer is truncated.
        max_attribute_length: longest extra attribute value kept (characters).
        max_attributes: most extra attributes an event keeps; past it the first
            ``max_attributes - 1`` keys (sorted) are kept and ``attributes_original_count``
            records how many came (as the emitter does).
        max_attribute_key_length: longest extra attribute key (characters); longer is rejected.
        max_upstream_node_ids: most upstream node ids one event may name (the workflow's
            edges into its node); more is rejected.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_id_length: int = Field(256, ge=8, le=65536)
    max_detail_length: int = Field(64 * 1024, ge=64)
    max_command_length: int = Field(16 * 1024, ge=64)
    max_attribute_length: int = Field(4096, ge=64)
    max_attributes: int = Field(128, ge=2, le=4096)
    max_attribute_key_length: int = Field(256, ge=8, le=65536)
    max_upstream_node_ids: int = Field(256, ge=1, le=65536)


#: Unicode categories Cc (control: C0, DEL, C1) and Cs (surrogates): never allowed in an id.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_ID_FIELDS = ("event_id", "run_id", "pipeline_id", "asset_id", "node_id", "stage_id", "source_id")


def _check_id(name: str, value: str, limits: Limits) -> None:
    if len(value) > limits.max_id_length:
        raise ValueError(f"{name} is {len(value)} characters, over the limit of {limits.max_id_length}")
    if value.isprintable():  # fast path: no Cc/Cs (both are non-printable)
        return
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValueError(f"{name} contains the control character U+{ord(bad.group()):04X}")


def check_event(event: ev.RunEvent, limits: Limits) -> None:
    """Validate ids and truncate oversized text in place.

    Raises:
        ValueError: an id is too long or has a control character, or the state is unspecified.
    """
    if event.state == ev.STATE_UNSPECIFIED:
        raise ValueError("state is unspecified")
    n_upstream, most_upstream = len(event.upstream_node_ids), limits.max_upstream_node_ids
    if n_upstream > most_upstream:
        raise ValueError(f"{n_upstream} upstream node ids, over the limit of {most_upstream}")
    ids = [getattr(event, name) for name in _ID_FIELDS]
    upstream = event.upstream_node_ids
    longest = max(map(len, ids))
    if upstream:
        longest = max(longest, max(map(len, upstream)))
    printable = "".join(ids).isprintable() and "".join(upstream).isprintable()
    if longest > limits.max_id_length or not printable:
        for name, value in zip(_ID_FIELDS, ids, strict=True):  # the first bad id, in field order
            _check_id(name, value, limits)
        for u in upstream:
            _check_id("upstream node id", u, limits)
    if event.HasField("error") and len(event.error.detail) > limits.max_detail_length:
        event.attributes["error_detail_original_length"] = str(len(event.error.detail))
        event.error.detail = event.error.detail[: limits.max_detail_length]
    if event.HasField("command"):
        _check_command(event, limits)
    if event.attributes:
        _check_attributes(event, limits)


def _check_attributes(event: ev.RunEvent, limits: Limits) -> None:
    attrs = event.attributes
    for k in attrs:
        if len(k) > limits.max_attribute_key_length:
            raise ValueError(
                f"attribute key of {len(k)} characters, over the limit of {limits.max_attribute_key_length}"
            )
    if len(attrs) > limits.max_attributes:
        keep = sorted(attrs)[: limits.max_attributes - 1]
        kept = {k: attrs[k] for k in keep}
        kept["attributes_original_count"] = str(len(attrs))
        attrs.clear()
        attrs.update(kept)
    for k, v in list(attrs.items()):
        if len(v) > limits.max_attribute_length:
            attrs[k] = v[: limits.max_attribute_length]


def _check_command(event: ev.RunEvent, limits: Limits) -> None:
    if len(event.command.command_line) > limits.max_command_length:
        event.attributes["command_line_original_length"] = str(len(event.command.command_line))
        event.command.command_line = event.command.command_line[: limits.max_command_length]
    if sum(map(len, event.command.argv)) > limits.max_command_length:
        event.attributes["argv_original_count"] = str(len(event.command.argv))
        kept, total = [], 0
        for a in event.command.argv:
            if total + len(a) > limits.max_command_length:
                break
            kept.append(a)
            total += len(a)
        del event.command.argv[:]
        event.command.argv.extend(kept)
