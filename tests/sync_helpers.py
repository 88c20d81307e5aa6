"""Helpers for the sync integration tests: linked devices driven through the real CLI.

A `Device` is one client: its own TANDEM_HOME and its own folder, both under the test's
tmp_path, all on one account. Nothing here asserts on a sync's outcome except `synced()`:
tests look at the CompletedProcess themselves. Every process started here is stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from tests.conftest import RunningServer, stop_server
from tests.helpers_storage import blob_store

PASSWORD = "correct horse battery staple"
#: `tandem serve` as the `server` fixture runs it (conftest), minus --data and --port.
SERVE_FLAGS = ("--gc-interval", "0", "--gc-grace", "0")
#: Root without these capabilities is refused by file permissions like any user.
NO_DAC = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


def run_cli(home: Path, *args: str, stdin: str | None = "", prefix: Sequence[str] = (),
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real CLI in its own process with its own TANDEM_HOME, as conftest's `tandem`;
    stdin is never the terminal, so no command waits for a confirmation.

    Each run is a fork of this process that calls `tandem.cli.main.main()` with the
    arguments, stdio redirected to files, exit code and tracebacks as the interpreter gives
    them: the same code as `python -m tandem` without its ~0.5 s of interpreter start and
    imports, which would otherwise dominate these tests. `python -m tandem` itself is run
    instead under a command `prefix` (e.g. without root's file-permission override), while
    this process has other threads (fork would copy their locks), or with
    TANDEM_TEST_SPAWN=1.
    """
    if prefix or _SPAWN or threading.active_count() > 1:
        env = {**os.environ, "TANDEM_HOME": str(home)}
        env.pop("TANDEM_PASSWORD", None)
        return subprocess.run([*prefix, sys.executable, "-m", "tandem", *args], input=stdin,
                              env=env, capture_output=True, text=True, timeout=timeout)
    return _forked(home, list(args), stdin or "", timeout)


_SPAWN = os.environ.get("TANDEM_TEST_SPAWN") == "1"


def _forked(home: Path, args: list[str], stdin: str,
            timeout: float) -> subprocess.CompletedProcess[str]:
    from tandem.cli.main import main  # imported once, in this process: the children inherit it

    with tempfile.TemporaryDirectory(prefix="tandem-cli-") as scratch:
        paths = [Path(scratch) / name for name in ("stdin", "stdout", "stderr")]
        paths[0].write_text(stdin)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.environ["TANDEM_HOME"] = str(home)
                os.environ.pop("TANDEM_PASSWORD", None)
                for fd, path in enumerate(paths):
                    flags = os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                    opened = os.open(path, flags, 0o600)
                    os.dup2(opened, fd)
                    os.close(opened)
                sys.stdin = open(0, closefd=False)  # noqa: SIM115
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                sys.argv = ["tandem", *args]
                try:
                    main()
                    code = 0
                except SystemExit as exc:
                    if exc.code is None or isinstance(exc.code, int):
                        code = exc.code or 0
                    else:
                        print(exc.code, file=sys.stderr)
                except BaseException:
                    traceback.print_exc()
            finally:
                with suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired(["tandem", *args], timeout)
            time.sleep(0.002)
        return subprocess.CompletedProcess(["tandem", *args], os.waitstatus_to_exitcode(status),
                                           paths[1].read_text(errors="replace"),
                                           paths[2].read_text(errors="replace"))


@dataclass
class Device:
    name: str
    home: Path
    folder: Path

    def run(self, *args: str, prefix: Sequence[str] = (),
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_cli(self.home, *args, prefix=prefix, timeout=timeout)

    def sync(self, *extra: str, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """One `tandem sync --folder F --once` pass; asserts nothing."""
        return self.run("sync", "--folder", str(self.folder), "--once", *extra, prefix=prefix)

    def synced(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """A pass that must succeed."""
        result = self.sync(*extra)
        assert result.returncode == 0, f"{self.name}: {result.stdout}{result.stderr}"
        return result

    def token(self) -> str:
        return str(json.loads((self.home / "device.json").read_text())["token"])

    def account(self, server_url: str) -> dict[str, object]:
        """GET /account as this device (used_bytes, cursor)."""
        reply = httpx.get(f"{server_url}/account", timeout=30,
                          headers={"Authorization": f"Bearer {self.token()}"})
        reply.raise_for_status()
        return dict(reply.json())

    def daemon(self) -> subprocess.Popen[bytes]:
        """`tandem sync --folder F` in the background; its output goes to HOME/../NAME-daemon.log."""
        env = {**os.environ, "TANDEM_HOME": str(self.home)}
        with open(self.home.parent / f"{self.name}-daemon.log", "wb") as log:
            return subprocess.Popen([sys.executable, "-m", "tandem", "sync", "--folder", str(self.folder)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=env)

    def daemon_log(self) -> str:
        path = self.home.parent / f"{self.name}-daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""


def link_devices(server: RunningServer, tmp_path: Path, count: int = 2) -> list[Device]:
    """`count` devices on one new account (the first signs up, the others log in), so tests
    may share a server."""
    names = ["alpha", "beta", "gamma", "delta"][:count]
    email = f"sync-{secrets.token_hex(6)}@example.org"
    devices = []
    for index, name in enumerate(names):
        device = Device(name, tmp_path / f"home-{name}", tmp_path / name)
        device.folder.mkdir()
        command = "signup" if index == 0 else "login"
        result = run_cli(device.home, command, server.url, email, "--password-stdin",
                         "--device-name", name, stdin=PASSWORD + "\n")
        assert result.returncode == 0, result.stderr
        devices.append(device)
    return devices


def sync_all(*devices: Device, rounds: int = 1) -> None:
    """Every device syncs, in order, `rounds` times; every pass must succeed."""
    for _ in range(rounds):
        for device in devices:
            device.synced()


def tree_of(folder: Path) -> dict[str, bytes | str]:
    """Relative path -> bytes (file), 'DIR' (folder) or 'LINK' (symlink), `.tandem/` left out.
    Names are as on disk."""
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        rel_base = base.relative_to(folder)
        if rel_base == Path("."):
            dirnames[:] = [d for d in dirnames if d != ".tandem"]
        for name in list(dirnames):
            rel = (rel_base / name).as_posix()
            found[rel] = "LINK" if (base / name).is_symlink() else "DIR"
        for name in filenames:
            rel = (rel_base / name).as_posix()
            found[rel] = "LINK" if (base / name).is_symlink() else (base / name).read_bytes()
    return found


def write(folder: Path, relative: str, data: bytes | str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """A failure as CLI.md wants it: exit 1, one line on stderr, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def changes_applied(result: subprocess.CompletedProcess[str]) -> int:
    """N from `Sync done: N change(s) applied`."""
    for line in result.stdout.splitlines():
        if line.startswith("Sync done: "):
            return int(line.split()[2])
    raise AssertionError(f"no summary line in {result.stdout!r}")


def transferred(result: subprocess.CompletedProcess[str]) -> tuple[int, int]:
    """(bytes sent, bytes received) from the summary line."""
    sent = re.search(r"(\d+) bytes sent", result.stdout)
    received = re.search(r"(\d+) bytes received", result.stdout)
    assert sent and received, f"no byte counts in {result.stdout!r}"
    return int(sent.group(1)), int(received.group(1))


def blob_bytes(server: RunningServer) -> int:
    """Bytes in the server's blob store (what was ever stored and is still there)."""
    return sum(size for _, size in blob_store(server.data_dir).sizes())


def restart_on_same_port(server: RunningServer) -> RunningServer:
    """Stop the server and start it again on the same data and port (devices keep their URL)."""
    stop_server(server)
    port = urlparse(server.url).port
    assert port is not None
    log_path = server.data_dir.parent / f"server-{port}-again.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tandem", "serve", "--data", str(server.data_dir),
             "--port", str(port), *SERVE_FLAGS], stdout=log, stderr=subprocess.STDOUT)
    again = RunningServer(server.url, server.data_dir, process, log_path)
    try:
        wait_until(lambda: _healthy(again), timeout=30, what=f"server back on port {port}")
    except BaseException:
        stop_server(again)
        raise
    return again


def _healthy(server: RunningServer) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"server exited:\n{server.log()}")
    try:
        return httpx.get(f"{server.url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, interval: float = 0.05,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stop_processes(*processes: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM each by PID, wait for all within `grace` seconds, then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def daemons(*devices: Device) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`tandem sync` daemons for the devices, each stopped by PID on the way out."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for device in devices:
            started.append(device.daemon())
        yield started
    finally:
        stop_processes(*started, grace=3.0)


class Proxy(ABC):
    """A TCP proxy on 127.0.0.1 in front of the server: `serve` handles each accepted
    connection (subclasses decide how); every socket and thread is tracked, so `close` stops
    them all."""

    def __init__(self, server_url: str) -> None:
        target = urlparse(server_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 80)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def close(self) -> None:
        """Stop and join every thread (shutdown wakes a thread blocked on its socket)."""
        with self._lock:
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in [self._accepting, *self._threads]:
            thread.join(timeout=5)

    def track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._sockets += sockets

    def spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                self.serve(client)
            except OSError:
                return

    @abstractmethod
    def serve(self, client: socket.socket) -> None:
        """Handle one accepted connection (called from the accept thread)."""


class HoldingProxy(Proxy):
    """A TCP proxy in front of the server that holds every request whose head contains
    `marker` until `release()`: a test can freeze a client at a known point of its protocol
    (e.g. with its upload queue full) and change the disk meanwhile."""

    def __init__(self, server_url: str, marker: bytes) -> None:
        self.marker = marker
        self.holding = False
        #: While set, every new connection gets a 503 and is closed (a server in trouble).
        self.failing = False
        self.held = 0
        self._released = threading.Event()
        super().__init__(server_url)

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._released.set()
        super().close()

    def serve(self, client: socket.socket) -> None:
        if self.failing:
            with suppress(OSError):
                client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0"
                               b"\r\nConnection: close\r\n\r\n")
                client.shutdown(socket.SHUT_RDWR)
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=30)
        except OSError:  # the server is down (restarting): refuse this one, keep accepting
            client.close()
            return
        self.track(client, upstream)
        self.spawn(self._pump, client, upstream, True)
        self.spawn(self._pump, upstream, client, False)

    def _pump(self, source: socket.socket, sink: socket.socket, watch: bool) -> None:
        tail = b""
        try:
            while data := source.recv(1 << 16):
                if watch and self.holding and self.marker in tail + data:
                    with self._lock:
                        self.held += 1
                    self._released.wait(timeout=60)
                tail = data[-len(self.marker):]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
