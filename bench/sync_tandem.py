"""Tandem, through its command-line contract only (/work/shared/CLI.md):

    tandem serve --data D --port P                      (binds 127.0.0.1)
    TANDEM_HOME=hA tandem signup URL EMAIL --password-stdin
    TANDEM_HOME=hB tandem login  URL EMAIL --password-stdin
    TANDEM_HOME=hX tandem sync --folder X --once        (timed cases: A, then B)
    TANDEM_HOME=hX tandem sync --folder X               (latency: both running, stopped with SIGINT)

Each client reaches the server through its own counting proxy, so `sent` is what client A
uploaded and `wire` is every byte both clients exchanged with the server. TANDEM_INSECURE_FAST_KDF=1
is set for signup and login only (account creation speed), never for the timed commands.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import ClassVar

from sync_procs import (
    CountingProxy,
    Daemon,
    Measured,
    ToolFailed,
    free_port,
    run_measured,
    tool_env,
    wait_port,
)
from sync_tools import VENV_BIN, LatencyMode, Result, Session, version_of

EMAIL = "sync-bench@example.org"
PASSWORD = b"sync-bench-password-1\n"


def _binary() -> str:
    local = VENV_BIN / "tandem"
    return str(local) if local.exists() else (shutil.which("tandem") or "tandem")


class Tandem:
    name = "tandem"
    title = "Tandem (server on 127.0.0.1, two clients)"
    anchor = False
    binary = _binary()

    @classmethod
    def unavailable(cls) -> str | None:
        probe = Path(tempfile.mkdtemp(prefix="tandem-sync-bench-probe-"))
        try:
            out = subprocess.run(
                [cls.binary, "sync", "--help"],
                capture_output=True,
                text=True,
                timeout=60,
                env=tool_env(probe),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`tandem` cannot be run ({exc})"
        finally:
            shutil.rmtree(probe, ignore_errors=True)
        if out.returncode != 0:
            lines = (out.stderr or out.stdout).strip().splitlines()
            return f"`tandem sync --help` exited {out.returncode}: {lines[-1] if lines else ''}"
        return None

    @classmethod
    def version(cls) -> str:
        return version_of([cls.binary, "--version"])

    @classmethod
    def open(cls, base: Path, timeout: float) -> TandemSession:
        return TandemSession(base, timeout, cls.binary)


class TandemSession(Session):
    bytes_method = (
        "TCP payload (HTTP) through one counting proxy per client in front of `tandem serve`; "
        "sent = client A -> server"
    )
    latency_modes: ClassVar[list[LatencyMode]] = [
        LatencyMode("latency", "both `tandem sync` daemons running")
    ]

    def __init__(self, base: Path, timeout: float, binary: str):
        super().__init__(base, timeout)
        self.tandem = binary
        port = free_port()
        self.server = Daemon(
            [binary, "serve", "--data", str(base / "server"), "--port", str(port)],
            tool_env(base / "home-server"),
            self.logs / "server.log",
        )
        self.proxies: list[CountingProxy] = []
        self.daemons: list[Daemon] = []
        try:
            wait_port(port, 60, self.server.proc)
            self.proxies = [CountingProxy(port), CountingProxy(port)]
            self.envs = [
                tool_env(base / f"home-{x}", TANDEM_HOME=str(base / f"tandem-home-{x}")) for x in "AB"
            ]
            for env, proxy, command in zip(self.envs, self.proxies, ("signup", "login"), strict=True):
                run_measured(
                    [binary, command, f"http://127.0.0.1:{proxy.port}", EMAIL, "--password-stdin"],
                    {**env, "TANDEM_INSECURE_FAST_KDF": "1"},
                    self.logs / f"{command}.log",
                    120,
                    stdin=PASSWORD,
                )
        except BaseException:
            self.close()
            raise

    def _counts(self) -> tuple[int, int]:
        """(bytes client A sent to the server, all bytes both ways for both clients)."""
        (a_up, a_down), (b_up, b_down) = (p.counts() for p in self.proxies)
        return a_up, a_up + a_down + b_up + b_down

    def sync(self, case: str, expected_files: int, expected_bytes: int) -> Result:
        self.server.reset_hwm()
        sent0, wire0 = self._counts()
        runs = []
        for env, side, label in zip(self.envs, (self.side_a, self.side_b), "AB", strict=True):
            runs.append(
                run_measured(
                    [self.tandem, "sync", "--folder", str(side), "--once"],
                    env,
                    self.logs / f"{case}-{label}.log",
                    self.timeout,
                )
            )
        sent, wire = self._counts()
        self.server.check_alive()
        return Result(
            runs[0].seconds + runs[1].seconds,  # (not the harness's start-up of B's command)
            sent=sent - sent0,
            wire=wire - wire0,
            rss={"client": max(r.maxrss_mib for r in runs), "server": self.server.hwm_mib()},
            extra={
                "a_seconds": runs[0].seconds,
                "b_seconds": runs[1].seconds,
                "rss_a": runs[0].maxrss_mib,
                "rss_b": runs[1].maxrss_mib,
            },
        )

    def latency_enter(self, mode: LatencyMode) -> None:
        for env, side, label in zip(self.envs, (self.side_a, self.side_b), "AB", strict=True):
            self.daemons.append(
                Daemon(
                    [self.tandem, "sync", "--folder", str(side)],
                    env,
                    self.logs / f"daemon-{label}.log",
                    stop_signal=signal.SIGINT,
                )
            )

    def check_alive(self) -> None:
        for daemon in self.daemons:
            daemon.check_alive()

    def latency_exit(self, mode: LatencyMode) -> None:
        self.latency_rss = {label: d.hwm_mib() for label, d in zip("AB", self.daemons, strict=False)}
        self.latency_rss["server"] = self.server.hwm_mib()
        codes = [daemon.stop(grace=15) for daemon in self.daemons]
        self.daemons.clear()
        if any(code not in (0, -signal.SIGINT, 130) for code in codes):
            self.notes.append(
                f"`tandem sync` daemons (A, B) ended with {codes} after SIGINT "
                "(-9: still running 15 s after SIGINT, killed)"
            )

    def close(self) -> None:
        try:
            for daemon in self.daemons:
                daemon.stop()
            for proxy in self.proxies:
                proxy.close()
        finally:
            self.server.stop()


def stat_tree(side: Path) -> dict[str, tuple[int, int]]:
    """relpath -> (size, mtime_ns) of every file, names starting with a dot left out (as in verify)."""
    files: dict[str, tuple[int, int]] = {}
    stack = [("", str(side))]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((prefix + entry.name + "/", entry.path))
                else:
                    st = entry.stat(follow_symlinks=False)
                    files[prefix + entry.name] = (st.st_size, st.st_mtime_ns)
    return files


def _stat_of(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class TandemDaemons(Tandem):
    name = "tandem-daemon"
    title = "Tandem, both `tandem sync` daemons running"

    @classmethod
    def open(cls, base: Path, timeout: float) -> TandemDaemonSession:
        return TandemDaemonSession(base, timeout, cls.binary)


class TandemDaemonSession(TandemSession):
    """Both clients run `tandem sync` (watcher + long-poll) for the whole session, as a user runs
    them. The clock starts when the daemons are launched (initial sync) or when the harness begins
    the mutation on A (later cases), and stops when every file of A is on B with A's size and
    mtime (then the harness verifies content by SHA-256). No-change resync: see `_resync`."""

    def sync(self, case: str, expected_files: int, expected_bytes: int) -> Result:
        if case.startswith("resync"):
            return self._resync(case)
        sent0, wire0 = self._counts()
        if not self.daemons:
            start = time.monotonic()
            self.latency_enter(self.latency_modes[0])
        else:
            start = self.mutation_started if self.mutation_started is not None else time.monotonic()
            for daemon in (self.server, *self.daemons):
                daemon.reset_hwm()
        self._wait_until_b_matches_a()
        seconds = time.monotonic() - start
        sent, wire = self._counts()
        rss = {
            "A": self.daemons[0].hwm_mib(),
            "B": self.daemons[1].hwm_mib(),
            "server": self.server.hwm_mib(),
        }
        return Result(seconds, sent=sent - sent0, wire=wire - wire0, rss=rss)

    def _resync(self, case: str) -> Result:
        """The time is `tandem status --json` on A, then on B: each daemon answers from what
        its watcher and long-poll already told it (nothing pending, idle, connected), with no
        rescan, which is what a running daemon costs when nothing changed. The full passes a
        user can force (`tandem sync --once`, delegated to the daemon: every file stat'ed and
        every path planned) are timed after, as extras."""
        for daemon in (self.server, *self.daemons):
            daemon.reset_hwm()
        sent0, wire0 = self._counts()
        sides = list(zip(self.envs, (self.side_a, self.side_b), "AB", strict=True))
        asked = [self._status(env, self.logs / f"{case}-status-{label}.log")
                 for env, _, label in sides]
        passes = [run_measured([self.tandem, "sync", "--folder", str(side), "--once"], env,
                               self.logs / f"{case}-{label}.log", self.timeout)
                  for env, side, label in sides]
        sent, wire = self._counts()
        self.check_alive()
        rss = {"A": self.daemons[0].hwm_mib(), "B": self.daemons[1].hwm_mib(),
               "server": self.server.hwm_mib()}
        return Result(asked[0].seconds + asked[1].seconds, sent=sent - sent0, wire=wire - wire0,
                      rss=rss, extra={"a_seconds": asked[0].seconds, "b_seconds": asked[1].seconds,
                                      "full_pass_seconds": passes[0].seconds + passes[1].seconds})

    def _status(self, env: dict[str, str], log: Path) -> Measured:
        """`tandem status --json`, which must say: a daemon answered, connected, idle, nothing
        pending, no errors (else the case fails: the answer is what is timed)."""
        log.unlink(missing_ok=True)
        run = run_measured([self.tandem, "status", "--json"], env, log, self.timeout)
        info = json.loads(log.read_text())
        settled = (info.get("daemon") is True and info.get("connection") == "connected"
                   and info.get("pending_uploads") == 0 and info.get("pending_downloads") == 0
                   and not info.get("errors") and (info.get("live") or {}).get("activity") == "idle")
        if not settled:
            raise ToolFailed(f"`tandem status` does not report a settled daemon: {info}")
        return run

    def _wait_until_b_matches_a(self) -> None:
        """Poll B (every 10 ms) until its files equal A's by name, size and mtime: first only the
        paths that differed, then one whole walk to confirm (bounded by the session timeout)."""
        want = stat_tree(self.side_a)
        deadline = time.monotonic() + self.timeout
        while True:
            have = stat_tree(self.side_b)
            if have == want:
                return
            differing = {rel for rel in want.keys() | have.keys() if want.get(rel) != have.get(rel)}
            while differing:
                differing = {rel for rel in differing if _stat_of(self.side_b / rel) != want.get(rel)}
                if time.monotonic() > deadline:
                    raise ToolFailed(f"B differs from A after {self.timeout:.0f} s ({len(differing)} files)")
                self.check_alive()
                if differing:
                    time.sleep(0.01)

    def latency_enter(self, mode: LatencyMode) -> None:
        if not self.daemons:
            super().latency_enter(mode)

    def latency_exit(self, mode: LatencyMode) -> None:
        """The daemons keep running until the session closes."""
        self.latency_rss = {label: d.hwm_mib() for label, d in zip("AB", self.daemons, strict=False)}
        self.latency_rss["server"] = self.server.hwm_mib()

    def close(self) -> None:
        try:
            if self.daemons:
                super().latency_exit(self.latency_modes[0])
        finally:
            super().close()
