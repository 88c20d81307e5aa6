"""Blobs as files in a local folder: `ROOT/<prefix>/<first two hex>/<rest>`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from tandem.fileio import sync_folder, write_atomically, write_batch_atomically
from tandem.server.blobs.base import KEY_RE, check_key


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Keys come from validated ids, but a bad one must never escape the folder.
        head, _, name = check_key(key).rpartition("/")
        return self.root / head / name[:2] / name

    def put(self, key: str, data: bytes) -> None:
        self.put_many([(key, data)])

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        """Write the blobs not stored yet, durably: one alone with an fsync, a batch with two
        filesystem flushes in all (`fileio.write_batch_atomically`)."""
        targets = [(self._path(key), data) for key, data in items]
        fresh = [(path, data) for path, data in targets if not path.exists()]
        for folder in {path.parent for path, _ in fresh}:
            self._make_folder(folder)
        if len(fresh) == 1:
            path, data = fresh[0]
            write_atomically(path, data, temp_dir=self._tmp)
            sync_folder(path.parent)
        elif fresh:
            write_batch_atomically(fresh, self._tmp)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"invalid range {offset}+{length}")
        try:
            fd = os.open(self._path(key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise KeyError(key) from None
        try:
            pieces, got = [], 0
            while got < length:
                piece = os.pread(fd, length - got, offset + got)
                if not piece:
                    break
                pieces.append(piece)
                got += len(piece)
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        finally:
            os.close(fd)

    def _make_folder(self, folder: Path) -> None:
        """Create `folder` and its missing parents, each made durable in its parent (a pack's
        name must not vanish with a new folder after a power loss)."""
        missing: list[Path] = []
        while not folder.is_dir() and folder != self.root:
            missing.append(folder)
            folder = folder.parent
        for created in reversed(missing):
            created.mkdir(exist_ok=True)
            sync_folder(created.parent)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        head_of_prefix = prefix.rpartition("/")[0]
        if head_of_prefix and not KEY_RE.match(head_of_prefix):
            return
        for folder, _dirs, files in os.walk(self.root / head_of_prefix):
            relative = Path(folder).relative_to(self.root)
            if relative.parts[:1] == (".tmp",) or not files:
                continue
            head = "/".join(relative.parts[:-1])
            for name in files:
                key = f"{head}/{name}" if head else name
                if key.startswith(prefix):
                    yield key

    def sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        for key in self.keys(prefix):
            try:
                yield key, self._path(key).stat().st_size
            except FileNotFoundError:
                continue  # deleted since it was listed

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.exists() else None

