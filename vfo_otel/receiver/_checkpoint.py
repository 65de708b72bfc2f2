"""Fold checkpoints: a big run's folded state, saved so a cold read need not fold every event.

A checkpoint is a cache, never truth: the fold of revisions ``1..n`` saved with ``n``; a cold
read loads it and folds only the revisions after ``n`` from the store. Because the fold is a
pure function of the event set, checkpoint + tail gives the very fold the events give.

* **Which fold rules wrote it**: every checkpoint carries :data:`FOLD_CODE`, a hash of the
  source of the modules that define the fold (``_fold``, ``_digest``, ``_record``,
  ``_selection`` and the contract's state table). A receiver whose fold code differs ignores
  it (and writes its own), so a change to a fold rule can never serve an older rule's state.
* **Format**: a pickle of the :class:`~vfo_otel.receiver.RunFold` (protobuf messages inside as
  their wire bytes), zlib-compressed. Loading uses an unpickler that resolves only classes the
  fold modules (``_fold``, ``_digest``) define, a protobuf loader and plain containers: a forged
  blob cannot name any other callable, so whoever can write the store can forge a run's state
  (as with events) but cannot run code. A class the fold's owner adds is accepted as is; one the
  new code cannot load makes the checkpoint unreadable, hence ignored.
* **Cost** (1,000 assets x 20 nodes, ~40,000 events): ~0.8 MB; loading takes ~0.2 s with the
  cyclic GC paused (it would otherwise walk the half-built object graph again and again).

Thread contract: pure functions; :func:`dump` must only see a fold no one mutates meanwhile.
"""

from __future__ import annotations

import copyreg
import gc
import hashlib
import io
import pickle
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from vfo_otel._gen.vfo.dashboard.v1 import dashboard_pb2 as db
from vfo_otel._gen.vfo.events.v1 import events_pb2 as ev
from vfo_otel.receiver import _digest, _fold

__all__ = ["FOLD_CODE", "MIN_EVENTS", "dump", "load"]

#: Runs with fewer events than this are folded from their events (a checkpoint would not pay).
MIN_EVENTS = 5_000


def _fold_code() -> str:
    from vfo_otel import contract
    from vfo_otel.receiver import _record, _selection

    h = hashlib.sha256()
    for mod in (_fold, _digest, _record, _selection):
        h.update(Path(str(mod.__file__)).read_bytes())
    h.update((Path(str(contract.__file__)).parent / "_states.py").read_bytes())  # the state table
    return h.hexdigest()[:16]


#: The fold code this process runs (see the module docstring).
FOLD_CODE = _fold_code()

_MESSAGES: dict[str, type[Message]] = {}
for _mod in (ev, db):
    for _name in dir(_mod):
        _cls = getattr(_mod, _name)
        if isinstance(_cls, type) and issubclass(_cls, Message):
            _MESSAGES[_cls.DESCRIPTOR.full_name] = _cls


def message(full_name: str, data: bytes) -> Message:
    """A vfo protobuf message from its wire bytes (how a checkpoint stores messages)."""
    return _MESSAGES[full_name].FromString(data)


def _reduce(msg: Message) -> tuple[Callable[[str, bytes], Message], tuple[str, bytes]]:
    return message, (msg.DESCRIPTOR.full_name, msg.SerializeToString())


_DISPATCH: dict[type, Any] = dict(copyreg.dispatch_table)
_DISPATCH.update({cls: _reduce for cls in _MESSAGES.values()})
from google.protobuf import duration_pb2, timestamp_pb2  # noqa: E402  (digests hold these)

for _cls in (duration_pb2.Duration, timestamp_pb2.Timestamp):
    _MESSAGES[_cls.DESCRIPTOR.full_name] = _cls
    _DISPATCH[_cls] = _reduce

#: What a checkpoint may name besides the classes the fold modules define: the message loader
#: and plain builtins.
_ALLOWED = {
    (__name__, "message"),
    *(("builtins", n) for n in ("set", "frozenset", "dict", "list", "tuple", "object")),
    ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"),
}
_FOLD_MODULES = {_fold.__name__: _fold, _digest.__name__: _digest}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        mod = _FOLD_MODULES.get(module)
        if mod is not None:  # a class the fold defines (whatever the fold's owner adds), nothing else
            cls = getattr(mod, name, None)
            if isinstance(cls, type) and cls.__module__ == module:
                return cls
        elif (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a checkpoint may not name {module}.{name}")


@contextmanager
def _gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def dump(run: _fold.RunFold) -> bytes:
    """The checkpoint of a fold (compressed bytes)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=5)
    pickler.dispatch_table = _DISPATCH
    with _gc_paused():
        pickler.dump(run)
    return zlib.compress(buf.getvalue(), 1)


def load(blob: bytes) -> _fold.RunFold:
    """The fold a checkpoint holds.

    Raises:
        ValueError: not a checkpoint of this format (corrupt, forged, or another version).
    """
    try:
        with _gc_paused():
            run = _Unpickler(io.BytesIO(zlib.decompress(blob))).load()
    except Exception as exc:  # zlib.error, UnpicklingError, AttributeError, EOFError, ...
        raise ValueError(f"unreadable fold checkpoint: {exc}") from exc
    if not isinstance(run, _fold.RunFold):
        raise ValueError("a fold checkpoint holds no RunFold")
    return run
