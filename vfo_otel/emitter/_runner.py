"""Context-manager helpers for runners without a state machine of their own.

``with emitter.run(...) as run: with run.pipeline(...) as p: with p.asset(...) as a:
with a.node(...) as n: ...`` emits the canonical transitions of each entity:

* entering emits ``running``; leaving emits ``complete``, or ``failed`` when an exception
  escapes (error class = the exception's qualified class name, detail = its message;
  ``KeyboardInterrupt``/``SystemExit`` are ``Cancelled``), when a recorded exit code is
  non-zero (``ExitCode``) or negative (``Signal``), or when :meth:`_Entity.fail` was
  called; :meth:`NodeHandle.skip` ends it ``skipped``;
* declaring a pipeline's workflow makes every asset emit ``queued`` for each node
  (attempt 1) with its upstream node ids, so the DAG's edges are known before work starts;
  nodes still queued when their asset ends are ``skipped``;
* an asset fails (``NodeFailed``) when a node's latest attempt failed; a pipeline fails
  (``AssetFailed``) when an asset did; a run fails (``PipelineFailed``) when a pipeline did.

Durations come from the monotonic clock of the process that saw both ends.
Text (ids, command lines, error details, attributes) goes through
:func:`vfo_otel.contract.clean_text`: a lone surrogate becomes U+FFFD instead of making the
event impossible to encode.
Exceptions from the runner's own code propagate unchanged; the emitter never raises.
Handles are not thread-safe individually: use one handle per thread.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.contract import CANCELLED, child_failed_error, clean_text
from vfo_otel.otel import EventFields

__all__ = [
    "AssetHandle",
    "EventSink",
    "NodeHandle",
    "NodeSpec",
    "PipelineHandle",
    "RunHandle",
    "asset_ref",
    "error_class_of",
]


class EventSink(Protocol):
    """What a handle needs of its emitter (:class:`vfo_otel.Emitter` is one): the handles are
    built by the emitter and hand it each event's plain values; the emitter imports this module,
    never the reverse."""

    def _emit_owned(self, event: EventFields) -> None:
        """Complete and emit an event built for this call alone; never raises."""

    def _failed(self, exc: BaseException) -> None:
        """Count (and log once per kind) a failure of the emit path."""


@dataclass(frozen=True)
class NodeSpec:
    """A workflow node: its stage and the node ids it runs after (edges upstream -> this node)."""

    stage: str
    after: tuple[str, ...] = ()


def error_class_of(exc: BaseException) -> str:
    """The ``error.type`` of an exception: ``Cancelled`` for interrupts, else its qualified class name.

    Builtins keep their bare name (``ValueError``); others get ``module.QualName`` as the OTel
    semantic conventions suggest for ``error.type``.
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return CANCELLED
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _clean(value: Any) -> Any:
    """``clean_text`` over a str, or the str items of a list/tuple/dict (other values as they are)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def _clean_ids(ids: dict[str, Any]) -> dict[str, Any]:
    """``clean_text`` over the str values of an id dict (its keys are RunEvent field names)."""
    return {k: clean_text(v) if isinstance(v, str) else v for k, v in ids.items()}


def _as_fields(**fields: Any) -> dict[str, Any]:
    """The values as RunEvent's fields hold them (str, int; the repeated field and the map as
    the message's containers).

    Raises:
        TypeError, ValueError: what setting the RunEvent field raises (a wrong type, an int
            out of the field's range, a str that is not valid UTF-8).
    """
    msg = ev.RunEvent(**fields)
    return {name: getattr(msg, name) for name in fields}


def _checked(
    ids: dict[str, Any], attributes: dict[str, Any], upstream: Sequence[Any] = ()
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...], Exception | None]:
    """A handle's ids, attributes and upstream node ids, text cleaned (:func:`clean_text`) and
    checked once as a RunEvent's fields check them, since its events carry them as plain values
    (no RunEvent is built per event). Returns them, and what the RunEvent raised, if anything:
    the handle then counts that failure for each of its events, as it did when it built them."""
    plain = True  # every value is what its RunEvent field holds as it is (the usual case)
    cleaned: dict[str, Any] = {}
    for name, value in ids.items():
        if type(value) is str:
            cleaned[name] = value if value.isascii() else clean_text(value)
        else:
            cleaned[name] = _clean(value)
            if name != "attempt_id" or type(value) is not int or not 0 <= value < 2**32:
                plain = False
    if attributes:
        attributes = _clean(attributes)
        plain = plain and all(type(k) is str and type(v) is str for k, v in attributes.items())
    upstream_ids: tuple[str, ...] = tuple(upstream)
    for u in upstream_ids:
        if type(u) is not str or not u.isascii():
            upstream_ids = _clean(upstream_ids)
            plain = plain and all(type(u) is str for u in upstream_ids)
            break
    if plain:
        return cleaned, attributes, upstream_ids, None
    try:
        values = _as_fields(attributes=attributes, upstream_node_ids=upstream_ids, **cleaned)
    except Exception as exc:
        return cleaned, attributes, upstream_ids, exc
    return values, dict(values.pop("attributes")), tuple(values.pop("upstream_node_ids")), None


def _checked_exit_code(code: Any) -> int:
    """An exit code as the RunEvent field (int32) holds it; raises as setting the field does."""
    if type(code) is int and -(2**31) <= code < 2**31:
        return code
    return int(_as_fields(exit_code=code)["exit_code"])


#: shlex.quote leaves an argument as it is when it is not empty and this finds nothing in it.
_SHELL_UNSAFE = re.compile(r"[^\w@%+=:,./-]", re.ASCII).search


def _shell_join(argv: Sequence[str]) -> str:
    """``shlex.join(argv)``; when no argument needs quoting, one search instead of one per argument."""
    if all(argv) and _SHELL_UNSAFE("".join(argv)) is None:
        return " ".join(argv)
    return shlex.join(argv)


#: A command as an event carries it: (command line, argv, action); see vfo_otel.otel.EventFields.
_Command = tuple[str, tuple[str, ...], str]


def _command(command: str | Sequence[str] | None, action: str | None) -> _Command | None:
    if command is None and not action:
        return None
    action = clean_text(action or "")
    if isinstance(command, str):
        return (clean_text(command), (), action)
    if command is not None:
        argv = tuple(map(str, command))
        if not all(map(str.isascii, argv)):  # ASCII needs no cleaning (clean_text's fast path)
            argv = tuple([clean_text(a) for a in argv])
        return (_shell_join(argv), argv, action)
    return ("", (), action)


def _state_word(state: int) -> str:
    return str(ev.State.Name(state)).removeprefix("STATE_").lower()


def asset_ref(
    uri: str, *, role: str = "", asset_id: str = "", size_bytes: int | None = None, media_type: str = ""
) -> ev.AssetRef:
    """A ``vfo.events.v1.AssetRef``; text goes through :func:`clean_text` (lone surrogates -> U+FFFD)."""
    return ev.AssetRef(
        asset_id=clean_text(asset_id),
        uri=clean_text(uri),
        role=clean_text(role),
        size_bytes=size_bytes,
        media_type=clean_text(media_type),
    )


_REPEATED = frozenset(("inputs", "outputs", "upstream_node_ids"))
_MESSAGES = frozenset(("error", "duration"))


class _Entity:
    """Shared lifecycle of run, pipeline, asset and node-attempt handles."""

    scope: int

    def __init__(
        self,
        emitter: EventSink,
        ids: dict[str, Any],
        *,
        command: _Command | None = None,
        attributes: Mapping[str, str] | None = None,
        parent_ids: dict[str, Any] | None = None,
        parent_invalid: Exception | None = None,
        upstream: Sequence[str] = (),
    ) -> None:
        self._emitter = emitter
        own, attrs, self._upstream, error = _checked(ids, dict(attributes) if attributes else {}, upstream)
        #: RunEvent field names (the ids, and a node's stage id) -> values; ``ids`` are cleaned
        #: and checked here, ``parent_ids`` (the parent handle's ``_ids``) by the parent
        self._ids = {**parent_ids, **own} if parent_ids else own
        #: what a RunEvent of this handle's values raises (then each of its events fails so)
        self._invalid = error if error is not None else (parent_invalid if parent_ids else None)
        #: built once when the command is set; carried by each event after that
        self._command = command
        self._attributes: dict[str, str] = attrs
        self._start_mono_ns: int | None = None
        self._error: tuple[str, str] | None = None
        self._final: int | None = None
        self.state: int = ev.STATE_UNSPECIFIED

    def event(self, state: int, **fields: Any) -> ev.RunEvent:
        """Build (not emit) an event of this entity in ``state`` with extra RunEvent fields."""
        msg = EventFields(
            self.scope, state, command=self._command, attributes=self._attributes, **self._ids
        ).message()
        for name, value in fields.items():
            if name in _REPEATED:
                if value:
                    getattr(msg, name).extend(value)
            elif name in _MESSAGES:
                getattr(msg, name).CopyFrom(value)
            elif value is not None:
                setattr(msg, name, _clean(value))
        return msg

    def _emit(self, state: int, **fields: Any) -> None:
        """Emit an event of this entity in ``state``; ``fields``: more of its plain fields
        (:class:`vfo_otel.otel.EventFields` names and forms). No RunEvent is built (unless
        ``emit`` is overridden: see ``Emitter._emit_owned``)."""
        self.state = state
        try:
            if self._invalid is not None:
                raise self._invalid.with_traceback(None)
            if fields.get("exit_code") is not None:  # set by the runner: an int32, as the field checks
                fields["exit_code"] = _checked_exit_code(fields["exit_code"])
            event = EventFields(
                self.scope, state, command=self._command, attributes=self._attributes, **self._ids, **fields
            )
        except Exception as exc:  # a handle never raises into the runner either
            self._emitter._failed(exc)
            return
        self._emitter._emit_owned(event)  # built for this call alone: completed in place

    def fail(self, error_class: str, detail: str = "") -> None:
        """End this entity ``failed`` with this error class and detail when it exits (no exception needed)."""
        self._error = (clean_text(error_class), clean_text(detail))

    def _duration_fields(self) -> dict[str, Any]:
        if self._start_mono_ns is None:
            return {}
        return {"duration_ns": time.monotonic_ns() - self._start_mono_ns}

    def _child_failed(self) -> tuple[str, str] | None:
        return None

    def _extra_end_fields(self) -> dict[str, Any]:
        return {}

    def __enter__(self) -> Any:
        self._start_mono_ns = time.monotonic_ns()
        self._emit(ev.STATE_RUNNING, **self._start_fields())
        return self

    def _start_fields(self) -> dict[str, Any]:
        return {}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        fields = {**self._duration_fields(), **self._extra_end_fields()}
        error = self._error
        if exc is not None:
            error = (clean_text(error_class_of(exc)), clean_text(str(exc) or exc.__class__.__name__))
        if error is None:
            error = self._child_failed()
        if error is not None:
            self._emit(ev.STATE_FAILED, error=(clean_text(error[0]), clean_text(error[1])), **fields)
        else:
            self._emit(self._final or ev.STATE_COMPLETE, **fields)


class RunHandle(_Entity):
    """A run; use as a context manager. Create with :meth:`vfo_otel.Emitter.run`.

    Args:
        emitter: the emitter.
        run_id: the run's stable id.
        command: the run's command line (str) or argv; action: its action name.
        attributes: free-form string attributes carried on the run's events.
    """

    scope = ev.SCOPE_RUN

    def __init__(
        self,
        emitter: EventSink,
        run_id: str,
        *,
        command: str | Sequence[str] | None = None,
        action: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            emitter, {"run_id": run_id}, command=_command(command, action), attributes=attributes
        )
        self.run_id = run_id
        self._pipelines: list[PipelineHandle] = []

    def pipeline(self, pipeline_id: str, workflow: Mapping[str, NodeSpec] | None = None) -> PipelineHandle:
        """A pipeline of this run, with its workflow DAG (node id -> NodeSpec) if known."""
        handle = PipelineHandle(self._emitter, self.run_id, pipeline_id, workflow)
        self._pipelines.append(handle)
        return handle

    def _child_failed(self) -> tuple[str, str] | None:
        failed = [p.pipeline_id for p in self._pipelines if p.state == ev.STATE_FAILED]
        return child_failed_error(self.scope, failed) if failed else None


class PipelineHandle(_Entity):
    """A pipeline of a run; use as a context manager. Create with :meth:`RunHandle.pipeline`."""

    scope = ev.SCOPE_PIPELINE

    def __init__(
        self, emitter: EventSink, run_id: str, pipeline_id: str, workflow: Mapping[str, NodeSpec] | None
    ) -> None:
        super().__init__(emitter, {"run_id": run_id, "pipeline_id": pipeline_id})
        self.run_id, self.pipeline_id = run_id, pipeline_id
        self.workflow: dict[str, NodeSpec] = dict(workflow or {})
        for node_id, spec in self.workflow.items():
            unknown = [u for u in spec.after if u not in self.workflow]
            if unknown:
                raise ValueError(f"node {node_id!r} runs after unknown nodes {unknown}")
        self._assets: list[AssetHandle] = []

    def asset(self, asset_id: str, *, inputs: Sequence[ev.AssetRef] = ()) -> AssetHandle:
        """An asset flowing through this pipeline; entering it queues every workflow node."""
        handle = AssetHandle(self._emitter, self, asset_id, inputs)
        self._assets.append(handle)
        return handle

    def _child_failed(self) -> tuple[str, str] | None:
        failed = [a.asset_id for a in self._assets if a.state == ev.STATE_FAILED]
        return child_failed_error(self.scope, failed) if failed else None


class AssetHandle(_Entity):
    """An asset of a pipeline; use as a context manager. Create with :meth:`PipelineHandle.asset`."""

    scope = ev.SCOPE_ASSET

    def __init__(
        self, emitter: EventSink, pipeline: PipelineHandle, asset_id: str, inputs: Sequence[ev.AssetRef]
    ) -> None:
        super().__init__(
            emitter, {"asset_id": asset_id}, parent_ids=pipeline._ids, parent_invalid=pipeline._invalid
        )
        self.pipeline, self.asset_id = pipeline, asset_id
        self._inputs = list(inputs)
        self._attempts: dict[str, int] = {}
        self._latest: dict[str, NodeHandle] = {}
        #: node id -> why it was skipped when the asset ended (nodes queued but never run)
        self.skipped: dict[str, str] = {}
        self._queued: set[str] = set()

    def __enter__(self) -> AssetHandle:
        super().__enter__()
        for node_id, spec in self.pipeline.workflow.items():
            self._queued.add(node_id)
            self._emit_node(node_id, spec.stage, ev.STATE_QUEUED, spec.after)
        return self

    def _emit_node(
        self, node_id: str, stage: str, state: int, upstream: Sequence[str], **fields: Any
    ) -> None:
        """Emit an event of a node's first attempt that the asset queues or skips itself (the
        workflow's node ids, stage and upstream node ids are cleaned and checked as a handle's)."""
        own, _attrs, upstream, error = _checked({"node_id": node_id, "stage_id": stage}, {}, upstream)
        if error is None:
            error = self._invalid
        if error is not None:  # counted, never raised, as for the handles' own events
            self._emitter._failed(error)
            return
        ids = self._ids
        event = EventFields(
            ev.SCOPE_NODE,
            state,
            ids["run_id"],
            ids["pipeline_id"],
            ids["asset_id"],
            own["node_id"],
            own["stage_id"],
            1,
            upstream_node_ids=upstream,
            **fields,
        )
        self._emitter._emit_owned(event)

    def node(
        self,
        node_id: str,
        *,
        stage: str | None = None,
        after: Sequence[str] | None = None,
        attempt: int | None = None,
    ) -> NodeHandle:
        """The next attempt of a node for this asset (attempt 1, then 2, 3 ... on each call).

        Stage and upstream nodes default to the pipeline's workflow.

        Raises:
            ValueError: the node is not in the workflow and no stage is given.
        """
        spec = self.pipeline.workflow.get(node_id)
        if stage is None:
            if spec is None:
                raise ValueError(
                    f"node {node_id!r} is not in the workflow of {self.pipeline.pipeline_id!r}; pass stage="
                )
            stage = spec.stage
        upstream = tuple(after) if after is not None else (spec.after if spec else ())
        number = attempt if attempt is not None else self._attempts.get(node_id, 0) + 1
        self._attempts[node_id] = max(number, self._attempts.get(node_id, 0))
        queued = node_id in self._queued and number == 1
        handle = NodeHandle(self, node_id, stage, number, upstream, queued=queued)
        self._queued.discard(node_id)
        self._latest[node_id] = handle
        return handle

    def _skip_reason(self, node_id: str) -> str:
        """Why a queued node never ran: the upstream nodes that did not complete, if any."""
        blocked = []
        for up in self.pipeline.workflow[node_id].after:
            handle = self._latest.get(up)
            if handle is None or handle.state != ev.STATE_COMPLETE:
                blocked.append(f"{up} {'not run' if handle is None else _state_word(handle.state)}")
        return "upstream " + ", ".join(blocked) if blocked else "not run"

    def _extra_end_fields(self) -> dict[str, Any]:
        for node_id in sorted(self._queued):  # never started: skipped
            spec = self.pipeline.workflow[node_id]
            self.skipped[node_id] = self._skip_reason(node_id)
            self._emit_node(
                node_id,
                spec.stage,
                ev.STATE_SKIPPED,
                spec.after,
                previous_state=ev.STATE_QUEUED,
                attributes={"skip_reason": clean_text(self.skipped[node_id])},
            )
        self._queued.clear()
        return {}

    def _child_failed(self) -> tuple[str, str] | None:
        failed = sorted(n for n, h in self._latest.items() if h.state == ev.STATE_FAILED)
        return child_failed_error(self.scope, failed) if failed else None


class NodeHandle(_Entity):
    """One attempt of one node for one asset; use as a context manager.

    Create with :meth:`AssetHandle.node`. Inside, record what ran with :meth:`run` (a real
    subprocess), :meth:`set_command`, :meth:`set_exit_code`, :meth:`add_output`.
    """

    scope = ev.SCOPE_NODE

    def __init__(
        self,
        asset: AssetHandle,
        node_id: str,
        stage: str,
        attempt: int,
        upstream: Sequence[str],
        *,
        queued: bool,
    ) -> None:
        super().__init__(
            asset._emitter,
            {"node_id": node_id, "stage_id": stage, "attempt_id": attempt},
            parent_ids=asset._ids,
            parent_invalid=asset._invalid,
            upstream=upstream,
        )
        self.asset, self.node_id, self.stage_id, self.attempt_id = asset, node_id, stage, attempt
        self.upstream = tuple(upstream)
        self.inputs: list[ev.AssetRef] = list(asset._inputs)
        self.outputs: list[ev.AssetRef] = []
        self.exit_code: int | None = None
        if queued:
            self.state = ev.STATE_QUEUED

    def _start_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"upstream_node_ids": self._upstream, "inputs": self.inputs}
        if self.state == ev.STATE_QUEUED:
            fields["previous_state"] = ev.STATE_QUEUED
        return fields

    def _extra_end_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"outputs": self.outputs, "inputs": self.inputs}
        if self.exit_code is not None:
            fields["exit_code"] = self.exit_code
            if self.exit_code != 0 and self._error is None:
                if self.exit_code < 0:
                    try:
                        name = signal.Signals(-self.exit_code).name
                    except ValueError:
                        name = f"signal {-self.exit_code}"
                    self._error = ("Signal", f"killed by {name}")
                else:
                    self._error = ("ExitCode", f"exited with status {self.exit_code}")
        return fields

    def set_command(self, command: str | Sequence[str] | None = None, *, action: str | None = None) -> None:
        """Record the command line (str) or argv, or an action name."""
        self._command = _command(command, action)

    def set_exit_code(self, code: int) -> None:
        """Record the process exit code (negative: killed by that signal, as subprocess reports)."""
        self.exit_code = code

    def add_output(
        self,
        uri: str,
        *,
        role: str = "",
        asset_id: str = "",
        size_bytes: int | None = None,
        media_type: str = "",
    ) -> None:
        """Record an output asset reference (size in bytes, IANA media type when known)."""
        self.outputs.append(
            asset_ref(uri, role=role, asset_id=asset_id, size_bytes=size_bytes, media_type=media_type)
        )

    def add_input(
        self,
        uri: str,
        *,
        role: str = "",
        asset_id: str = "",
        size_bytes: int | None = None,
        media_type: str = "",
    ) -> None:
        """Record an input asset reference (size in bytes, IANA media type when known)."""
        self.inputs.append(
            asset_ref(uri, role=role, asset_id=asset_id, size_bytes=size_bytes, media_type=media_type)
        )

    def skip(self, reason: str = "") -> None:
        """End this attempt ``skipped`` when it exits."""
        if reason:
            self._attributes["skip_reason"] = clean_text(reason)
        self._final = ev.STATE_SKIPPED

    def wait(self, reason: str = "") -> None:
        """Emit ``waiting`` now (e.g. for a lock or an external system); :meth:`resume` runs again."""
        if reason:
            self._attributes["wait_reason"] = clean_text(reason)
        self._emit(ev.STATE_WAITING)

    def resume(self) -> None:
        """Emit ``running`` again after :meth:`wait`."""
        self._emit(ev.STATE_RUNNING)

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run a real subprocess as this attempt: records argv, command line and exit code.

        stdout/stderr pass through unless redirected in ``kwargs`` (passed to subprocess.run).

        Returns:
            The CompletedProcess. A non-zero exit marks the attempt failed when it exits.

        Raises:
            OSError: the command could not be started (the attempt then fails with that class).
        """
        self.set_command(list(argv))
        proc = subprocess.run(list(argv), check=False, **kwargs)
        self.set_exit_code(proc.returncode)
        return proc
