"""Shared fixtures: a real `tandem serve` subprocess on 127.0.0.1 and a free port, a real
PostgreSQL server (one per session, a database per user) for the tests run on both backends,
and a real SeaweedFS S3 server (one per session, a key prefix per user) for the blob stores.

Every process a test starts is stopped by that test (by PID), even when it fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import seaweed
from tests.helpers_storage import BLOB_URLS, DATABASE_URLS
from tests.postgres import PostgresCluster, missing_reason

# Tests may use the cheap key-derivation profile; the default profile stays the real one.
os.environ.setdefault("TANDEM_INSECURE_FAST_KDF", "1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: The metadata-store backends the shared suites run on.
BACKENDS = ["sqlite", "postgresql"]
#: Server suites that touch blobs also run on the scale-out stack: PostgreSQL + S3 (SeaweedFS).
SCALE_BACKENDS = [*BACKENDS, "postgresql+s3"]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = PostgresCluster(free_port())
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def weed() -> Iterator[seaweed.SeaweedS3]:
    reason = seaweed.missing_reason()
    if reason:
        pytest.skip(reason)
    server = seaweed.SeaweedS3()
    try:
        yield server
    finally:
        server.stop()


def backend_args(request: pytest.FixtureRequest, backend: str) -> list[str]:
    """`tandem serve` arguments for a backend: nothing for SQLite (the default in --data), a
    fresh database of the session's PostgreSQL server otherwise, and with "+s3" a fresh key
    prefix in the session's SeaweedFS bucket."""
    if backend == "sqlite":
        return []
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    args = ["--database", cluster.new_database()]
    if backend.endswith("+s3"):
        args += ["--blobs", request.getfixturevalue("weed").url()]
    return args


@dataclass
class RunningServer:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(data_dir: Path, *extra: str) -> RunningServer:
    port = free_port()
    log_path = data_dir.parent / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    if "--database" in extra:
        DATABASE_URLS[data_dir] = extra[extra.index("--database") + 1]
    if "--blobs" in extra:
        BLOB_URLS[data_dir] = extra[extra.index("--blobs") + 1]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tandem", "serve", "--data", str(data_dir),
             "--port", str(port), "--gc-interval", "0", *extra],
            stdout=log, stderr=subprocess.STDOUT,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", data_dir, process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.05)
    stop_server(server)
    raise RuntimeError(f"server did not start within 30 s:\n{server.log()}")


def stop_server(server: RunningServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    """A fresh server with collection grace 0, so tests can watch garbage collection."""
    running = start_server(tmp_path / "server", "--gc-grace", "0")
    try:
        yield running
    finally:
        stop_server(running)


def tandem(home: Path, *args: str, stdin: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI as a user would, with its own TANDEM_HOME."""
    env = {**os.environ, "TANDEM_HOME": str(home)}
    env.pop("TANDEM_PASSWORD", None)
    return subprocess.run([sys.executable, "-m", "tandem", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=timeout)
