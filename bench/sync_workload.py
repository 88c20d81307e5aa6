"""The BENCH.md sync workloads, their mutations, and verification by name, size and SHA-256.

Everything is derived from a seed: the same seed gives byte-identical trees (contents, names and
modification times), which `Workload.digest` summarises so a results file can prove it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

KIB, MIB = 1 << 10, 1 << 20
#: Generated files get fixed mtimes from here on (2023-11-14), one second apart.
BASE_MTIME = 1_700_000_000
#: Minimum distance between a file's old mtime and the mtime a mutation gives it (BENCH.md).
MTIME_STEP_S = 3


@dataclass
class Spec:
    files_per_folder: int = 50  # 20 folders per top folder -> 1,000 files per top folder
    tops: int = 5  # t0..t4
    folders_per_top: int = 20  # a 3-ary tree, breadth first, so depth <= 3
    min_size: int = 1 * KIB
    max_size: int = 16 * KIB
    large_count: int = 4
    large_size: int = 64 * MIB


@dataclass
class Workload:
    """A generated tree in `root`, and what every side must hold: relpath -> (size, sha256)."""

    name: str
    root: Path
    expected: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self.expected.values())

    def digest(self) -> str:
        h = hashlib.sha256()
        for rel in sorted(self.expected):
            size, sha = self.expected[rel]
            h.update(f"{rel}\0{size}\0{sha}\n".encode())
        return h.hexdigest()

    def copy_to(self, dest: Path) -> None:
        """Side A: a copy of the generated tree with its mtimes (`cp -a`), into dest as it is."""
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", f"{self.root}/.", f"{dest}/"], check=True, timeout=600)


def folder_paths(top: str, count: int) -> list[str]:
    """Node i of a 3-ary tree (children 3i+1..3i+3), breadth first: `t0`, `t0/d1`, `t0/d1/d4`..."""
    paths = [top]
    for index in range(1, count):
        paths.append(f"{paths[(index - 1) // 3]}/d{index}")
    return paths


def generate_small(root: Path, spec: Spec, seed: int) -> Workload:
    rng = random.Random(f"small-{seed}")
    work = Workload("small", root)
    n = 0
    for t in range(spec.tops):
        for folder in folder_paths(f"t{t}", spec.folders_per_top):
            (root / folder).mkdir(parents=True, exist_ok=True)
            for f in range(spec.files_per_folder):
                rel = f"{folder}/f{f:02d}.bin"
                data = rng.randbytes(rng.randint(spec.min_size, spec.max_size))
                (root / rel).write_bytes(data)
                os.utime(root / rel, (BASE_MTIME + n, BASE_MTIME + n))
                work.expected[rel] = (len(data), hashlib.sha256(data).hexdigest())
                n += 1
    return work


def generate_large(root: Path, spec: Spec, seed: int) -> Workload:
    rng = random.Random(f"large-{seed}")
    work = Workload("large", root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(spec.large_count):
        rel = f"big{i}.bin"
        h = hashlib.sha256()
        with open(root / rel, "wb") as out:
            left = spec.large_size
            while left:
                piece = rng.randbytes(min(left, 4 * MIB))
                out.write(piece)
                h.update(piece)
                left -= len(piece)
        os.utime(root / rel, (BASE_MTIME + i, BASE_MTIME + i))
        work.expected[rel] = (spec.large_size, h.hexdigest())
    return work


# ---- mutations: applied to side A (untimed), updating the expected state ---------------------


def _bump_mtime(path: Path) -> int:
    """Now, but at least MTIME_STEP_S after the file's current mtime. Returns the new mtime (ns)."""
    old = path.stat().st_mtime_ns
    new = max(time.time_ns(), old + MTIME_STEP_S * 1_000_000_000)
    os.utime(path, ns=(new, new))
    return new


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def mutate_edit(side: Path, expected: dict[str, tuple[int, str]], seed: int) -> str:
    """Overwrite 4 KiB in the middle of big1.bin (size unchanged)."""
    rel = "big1.bin" if "big1.bin" in expected else sorted(expected)[0]
    path = side / rel
    size = path.stat().st_size
    patch = random.Random(f"edit-{seed}").randbytes(4 * KIB)
    with open(path, "r+b") as handle:
        handle.seek(size // 2 - 2 * KIB)
        handle.write(patch)
    _bump_mtime(path)
    expected[rel] = (size, sha256_file(path))
    return f"4 KiB at offset {size // 2 - 2 * KIB} of {rel}"


def mutate_rename(side: Path, expected: dict[str, tuple[int, str]]) -> str:
    """Rename top folder t0 to t0-renamed (contents and mtimes unchanged)."""
    os.rename(side / "t0", side / "t0-renamed")
    moved = {rel: value for rel, value in expected.items() if rel.startswith("t0/")}
    for rel, value in moved.items():
        del expected[rel]
        expected["t0-renamed/" + rel[len("t0/") :]] = value
    return f"t0 -> t0-renamed ({len(moved)} files)"


def mutate_touch(side: Path, expected: dict[str, tuple[int, str]]) -> tuple[str, list[str]]:
    """Set the mtime of every file of t1 (1,000 files) to now; contents unchanged."""
    touched = sorted(rel for rel in expected if rel.startswith("t1/"))
    for rel in touched:
        _bump_mtime(side / rel)
    return f"mtime of {len(touched)} files in t1 set to now", touched


def mtimes_matching(a: Path, b: Path, rels: list[str]) -> int:
    """How many of `rels` have the same mtime (to the second) on both sides (did the touch travel?)."""
    same = 0
    for rel in rels:
        with contextlib.suppress(OSError):
            same += int(int((a / rel).stat().st_mtime) == int((b / rel).stat().st_mtime))
    return same


# ---- verification ---------------------------------------------------------------------------


def scan(side: Path) -> tuple[dict[str, tuple[int, str]], set[str]]:
    """relpath -> (size, sha256) of every file, and the set of folders. Names starting with a dot
    are the tools' own (Syncthing's .stfolder, temp files); the workload never makes any."""
    files: dict[str, tuple[int, str]] = {}
    folders: set[str] = set()
    stack = [("", side)]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    folders.add(rel)
                    stack.append((rel + "/", Path(entry.path)))
                else:
                    files[rel] = (entry.stat(follow_symlinks=False).st_size, sha256_file(Path(entry.path)))
    return files, folders


def verify(sides: dict[str, Path], expected: dict[str, tuple[int, str]]) -> tuple[bool, str]:
    """Both sides must hold exactly the expected files (name, size, SHA-256). Returns (ok, detail);
    leftover empty folders are reported in the detail but are not a failure."""
    problems, notes = [], []
    want_folders = {rel.rsplit("/", 1)[0] for rel in expected if "/" in rel}
    want_folders |= {"/".join(f.split("/")[:i]) for f in want_folders for i in range(1, f.count("/") + 1)}
    for label, side in sides.items():
        try:
            files, folders = scan(side)
        except OSError as exc:
            problems.append(f"{label}: cannot scan ({exc})")
            continue
        missing = sorted(set(expected) - set(files))
        extra = sorted(set(files) - set(expected))
        wrong = sorted(rel for rel in set(files) & set(expected) if files[rel] != expected[rel])
        for what, rels in (("missing", missing), ("unexpected", extra), ("wrong size/content", wrong)):
            if rels:
                problems.append(f"{label}: {len(rels)} {what} (e.g. {rels[0]})")
        stale = folders - want_folders
        if stale:
            notes.append(f"{label}: {len(stale)} leftover folders (e.g. {sorted(stale)[0]})")
    if problems:
        return False, "; ".join(problems + notes)
    return True, "; ".join(notes) if notes else "ok"
