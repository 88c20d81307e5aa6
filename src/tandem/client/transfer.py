"""Encrypted, deduplicated, streamed file transfers.

Upload: chunk (FastCDC) and hash on the calling thread; ask the server which chunk ids it
lacks; encrypt and send only those from a small worker pool, several to a request.
Download: fetch groups of chunks in parallel, decrypt and verify each against its id,
write in order to a temp file beside the target, fsync, rename (promise 4).
Memory is bounded by the windows below, never by the file size.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from tandem.client.api import ApiClient, ClientError
from tandem.core import wire
from tandem.core.chunking import MIN_CHUNK, iter_chunks
from tandem.core.crypto import AccountKeys

Manifest = list[tuple[str, int]]

#: Ask the server about this many plaintext bytes of new chunk ids at a time (one job: the
#: missing-query, then the missing chunks, small ones in one pack).
_QUERY_WINDOW = 4 * 1024 * 1024
_QUERY_MAX_IDS = 1000
#: Plaintext bytes per download request.
_FETCH_BYTES = 4 * 1024 * 1024


def _read_umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


#: The mode a new file gets here (temp files start as 0600; downloads must not stay so).
NEW_FILE_MODE = 0o666 & ~_read_umask()


class FileChangedError(ClientError):
    """The file changed while it was read: that read is not a version of it (promise 4)."""


class DownloadError(ClientError):
    """What the server sent does not add up to the file asked for."""


@dataclass
class TransferStats:
    """Counters a caller can read (benchmarks, tests of dedup, progress)."""

    chunks_sent: int = 0
    bytes_sent: int = 0
    chunks_received: int = 0
    bytes_received: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_sent(self, chunks: int, size: int) -> None:
        with self._lock:
            self.chunks_sent += chunks
            self.bytes_sent += size

    def add_received(self, chunks: int, size: int) -> None:
        with self._lock:
            self.chunks_received += chunks
            self.bytes_received += size


#: A manifest a scan computed, and the file's (size, mtime_ns, ctime_ns, inode) at the time.
KnownContent = tuple[Sequence[tuple[str, int]], tuple[int, int, int, int]]


@dataclass
class UploadResult:
    path: Path
    size: int
    mtime_ns: int
    manifest: Manifest


def _file_signature(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


class Transfers:
    """Moves file contents between this machine and the server for one account."""

    def __init__(self, api: ApiClient, keys: AccountKeys, workers: int = 4) -> None:
        self.api = api
        self.keys = keys
        self.stats = TransferStats()
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tandem-transfer")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Transfers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- upload ---------------------------------------------------------------------------

    def upload(self, paths: Sequence[Path], progress: Callable[[int, int], None] | None = None,
               known: Sequence[KnownContent | None] | None = None, stored: Collection[str] = (),
               ) -> list[UploadResult | ClientError | OSError]:
        """Upload files (sharing requests across them); one result or error per path.

        After this returns, every chunk of every successful result is on the server, so a
        commit referencing the manifests will be accepted. `progress(index, count)`, if given,
        hears of each file's bytes as they are queued for the senders: the queue is bounded,
        so it runs at most a few windows ahead of the network (a live status, not a receipt).
        `known[i]`, if given, is the manifest a scan just computed for `paths[i]` and the stat
        it had then, and `stored` the chunks known to be on the server: see
        `UploadBatch.add_known_file`.
        """
        batch = UploadBatch(self)
        results: list[UploadResult | ClientError | OSError] = []
        for index, path in enumerate(paths):
            advance = functools.partial(progress, index) if progress is not None else None
            seen = known[index] if known is not None else None
            try:
                results.append(batch.add_known_file(path, seen, advance, stored)
                               if seen is not None else batch.add_file(path, advance))
            except (OSError, FileChangedError) as exc:
                results.append(exc)
        batch.finish()
        return results

    def upload_batch(self) -> UploadBatch:
        """Files handed over one at a time, sharing requests: `add_file` returns a file's
        manifest once read (its chunks go on in the background), `finish` waits for all."""
        return UploadBatch(self)

    def upload_file(self, path: Path) -> UploadResult:
        result = self.upload([path])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def _send_pack(self, chunks: Iterable[tuple[str, bytes]]) -> None:
        """Encrypt and send chunks in one request, as frames handed over unjoined: peak memory
        is the plaintexts not yet encrypted plus the ciphertexts, not a joined copy on top."""
        parts: list[bytes] = []
        count = size = 0
        for chunk_id, plaintext in chunks:
            head, sealed = self.keys.seal_chunk(chunk_id, plaintext)
            length = len(head) + len(sealed)
            content_hash = blake3.blake3(head).update(sealed).hexdigest()
            parts += (wire.encode_upload_header(chunk_id, content_hash, length), head, sealed)
            count += 1
            size += wire.UPLOAD_HEADER_SIZE + length
        if parts:
            self.api.put_pack(parts)
            self.stats.add_sent(count, size)

    # ---- download -------------------------------------------------------------------------

    def download(self, manifest: Manifest, target: Path, temp_dir: Path | None = None,
                 mtime_ns: int | None = None) -> None:
        """Write the file described by `manifest` to `target`, atomically: `target` appears
        only complete and verified, or is left as it was."""
        folder = temp_dir or target.parent
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=".tandem-download-")
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), NEW_FILE_MODE)
                for plaintext in self.iter_content(manifest):
                    handle.write(plaintext)
                handle.flush()
                os.fsync(handle.fileno())
            if mtime_ns is not None:
                os.utime(temp_name, ns=(mtime_ns, mtime_ns))
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def iter_content(self, manifest: Manifest) -> Iterable[bytes]:
        """The file's plaintext, chunk by chunk, each verified against its id and size."""
        groups = _fetch_groups(manifest)
        window: deque[Future[list[bytes]]] = deque()
        next_group = 0
        while next_group < len(groups) or window:
            while next_group < len(groups) and len(window) < self.workers - 1:
                window.append(self._pool.submit(self._fetch_group, groups[next_group]))
                next_group += 1
            yield from window.popleft().result()

    def _fetch_group(self, group: Manifest) -> list[bytes]:
        frames = self.api.fetch_chunks([chunk_id for chunk_id, _ in group])
        if [chunk_id for chunk_id, _ in frames] != [chunk_id for chunk_id, _ in group]:
            raise DownloadError("the server sent chunks other than those asked for")
        plaintexts = []
        for (chunk_id, size), (_, ciphertext) in zip(group, frames, strict=True):
            plaintext = self.keys.decrypt_chunk(chunk_id, ciphertext)
            if len(plaintext) != size:
                raise DownloadError(f"chunk {chunk_id[:12]} has the wrong size")
            plaintexts.append(plaintext)
        self.stats.add_received(len(frames), sum(len(c) for _, c in frames))
        return plaintexts


def _fetch_groups(manifest: Manifest) -> list[Manifest]:
    groups: list[Manifest] = []
    current: Manifest = []
    size = 0
    for entry in manifest:
        if current and (size + entry[1] > _FETCH_BYTES or len(current) >= _QUERY_MAX_IDS):
            groups.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry[1]
    if current:
        groups.append(current)
    return groups


class UploadBatch:
    """The state of one `Transfers.upload` call: a window of new chunk ids and the bounded
    queue of jobs in flight. Each job asks the server which chunks of its window are missing
    and sends those, so the calling thread only reads, chunks and hashes."""

    def __init__(self, transfers: Transfers) -> None:
        self.transfers = transfers
        self.waiting: dict[str, bytes] = {}
        self.waiting_bytes = 0
        self.known: set[str] = set()
        self.in_flight: deque[Future[None]] = deque()
        #: A chunk offered ahead of its file failed to go: later offers are dropped.
        self.offers_failed = False
        #: Ids of the chunks this batch has seen stored on the server (sent, or reported
        #: present by the missing-query): an upload soon after need not ask about them.
        self.stored: set[str] = set()

    def offer(self, chunk_id: str, plaintext: bytes, wait: bool = True) -> None:
        """Send a chunk ahead of its file's upload (the sync scan hashing a new or changed
        file), so the upload that follows the plan finds it stored and reads nothing again,
        and sending overlaps reading. Best effort: once a send fails, later offers are
        dropped, and the file's own upload sends what is missing. Without `wait`, a chunk
        that would have to wait for a window in flight is dropped too: the caller is not
        held back (the scan of many small files, whose commits another device waits for)."""
        if self.offers_failed or chunk_id in self.known:
            return
        if not wait and len(self.in_flight) >= self.transfers.workers - 1 \
                and not self.in_flight[0].done() and (
                self.waiting_bytes + len(plaintext) >= _QUERY_WINDOW
                or len(self.waiting) + 1 >= _QUERY_MAX_IDS):
            return
        self.known.add(chunk_id)
        try:
            self._queue(chunk_id, plaintext)
        except (ClientError, OSError):
            self.offers_failed = True

    def add_file(self, path: Path, advance: Callable[[int], None] | None = None) -> UploadResult:
        manifest: Manifest = []
        with open(path, "rb") as handle:
            before = os.fstat(handle.fileno())
            chunks: Iterable[bytes]
            if before.st_size < MIN_CHUNK:
                # One chunk: skip the chunker's set-up. Read even when the size says 0, as
                # the scan does (a file may hold more than its stat says, procfs or FUSE, or
                # fail to read): the content sent is the content the scan saw.
                data = handle.read(MIN_CHUNK)
                if handle.read(1):
                    raise FileChangedError(f"{path} changed while it was read")
                chunks = [data] if data else []
            else:
                chunks = iter_chunks(handle)
            for plaintext in chunks:
                chunk_id = self.transfers.keys.chunk_id(plaintext)
                manifest.append((chunk_id, len(plaintext)))
                if chunk_id not in self.known:
                    self.known.add(chunk_id)
                    self._queue(chunk_id, plaintext)
                if advance is not None:
                    advance(len(plaintext))
        after = os.stat(path)
        if _file_signature(before) != _file_signature(after):
            raise FileChangedError(f"{path} changed while it was read")
        return UploadResult(path, sum(size for _, size in manifest), before.st_mtime_ns, manifest)

    def add_known_file(self, path: Path, known: KnownContent,
                       advance: Callable[[int], None] | None = None,
                       stored: Collection[str] = ()) -> UploadResult:
        """A file whose manifest a scan has just computed: only the chunks the server lacks
        are read (at their offsets) and sent, each checked against its id, so a small edit
        in a large file costs one chunk's read, not the file's; the server is not asked about
        chunks known to be `stored` (the scan sent them). A file whose stat is no longer the
        scanned one is read whole instead (`add_file`)."""
        manifest, signature = known
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            before = os.fstat(fd)
            if _file_signature(before) != signature:
                os.close(fd)
                fd = -1
                return self.add_file(path, advance)
            fresh = list(dict.fromkeys(c for c, _ in manifest
                                       if c not in self.known and c not in stored))
            missing: set[str] = set()
            for start in range(0, len(fresh), _QUERY_MAX_IDS):
                missing.update(self.transfers.api.missing_chunks(fresh[start:start + _QUERY_MAX_IDS]))
            offset = 0
            for chunk_id, size in manifest:
                if chunk_id in missing and chunk_id not in self.known:
                    plaintext = os.pread(fd, size, offset)
                    if len(plaintext) != size or self.transfers.keys.chunk_id(plaintext) != chunk_id:
                        raise FileChangedError(f"{path} changed since it was scanned")
                    self._queue(chunk_id, plaintext)
                self.known.add(chunk_id)
                offset += size
                if advance is not None:
                    advance(size)
        finally:
            if fd >= 0:
                os.close(fd)
        if _file_signature(os.stat(path)) != signature:
            raise FileChangedError(f"{path} changed while it was read")
        return UploadResult(path, before.st_size, before.st_mtime_ns, list(manifest))

    def _queue(self, chunk_id: str, plaintext: bytes) -> None:
        self.waiting[chunk_id] = plaintext
        self.waiting_bytes += len(plaintext)
        if self.waiting_bytes >= _QUERY_WINDOW or len(self.waiting) >= _QUERY_MAX_IDS:
            self._dispatch()

    def _dispatch(self) -> None:
        if not self.waiting:
            return
        while len(self.in_flight) >= self.transfers.workers - 1:
            self.in_flight.popleft().result()
        self.in_flight.append(self.transfers._pool.submit(self._send_window, self.waiting))
        self.waiting = {}
        self.waiting_bytes = 0

    def _send_window(self, window: dict[str, bytes]) -> None:
        ids = list(window)
        missing = set(self.transfers.api.missing_chunks(ids))
        # Large chunks too: the server makes a whole pack durable with two filesystem
        # flushes and one database commit, instead of three fsyncs per chunk. Each plaintext
        # leaves the window as it is encrypted.
        self.transfers._send_pack((chunk_id, window.pop(chunk_id)) for chunk_id in ids
                                  if chunk_id in missing)
        window.clear()
        self.stored.update(ids)  # (one call: atomic under the GIL, workers add concurrently)

    def finish(self) -> None:
        """Send what is left and wait for everything; the first failure is raised."""
        try:
            self._dispatch()
        finally:
            errors = []
            while self.in_flight:
                try:
                    self.in_flight.popleft().result()
                except Exception as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]
