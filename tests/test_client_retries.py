"""Requests the client retries after the server acted on them (its answer lost or replaced by
a 5xx): each must take effect once. Faults are aimed at one request through tests/faults.py."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tandem.client.api import ApiClient
from tests.conftest import RunningServer
from tests.faults import FaultProxy
from tests.helpers_api import fresh_email, make_account
from tests.sync_helpers import (
    PASSWORD,
    Device,
    HoldingProxy,
    link_devices,
    one_error_line,
    run_cli,
    sync_all,
    wait_until,
    write,
)
from tests.test_server_backups import snapshot_body
from tests.test_sync_faults import through


@pytest.fixture
def device(server: RunningServer, tmp_path: Path) -> Device:
    (alpha,) = link_devices(server, tmp_path, count=1)
    write(alpha.folder, "a.txt", "version one")
    alpha.synced()
    write(alpha.folder, "a.txt", "version two, longer")
    alpha.synced()
    return alpha


@pytest.fixture
def lose_answer(server: RunningServer, device: Device) -> Iterator[Callable[[bytes], FaultProxy]]:
    """`lose_answer(marker)`: from now on the device talks through a proxy that lets the first
    request starting with `marker` reach the server, then tells the client 502 (or drops the
    answer) so that it retries."""
    proxies: list[FaultProxy] = []

    def aim(only: bytes) -> FaultProxy:
        proxy = FaultProxy(server.url, seed=0, rate=1.0, kinds=("error_after", "drop_response"),
                           only=only, limit=1)
        proxies.append(proxy)
        through(device, proxy.url)
        return proxy

    try:
        yield aim
    finally:
        for proxy in proxies:
            proxy.close()


def lost(proxy: FaultProxy) -> int:
    return proxy.injected["error_after"] + proxy.injected["drop_response"]


def test_a_retried_version_restore_restores_once(
        device: Device, lose_answer: Callable[[bytes], FaultProxy]) -> None:
    proxy = lose_answer(b"POST /nodes/")
    result = device.run("restore", str(device.folder / "a.txt"), "--version", "1")
    assert result.returncode == 0, result.stderr
    assert "Restored version 1" in result.stdout
    assert lost(proxy) == 1
    listed = json.loads(device.run("versions", str(device.folder / "a.txt"), "--json").stdout)
    assert [v["size"] for v in listed["versions"]] == [11, 19, 11]  # one restore, not two
    device.synced()
    assert (device.folder / "a.txt").read_text() == "version one"


def test_a_retried_trash_restore_succeeds(
        device: Device, lose_answer: Callable[[bytes], FaultProxy]) -> None:
    """Bug found: the retry was told "trashed node not found" and the command failed,
    although the file was back."""
    (device.folder / "a.txt").unlink()
    device.synced()
    proxy = lose_answer(b"POST /trash/")
    result = device.run("restore", str(device.folder / "a.txt"))
    assert result.returncode == 0, result.stderr
    assert lost(proxy) == 1
    device.synced()
    assert (device.folder / "a.txt").read_text() == "version two, longer"


def test_a_retried_snapshot_delete_succeeds(server: RunningServer) -> None:
    """Bug found: the retry was told "snapshot not found", so a backup run's pruning stopped
    and reported a failure although the snapshot was gone."""
    account = make_account(server.url, fresh_email())
    backup = secrets.token_hex(16)
    body = snapshot_body(account, b"content")
    proxy = FaultProxy(server.url, seed=0, rate=1.0, kinds=("error_after", "drop_response"),
                       only=b"DELETE /snapshots/", limit=1)
    try:
        with ApiClient(proxy.url, account.token) as api:
            api.create_snapshot(backup, body)
            api.delete_snapshot(body["id"])
            assert lost(proxy) == 1
            assert api.snapshots(backup) == []
    finally:
        proxy.close()
        account.close()


def test_a_retried_device_revocation_succeeds(server: RunningServer, tmp_path: Path) -> None:
    """Bug found: the retry was told "device not found" and `tandem devices revoke` failed,
    although the device was revoked."""
    alpha, beta = link_devices(server, tmp_path)
    proxy = FaultProxy(server.url, seed=0, rate=1.0, kinds=("error_after", "drop_response"),
                       only=b"POST /devices/", limit=1)
    try:
        through(alpha, proxy.url)
        result = alpha.run("devices", "revoke", "beta")
        assert result.returncode == 0, result.stderr
        assert lost(proxy) == 1
    finally:
        proxy.close()
    assert beta.sync().returncode == 1


def test_a_retried_signup_links_the_account_it_made(server: RunningServer, tmp_path: Path) -> None:
    """Bug found: the retry was told "an account already exists", so the command failed and
    the recovery key of the account it had made was never shown."""
    proxy = FaultProxy(server.url, seed=0, rate=1.0, kinds=("error_after", "drop_response"),
                       only=b"POST /auth/signup", limit=1)
    home = tmp_path / "home"
    try:
        result = run_cli(home, "signup", proxy.url, fresh_email(), "--password-stdin",
                         "--device-name", "solo", stdin=PASSWORD + "\n")
        assert result.returncode == 0, result.stderr
        assert lost(proxy) == 1
        assert "recovery key" in result.stdout.lower()
    finally:
        proxy.close()
    device = Device("solo", home, tmp_path / "solo")
    device.folder.mkdir()
    through(device, server.url)
    write(device.folder, "a.txt", "works")
    device.synced()


def test_a_commit_refused_by_an_overloaded_server_is_not_resent_op_by_op(
        server: RunningServer, tmp_path: Path) -> None:
    """Bug found: a batch answered 503 (after the client's own retries) was resent one
    operation at a time, each with its own retries: a pass of N files made about 6 x N
    requests and slept minutes against a server already in trouble. Only a refusal (4xx)
    is worth isolating op by op."""
    (alpha,) = link_devices(server, tmp_path, count=1)
    for index in range(12):
        write(alpha.folder, f"f{index}.txt", f"file {index}")
    proxy = FaultProxy(server.url, seed=0, rate=1.0, kinds=("refuse",),
                       only=b"POST /tree/batch ")
    try:
        through(alpha, proxy.url)
        result = alpha.sync()
        assert result.returncode == 1
        assert proxy.injected["refuse"] <= 6, proxy.injected  # one batch, its own retries
    finally:
        proxy.close()
    through(alpha, server.url)
    alpha.synced()


def test_a_version_restore_does_not_overwrite_a_change_made_meanwhile(
        server: RunningServer, tmp_path: Path) -> None:
    """Bug found: `tandem restore --version N` sent no revision, so an edit another device
    committed while the restore was on its way became history instead of stopping it."""
    alpha, beta = link_devices(server, tmp_path)
    write(alpha.folder, "a.txt", "version one")
    sync_all(alpha, beta)
    write(alpha.folder, "a.txt", "version two, longer")
    sync_all(alpha, beta)
    proxy = HoldingProxy(server.url, b"POST /nodes/")
    proxy.holding = True
    outcome: list[subprocess.CompletedProcess[str]] = []
    try:
        through(alpha, proxy.url)
        restoring = threading.Thread(target=lambda: outcome.append(
            alpha.run("restore", str(alpha.folder / "a.txt"), "--version", "1")))
        restoring.start()
        wait_until(lambda: proxy.held >= 1, timeout=60, what="the restore to be held")
        write(beta.folder, "a.txt", "beta's edit")
        beta.synced()
        proxy.release()
        restoring.join(timeout=60)
    finally:
        proxy.close()
    assert "changed in the cloud meanwhile" in one_error_line(outcome[0])
    beta.synced()
    assert (beta.folder / "a.txt").read_text() == "beta's edit"
