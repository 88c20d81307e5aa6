"""A revoked token stops a device cleanly: one clear line, exit 1, local changes kept, and
`tandem status` says what to do; after logging in again the queued change goes up."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RunningServer
from tests.sync_helpers import (
    PASSWORD,
    HoldingProxy,
    link_devices,
    one_error_line,
    run_cli,
    tree_of,
    write,
)


def test_revoked_device_keeps_its_changes_and_says_so(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "shared.txt", "v1\n")
    a.synced()
    b.synced()

    revoked = a.run("devices", "revoke", "beta")
    assert revoked.returncode == 0, revoked.stderr
    write(b.folder, "offline-edit.txt", "made while revoked\n")
    line = one_error_line(b.sync())
    assert "revoked" in line and "log in" in line
    status = b.run("status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert "revoked" in report["connection"]
    assert report["pending_uploads"] >= 1
    assert (b.folder / "offline-edit.txt").read_text() == "made while revoked\n"

    email = json.loads((b.home / "device.json").read_text())["email"]
    assert b.run("logout").returncode == 0
    relinked = run_cli(b.home, "login", server.url, email, "--password-stdin",
                       "--device-name", "beta-again", stdin=PASSWORD + "\n")
    assert relinked.returncode == 0, relinked.stderr
    b.synced()
    a.synced()
    assert tree_of(a.folder) == tree_of(b.folder)
    assert (a.folder / "offline-edit.txt").read_text() == "made while revoked\n"


def test_a_server_answering_503_keeps_changes_queued_and_they_go_up_later(
        server: RunningServer, tmp_path: Path) -> None:
    proxy = HoldingProxy(server.url, b"never held")
    try:
        a = link_devices(server, tmp_path)[0]
        email = json.loads((a.home / "device.json").read_text())["email"]
        b_home, b_folder = tmp_path / "home-behind-proxy", tmp_path / "behind-proxy"
        b_folder.mkdir()
        linked = run_cli(b_home, "login", proxy.url, email, "--password-stdin",
                         "--device-name", "behind", stdin=PASSWORD + "\n")
        assert linked.returncode == 0, linked.stderr
        assert run_cli(b_home, "sync", "--folder", str(b_folder), "--once").returncode == 0

        proxy.failing = True
        write(b_folder, "queued.txt", "made while the server was failing\n")
        failed = run_cli(b_home, "sync", "--once")
        assert failed.returncode == 1 and "503" in one_error_line(failed), failed.stderr
        report = json.loads(run_cli(b_home, "status", "--json").stdout)
        assert "503" in report["connection"] and report["pending_uploads"] == 1

        proxy.failing = False
        assert run_cli(b_home, "sync", "--once").returncode == 0
        a.synced()
        assert (a.folder / "queued.txt").read_text() == "made while the server was failing\n"
    finally:
        proxy.close()
