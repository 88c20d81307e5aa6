"""A real PostgreSQL server for the tests: `initdb` into a temporary folder, `postgres` on
127.0.0.1 and a free port (a non-root user when the tests run as root: PostgreSQL refuses root),
stopped by PID at the end. Each test gets a database of its own.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

USER = "tandem"


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def missing_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    absent = [name for name in ("initdb", "postgres") if find_binary(name) is None]
    if absent:
        return (f"PostgreSQL binaries not found ({', '.join(absent)}): apt-get install postgresql"
                " (.ci/run does)")
    return None


def _as_postgres_user() -> list[str]:
    """The command prefix that drops root (setpriv execs, so the PID stays the server's)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


class PostgresCluster:
    def __init__(self, port: int, durable: bool = False) -> None:
        """`durable`: fsync and synchronous commits as in production (benchmarks); tests
        skip them, they need no crash durability of the database server itself."""
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="tandem-pg-"))
        self.data = self.folder / "data"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "nobody", "nogroup")
        self.log_path = self.folder / "postgres.log"
        initdb, postgres = find_binary("initdb"), find_binary("postgres")
        assert initdb and postgres
        subprocess.run([*_as_postgres_user(), initdb, "-D", str(self.data), "-U", USER,
                        "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*_as_postgres_user(), postgres, "-D", str(self.data), "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}",
                 *([] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                       "-c", "full_page_writes=off"]),
                 "-c", "max_connections=300"],
                stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited early:\n{self.log_path.read_text()}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres did not start within 30 s:\n{self.log_path.read_text()}")

    def new_database(self) -> str:
        """A fresh empty database; returns its URL."""
        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)
