"""Content-defined chunking: the cut points are part of Tandem's storage format.

FastCDC 2020 with fixed parameters, so the same bytes always cut the same way on every device
and an edit inside a large file changes only the chunks it touches. Changing these numbers
changes every chunk id: treat them as a format version, never as a tuning knob.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from pyfastcdc import FastCDC

MIN_CHUNK = 256 * 1024
AVG_CHUNK = 1024 * 1024
MAX_CHUNK = 4 * 1024 * 1024

_chunker = FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)


def iter_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """Yield the plaintext chunks of a stream, each a copy the caller may keep.

    pyfastcdc's `cut_stream` reuses its buffer (a chunk's data is valid only until the next one),
    so each chunk is copied out; memory stays bounded by MAX_CHUNK times what the caller holds.
    An empty stream yields nothing: an empty file has an empty manifest.
    """
    for chunk in _chunker.cut_stream(stream):
        yield bytes(chunk.data)


def iter_chunk_views(stream: BinaryIO) -> Iterator[memoryview]:
    """The chunks of a stream as views into the chunker's buffer, each valid only until the
    next is asked for: for a reader that only hashes them (no copy of the file's bytes)."""
    for chunk in _chunker.cut_stream(stream):
        yield chunk.data


def chunk_bytes(data: bytes) -> list[bytes]:
    """The chunks of an in-memory buffer (tests and small payloads)."""
    return [bytes(chunk.data) for chunk in _chunker.cut_buf(data)]
