"""Encrypted chunks: which are missing, upload one or a packed batch, download one or many.

The server cannot check a chunk id (it is a keyed hash of plaintext it never sees), so each
upload carries the BLAKE3 of its ciphertext; the server recomputes it over the bytes it
received and refuses a mismatch, so a truncated or corrupted transfer is never stored.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import blake3
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from tandem.core import wire
from tandem.core.crypto import CHUNK_OVERHEAD
from tandem.server.deps import Services, current_device, services
from tandem.server.errors import BodyTooLarge
from tandem.server.models import ChunkId, ChunkIdsRequest, MissingResponse, StoredResponse
from tandem.server.packs import read_chunk, read_chunks, store_pack, write_pack
from tandem.server.store.base import Device, StoreError

router = APIRouter(tags=["chunks"])
_BINARY_BODY: dict[str, Any] = {
    "requestBody": {"required": True,
                    "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                         "format": "binary"}}}}
}
#: Flush received pack frames to storage (as one pack blob) once this many bytes are waiting.
_PACK_FLUSH_BYTES = 8 * 1024 * 1024
#: `POST /chunks/fetch` reads this many bytes of chunks per worker-thread call.
_FETCH_READ_BYTES = 4 * 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _verify(chunk_id: str, content_hash: str, data: bytes | bytearray) -> None:
    if len(data) < CHUNK_OVERHEAD + 1:
        raise StoreError(400, "invalid_chunk", f"chunk {chunk_id[:12]} is too short to be a chunk")
    if blake3.blake3(data).hexdigest() != content_hash:
        raise StoreError(400, "hash_mismatch",
                         f"chunk {chunk_id[:12]} does not match its hash: resend it",
                         chunk_id=chunk_id)


def _store(parts: Services, account_id: int, data: bytes | bytearray,
           frames: list[wire.UploadFrame]) -> int:
    """Verify the frames (ciphertexts side by side in `data`), check the quota, write the new
    ones durably as one pack, then record them. Runs in a worker thread."""
    with memoryview(data) as view:
        for frame in frames:
            _verify(frame.chunk_id, frame.content_hash,
                    view[frame.offset : frame.offset + frame.length])
    with parts.locks.uploading(account_id):
        lacking = set(parts.store.missing_chunks(account_id, [f.chunk_id for f in frames]))
        fresh = {f.chunk_id: f for f in frames if f.chunk_id in lacking}
        parts.store.reserve_space(account_id, sum(f.length for f in fresh.values()))
        if len(fresh) == len(frames):  # the usual case: the client sent only what was missing
            return write_pack(parts, account_id, data,
                              [(f.chunk_id, f.offset, f.length) for f in frames])
        with memoryview(data) as view:
            return store_pack(parts, account_id, {
                f.chunk_id: bytes(view[f.offset : f.offset + f.length]) for f in fresh.values()})


@router.post("/chunks/missing", response_model=MissingResponse)
def missing(body: ChunkIdsRequest, device: Device = Depends(current_device),
            parts: Services = Depends(services)) -> MissingResponse:
    """Which of these chunk ids this account does not have yet: upload only those."""
    return MissingResponse(missing=parts.store.missing_chunks(device.account_id, body.ids))


@router.put("/chunks/{chunk_id}", response_model=StoredResponse, openapi_extra=_BINARY_BODY)
async def put_chunk(
    chunk_id: ChunkId,
    request: Request,
    x_content_hash: Annotated[str, Header(pattern=wire.CHUNK_ID_PATTERN)],
    device: Device = Depends(current_device),
    parts: Services = Depends(services),
) -> StoredResponse:
    """Upload one encrypted chunk; `X-Content-Hash` is the BLAKE3 of the body."""
    pieces, size = [], 0
    async for piece in request.stream():
        pieces.append(piece)
        size += len(piece)
        if size > wire.MAX_CHUNK_CIPHERTEXT:
            raise BodyTooLarge(wire.MAX_CHUNK_CIPHERTEXT)
    data = b"".join(pieces)
    frame = wire.UploadFrame(chunk_id, x_content_hash, 0, len(data))
    stored = await run_in_threadpool(_store, parts, device.account_id, data, [frame])
    return StoredResponse(stored=stored, already_present=1 - stored)


@router.post("/chunks/pack", response_model=StoredResponse, openapi_extra=_BINARY_BODY)
async def put_pack(request: Request, device: Device = Depends(current_device),
                   parts: Services = Depends(services)) -> StoredResponse:
    """Upload many chunks in one request: frames of (32-byte id, 32-byte BLAKE3 of the
    ciphertext, 4-byte big-endian length, ciphertext). Frames are stored as they arrive:
    each 8 MiB as a pack, written by a worker thread while the next ones are received."""
    account_id = device.account_id
    reader = wire.UploadFrameReader()
    storing: asyncio.Future[int] | None = None
    stored = total = 0

    async def flush() -> None:
        nonlocal storing, stored, total
        data, frames = reader.take()
        if storing is not None:
            stored += await storing
            storing = None
        if frames:
            total += len(frames)
            storing = asyncio.ensure_future(
                run_in_threadpool(_store, parts, account_id, data, frames))

    try:
        async for piece in request.stream():
            try:
                reader.feed(piece)
            except wire.FramingError as exc:
                raise StoreError(400, "invalid_pack", str(exc)) from None
            if reader.complete_bytes >= _PACK_FLUSH_BYTES:  # a pack is at most 8 MiB + a chunk
                await flush()
        try:
            reader.finish()
        except wire.FramingError as exc:
            raise StoreError(400, "invalid_pack", str(exc)) from None
        await flush()
        if storing is not None:
            stored += await storing
            storing = None
    finally:
        if storing is not None:  # the request failed: let the pack in flight finish first
            await asyncio.wait([storing])
            if not storing.cancelled():
                storing.exception()  # retrieved: the request's own error is the one reported
    return StoredResponse(stored=stored, already_present=total - stored)


@router.get("/chunks/{chunk_id}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def get_chunk(chunk_id: ChunkId, request: Request, device: Device = Depends(current_device),
              parts: Services = Depends(services)) -> Response:
    """Download one encrypted chunk (a single `Range` is honoured: 206)."""
    data = read_chunk(parts, device.account_id, chunk_id)
    headers = {"Accept-Ranges": "bytes"}
    wanted = _byte_range(request.headers.get("range"), len(data))
    if wanted is None:
        return Response(data, media_type="application/octet-stream", headers=headers)
    start, end = wanted
    if start >= len(data):
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"})
    return Response(data[start:end], status_code=206, media_type="application/octet-stream",
                    headers={**headers, "Content-Range": f"bytes {start}-{end - 1}/{len(data)}"})


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) of one `bytes=a-b`, `bytes=a-` or `bytes=-n` range; None for no range or
    one we ignore (several ranges, malformed: the whole chunk is answered, as RFC 9110 allows).
    A start past the end is returned as is (416)."""
    match = _RANGE.match(header.strip()) if header else None
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # the last n bytes
        return max(size - int(last), 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return None
    return start, end


@router.post("/chunks/fetch", response_class=StreamingResponse,
             responses={200: {"content": {"application/octet-stream": {}}}})
async def fetch_chunks(body: ChunkIdsRequest, device: Device = Depends(current_device),
                       parts: Services = Depends(services)) -> StreamingResponse:
    """Download many chunks in one response: frames of (32-byte id, 4-byte length, data),
    in the order asked. Every id must be this account's, or nothing is sent (404)."""
    account_id = device.account_id
    locations = await run_in_threadpool(parts.store.chunk_locations, account_id, body.ids)
    lacking = [chunk_id for chunk_id in dict.fromkeys(body.ids) if chunk_id not in locations]
    if lacking:
        raise StoreError(404, "not_found", f"{len(lacking)} chunk(s) not found",
                         chunks=lacking[:100])
    wanted = [(chunk_id, locations[chunk_id]) for chunk_id in body.ids]

    async def frames() -> AsyncIterator[bytes]:
        index = 0
        while index < len(wanted):
            end, size = index, 0
            while end < len(wanted) and (end == index or size < _FETCH_READ_BYTES):
                size += wanted[end][1].size
                end += 1
            group = wanted[index:end]
            datas = await run_in_threadpool(read_chunks, parts, account_id, group)
            for (chunk_id, _), data in zip(group, datas, strict=True):
                yield wire.encode_download_frame(chunk_id, data)
            index = end

    return StreamingResponse(frames(), media_type="application/octet-stream")
