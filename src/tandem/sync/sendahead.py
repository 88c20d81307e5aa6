"""Sending a scan's chunks ahead of the plan: the hasher hands each chunk of a new or changed
file to an upload batch as it reads it, as Dropbox sends blocks before it commits.

New or changed content is what the plan uploads next, so sending overlaps reading, and the
upload after the plan reads nothing again and asks the server nothing about those chunks.
What the plan does not upload (a conflict resolved the other way) is an unreferenced chunk
that GC collects after its grace period. Best effort: after one failed send the rest of the
scan's offers are dropped, and the files' own uploads send what is missing. Placeholder text
is never sent (it is not a file's content).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from tandem.client.api import ClientError
from tandem.client.transfer import Transfers, UploadBatch
from tandem.core.chunking import MIN_CHUNK
from tandem.sync.live import LiveStatus
from tandem.sync.model import normalize
from tandem.sync.placeholder import HEADER as PLACEHOLDER_HEADER
from tandem.sync.scanner import ChunkSink


class SendAhead:
    """One scan's sending at a time: `start`, the hasher's `sink_for`, then `finish`."""

    def __init__(self, transfers: Transfers, live: LiveStatus, root: Path) -> None:
        self.transfers = transfers
        self.live = live
        self.root = root
        self._batch: UploadBatch | None = None
        #: Large files being sent, in flight for `tandem status` meanwhile.
        self._large: list[str] = []

    def start(self) -> None:
        self._batch = self.transfers.upload_batch()

    def finish(self) -> set[str]:
        """Wait for what was sent; the ids of the chunks now known to be on the server."""
        batch, self._batch = self._batch, None
        for path in self._large:
            self.live.finish_transfer(path)
        self._large.clear()
        if batch is None:
            return set()
        with contextlib.suppress(ClientError, OSError):
            batch.finish()  # what failed is sent by the file's upload
        return batch.stored

    def sink_for(self, path: Path, size: int) -> ChunkSink | None:
        """Where the hasher sends the chunks of the file at `path`: nowhere between scans;
        the bytes of a large file count as its upload in the live status."""
        batch = self._batch
        if batch is None or not path.is_relative_to(self.root):
            return None
        if size < MIN_CHUNK:  # placeholders are small, and their text starts so
            # Never waited for: a scan of many small files ends (and their first commits go)
            # sooner; what finds the senders busy is sent by the upload after the plan.
            return lambda chunk_id, chunk: (None if chunk.startswith(PLACEHOLDER_HEADER)
                                            else batch.offer(chunk_id, chunk, wait=False))
        relative = "/".join(normalize(part) for part in path.relative_to(self.root).parts)
        self.live.start_transfer(relative, size)
        self._large.append(relative)

        def send(chunk_id: str, chunk: bytes) -> None:
            batch.offer(chunk_id, chunk)
            self.live.advance(relative, len(chunk))

        return send
