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

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import ClassVar

from sync_procs import CountingProxy, Daemon, free_port, run_measured, tool_env, wait_port
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
            runs[1].end - runs[0].start,
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
