"""Two devices sync through a fault-injecting proxy (tests/faults.py): dropped connections,
delays, 5xx answers, truncated bodies, replayed requests. Under faults a pass may fail and is
retried; once the faults stop, everything converges: both folders hold exactly what the user
last saved, `tandem check` is clean on both, and no version in the cloud is empty or cut.

Each seed is printed; `TANDEM_FAULT_SEEDS=7,8 pytest tests/test_sync_faults.py` replays them.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server, stop_server
from tests.faults import FaultProcess
from tests.sync_helpers import Device, changes_applied, link_devices, tree_of

SEEDS = [int(s) for s in os.environ.get("TANDEM_FAULT_SEEDS", "1,2,3").split(",")]
ROUNDS = 3
#: A pass under faults fails now and then; this many tries must get one through.
ATTEMPTS = 10
FOLDERS = ["", "d", "d/e", "f"]
SIZES = [1, 50, 4000, 70_000, 600_000]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for every seed (each seed has its own account)."""
    running = start_server(tmp_path_factory.mktemp("faults") / "server")
    try:
        yield running
    finally:
        stop_server(running)


def through(device: Device, proxy_url: str) -> None:
    device_file = device.home / "device.json"
    linked = json.loads(device_file.read_text())
    linked["server_url"] = proxy_url
    device_file.write_text(json.dumps(linked))


def sync_until_done(device: Device) -> None:
    outputs = []
    for _ in range(ATTEMPTS):
        result = device.sync()
        assert "Traceback" not in result.stderr, result.stderr
        if result.returncode == 0:
            return
        outputs.append(result.stdout + result.stderr)
    raise AssertionError(f"{device.name}: no pass succeeded in {ATTEMPTS} tries:\n"
                         + "\n".join(outputs[-3:]))


def mutate(rng: random.Random, device: Device, sizes: set[int], counter: list[int]) -> None:
    """Two to four random edits a user makes between syncs."""
    root = device.folder
    for _ in range(rng.randint(2, 4)):
        files = sorted(p for p in root.rglob("*") if p.is_file() and ".tandem" not in p.parts)
        folders = sorted(p for p in root.rglob("*") if p.is_dir() and ".tandem" not in p.parts)
        action = rng.choice(["create", "create", "edit", "edit", "rename", "delete", "move_folder"])
        if action in ("edit", "rename", "delete") and not files:
            action = "create"
        counter[0] += 1
        if action in ("create", "edit"):
            if action == "create":
                target = root / rng.choice(FOLDERS) / f"n{counter[0]}.bin"
            else:
                target = rng.choice(files)
            size = rng.choice(SIZES)
            sizes.add(size)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rng.randbytes(size))
        elif action == "rename":
            source = rng.choice(files)
            target = root / rng.choice(FOLDERS) / f"r{counter[0]}.bin"
            target.parent.mkdir(parents=True, exist_ok=True)
            source.rename(target)
        elif action == "delete":
            rng.choice(files).unlink()
        elif folders:
            source = rng.choice(folders)
            target = root / f"m{counter[0]}"
            source.rename(target)


def versions(device: Device, relative: str) -> list[dict[str, object]]:
    result = device.run("versions", str(device.folder / relative), "--json")
    assert result.returncode == 0, result.stderr
    listed: list[dict[str, object]] = json.loads(result.stdout)["versions"]
    return listed


@pytest.mark.parametrize("seed", SEEDS)
def test_two_devices_converge_through_faults(shared: RunningServer, tmp_path: Path,
                                              seed: int) -> None:
    print(f"fault seed {seed}: replay with TANDEM_FAULT_SEEDS={seed}")
    rng = random.Random(seed)
    devices = link_devices(shared, tmp_path)
    proxy = FaultProcess(shared.url, seed, float(os.environ.get("TANDEM_FAULT_RATE", "0.25")))
    sizes: set[int] = set()
    counter = [0]
    try:
        for device in devices:
            through(device, proxy.url)
        for _ in range(ROUNDS):
            for device in devices:
                sync_until_done(device)
                mutate(rng, device, sizes, counter)
                sync_until_done(device)
                saved = tree_of(device.folder)
                other = devices[1] if device is devices[0] else devices[0]
                sync_until_done(other)
                assert tree_of(other.folder) == saved, f"{other.name} differs from {device.name}"
        proxy.stop_faults()
        for _ in range(3):
            applied = [changes_applied(device.synced()) for device in devices]
            if applied == [0, 0]:
                break
        assert applied == [0, 0], "no quiescence"
        assert tree_of(devices[0].folder) == tree_of(devices[1].folder) == saved
        for device in devices:
            result = device.run("check", "--json")
            document = json.loads(result.stdout)
            assert result.returncode == 0 and not document["pending"], result.stdout
        for relative, content in saved.items():
            if isinstance(content, bytes):
                listed = versions(devices[0], relative)
                assert listed[0]["size"] == len(content)
                cut = [v for v in listed if v["size"] not in sizes]
                assert not cut, f"{relative}: versions of sizes never written: {cut}"
    finally:
        print(f"fault seed {seed}: {dict(sorted(proxy.close().items()))}")
