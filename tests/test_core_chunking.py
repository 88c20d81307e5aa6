"""Content-defined chunking: stable cut points, bounded sizes, local effect of edits."""

from __future__ import annotations

import io
import random

from tandem.core import chunking


def _data(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def test_empty_input_has_no_chunks() -> None:
    assert list(chunking.iter_chunks(io.BytesIO(b""))) == []


def test_small_input_is_one_chunk() -> None:
    assert list(chunking.iter_chunks(io.BytesIO(b"abc"))) == [b"abc"]


def test_stream_and_buffer_cut_the_same_way_within_bounds() -> None:
    data = _data(12 << 20)
    streamed = list(chunking.iter_chunks(io.BytesIO(data)))
    assert streamed == chunking.chunk_bytes(data)
    assert b"".join(streamed) == data
    assert all(len(c) <= chunking.MAX_CHUNK for c in streamed)
    assert all(len(c) >= chunking.MIN_CHUNK for c in streamed[:-1])


def test_an_edit_in_the_middle_changes_only_nearby_chunks() -> None:
    data = bytearray(_data(16 << 20))
    before = chunking.chunk_bytes(bytes(data))
    data[8 << 20 : (8 << 20) + 4096] = _data(4096, seed=2)
    after = chunking.chunk_bytes(bytes(data))
    changed = set(after) - set(before)
    assert 1 <= len(changed) <= 2
