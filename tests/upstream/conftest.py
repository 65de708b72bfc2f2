"""Fixtures starting real upstream processes; teardown stops every one of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.upstream.support import Process, Prometheus, Receiver


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``procs(Kind, name, *args, **kw)``: create (not start) a process in tmp_path/name; all stopped at
    teardown. On failure the tail of each process's log is printed."""
    started: list[Process] = []

    def make(kind: type[Process], name: str, *args: Any, **kw: Any) -> Any:
        p = kind(tmp_path / name, *args, **kw)
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


@pytest.fixture
def receiver(procs: Callable[..., Any]) -> Receiver:
    r: Receiver = procs(Receiver, "receiver")
    return r.start()


@pytest.fixture
def direct_receiver(procs: Callable[..., Any]) -> Receiver:
    r: Receiver = procs(Receiver, "direct-receiver")
    return r.start()


@pytest.fixture
def prometheus(procs: Callable[..., Any]) -> Prometheus:
    p: Prometheus = procs(Prometheus, "prometheus")
    return p.start()
