"""The running daemon's control socket, and the status it answers with.

`tandem sync` (without --once) listens on `TANDEM_HOME/control.sock`, a Unix-domain socket
private to the user (0600, and the peer's uid is checked). The protocol is one JSON object per
line each way: a request names its `op`; the reply is the handler's dict, or
`{"error": {"code", "message"}}`. Requests are bounded (64 KiB a line, a timeout on every read,
a deadline per line, a few clients at a time); a bad request gets an error reply, never a crash.
Handlers are registered by name (`status`, from `status.py`; `free`, `offline`; `repair`, from
`check_io.py`; `sync`, a full pass for `tandem sync --once`, from `daemon.py`).

`ask()` is the client side: None when no daemon answers, so callers fall back to the state DB.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SOCKET_NAME = "control.sock"
MAX_REQUEST_BYTES = 64 * 1024
#: Every read from a client waits at most this long; a whole request line at most LINE_SECONDS.
READ_TIMEOUT = 5.0
LINE_SECONDS = 10.0
MAX_CLIENTS = 16
#: Longest path a sockaddr_un takes (108 bytes with the NUL); longer ones go through /proc.
_SUN_PATH_MAX = 107

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(Exception):
    """The control socket cannot be set up (another daemon answers there, or the path is taken)."""


class RequestError(Exception):
    """A request the handler refuses: becomes an error reply with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def socket_path(home_path: Path) -> Path:
    return home_path / SOCKET_NAME


def error_reply(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address the kernel takes for `path`: itself, or, when too long for a sockaddr_un,
    the same file reached through this process' descriptor of its folder (Linux)."""
    text = os.fsdecode(path)
    if len(os.fsencode(text)) <= _SUN_PATH_MAX or not os.path.isdir("/proc/self/fd"):
        yield text
        return
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


# ---- client ---------------------------------------------------------------------------------

def ask(home_path: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any] | None:
    """Send one request to the daemon of `home_path` and return its reply (which may be an
    `{"error": ...}` reply). None when no daemon answers: no socket, a stale one, refused,
    timed out, or a reply that is not one JSON object."""
    path = socket_path(home_path)
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            with _address(path) as address:
                sock.connect(address)
            # It may have answered already (busy) and hung up: read what it said anyway.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(json.dumps(request).encode() + b"\n")
            received = bytearray()
            while b"\n" not in received:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                sock.settimeout(left)
                data = sock.recv(1 << 16)
                if not data:
                    break
                received += data
    except OSError:  # FileNotFoundError, ConnectionRefusedError, TimeoutError, PermissionError...
        return None
    line, _, _ = bytes(received).partition(b"\n")
    try:
        reply = json.loads(line)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


# ---- server ---------------------------------------------------------------------------------

class _LineTooLong(Exception):
    pass


class _Lines:
    """Request lines from one client socket: bounded in size, in time per read and per line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def next(self) -> bytes | None:
        """The next line without its newline; None at end of stream. Raises _LineTooLong
        (after skipping to the end of that line, if it comes in time) or OSError/TimeoutError."""
        deadline = time.monotonic() + LINE_SECONDS
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[:end + 1]
                if len(line) > MAX_REQUEST_BYTES:
                    raise _LineTooLong
                return line
            if len(self.buffer) > MAX_REQUEST_BYTES:
                self._skip_line(deadline)
                raise _LineTooLong
            data = self._recv(deadline)
            if not data:  # end of stream: a last line may lack its newline
                line = bytes(self.buffer)
                self.buffer.clear()
                return line or None
            self.buffer += data

    def _recv(self, deadline: float) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request line too slow")
        self.sock.settimeout(min(READ_TIMEOUT, left))
        return self.sock.recv(1 << 16)

    def _skip_line(self, deadline: float) -> None:
        """Drop the rest of an oversized line so the error reply is read, not reset away."""
        self.buffer.clear()
        while True:
            try:
                data = self._recv(deadline)
            except OSError:
                return
            if not data:
                return
            end = data.find(b"\n")
            if end >= 0:
                self.buffer += data[end + 1:]
                return


def _peer_uid(sock: socket.socket) -> int | None:
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option,
                                                              struct.calcsize("3i")))
    except OSError:
        return None
    return int(uid)


class _RequestHandler(socketserver.BaseRequestHandler):
    server: _UnixServer

    def handle(self) -> None:
        control = self.server.control
        sock: socket.socket = self.request
        if not control.slots.acquire(blocking=False):
            self._send(error_reply("busy", "too many clients at once; try again"))
            return
        control.opened(sock)
        try:
            uid = _peer_uid(sock)
            if uid is not None and uid not in (os.geteuid(), 0):
                self._send(error_reply("forbidden", "not this daemon's user"))
                return
            lines = _Lines(sock)
            while True:
                try:
                    line = lines.next()
                except _LineTooLong:
                    self._send(error_reply(
                        "request_too_large", f"a request line is at most {MAX_REQUEST_BYTES} bytes"))
                    continue
                except OSError:  # timed out, reset, or closed by stop()
                    return
                if line is None:
                    return
                if not self._send(control.dispatch(line)):
                    return
        finally:
            control.closed(sock)
            control.slots.release()

    def _send(self, reply: dict[str, Any]) -> bool:
        try:
            data = json.dumps(reply, sort_keys=True).encode()
        except (TypeError, ValueError) as exc:
            data = json.dumps(error_reply("internal", f"the reply is not JSON: {exc}")).encode()
        try:
            self.request.settimeout(READ_TIMEOUT)
            self.request.sendall(data + b"\n")
            return True
        except OSError:
            return False


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, address: str, control: ControlServer) -> None:
        self.control = control
        super().__init__(address, _RequestHandler, bind_and_activate=False)


class ControlServer:
    """The daemon's side: `start()` before the engine runs, `stop()` (or leave the `with`)
    when it stops. The socket file is removed on stop, and a stale one replaced on start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._handlers: dict[str, Handler] = {"ping": lambda _request: {"pong": True,
                                                                        "pid": os.getpid()}}
        self._server: _UnixServer | None = None
        self._thread: threading.Thread | None = None
        self._inode: int | None = None
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()

    def register(self, op: str, handler: Handler) -> None:
        self._handlers[op] = handler

    # ---- life -----------------------------------------------------------------------------

    def start(self) -> None:
        self._clear_stale()
        with _address(self.path) as address:
            server = _UnixServer(address, self)
            try:
                server.server_bind()
                # Private before anyone can connect: connecting needs listen(), which follows.
                os.chmod(address, 0o600)
                self._inode = os.stat(address).st_ino
                server.server_activate()
            except BaseException:
                server.server_close()
                if self._inode is not None:
                    self._remove_own_socket()
                raise
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name="tandem-control")
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()  # the accept loop ends
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:  # wakes handlers blocked in recv; they end on their own
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 2
        while self._clients and time.monotonic() < deadline:
            time.sleep(0.01)
        self._remove_own_socket()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _clear_stale(self) -> None:
        """Refuse a path where a daemon answers or that is not a socket; remove a dead one."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket: remove it, then start again")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2.0)
            try:
                with _address(self.path) as address:
                    probe.connect(address)
            except (ConnectionRefusedError, FileNotFoundError):
                pass  # left by a daemon that was killed: nobody listens
            except OSError as exc:
                raise ControlError(f"cannot tell whether a daemon answers at {self.path}: {exc}") from exc
            else:
                raise ControlError(f"another daemon already answers at {self.path}")
        self.path.unlink(missing_ok=True)

    def _remove_own_socket(self) -> None:
        """Remove the socket file, unless it is no longer ours (replaced by a newer daemon)."""
        try:
            if self._inode is not None and os.lstat(self.path).st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self._inode = None

    # ---- requests -------------------------------------------------------------------------

    def opened(self, client: socket.socket) -> None:
        with self._clients_lock:
            self._clients.add(client)

    def closed(self, client: socket.socket) -> None:
        with self._clients_lock:
            self._clients.discard(client)

    def dispatch(self, line: bytes) -> dict[str, Any]:
        """One request line -> one reply; every failure is an error reply."""
        try:
            request = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            return error_reply("invalid_request", "a request is one JSON object per line")
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return error_reply("invalid_request", 'a request is a JSON object with an "op" string')
        handler = self._handlers.get(request["op"])
        if handler is None:
            return error_reply("unknown_op", f"unknown op {request['op']!r}"
                               f" (known: {', '.join(sorted(self._handlers))})")
        try:
            return handler(request)
        except RequestError as exc:
            return error_reply(exc.code, str(exc))
        except Exception as exc:  # a handler's bug must not take the daemon down
            return error_reply("internal", f"{type(exc).__name__}: {exc}")
