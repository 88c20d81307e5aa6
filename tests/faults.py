"""A fault-injecting HTTP proxy between real clients and the real server, driven by a seed.

Each connection carries one request (the proxy asks the server to close after answering, and
so does its answer), so every request is one decision, drawn from a seeded `random.Random`
in the order requests arrive:

- `refuse`: answer 500, 502 or 503 without forwarding;
- `drop_request`: forward part of the request, then drop both connections;
- `delay`: wait up to half a second, then forward;
- `drop_response`: forward, let the server answer, then drop the client's connection unanswered;
- `error_after`: forward, let the server answer, tell the client 502 or 503 instead;
- `truncate`: forward, send the client the answer's head and part of its body, then drop;
- `duplicate`: forward, then replay the same request (a retried commit that already
  succeeded), and answer with one of the two replies.

Requests arrive from several client threads, so the same seed makes the same decisions in
the same order, and nearly the same run.

Tests run it as its own process (`FaultProcess`), so the test process keeps one thread and
its CLI runs stay cheap forks (sync_helpers.run_cli).
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from tests.sync_helpers import Proxy

KINDS = ("refuse", "drop_request", "delay", "drop_response", "error_after", "truncate",
         "duplicate")
_TIMEOUT = 60.0
_STATUS = {500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable"}


class FaultProxy(Proxy):
    def __init__(self, server_url: str, seed: int, rate: float = 0.25,
                 kinds: Sequence[str] = KINDS, only: bytes = b"",
                 limit: int | None = None) -> None:
        """Each request whose first line starts with `only` gets, with probability `rate`,
        one of `kinds`, until `limit` faults were injected (None: no limit)."""
        self.seed = seed
        self.rate = rate
        self.kinds = tuple(kinds)
        self.only = only
        self.limit = limit
        #: While False, every request passes untouched.
        self.enabled = True
        #: Faults injected so far, by kind ("passed": requests left alone; "KIND (commit)":
        #: those on `POST /tree/batch`).
        self.injected: Counter[str] = Counter()
        self._random = random.Random(seed)
        super().__init__(server_url)

    def serve(self, client: socket.socket) -> None:
        client.settimeout(_TIMEOUT)
        self.track(client)
        self.spawn(self._one, client)

    def _decide(self, request: bytes) -> tuple[str, float]:
        with self._lock:
            spent = sum(n for k, n in self.injected.items() if k in KINDS)
            if (not self.enabled or not request.startswith(self.only)
                    or (self.limit is not None and spent >= self.limit)
                    or self._random.random() >= self.rate):
                kind = "passed"
            else:
                kind = self._random.choice(self.kinds)
            self.injected[kind] += 1
            if kind != "passed" and request.startswith(b"POST /tree/batch "):
                self.injected[f"{kind} (commit)"] += 1
            return kind, self._random.random()

    def _one(self, client: socket.socket) -> None:
        try:
            request = _read_request(client)
            if request is None:
                return
            kind, draw = self._decide(request)
            if kind == "refuse":
                client.sendall(_answer(list(_STATUS)[int(draw * 3) % 3]))
                return
            if kind == "drop_request":
                self._forward(request[: max(1, int(len(request) * draw))], answer=False)
                return
            if kind == "delay":
                time.sleep(0.5 * draw)
            reply = self._forward(request)
            if kind == "duplicate":
                again = self._forward(request)
                reply = again if draw < 0.5 else reply
            if kind == "drop_response":
                return
            if kind == "error_after":
                reply = _answer(502 if draw < 0.5 else 503)
            elif kind == "truncate":
                head = reply.find(b"\r\n\r\n") + 4
                reply = reply[: head + int((len(reply) - head) * draw)]
            client.sendall(reply)
        except OSError:
            pass
        finally:
            with suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def _forward(self, request: bytes, answer: bool = True) -> bytes:
        """Send `request` on a new connection to the server; its whole answer (it closes)."""
        with socket.create_connection(self.target, timeout=_TIMEOUT) as upstream:
            self.track(upstream)
            upstream.sendall(request)
            if not answer:
                return b""
            received = bytearray()
            while data := upstream.recv(1 << 16):
                received += data
            return bytes(received)


def _read_request(client: socket.socket) -> bytes | None:
    """One request from the client, rewritten to ask the server to close after answering;
    None if the client hung up first. Bodies are sized (the client never sends chunked)."""
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        data = client.recv(1 << 16)
        if not data:
            return None
        buffer += data
    head, _, body = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    kept = [line for line in lines[1:] if not line.lower().startswith(b"connection:")]
    length = 0
    for line in kept:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        data = client.recv(1 << 16)
        if not data:
            return None
        body += data
    return b"\r\n".join([lines[0], *kept, b"Connection: close"]) + b"\r\n\r\n" + body


def _answer(status: int) -> bytes:
    return (b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            % (status, _STATUS[status]))


class FaultProcess:
    """`FaultProxy` in a process of its own: `url` to point clients at, `stop_faults()`, and
    `close()`, which stops it by PID and returns the faults it injected, by kind."""

    def __init__(self, server_url: str, seed: int, rate: float = 0.25) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults", server_url, str(seed), str(rate)],
            cwd=Path(__file__).resolve().parents[1], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE)
        self.url = self._line()

    def _line(self, timeout: float = 30.0) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line:
            self.close()
            raise AssertionError("the fault proxy did not answer")
        return line

    def stop_faults(self) -> None:
        """From now on every request passes untouched (answered once it is so)."""
        os.kill(self.process.pid, signal.SIGUSR1)
        assert self._line() == "faults off"

    def close(self) -> dict[str, int]:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            out, _ = self.process.communicate(timeout=10)
        last = out.decode().strip().rpartition("\n")[2]
        return dict(json.loads(last)) if last.startswith("{") else {}


def main() -> None:
    target, seed, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    proxy = FaultProxy(target, seed, rate)
    stop = threading.Event()

    def faults_off(*_: object) -> None:
        with proxy._lock:
            proxy.enabled = False
        print("faults off", flush=True)

    signal.signal(signal.SIGUSR1, faults_off)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(proxy.url, flush=True)
    while not stop.wait(0.1):
        pass
    proxy.close()
    print(json.dumps(dict(proxy.injected)), flush=True)


if __name__ == "__main__":
    main()
