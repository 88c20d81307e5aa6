"""Model-based randomized test of the engine (hypothesis stateful): random creates, edits,
deletes, renames and moves on three devices, syncs in random order; then quiescence.

Checked after quiescence: every device holds the same tree, every content a user wrote and
did not themselves overwrite or delete is present (as the file, or as a conflicted copy), and
`tandem check` finds nothing on any device, nothing pending either.
Engines run in-process against a real server; hypothesis prints the failing steps and a
`@reproduce_failure` line to replay them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from tandem.client import Home, account
from tandem.sync.check_io import run_check
from tandem.sync.engine import Engine
from tandem.sync.state import StateDB
from tests.conftest import RunningServer, start_server, stop_server

NAMES = ["a.txt", "b.txt", "c"]
FOLDERS = ["", "x", "x/y", "z"]
_emails = itertools.count()


def tree_of(folder: Path) -> dict[str, bytes | str]:
    found: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        relative = Path(dirpath).relative_to(folder)
        if relative.parts[:1] == (".tandem",):
            continue
        dirnames[:] = [d for d in dirnames if not (relative == Path(".") and d == ".tandem")]
        for name in dirnames:
            found[str(relative / name) if relative.parts else name] = "DIR"
        for name in filenames:
            found[str(relative / name) if relative.parts else name] = (Path(dirpath) / name).read_bytes()
    return found


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("model") / "server")
    try:
        yield running
    finally:
        stop_server(running)


class _Device:
    def __init__(self, base: Path, url: str, email: str, name: str, first: bool) -> None:
        self.home = Home(base / f"home-{name}")
        self.folder = base / f"folder-{name}"
        self.folder.mkdir()
        if first:
            session, _ = account.signup(self.home, url, email, "pw", device_name=name)
        else:
            session = account.login(self.home, url, email, "pw", device_name=name)
        self.session = session
        self.state = StateDB(self.home.path / "state.db")
        self.engine = Engine(session, self.folder, self.state)

    def sync(self) -> None:
        self.engine.sync_once()

    def close(self) -> None:
        self.engine.close()
        self.state.close()
        self.session.close()


class SyncModel(RuleBasedStateMachine):
    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="tandem-model-"))
        email = f"model{next(_emails)}-{os.getpid()}@example.org"
        self.devices = [_Device(self.base, self.url, email, name, first=(name == "A"))
                        for name in ("A", "B", "C")]
        self.written: set[bytes] = set()
        self.superseded: set[bytes] = set()
        self.counter = itertools.count()

    @initialize()
    def start_in_sync(self) -> None:
        for device in self.devices:
            device.sync()

    def _supersede(self, path: Path) -> None:
        """The user replaces or deletes what they see: that content may go."""
        if path.is_file():
            self.superseded.add(path.read_bytes())
        elif path.is_dir():
            for item in path.rglob("*"):
                if item.is_file():
                    self.superseded.add(item.read_bytes())

    @rule(device=st.integers(0, 2), folder=st.sampled_from(FOLDERS), name=st.sampled_from(NAMES))
    def write(self, device: int, folder: str, name: str) -> None:
        target = self.devices[device].folder / folder / name
        if target.is_dir() or any(p.is_file() for p in target.parents):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        self._supersede(target)
        content = f"content {next(self.counter)} by {'ABC'[device]}\n".encode()
        self.written.add(content)
        target.write_bytes(content)

    @rule(device=st.integers(0, 2), folder=st.sampled_from(FOLDERS[1:]))
    def make_folder(self, device: int, folder: str) -> None:
        target = self.devices[device].folder / folder
        if not any(p.is_file() for p in [target, *target.parents]):
            target.mkdir(parents=True, exist_ok=True)

    @rule(device=st.integers(0, 2), folder=st.sampled_from(FOLDERS),
          name=st.sampled_from([*NAMES, "x", "z"]))
    def delete(self, device: int, folder: str, name: str) -> None:
        target = self.devices[device].folder / folder / name
        self._supersede(target)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.is_file():
            target.unlink()

    @rule(device=st.integers(0, 2), source=st.sampled_from([*NAMES, "x", "z", "x/y"]),
          folder=st.sampled_from(FOLDERS), name=st.sampled_from([*NAMES, "x", "z"]))
    def move(self, device: int, source: str, folder: str, name: str) -> None:
        root = self.devices[device].folder
        origin, target = root / source, root / folder / name
        if not origin.exists() or target.exists() or not target.parent.is_dir():
            return
        if origin.is_dir() and (target == origin or origin in target.parents):
            return
        origin.rename(target)

    @rule(device=st.integers(0, 2))
    def sync(self, device: int) -> None:
        self.devices[device].sync()

    @rule()
    def sync_all(self) -> None:
        for device in self.devices:
            device.sync()

    def teardown(self) -> None:
        try:
            for _ in range(3):
                for device in self.devices:
                    device.sync()
            trees = [tree_of(device.folder) for device in self.devices]
            assert trees[0] == trees[1] == trees[2], "devices did not converge"
            present = {v for v in trees[0].values() if isinstance(v, bytes)}
            lost = self.written - self.superseded - present
            assert not lost, f"lost contents: {sorted(lost)}"
            for device in self.devices:  # `tandem check` is the oracle too
                result = run_check(device.session.api, device.session.keys, device.state,
                                   device.folder)
                assert not result.findings, f"{device.folder.name}: {result.findings}"
                assert not result.pending, f"{device.folder.name}: pending {result.pending}"
        finally:
            for device in self.devices:
                device.close()
            shutil.rmtree(self.base, ignore_errors=True)


def test_random_histories_converge_without_loss(model_server: RunningServer) -> None:
    SyncModel.url = model_server.url
    run_state_machine_as_test(SyncModel, settings=settings(
        max_examples=int(os.environ.get("TANDEM_MODEL_EXAMPLES", "12")), stateful_step_count=20,
        deadline=None, database=None, suppress_health_check=list(HealthCheck)))
