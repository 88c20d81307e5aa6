"""The wire format shared by server and client: identifiers, limits and the chunk pack framing.

Pure definitions and functions over bytes; both sides import the same numbers so a limit is
stated once.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tandem.core.chunking import MAX_CHUNK
from tandem.core.crypto import CHUNK_OVERHEAD, SIV_OVERHEAD

#: Every account's tree hangs from a folder with this id.
ROOT_ID = "root"
#: Node ids are chosen by clients (random 128 bits), so a retried create is recognisable.
NODE_ID_PATTERN = r"^(root|[0-9a-f]{32})$"
NODE_ID_RE = re.compile(NODE_ID_PATTERN)
#: Chunk ids are keyed BLAKE3-256 digests in hex.
CHUNK_ID_PATTERN = r"^[0-9a-f]{64}$"
CHUNK_ID_RE = re.compile(CHUNK_ID_PATTERN)

#: A file or folder name is at most 255 bytes of UTF-8 (the limit of common filesystems).
MAX_NAME_BYTES = 255
MAX_NAME_CIPHERTEXT = MAX_NAME_BYTES + SIV_OVERHEAD
#: The largest stored chunk: the chunker's maximum plus the encryption overhead.
MAX_CHUNK_CIPHERTEXT = MAX_CHUNK + CHUNK_OVERHEAD
MAX_FILE_SIZE = 1 << 50
MAX_MANIFEST_CHUNKS = MAX_FILE_SIZE // (256 * 1024)
MAX_BATCH_OPS = 10_000
MAX_IDS_PER_QUERY = 10_000
#: Body caps, enforced by the server on every request (uvicorn has none of its own).
MAX_JSON_BODY = 32 * 1024 * 1024
MAX_PACK_BODY = 64 * 1024 * 1024
MAX_LONG_POLL_SECONDS = 120
MAX_PAGE = 5000

# A chunk pack is a sequence of frames: 32-byte chunk id, 32-byte BLAKE3 of the ciphertext,
# 4-byte big-endian length, then the ciphertext. Downloads use the same framing without hash.
_UPLOAD_HEADER = struct.Struct(">32s32sI")
UPLOAD_HEADER_SIZE = _UPLOAD_HEADER.size
_DOWNLOAD_HEADER = struct.Struct(">32sI")
DOWNLOAD_HEADER_SIZE = _DOWNLOAD_HEADER.size


class FramingError(ValueError):
    """A chunk pack that does not follow the framing."""


def encode_upload_header(chunk_id: str, content_hash: str, length: int) -> bytes:
    """The header of one pack frame; the `length` bytes of ciphertext follow it."""
    return _UPLOAD_HEADER.pack(bytes.fromhex(chunk_id), bytes.fromhex(content_hash), length)


def encode_upload_frame(chunk_id: str, content_hash: str, data: bytes) -> bytes:
    return encode_upload_header(chunk_id, content_hash, len(data)) + data


def decode_upload_header(header: bytes) -> tuple[str, str, int]:
    raw_id, raw_hash, length = _UPLOAD_HEADER.unpack(header)
    if length > MAX_CHUNK_CIPHERTEXT:
        raise FramingError(f"chunk of {length} bytes exceeds the {MAX_CHUNK_CIPHERTEXT}-byte limit")
    return raw_id.hex(), raw_hash.hex(), length


@dataclass(frozen=True)
class UploadFrame:
    """One complete frame of an upload: where its ciphertext lies in the reader's buffer."""

    chunk_id: str
    content_hash: str
    offset: int
    length: int


class UploadFrameReader:
    """Reads upload frames from a body that arrives in pieces of any size, copying each byte
    of ciphertext once, from its piece into one buffer of consecutive ciphertexts: that buffer
    is already the pack the server stores, so a received chunk is never joined or sliced out
    again (each copy of a large upload costs page faults and memory bandwidth)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.frames: list[UploadFrame] = []
        self._header = bytearray()
        self._current: tuple[str, str, int] | None = None
        self._left = 0

    def feed(self, piece: bytes | bytearray | memoryview) -> None:
        """Take the next piece of the body; raises FramingError on a bad header."""
        with memoryview(piece) as view:
            position, end = 0, len(view)
            while position < end:
                if self._current is None:
                    take = min(UPLOAD_HEADER_SIZE - len(self._header), end - position)
                    self._header += view[position : position + take]
                    position += take
                    if len(self._header) == UPLOAD_HEADER_SIZE:
                        self._current = decode_upload_header(bytes(self._header))
                        self._header.clear()
                        self._left = self._current[2]
                else:
                    take = min(self._left, end - position)
                    self.buffer += view[position : position + take]
                    position += take
                    self._left -= take
                if self._current is not None and self._left == 0:
                    chunk_id, content_hash, length = self._current
                    self.frames.append(UploadFrame(chunk_id, content_hash,
                                                   len(self.buffer) - length, length))
                    self._current = None

    @property
    def complete_bytes(self) -> int:
        """Bytes of ciphertext in complete frames not taken yet."""
        return self.frames[-1].offset + self.frames[-1].length if self.frames else 0

    def take(self) -> tuple[bytearray, list[UploadFrame]]:
        """The complete frames so far and the buffer holding their ciphertexts (exactly);
        the frame being read stays, at the start of a new buffer."""
        end = self.complete_bytes
        data, frames = self.buffer, self.frames
        self.buffer = data[end:]
        del data[end:]
        self.frames = []
        return data, frames

    def finish(self) -> None:
        """The body has ended: it must not end inside a frame."""
        if self._header or self._current is not None:
            raise FramingError("the pack ends in the middle of a frame")


def encode_download_frame(chunk_id: str, data: bytes) -> bytes:
    return _DOWNLOAD_HEADER.pack(bytes.fromhex(chunk_id), len(data)) + data


def split_download_frames(body: bytes) -> list[tuple[str, memoryview]]:
    """Split a complete framed response into (chunk id, ciphertext view) without copying."""
    view = memoryview(body)
    frames = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < DOWNLOAD_HEADER_SIZE:
            raise FramingError("the chunk stream ended in the middle of a frame header")
        raw_id, length = _DOWNLOAD_HEADER.unpack_from(view, offset)
        start = offset + DOWNLOAD_HEADER_SIZE
        if length > MAX_CHUNK_CIPHERTEXT or start + length > len(view):
            raise FramingError("the chunk stream ended in the middle of a frame")
        frames.append((raw_id.hex(), view[start : start + length]))
        offset = start + length
    return frames


def decode_download_frames(frames: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
    """Reassemble (chunk id, ciphertext) pairs from a stream of arbitrary byte pieces."""
    buffer = bytearray()
    for piece in frames:
        buffer += piece
        while len(buffer) >= DOWNLOAD_HEADER_SIZE:
            raw_id, length = _DOWNLOAD_HEADER.unpack_from(buffer)
            if length > MAX_CHUNK_CIPHERTEXT:
                raise FramingError("a downloaded frame exceeds the chunk size limit")
            end = DOWNLOAD_HEADER_SIZE + length
            if len(buffer) < end:
                break
            yield raw_id.hex(), bytes(buffer[DOWNLOAD_HEADER_SIZE:end])
            del buffer[:end]
    if buffer:
        raise FramingError("the chunk stream ended in the middle of a frame")
