"""The daemon's live status and control socket: `LiveStatus` (pure, with an injected clock),
the socket server on a tmp path (private, bounded, stale files replaced), and `tandem status`
asking a real `tandem sync` daemon through the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tandem.sync import control as control_module
from tandem.sync.control import (
    MAX_REQUEST_BYTES,
    ControlError,
    ControlServer,
    ask,
    socket_path,
)
from tandem.sync.live import LiveStatus, in_flight
from tandem.sync.model import SyncedEntry
from tandem.sync.state import StateDB
from tandem.sync.status import Overview, status_handler
from tests.conftest import RunningServer
from tests.sync_helpers import link_devices, stop_processes, wait_until, write


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---- LiveStatus -----------------------------------------------------------------------------

# Each case: steps as (seconds after start, method, args), then what snapshot() says at the end
# (only the keys given are compared).
LIVE_CASES: dict[str, tuple[list[tuple[float, str, tuple[Any, ...]]], dict[str, Any]]] = {
    "fresh": ([], {"activity": "idle", "files_in_flight": 0, "rate": 0.0, "transfers": {}}),
    "one transfer half done": (
        [(0, "start_transfer", ("a.bin", 1000)), (1, "advance", ("a.bin", 500))],
        {"files_in_flight": 1, "bytes_done": 500, "bytes_total": 1000,
         "transfers": {"a.bin": {"bytes_done": 500, "bytes_total": 1000}}, "rate": 500.0}),
    "finished transfers leave, their bytes stay in the rate": (
        [(0, "start_transfer", ("a", 10)), (0, "advance", ("a", 10)), (2, "finish_transfer", ("a",))],
        {"files_in_flight": 0, "transfers": {}, "rate": 5.0}),
    "rate is over the window once older than it": (
        [(0, "advance", ("x", 1000)), (10, "advance", ("x", 2000))],
        {"rate": 400.0}),
    "old bytes fall out of the window": (
        [(0, "advance", ("x", 1000)), (20, "set_activity", ("idle",))],
        {"rate": 0.0}),
    "advance past total grows the total": (
        [(0, "start_transfer", ("a", 10)), (1, "advance", ("a", 15))],
        {"transfers": {"a": {"bytes_done": 15, "bytes_total": 15}}}),
    "restart resets a path": (
        [(0, "start_transfer", ("a", 10)), (0, "advance", ("a", 5)), (1, "start_transfer", ("a", 20))],
        {"transfers": {"a": {"bytes_done": 0, "bytes_total": 20}}}),
    "unknown paths: advance counts for the rate only, finish is ignored": (
        [(0, "advance", ("ghost", 100)), (1, "finish_transfer", ("ghost",))],
        {"transfers": {}, "rate": 100.0}),
    "zero and negative advances are ignored": (
        [(0, "start_transfer", ("a", 10)), (1, "advance", ("a", 0)), (1, "advance", ("a", -5))],
        {"bytes_done": 0, "rate": 0.0}),
    "activity and how long": (
        [(0, "set_activity", ("scanning",)), (3, "set_activity", ("syncing",)),
         (4.5, "set_activity", ("syncing",))],
        {"activity": "syncing", "activity_seconds": 1.5}),
    "several in flight add up": (
        [(0, "start_transfer", ("a", 100)), (0, "start_transfer", ("b/c", 50)),
         (1, "advance", ("a", 30)), (1, "advance", ("b/c", 20))],
        {"files_in_flight": 2, "bytes_done": 50, "bytes_total": 150, "rate": 50.0}),
}


@pytest.mark.parametrize("case", list(LIVE_CASES))
def test_live_status(case: str) -> None:
    steps, expected = LIVE_CASES[case]
    clock = Clock()
    live = LiveStatus(clock=clock, window=5.0)
    start = clock.now
    for at, method, args in steps:
        clock.now = start + at
        getattr(live, method)(*args)
    snapshot = live.snapshot()
    json.dumps(snapshot)  # JSON-ready
    assert {key: snapshot[key] for key in expected} == expected


def test_live_status_refuses_unknown_activity_and_restores_after_a_block() -> None:
    live = LiveStatus(clock=Clock())
    with pytest.raises(ValueError):
        live.set_activity("dancing")
    live.set_activity("syncing")
    with live.activity("scanning"):
        assert live.snapshot()["activity"] == "scanning"
    assert live.snapshot()["activity"] == "syncing"


def test_live_status_generation_changes_with_activity_and_files_in_flight() -> None:
    live = LiveStatus(clock=Clock())
    seen = [live.generation()]
    for step in (lambda: live.set_activity("scanning"), lambda: live.set_activity("idle"),
                 lambda: live.start_transfer("a", 10), lambda: live.finish_transfer("a")):
        step()
        seen.append(live.generation())
    assert len(set(seen)) == len(seen)  # every step is seen, even a pass shorter than a poll
    for quiet in (lambda: live.set_activity("idle"), lambda: live.advance("a", 5),
                  lambda: live.finish_transfer("unknown")):
        quiet()
        assert live.generation() == seen[-1]


def test_live_status_is_thread_safe() -> None:
    live = LiveStatus()
    live.start_transfer("big", 0)

    def work() -> None:
        for _ in range(2000):
            live.advance("big", 1)
            live.snapshot()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert live.transfers()["big"] == (8000, 8000)


@pytest.mark.parametrize(("path", "expected"), [
    ("a.bin", (5, 10)), ("docs", (3, 9)), ("docs/x", (1, 4)), ("", (8, 19)), ("doc", None),
    ("other", None),
])
def test_in_flight_covers_folders(path: str, expected: tuple[int, int] | None) -> None:
    live = LiveStatus(clock=Clock())
    for where, done, total in (("a.bin", 5, 10), ("docs/x", 1, 4), ("docs/y/z", 2, 5)):
        live.start_transfer(where, total)
        live.advance(where, done)
    assert in_flight(live.snapshot(), path) == expected


# ---- the control server ---------------------------------------------------------------------

@pytest.fixture
def control_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return home


@pytest.fixture
def control(control_home: Path) -> Iterator[ControlServer]:
    server = ControlServer(socket_path(control_home))
    server.register("echo", lambda request: {"echo": request.get("value")})
    server.register("boom", lambda request: 1 // 0)  # type: ignore[arg-type,return-value]
    server.register("not json", lambda request: {"a set": {1}})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _talk(path: Path, payload: bytes, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Send raw bytes, close the write side, read every reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while data := sock.recv(1 << 16):
            received += data
    return [json.loads(line) for line in received.splitlines()]


def test_socket_is_private_and_answers(control: ControlServer, control_home: Path) -> None:
    path = socket_path(control_home)
    mode = os.lstat(path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert ask(control_home, {"op": "echo", "value": [1, "two"]}) == {"echo": [1, "two"]}
    assert ask(control_home, {"op": "ping"}) == {"pong": True, "pid": os.getpid()}


@pytest.mark.parametrize(("payload", "code"), [
    (b"not json\n", "invalid_request"),
    (b"[1, 2]\n", "invalid_request"),
    (b'{"no": "op"}\n', "invalid_request"),
    (b'{"op": 7}\n', "invalid_request"),
    (b"\n", "invalid_request"),
    (b"\xff\xfe\n", "invalid_request"),
    (b'{"op": "nope"}\n', "unknown_op"),
    (b'{"op": "boom"}\n', "internal"),
    (b'{"op": "not json"}\n', "internal"),
    (b"[" * 60000 + b"\n", "invalid_request"),
    (b'{"op": "echo", "value": "' + b"x" * MAX_REQUEST_BYTES + b'"}\n', "request_too_large"),
    (b"y" * (MAX_REQUEST_BYTES * 4) + b"\n", "request_too_large"),
])
def test_bad_requests_get_error_replies(control: ControlServer, control_home: Path,
                                        payload: bytes, code: str) -> None:
    replies = _talk(socket_path(control_home), payload)
    assert len(replies) == 1 and replies[0]["error"]["code"] == code, replies
    # The server is still there, and the same connection keeps serving after an error.
    assert ask(control_home, {"op": "echo", "value": 1}) == {"echo": 1}
    again = _talk(socket_path(control_home), payload + b'{"op": "echo", "value": 2}\n')
    assert again[-1] == {"echo": 2}


def test_a_request_without_a_final_newline_is_answered(control: ControlServer,
                                                       control_home: Path) -> None:
    assert _talk(socket_path(control_home), b'{"op": "echo", "value": 3}') == [{"echo": 3}]


def test_stop_removes_the_socket_and_ask_then_says_none(control_home: Path) -> None:
    server = ControlServer(socket_path(control_home))
    server.start()
    try:
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a client that never speaks
        idle.connect(str(socket_path(control_home)))
    finally:
        server.stop()
    idle.close()
    assert not socket_path(control_home).exists()
    assert ask(control_home, {"op": "ping"}) is None


def test_a_silent_client_is_dropped_after_the_read_timeout(
        control: ControlServer, control_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control_module, "READ_TIMEOUT", 0.2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(socket_path(control_home)))
        sock.sendall(b'{"op": "ping"')  # never finished
        started = time.monotonic()
        assert sock.recv(100) == b""  # the server hung up
        assert time.monotonic() - started < 5
    assert ask(control_home, {"op": "ping"}) is not None


def test_too_many_clients_are_told_to_wait(control: ControlServer, control_home: Path) -> None:
    control.slots = threading.BoundedSemaphore(1)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as first:
        first.connect(str(socket_path(control_home)))
        wait_until(lambda: bool(control._clients), timeout=5, what="the first client served")
        assert ask(control_home, {"op": "ping"}) == {
            "error": {"code": "busy", "message": "too many clients at once; try again"}}
    wait_until(lambda: ask(control_home, {"op": "ping"}) == {"pong": True, "pid": os.getpid()},
               timeout=10, what="a free slot again")


def test_ask_without_a_daemon_is_none(control_home: Path, tmp_path: Path) -> None:
    assert ask(control_home, {"op": "status"}) is None  # no socket file
    assert ask(tmp_path / "no-such-home", {"op": "status"}) is None
    socket_path(control_home).write_text("not a socket")
    assert ask(control_home, {"op": "status"}) is None


def test_a_stale_socket_is_replaced(control_home: Path) -> None:
    path = socket_path(control_home)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # what a killed daemon leaves: a socket file nobody listens on
    dead.close()
    assert path.exists()
    assert ask(control_home, {"op": "ping"}) is None
    with ControlServer(path):
        assert ask(control_home, {"op": "ping"}) == {"pong": True, "pid": os.getpid()}
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert not path.exists()


def test_refuses_when_a_daemon_answers_or_the_path_is_not_a_socket(control: ControlServer,
                                                                   control_home: Path) -> None:
    with pytest.raises(ControlError, match="already answers"):
        ControlServer(socket_path(control_home)).start()
    assert ask(control_home, {"op": "ping"}) is not None  # the first one is untouched
    other = control_home / "other"
    other.mkdir()
    (other / "control.sock").write_text("a file")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(socket_path(other)).start()
    assert (other / "control.sock").read_text() == "a file"


def test_long_home_paths_work(tmp_path: Path) -> None:
    home = tmp_path / ("long-" + "x" * 60) / ("deeper-" + "y" * 60)
    home.mkdir(parents=True)
    assert len(str(socket_path(home))) > 108
    with ControlServer(socket_path(home)):
        assert socket_path(home).exists()
        assert stat.S_IMODE(os.lstat(socket_path(home)).st_mode) == 0o600
        assert ask(home, {"op": "ping"}) is not None
    assert not socket_path(home).exists()


def test_status_handler_reports_paths_and_live(control_home: Path) -> None:
    state = StateDB(control_home / "state.db")
    session: Any = SimpleNamespace(api=None, keys=None, device=SimpleNamespace(
        server_url="http://127.0.0.1:1", device_name="alpha"))
    live = LiveStatus(clock=Clock())
    server = ControlServer(socket_path(control_home))
    server.register("status", status_handler(state, session, live))
    try:
        state.put("folder", "/somewhere")
        state.record_synced([("done.txt", SyncedEntry("n1", "file", 1, "c1", 1, 3, 0))])
        state.set_problems({"bad.txt": "permission denied"}, 0)
        live.set_activity("syncing")
        live.start_transfer("big.bin", 1000)
        live.advance("big.bin", 250)
        server.start()
        overview = ask(control_home, {"op": "status"})
        assert overview is not None
        assert overview["daemon"] is True
        assert overview["folder"] == "/somewhere"
        assert overview["device"] == "alpha"
        assert overview["errors"] == {"bad.txt": "permission denied"}
        assert overview["live"]["activity"] == "syncing"
        assert overview["live"]["files_in_flight"] == 1
        assert not any(key.startswith("_") for key in overview)
        assert ask(control_home, {"op": "status", "paths": []}) == {
            "daemon": True, "folder": "/somewhere", "paths": {}}
        paths = ask(control_home, {"op": "status", "paths": ["done.txt", "bad.txt", "big.bin",
                                                             "nowhere"]})
        assert paths is not None
        assert paths["paths"] == {
            "done.txt": {"state": "synced"},
            "bad.txt": {"state": "error", "reason": "permission denied"},
            "big.bin": {"state": "syncing", "bytes_done": 250, "bytes_total": 1000},
            "nowhere": {"state": "ignored",
                        "reason": "not in the synced folder's tree"},
        }
        refused = ask(control_home, {"op": "status", "paths": "done.txt"})
        assert refused is not None and refused["error"]["code"] == "invalid_request"
    finally:
        server.stop()
        state.close()


def _offline_session() -> Any:
    return SimpleNamespace(api=None, keys=None, device=SimpleNamespace(
        server_url="http://127.0.0.1:1", device_name="alpha"))


def test_overview_is_kept_until_the_state_is_written(control_home: Path) -> None:
    state = StateDB(control_home / "state.db")
    try:
        overview = Overview(state, _offline_session())
        state.set_problems({"a.txt": "permission denied"}, 0)
        first = overview.get()
        assert first["errors"] == {"a.txt": "permission denied"}
        assert overview.get() is first  # nothing written: the same answer, not computed again
        state.get("folder")  # reads change nothing
        assert overview.get() is first
        state.set_problems({}, 0)
        assert overview.get()["errors"] == {}
        state.record_synced([("done.txt", SyncedEntry("n1", "file", 1, "c1", 1, 3, 0))])
        assert overview.get()["_synced"] == {"done.txt"}
    finally:
        state.close()


def test_overview_warms_while_idle_within_its_share_of_time(control_home: Path) -> None:
    state = StateDB(control_home / "state.db")
    clock = Clock()
    try:
        overview = Overview(state, _offline_session(), clock=clock)
        overview.warm()  # never computed: computes now
        first = overview.get()
        state.put("folder", "/one")
        overview._cost = 0.5  # as if the last one took half a second
        clock.now += 0.5 * Overview.WARM_SHARE - 1
        overview.warm()  # stale, but too soon after the last one: left for later
        assert overview._changes != state.changes
        clock.now += 1
        overview.warm()
        assert overview._changes == state.changes
        assert overview.get() is not first and overview.get()["folder"] == "/one"
    finally:
        state.close()


# ---- through the real CLI -------------------------------------------------------------------

def test_status_asks_the_running_daemon(server: RunningServer, tmp_path: Path) -> None:
    (alpha,) = link_devices(server, tmp_path, count=1)
    write(alpha.folder, "hello.txt", "hello\n")
    sock = socket_path(alpha.home)
    daemon = alpha.daemon()
    try:
        wait_until(lambda: sock.exists() or daemon.poll() is not None, timeout=60,
                   what="the daemon's control socket")
        assert daemon.poll() is None, alpha.daemon_log()
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600

        result = alpha.run("status", "--json", timeout=60)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["daemon"] is True
        assert report["live"]["activity"] in ("idle", "scanning", "syncing")
        assert report["folder"] == str(alpha.folder.resolve())

        def synced() -> bool:
            answer = alpha.run("status", "--json", str(alpha.folder / "hello.txt"), timeout=60)
            assert answer.returncode == 0, answer.stderr
            return bool(json.loads(answer.stdout)["paths"][str(alpha.folder / "hello.txt")]["state"]
                        == "synced")

        wait_until(synced, timeout=60, interval=0.2, what="hello.txt synced by the daemon")
        text = alpha.run("status", timeout=60)
        assert text.returncode == 0, text.stderr
        assert "Now:" in text.stdout
        outside = alpha.run("status", str(tmp_path), timeout=60)
        assert outside.returncode == 1 and "not inside the sync folder" in outside.stderr

        os.kill(daemon.pid, signal.SIGINT)
        daemon.wait(timeout=30)
        assert daemon.returncode == 0, alpha.daemon_log()
        assert not sock.exists()
        fallback = alpha.run("status", "--json", timeout=60)
        assert fallback.returncode == 0, fallback.stderr
        assert json.loads(fallback.stdout)["daemon"] is False
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the daemon did not stop on SIGINT:\n{alpha.daemon_log()}") from None
    finally:
        stop_processes(daemon)


@pytest.mark.parametrize(("live", "line"), [
    ({"activity": "idle", "files_in_flight": 0, "bytes_done": 0, "bytes_total": 0, "rate": 0.0},
     "idle"),
    ({"activity": "syncing", "files_in_flight": 2, "bytes_done": 1536, "bytes_total": 3 << 20,
      "rate": 2048.0}, "syncing, 2 file(s) in flight (1.5 KiB of 3.0 MiB), 2.0 KiB/s"),
    ({"activity": "scanning", "files_in_flight": 0, "bytes_done": 0, "bytes_total": 0,
      "rate": 300.0}, "scanning, 300 B/s"),
])
def test_now_line(live: dict[str, Any], line: str) -> None:
    from tandem.cli.status import _now_line

    assert _now_line(live) == line
