"""The one state table: canonical states and scopes, read from the generated protobuf enums.

Every layer (conventions, mapping, fold, runner, report, CLI, HTTP) takes state names, their
``vfo.events.v1.State`` numbers, the terminal and active sets and the scope names from here;
nothing else types a state's number or name again. Pure; imports only the generated code.

Source of truth: ``proto/vfo/events/v1/events.proto`` (``State``: ``STATE_QUEUED`` = 1 ...
``STATE_SKIPPED`` = 6; ``Scope``: ``SCOPE_RUN`` = 1 ... ``SCOPE_NODE`` = 4). A canonical name
is the enum value's name without its prefix, in lower case (``STATE_FAILED`` -> ``failed``).
"""

from __future__ import annotations

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev

__all__ = [
    "ACTIVE_STATES",
    "SCOPE_BY_NAME",
    "SCOPE_NAMES",
    "STATES",
    "STATE_BY_NAME",
    "STATE_NAMES",
    "TERMINAL_STATES",
    "scope_name",
    "state_label",
    "state_name",
    "state_number",
]


def _names(enum: type, prefix: str) -> dict[int, str]:
    """``{number: canonical name}`` of a generated enum, without its UNSPECIFIED value (0)."""
    out: dict[int, str] = {}
    for name, number in enum.items():  # type: ignore[attr-defined]
        if number:
            out[int(number)] = name.removeprefix(prefix).lower()
    return out


#: Canonical state names by ``State`` number, in number order (0, unspecified, is not a state).
STATE_NAMES: dict[int, str] = _names(ev.State, "STATE_")
#: ``State`` number by canonical name (``"failed"`` -> 5).
STATE_BY_NAME: dict[str, int] = {name: number for number, name in STATE_NAMES.items()}
#: The canonical state names in number order: queued, running, waiting, complete, failed, skipped
#: (the column order of every readable table).
STATES: tuple[str, ...] = tuple(STATE_NAMES.values())
#: Terminal states: an entity in one of these has ended (complete, failed, skipped).
TERMINAL_STATES: frozenset[int] = frozenset({ev.STATE_COMPLETE, ev.STATE_FAILED, ev.STATE_SKIPPED})
#: Active states: work is in progress or blocked (running, waiting); liveness watches these.
ACTIVE_STATES: frozenset[int] = frozenset({ev.STATE_RUNNING, ev.STATE_WAITING})
#: Scope names by ``Scope`` number: run, pipeline, asset, node.
SCOPE_NAMES: dict[int, str] = _names(ev.Scope, "SCOPE_")
#: ``Scope`` number by name.
SCOPE_BY_NAME: dict[str, int] = {name: number for number, name in SCOPE_NAMES.items()}

assert set(STATE_NAMES.values()) == {"queued", "running", "waiting", "complete", "failed", "skipped"}


def state_name(state: int) -> str:
    """Canonical state name (``queued`` ...).

    Raises:
        ValueError: unspecified (0) or unknown state number.
    """
    try:
        return STATE_NAMES[state]
    except KeyError:
        raise ValueError(f"unknown or unspecified state {state}") from None


def state_label(state: int) -> str:
    """The word a reader is shown for a state number: its canonical name, ``unspecified`` for 0
    (an upstream node that never reported), ``state <n>`` for a number this version does not know.
    Never raises (for display, not for validation)."""
    name = STATE_NAMES.get(state)
    if name is not None:
        return name
    return "unspecified" if state == 0 else f"state {state}"


def state_number(name: str) -> int:
    """``State`` number of a state name; accepts ``failed``, ``FAILED`` or ``STATE_FAILED``.

    Raises:
        ValueError: not a canonical state (the message lists the valid names).
    """
    key = name.strip().lower().removeprefix("state_")
    try:
        return STATE_BY_NAME[key]
    except KeyError:
        raise ValueError(f"unknown state {name!r} (one of: {', '.join(STATES)})") from None


def scope_name(scope: int) -> str:
    """Scope name (``run``, ``pipeline``, ``asset``, ``node``).

    Raises:
        ValueError: unspecified (0) or unknown scope number.
    """
    try:
        return SCOPE_NAMES[scope]
    except KeyError:
        raise ValueError(f"unknown or unspecified scope {scope}") from None
