"""The randomized multi-device simulation (issue 6, section 4), shared by
tests/test_sync_simulation.py (a few seeds in CI) and bench/soak.py (seeds until time is up).

One seed is one scenario: three devices on one account and one real server. A seeded
`random.Random` draws every step: creates, edits, deletes, renames and moves of files and
folders, crossing moves (A moves X into Y while B moves Y into X, then both sync), case-only
renames (`a.txt` -> `A.txt`), NFD names, frees and pins, and syncs of one device or of all in
random order. The middle third of the steps runs with every device behind the fault proxy of
tests/faults.py (its own seed), where a pass or a free may fail with a client error and is
simply tried again later, as a user's next pass would.

Then quiescence: faults off, passes until no device changes anything (bounded), every file
pinned so placeholders are compared as what they stand for. Checked:
- `tandem check` finds nothing, nothing pending, on every device;
- every device holds the same tree (names compared NFC, as the NFD rule keeps them);
- nothing is lost: every content a user saved and did not overwrite or delete themselves, and
  every content a clean pass saw on a device, is in the final tree (as the file or a conflicted
  copy) or in the cloud's history (a version of a file, alive or in the trash).

Engines run in-process (as tests/test_sync_model.py): a scenario is hundreds of passes, and
a CLI process per pass would make a seed cost minutes instead of seconds. The engine is the
code `tandem sync --once` runs, run_check the code `tandem check` runs; the CLI wrapping them
is covered by the CLI and daemon tests. The seed of a failure is in its message and replays
the same run (the fault proxy's timing may vary slightly, its decisions do not).
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import tempfile
import unicodedata
from collections import Counter
from pathlib import Path

from tandem.client import Home, account
from tandem.client.account import Session
from tandem.client.api import ApiClient, ClientError
from tandem.core.chunking import chunk_bytes
from tandem.sync.check_io import run_check
from tandem.sync.engine import Engine
from tandem.sync.model import content_id
from tandem.sync.state import StateDB
from tests.faults import FaultProcess
from tests.simulation_changes import UserChanges, files_of, folders_of

QUIESCENCE_PASSES = 8
_OPS = (["create"] * 4 + ["edit"] * 3 + ["delete", "delete_folder", "rename", "move",
        "move_folder", "crossing_move", "case_rename", "free", "free", "pin"] + ["sync"] * 6
        + ["sync_all"] * 2)


class SimulationFailure(AssertionError):
    pass


@dataclasses.dataclass
class Report:
    seed: int
    operations: Counter[str] = dataclasses.field(default_factory=Counter)
    faults: Counter[str] = dataclasses.field(default_factory=Counter)


class SimDevice:
    def __init__(self, base: Path, url: str, email: str, name: str) -> None:
        self.name = name
        self.home = Home(base / f"home-{name}")
        self.folder = base / f"folder-{name}"
        self.folder.mkdir()
        if name == "A":
            self.session, _ = account.signup(self.home, url, email, "pw", device_name=name)
        else:
            self.session = account.login(self.home, url, email, "pw", device_name=name)
        self.state = StateDB(self.home.path / "state.db")
        self.engine = Engine(self.session, self.folder, self.state, allow_mass_delete=True)

    def connect(self, url: str) -> None:
        """Talk to the server at `url` from now on (the proxy, or the server itself)."""
        self.engine.close()
        self.session.api.close()
        device = dataclasses.replace(self.session.device, server_url=url)
        self.session = Session(self.home, device, self.session.keys,
                               ApiClient(url, device.token))
        self.engine = Engine(self.session, self.folder, self.state, allow_mass_delete=True)

    def close(self) -> None:
        self.engine.close()
        self.state.close()
        self.session.close()


def tree_of(folder: Path) -> dict[str, bytes | str]:
    """Every file (its bytes) and folder ("DIR") under `folder`, names in NFC."""
    tree: dict[str, bytes | str] = {}
    for path in folders_of(folder):
        tree[unicodedata.normalize("NFC", str(path.relative_to(folder)))] = "DIR"
    for path in files_of(folder):
        tree[unicodedata.normalize("NFC", str(path.relative_to(folder)))] = path.read_bytes()
    return tree


def cloud_history(session: Session) -> set[str]:
    """Content ids of every version of every file node the account ever had, alive or in
    the trash, as the change journal from 0 lists them."""
    history: set[str] = set()
    cursor, more = 0, True
    while more:
        page = session.api.changes(cursor, limit=1000)
        for node in page["changes"]:
            if node["kind"] == "file" and node["state"] != "purged":
                for version in session.api.versions(node["id"]):
                    history.add(content_id(tuple((c, int(s)) for c, s in version["manifest"])))
        cursor, more = page["cursor"], page["has_more"]
    return history


def content_key(session: Session, data: bytes) -> str:
    """The content id `data` has in the cloud's history (see cloud_history)."""
    keys = session.keys
    return content_id([(keys.chunk_id(c), len(c)) for c in chunk_bytes(data)])


class Simulation(UserChanges):
    def __init__(self, server_url: str, seed: int, steps: int = 60, fault_rate: float = 0.2,
                 base: Path | None = None) -> None:
        self.seed = seed
        self.steps = steps
        self.fault_rate = fault_rate
        self.url = server_url
        self.rng = random.Random(seed)
        self.report = Report(seed)
        self.base = Path(tempfile.mkdtemp(prefix=f"tandem-sim-{seed}-", dir=base))
        email = f"sim{seed}-{os.getpid()}-{self.rng.getrandbits(32)}@example.org"
        self.devices = [SimDevice(self.base, server_url, email, n) for n in ("A", "B", "C")]
        self.proxy: FaultProcess | None = None
        self.written: set[bytes] = set()
        self.superseded: set[bytes] = set()
        self.committed: set[bytes] = set()
        #: Each device's problems and unfinished paths in its last pass (a later pass may
        #: clear them; after quiescence none may be left).
        self.problems: dict[str, dict[str, str]] = {}
        self.serial = 0

    def fail(self, what: str) -> SimulationFailure:
        return SimulationFailure(f"simulation seed {self.seed} failed (replay with "
                                 f"TANDEM_SIM_SEEDS={self.seed}): {what}")

    def run(self) -> Report:
        try:
            for device in self.devices:
                self.sync(device)
            for step in range(self.steps):
                if step == self.steps // 3:
                    self.faults_on()
                elif step == 2 * self.steps // 3:
                    self.faults_off()
                self.step()
            self.faults_off()
            self.quiesce()
            self.verify()
            return self.report
        finally:
            self.faults_off()
            for device in self.devices:
                device.close()
            shutil.rmtree(self.base, ignore_errors=True)

    # ---- faults ---------------------------------------------------------------------------

    def faults_on(self) -> None:
        self.proxy = FaultProcess(self.url, self.seed, self.fault_rate)
        for device in self.devices:
            device.connect(self.proxy.url)

    def faults_off(self) -> None:
        if self.proxy is None:
            return
        proxy, self.proxy = self.proxy, None
        for device in self.devices:
            device.connect(self.url)
        injected = proxy.close()
        self.report.faults.update({k: v for k, v in injected.items() if k != "passed" and v})

    # ---- syncing --------------------------------------------------------------------------

    def sync(self, device: SimDevice) -> int:
        """One pass; returns the operations it did. A clean pass commits what the device held."""
        self.report.operations["sync"] += 1
        try:
            report = device.engine.sync_once()
        except ClientError as exc:
            if self.proxy is None:
                raise self.fail(f"{device.name}: a pass without faults failed: {exc}") from exc
            self.report.operations["sync failed under faults"] += 1
            return 1
        if not report.unfinished and not report.problems:
            for path in files_of(device.folder):
                data = path.read_bytes()
                if data in self.written:
                    self.committed.add(data)
        self.problems[device.name] = {**report.problems,
                                      **{p: "work left" for p in report.unfinished}}
        return report.done

    def quiesce(self) -> None:
        """Passes until nothing changes; everything pinned (placeholders become what they
        stand for); passes until nothing changes again."""
        self.settle()
        for device in self.devices:
            problems = device.engine.make_offline([""])
            if problems:
                raise self.fail(f"{device.name}: pinning everything: {problems}")
        self.settle()

    def settle(self) -> None:
        for _ in range(QUIESCENCE_PASSES):
            order = self.devices[:]
            self.rng.shuffle(order)
            if sum(self.sync(device) for device in order) == 0:
                if any(self.problems.values()):
                    raise self.fail(f"problems left after quiescence: {self.problems}")
                return
        raise self.fail(f"no quiescence after {QUIESCENCE_PASSES} rounds of passes")

    # ---- the user's changes ---------------------------------------------------------------

    def step(self) -> None:
        kind = self.rng.choice(_OPS)
        device = self.rng.choice(self.devices)
        if kind == "sync":
            self.sync(device)
        elif kind == "sync_all":
            order = self.devices[:]
            self.rng.shuffle(order)
            for each in order:
                self.sync(each)
        elif kind == "crossing_move":
            self.crossing_move()
        elif kind in ("free", "pin"):
            self.on_demand(device, kind)
        else:
            try:
                done = getattr(self, kind)(device.folder)
            except OSError:  # e.g. a folder a pass just moved away
                done = False
            if done:
                self.report.operations[kind] += 1

    def crossing_move(self) -> None:
        """On one device X moves into Y while on another Y moves into X; then both sync."""
        first, second = self.rng.sample(self.devices, 2)
        for name in ("x", "y"):
            folder = first.folder / name
            if any(p.is_file() for p in [folder, *folder.parents]):
                return
            folder.mkdir(parents=True, exist_ok=True)
        self.sync(first)
        self.sync(second)
        x1, y1, x2, y2 = (d.folder / n for d in (first, second) for n in ("x", "y"))
        if (not all(p.is_dir() for p in (x1, y1, x2, y2))
                or (y1 / "x").exists() or (x2 / "y").exists()):
            return
        x1.rename(y1 / "x")
        y2.rename(x2 / "y")
        self.report.operations["crossing_move"] += 1
        pair = [first, second]
        self.rng.shuffle(pair)
        for device in pair:
            self.sync(device)

    def on_demand(self, device: SimDevice, kind: str) -> None:
        entries = files_of(device.folder) + folders_of(device.folder)
        if not entries:
            return
        relative = str(self.rng.choice(entries).relative_to(device.folder))
        try:
            if kind == "free":
                device.engine.free([relative])
            else:
                device.engine.make_offline([relative])
        except ClientError as exc:
            if self.proxy is None:
                raise self.fail(f"{device.name}: {kind} {relative} failed: {exc}") from exc
        self.report.operations[kind] += 1

    # ---- the checks -----------------------------------------------------------------------

    def verify(self) -> None:
        for device in self.devices:
            result = run_check(device.session.api, device.session.keys, device.state,
                               device.folder)
            if result.findings or result.pending:
                raise self.fail(f"tandem check on {device.name}: {result.findings}"
                                f" pending {result.pending}")
        trees = [tree_of(device.folder) for device in self.devices]
        for device, tree in zip(self.devices[1:], trees[1:], strict=True):
            if tree != trees[0]:
                differ = sorted(p for p in tree.keys() | trees[0].keys()
                                if tree.get(p) != trees[0].get(p))
                raise self.fail(f"{device.name} differs from A: {differ[:10]}")
        present = {v for v in trees[0].values() if isinstance(v, bytes)}
        missing = ((self.written - self.superseded) | self.committed) - present
        if missing:
            session = self.devices[0].session
            history = cloud_history(session)
            lost = [data[:30] for data in missing if content_key(session, data) not in history]
            if lost:
                raise self.fail(f"contents lost: {lost}")
