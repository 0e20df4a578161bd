"""A real, throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary
directory, on a free 127.0.0.1 port, trust authentication.

initdb refuses to run as root, so under root the server runs as the `postgres` user
(`runuser`), in a directory handed to that user. Without the server binaries the
tests that need it are skipped, saying why.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BINARY_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin")


def _bindir() -> Path | None:
    for pattern in BINARY_GLOBS:
        for found in sorted(glob.glob(pattern), reverse=True):  # newest version first
            if (Path(found) / "initdb").exists() and (Path(found) / "pg_ctl").exists():
                return Path(found)
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One server; `url()` for a database on it, `stop()`/`start()` to take it away and
    bring it back on the same port."""

    def __init__(self, bindir: Path, root: Path, run_as: str | None) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = _free_port()
        self.user = "postgres"
        self._run_as = run_as

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self._run_as, "--"] if self._run_as else []
        return subprocess.run(
            [*prefix, *args], check=check, capture_output=True, text=True, timeout=60
        )

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )

    def start(self) -> None:
        # No fsync: a test server that loses data on a power cut loses nothing of worth.
        # Commits stay synchronous, so a killed server (`stop("immediate")`) keeps them.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        result = self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
            check=False,
        )
        if result.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr}\n{log}")

    def stop(self, mode: str = "fast", check: bool = True) -> None:
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop", check=check)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    if shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL (initdb)")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
    return "postgres"


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started server, stopped and deleted afterwards; skips without the binaries."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    run_as = _run_as()
    # Not pytest's tmp_path: its parents are private to root, where `postgres` cannot go.
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    if run_as is not None:
        shutil.chown(root, user=run_as)
    server = PostgresServer(bindir, root, run_as)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop("immediate", check=False)  # a test may have stopped it already
        shutil.rmtree(root, ignore_errors=True)
