"""Syncthing: two instances on 127.0.0.1, homes in the run's temp dir, each device in the other's
config, discovery / relays / NAT / STUN / global announce / usage and crash reporting off.

Each instance reaches the other only through a counting proxy (the remote device's address is the
proxy), so every byte of the BEP connection (TLS) is counted. Both instances run for the whole
session; a timed case after the first is: force a scan of the changed side (POST /rest/db/scan,
which returns when the scan is done), then wait until A sees B at 100 % completion and B is idle
with nothing needed, polling the REST API every 20 ms.
"""

from __future__ import annotations

import copy
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import ClassVar

from sync_procs import CountingProxy, Daemon, ToolFailed, free_port, run_measured, tool_env, wait_port
from sync_tools import LatencyMode, Result, Session, version_of

FOLDER = "bench"
OPTIONS = {
    "globalAnnounceEnabled": "false",
    "localAnnounceEnabled": "false",
    "relaysEnabled": "false",
    "natEnabled": "false",
    "stunKeepaliveStartS": "0",
    "urAccepted": "-1",
    "autoUpgradeIntervalH": "0",
    "crashReportingEnabled": "false",
    "startBrowser": "false",
    "announceLANAddresses": "false",
    # Syncthing lowers its own CPU and I/O priority by default; the other tools do not.
    "setLowPriority": "false",
}


class Syncthing:
    name = "syncthing"
    title = "Syncthing (two instances on 127.0.0.1)"
    anchor = True

    @staticmethod
    def unavailable() -> str | None:
        return None if shutil.which("syncthing") else "`syncthing` not found (apt-get install -y syncthing)"

    @staticmethod
    def version() -> str:
        return version_of(["syncthing", "--version"])

    @staticmethod
    def open(base: Path, timeout: float) -> SyncthingSession:
        return SyncthingSession(base, timeout)


class Instance:
    def __init__(self, label: str, home: Path, folder: Path, logs: Path):
        self.label, self.home, self.folder, self.logs = label, home, folder, logs
        # STMONITORED: run Syncthing itself, without its restarting monitor process (so the PID we
        # measure is the one doing the work; --no-restart alone still forks a monitor in 1.19)
        self.env = tool_env(
            home.parent / f"home-{label}",
            STNODEFAULTFOLDER="1",
            STNOUPGRADE="1",
            STNORESTART="1",
            STMONITORED="1",
        )
        run_measured(
            ["syncthing", "generate", f"--home={home}", "--no-default-folder", "--skip-port-probing"],
            self.env,
            logs / f"generate-{label}.log",
            60,
        )
        self.tree = ET.parse(home / "config.xml")
        self.device_id = self.tree.getroot().find("device").get("id")  # type: ignore[union-attr]
        self.gui_port, self.listen_port = free_port(), free_port()
        self.apikey = f"bench-{label}-key"
        self.daemon: Daemon | None = None

    def configure(self, peer: Instance, peer_address: str, delay_s: int) -> None:
        root = self.tree.getroot()
        gui = root.find("gui")
        gui.find("address").text = f"127.0.0.1:{self.gui_port}"  # type: ignore[union-attr]
        gui.find("apikey").text = self.apikey  # type: ignore[union-attr]
        options = root.find("options")
        for key, value in {**OPTIONS, "listenAddress": f"tcp://127.0.0.1:{self.listen_port}"}.items():
            element = options.find(key)  # type: ignore[union-attr]
            if element is None:
                element = ET.SubElement(options, key)  # type: ignore[arg-type]
            element.text = value
        root.find("device").set("name", self.label)  # type: ignore[union-attr]
        remote = copy.deepcopy(root.find("defaults/device"))
        remote.set("id", peer.device_id)  # type: ignore[union-attr,arg-type]
        remote.set("name", peer.label)  # type: ignore[union-attr]
        remote.find("address").text = peer_address  # type: ignore[union-attr]
        folder = copy.deepcopy(root.find("defaults/folder"))
        for key, value in {
            "id": FOLDER,
            "label": FOLDER,
            "path": str(self.folder),
            "fsWatcherEnabled": "true",
            "fsWatcherDelayS": str(delay_s),
        }.items():
            folder.set(key, value)  # type: ignore[union-attr]
        for device in folder.findall("device"):  # type: ignore[union-attr]
            folder.remove(device)  # type: ignore[union-attr]
        for device_id in (self.device_id, peer.device_id):
            ET.SubElement(folder, "device", {"id": device_id, "introducedBy": ""})  # type: ignore[arg-type]
        index = list(root).index(root.find("gui"))  # type: ignore[arg-type]
        root.insert(index, remote)  # type: ignore[arg-type]
        root.insert(index, folder)  # type: ignore[arg-type]
        self.tree.write(self.home / "config.xml")
        (self.folder / ".stfolder").mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.daemon = Daemon(
            [
                "syncthing",
                "serve",
                f"--home={self.home}",
                "--no-browser",
                "--no-restart",
                "--no-upgrade",
                "--logflags=3",
            ],
            self.env,
            self.logs / f"syncthing-{self.label}.log",
        )

    def rest(self, method: str, path: str, body: object | None = None, timeout: float = 60) -> object:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.gui_port}{path}",
            data=data,
            method=method,
            headers={"X-API-Key": self.apikey, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
        return json.loads(text) if text.strip() else None

    def status(self) -> dict:  # type: ignore[type-arg]
        return self.rest("GET", f"/rest/db/status?folder={FOLDER}", timeout=10)  # type: ignore[return-value]

    def scan(self, sub: str | None = None) -> None:
        self.rest("POST", f"/rest/db/scan?folder={FOLDER}" + (f"&sub={sub}" if sub else ""), timeout=600)


class SyncthingSession(Session):
    bytes_method = (
        "TCP payload (TLS) through counting proxies placed as each device's address for the "
        "other; sent = A -> B"
    )
    latency_modes: ClassVar[list[LatencyMode]] = [
        LatencyMode("latency", "fs watcher, default 10 s delay", slow=True),
        LatencyMode("latency_1s", "fs watcher, 1 s delay"),
        LatencyMode("latency_scan", "scan forced right after the write"),
    ]

    def __init__(self, base: Path, timeout: float):
        super().__init__(base, timeout)
        self.a = Instance("A", base / "st-A", self.side_a, self.logs)
        self.b = Instance("B", base / "st-B", self.side_b, self.logs)
        self.to_a, self.to_b = CountingProxy(self.a.listen_port), CountingProxy(self.b.listen_port)
        try:
            self.a.configure(self.b, f"tcp://127.0.0.1:{self.to_b.port}", 10)
            self.b.configure(self.a, f"tcp://127.0.0.1:{self.to_a.port}", 10)
        except BaseException:
            self.close()
            raise
        self.current_mode = ""

    def _counts(self) -> tuple[int, int]:
        """(A -> B, B -> A) bytes: A dials B through to_b, B dials A through to_a."""
        ab = self.to_b.counts()[0] + self.to_a.counts()[1]
        ba = self.to_b.counts()[1] + self.to_a.counts()[0]
        return ab, ba

    def _in_sync(self, files: int, size: int) -> bool:
        try:
            status = self.b.status()
            # (localBytes counts 128 bytes per folder: compare file counts, not bytes)
            if (
                status.get("state") != "idle"
                or status.get("needTotalItems") != 0
                or not status.get("localFiles") == status.get("globalFiles") == files
            ):
                return False
            done = self.a.rest(
                "GET", f"/rest/db/completion?folder={FOLDER}&device={self.b.device_id}", timeout=10
            )
            return bool(
                done["completion"] == 100
                and done["needItems"] == 0  # type: ignore[index]
                and done["needDeletes"] == 0
                and self.a.status().get("state") == "idle"
            )  # type: ignore[index]
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return False

    def _wait_in_sync(self, files: int, size: int) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self._in_sync(files, size):
                return
            time.sleep(0.02)
        raise ToolFailed(f"not in sync after {self.timeout:.0f} s")

    def sync(self, case: str, expected_files: int, expected_bytes: int) -> Result:
        started = self.a.daemon is not None
        for instance in (self.a, self.b):
            if instance.daemon is not None:
                instance.daemon.reset_hwm()
        ab0, ba0 = self._counts()
        t0 = time.monotonic()
        if not started:  # initial sync: the clock starts when both instances are launched
            self.a.start()
            self.b.start()
            for instance in (self.a, self.b):
                wait_port(instance.gui_port, 60, instance.daemon.proc)  # type: ignore[union-attr]
        elif case.startswith("resync"):  # rescan both sides, as a per-invocation tool would
            errors: list[BaseException] = []

            def scan(instance: Instance) -> None:
                try:
                    instance.scan()
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=scan, args=(i,), daemon=True) for i in (self.a, self.b)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=self.timeout)
            if errors or any(t.is_alive() for t in threads):
                raise ToolFailed(f"scan failed: {errors[0] if errors else 'timed out'}")
        else:
            self.a.scan()
        self._wait_in_sync(expected_files, expected_bytes)
        seconds = time.monotonic() - t0
        ab, ba = self._counts()
        rss = {"A": self.a.daemon.hwm_mib(), "B": self.b.daemon.hwm_mib()}  # type: ignore[union-attr]
        return Result(
            seconds,
            sent=ab - ab0,
            wire=(ab - ab0) + (ba - ba0),
            rss=rss,
            extra={"a_to_b": ab - ab0, "b_to_a": ba - ba0},
        )

    def latency_enter(self, mode: LatencyMode) -> None:
        self.current_mode = mode.case
        if mode.case == "latency_1s":
            for instance in (self.a, self.b):
                instance.rest("PATCH", f"/rest/config/folders/{FOLDER}", {"fsWatcherDelayS": 1})
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if all(i.status().get("state") == "idle" for i in (self.a, self.b)):
                        break
                except (OSError, urllib.error.URLError, ValueError):
                    pass
                time.sleep(0.05)

    def check_alive(self) -> None:
        for instance in (self.a, self.b):
            if instance.daemon is not None:
                instance.daemon.check_alive()

    def after_write(self, name: str) -> None:
        if self.current_mode == "latency_scan":
            self.a.scan(name)

    def close(self) -> None:
        try:
            for instance in (self.a, self.b):
                if instance.daemon is not None:
                    instance.daemon.stop()
        finally:
            self.to_a.close()
            self.to_b.close()
