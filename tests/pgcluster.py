"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster, a free port.

The cluster runs as the ``postgres`` user (tests run as root, and PostgreSQL refuses root), in a
temporary data directory owned by it, listening on 127.0.0.1 only, with ``trust`` auth on
loopback. ``fsync=off`` keeps the tests fast: a committed transaction still survives the
receiver's death and a clean server restart (the failure tests), just not a power cut.
Nothing here is a mock: the receivers under test talk to this server over TCP.

Without the binaries the PostgreSQL tests skip, except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

__all__ = ["PgCluster", "find_bindir"]


def find_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl`` (PATH, then Debian's /usr/lib/postgresql/*/bin)."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(d, "initdb")):
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgCluster:
    """One temporary PostgreSQL cluster (``start``/``stop``/``restart``; ``url(db)``)."""

    def __init__(self, bindir: Path, *, fsync: bool = False) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="vfo-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            pw = pwd.getpwnam(self._user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 200\n"
                f"fsync = {'on' if fsync else 'off'}\nfull_page_writes = {'on' if fsync else 'off'}\n"
            )

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bindir / tool), *args]
        if self._user is not None:
            argv = ["runuser", "-u", self._user, "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=check)

    def start(self) -> None:
        """Start the server; returns when it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        self.wait_ready()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: a clean shutdown; ``immediate``: like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
