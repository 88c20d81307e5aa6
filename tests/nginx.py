"""nginx in front of `tandem serve` processes, with the configuration of docs/DEPLOY.md.

The deployment guide's `nginx` block is the configuration under test: it is read from the
guide, its ports and certificate paths are swapped for the test's (each swap must find its
text, so the guide cannot drift from what is tested), and it runs inside a minimal main
configuration (`daemon off`, pid, logs and temp folders in a temporary folder) as a child
process stopped by PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "DEPLOY.md"


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (str(p) for p in (Path("/usr/sbin/nginx"), Path("/usr/local/sbin/nginx")) if p.is_file()), None)


def missing_reason() -> str | None:
    if find_nginx() is None:
        return "nginx not found: apt-get install nginx (.ci/run does)"
    return None


def guide_config() -> str:
    """The one ```nginx block of the deployment guide."""
    blocks = re.findall(r"```nginx\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) == 1, f"{GUIDE} must hold exactly one nginx block"
    return blocks[0]


def adapted(config: str, swaps: dict[str, str]) -> str:
    for old, new in swaps.items():
        assert old in config, f"the nginx block of {GUIDE.name} no longer says {old!r}"
        config = config.replace(old, new)
    return config


class Nginx:
    def __init__(self, site: str, port: int, ca_file: Path) -> None:
        """Serve `site` (an http-level block listening on `port`, TLS with `ca_file` trusted)."""
        nginx = find_nginx()
        assert nginx
        self.folder = Path(tempfile.mkdtemp(prefix="tandem-nginx-"))
        self.url = f"https://127.0.0.1:{port}"
        self.ca_file = ca_file
        temps = "\n".join(f"    {kind}_temp_path {self.folder / kind};"
                          for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        user = "user root;\n" if os.geteuid() == 0 else ""
        (self.folder / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {self.folder / 'nginx.pid'};\n"
            f"error_log {self.folder / 'error.log'} warn;\nevents {{ worker_connections 512; }}\n"
            f"http {{\n    access_log off;\n{temps}\n{site}\n}}\n")
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.folder), "-e", str(self.folder / "error.log"),
             "-c", str(self.folder / "nginx.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)  # its own group: the workers go with it even after a kill
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited early:\n{self.log()}")
            try:
                trusted = ssl.create_default_context(cafile=str(self.ca_file))
                if httpx.get(f"{self.url}/health", verify=trusted, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not answer within 20 s:\n{self.log()}")

    def log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # fast shutdown: held long-polls are cut
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)
