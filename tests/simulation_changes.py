"""The user's side of the simulation (tests/simulation.py): the changes a user makes to one
device's folder, drawn from the simulation's seeded random, and what they supersede (a content
the user overwrote or deleted themselves may go; any other may not)."""

from __future__ import annotations

import random
import shutil
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tandem.sync.engine import Engine
from tandem.sync.state import StateDB

NFD = unicodedata.normalize("NFD", "café.txt")
NAMES = ["a.txt", "b.md", "c", NFD]
FOLDERS = ["", "x", "y", "x/deep", "z"]


class _Device(Protocol):
    folder: Path
    state: StateDB
    engine: Engine


def placeholders(state: StateDB) -> dict[str, str]:
    """The device's placeholders: the placeholder file's path -> the path it stands for."""
    return {record.placeholder: path for path, record in state.placeholders().items()}


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and ".tandem" not in p.relative_to(folder).parts)


def folders_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_dir() and ".tandem" not in p.relative_to(folder).parts)


def taken(path: Path) -> bool:
    """Whether `path`, or a name equal to it once Unicode-normalised, is there (a user on a
    normalising file system could not make both; Tandem reports such a pair, never syncs it)."""
    if path.exists() or path.is_symlink():
        return True
    name = unicodedata.normalize("NFC", path.name)
    return path.parent.is_dir() and any(
        unicodedata.normalize("NFC", p.name) == name for p in path.parent.iterdir())




class UserChanges:
    """Each change takes the device's folder and says whether it applied (else it changed
    nothing); the simulation counts those that did."""

    seed: int
    serial: int
    rng: random.Random
    devices: Sequence[_Device]
    written: set[bytes]
    superseded: set[bytes]

    def supersede(self, path: Path) -> None:
        """The user replaces or deletes what they see there: that content may go."""
        for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
            if item.is_file():
                self.superseded.add(item.read_bytes())

    def content(self) -> bytes:
        self.serial += 1
        data = f"content {self.seed}:{self.serial}\n".encode() * self.rng.choice([1, 3, 200])
        self.written.add(data)
        return data

    def create(self, root: Path) -> bool:
        target = root / self.rng.choice(FOLDERS) / self.rng.choice(NAMES)
        if target.is_dir() or any(p.is_file() for p in target.parents):
            return False
        if target.exists():
            self.supersede(target)
        elif taken(target):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.content())
        return True

    def edit(self, root: Path) -> bool:
        device = next(d for d in self.devices if d.folder == root)
        files = files_of(root)
        if not files:
            return False
        target = self.rng.choice(files)
        stands_for = placeholders(device.state).get(str(target.relative_to(root)))
        if stands_for is not None:  # opening it brings it back first
            target = root / stands_for
            if device.engine.make_offline([stands_for]) or not target.is_file():
                return False
        self.supersede(target)
        target.write_bytes(self.content())
        return True

    def delete(self, root: Path) -> bool:
        files = files_of(root)
        if not files:
            return False
        target = self.rng.choice(files)
        self.supersede(target)
        target.unlink()
        return True

    def delete_folder(self, root: Path) -> bool:
        folders = folders_of(root)
        if not folders:
            return False
        target = self.rng.choice(folders)
        self.supersede(target)
        shutil.rmtree(target)
        return True

    def rename(self, root: Path) -> bool:
        device = next(d for d in self.devices if d.folder == root)
        files = files_of(root)
        if not files:
            return False
        source = self.rng.choice(files)
        suffix = ".tandem" if str(source.relative_to(root)) in placeholders(device.state) else ""
        target = source.parent / (self.rng.choice(NAMES) + suffix)
        if taken(target):
            return False
        source.rename(target)
        return True

    def move(self, root: Path) -> bool:
        files = files_of(root)
        target_folder = root / self.rng.choice(FOLDERS)
        if not files or not target_folder.is_dir():
            return False
        source = self.rng.choice(files)
        target = target_folder / source.name
        if taken(target):
            return False
        source.rename(target)
        return True

    def move_folder(self, root: Path) -> bool:
        folders = folders_of(root)
        if not folders:
            return False
        source = self.rng.choice(folders)
        parent = root / self.rng.choice(FOLDERS)
        target = parent / f"{source.name}{self.rng.choice(['', '2'])}"
        if (not parent.is_dir() or taken(target) or target == source
                or source in target.parents):
            return False
        source.rename(target)
        return True

    def case_rename(self, root: Path) -> bool:
        files = [p for p in files_of(root) if p.name.swapcase() != p.name]
        if not files:
            return False
        source = self.rng.choice(files)
        target = source.with_name(source.name[0].swapcase() + source.name[1:])
        if taken(target) or target.name == source.name:
            return False
        source.rename(target)
        return True

