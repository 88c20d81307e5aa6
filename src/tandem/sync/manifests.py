"""Manifests remembered between a file's scan or download and the transfer that follows."""

from __future__ import annotations


class RecentManifests:
    """The manifests of the files the scanner read or the downloader wrote last, by content
    id (the newest, up to `limit` chunk references in all, a few MiB). A file's upload right
    after its scan asks the server which chunks it lacks (or knows) and reads only those,
    instead of reading and cutting the file again; a download replacing a file finds the
    chunks it keeps by their offsets, without cutting the old file. A file not remembered any
    more is read again: slower, not wrong."""

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self._manifests: dict[str, list[tuple[str, int]]] = {}
        self._references = 0
        #: How many remembered manifests hold each chunk id.
        self._chunks: dict[str, int] = {}

    def remember(self, content: str, manifest: list[tuple[str, int]]) -> None:
        self.forget(content)
        self._references += len(manifest)
        self._manifests[content] = manifest
        for chunk_id, _ in manifest:
            self._chunks[chunk_id] = self._chunks.get(chunk_id, 0) + 1
        while self._references > self.limit and len(self._manifests) > 1:
            self.forget(next(iter(self._manifests)))

    def holds(self, chunk_id: str) -> bool:
        """Whether a remembered file has this chunk: a file scanned or downloaded lately,
        whose chunks the server most likely stores (a hint for sending ahead, never proof:
        an upload asks the server)."""
        return chunk_id in self._chunks

    def get(self, content: str) -> list[tuple[str, int]] | None:
        return self._manifests.get(content)

    def forget(self, content: str) -> None:
        """Drop a manifest: the oldest, or one found not to match its file (it changed)."""
        old = self._manifests.pop(content, None)
        if old is None:
            return
        self._references -= len(old)
        for chunk_id, _ in old:
            left = self._chunks[chunk_id] - 1
            if left:
                self._chunks[chunk_id] = left
            else:
                del self._chunks[chunk_id]
