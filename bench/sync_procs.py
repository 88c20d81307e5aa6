"""Processes the sync benchmark starts, measures and always stops; a byte-counting TCP proxy.

Every process is started in its own session and registered; `stop_all()` (called from the
harness's `finally`) stops whatever is still running, by PID, with bounded waits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
WRAPPER = HERE / "sync_wrap.py"
_live: dict[int, subprocess.Popen[bytes]] = {}


class ToolFailed(Exception):
    """A tool's command failed or timed out: the case is FAILED (reason in the message)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ToolFailed(f"exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise ToolFailed(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def _kill(proc: subprocess.Popen[bytes], first: int, grace: float) -> None:
    """Signal the process group we started (the process and any helper it forked, each once, as a
    Ctrl-C would), escalating to SIGKILL after `grace` seconds."""
    for sig, wait in ((first, grace), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):  # leftovers of the group go too
        os.killpg(proc.pid, signal.SIGKILL)
    _live.pop(proc.pid, None)


def stop_all() -> None:
    for proc in list(_live.values()):
        _kill(proc, signal.SIGTERM, 5.0)


def tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])[:400]


@dataclass
class Measured:
    seconds: float
    start: float
    end: float
    maxrss_mib: float
    io: dict[str, int] = field(default_factory=dict)


def run_measured(
    cmd: list[str],
    env: dict[str, str],
    log: Path,
    timeout: float,
    stdin: bytes | None = None,
    check: bool = True,
) -> Measured:
    """Run cmd to completion through the wrapper: wall time, peak RSS, I/O. Bounded by timeout."""
    out = log.with_suffix(log.suffix + ".measure.json")
    out.unlink(missing_ok=True)
    with open(log, "ab") as logfile:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(WRAPPER), str(out), *cmd],
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _live[proc.pid] = proc
    try:
        if stdin is not None and proc.stdin is not None:
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolFailed(f"{Path(cmd[0]).name} timed out after {timeout:.0f} s") from None
    finally:
        _kill(proc, signal.SIGTERM, 5.0)
    try:
        report = json.loads(out.read_text())
    except (OSError, ValueError):
        raise ToolFailed(f"{Path(cmd[0]).name} could not be run (exit {code}): {tail(log)}") from None
    if check and code != 0:
        raise ToolFailed(
            f"`{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:3]))}` "
            f"exited {code}: {tail(log)}"
        )
    return Measured(
        report["end"] - report["start"],
        report["start"],
        report["end"],
        report["maxrss_kib"] / 1024,
        report["io"],
    )


class Daemon:
    """A long-running process (server, Syncthing, a `tandem sync` daemon)."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path, stop_signal: int = signal.SIGTERM):
        self.stop_signal = stop_signal
        self.log = log
        with open(log, "ab") as logfile:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _live[self.proc.pid] = self.proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise ToolFailed(f"pid {self.pid} exited with {self.proc.returncode}: {tail(self.log)}")

    def hwm_mib(self) -> float:
        """Peak RSS (VmHWM) since start or the last reset_hwm()."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def reset_hwm(self) -> None:
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def io(self) -> dict[str, int]:
        try:
            lines = Path(f"/proc/{self.pid}/io").read_text().splitlines()
            return {k: int(v) for k, v in (line.split(":") for line in lines)}
        except OSError:
            return {}

    def stop(self, grace: float = 10.0) -> int | None:
        _kill(self.proc, self.stop_signal, grace)
        return self.proc.returncode


class _Pump(threading.Thread):
    def __init__(self, src: socket.socket, dst: socket.socket):
        super().__init__(daemon=True)
        self.src, self.dst, self.count = src, dst, 0

    def run(self) -> None:
        buf = bytearray(1 << 18)
        view = memoryview(buf)
        try:
            while True:
                n = self.src.recv_into(buf)
                if not n:
                    break
                self.dst.sendall(view[:n])
                self.count += n  # only this thread writes it
        except OSError:
            pass
        for sock, how in ((self.dst, socket.SHUT_WR), (self.src, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                sock.shutdown(how)


class CountingProxy:
    """127.0.0.1:port -> 127.0.0.1:target, counting payload bytes each way (TCP payload: HTTP or TLS
    included, IP/TCP headers not). `up` is client -> target, `down` is target -> client."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.pumps: list[tuple[_Pump, _Pump]] = []
        self.sockets: list[socket.socket] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sockets += [client, upstream]
            pair = (_Pump(client, upstream), _Pump(upstream, client))
            self.pumps.append(pair)
            for pump in pair:
                pump.start()

    def counts(self) -> tuple[int, int]:
        pumps = list(self.pumps)
        return sum(p[0].count for p in pumps), sum(p[1].count for p in pumps)

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=2)
        self.listener.close()
        for sock in list(self.sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for pair in list(self.pumps):
            for pump in pair:
                pump.join(timeout=2)


def tool_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: HOME and XDG dirs in the run's temp dir, so no user config is touched."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
    }
    if "PYTHONPATH" in os.environ:  # so a worktree's code can be measured with the shared venv
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(extra)
    home.mkdir(parents=True, exist_ok=True)
    return env
