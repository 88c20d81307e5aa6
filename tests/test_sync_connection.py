"""A revoked token stops a device cleanly: one clear line, exit 1, local changes kept, and
`tandem status` says what to do; after logging in again the queued change goes up."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RunningServer
from tests.sync_helpers import PASSWORD, link_devices, one_error_line, run_cli, tree_of, write


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
