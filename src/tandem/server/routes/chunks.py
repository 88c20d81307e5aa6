"""Encrypted chunks: which are missing, upload one or a packed batch, download one or many.

The server cannot check a chunk id (it is a keyed hash of plaintext it never sees), so each
upload carries the BLAKE3 of its ciphertext; the server recomputes it over the bytes it
received and refuses a mismatch, so a truncated or corrupted transfer is never stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import blake3
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from tandem.core import wire
from tandem.core.crypto import CHUNK_OVERHEAD
from tandem.server.deps import Services, chunk_key, current_device, now, services
from tandem.server.errors import BodyTooLarge
from tandem.server.models import ChunkId, ChunkIdsRequest, MissingResponse, StoredResponse
from tandem.server.store.base import Device, StoreError

router = APIRouter(tags=["chunks"])
_BINARY_BODY: dict[str, Any] = {
    "requestBody": {"required": True,
                    "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                         "format": "binary"}}}}
}
#: Flush received pack frames to storage once this many bytes are waiting.
_PACK_FLUSH_BYTES = 8 * 1024 * 1024


def _verify(chunk_id: str, content_hash: str, data: bytes | bytearray) -> None:
    if len(data) < CHUNK_OVERHEAD + 1:
        raise StoreError(400, "invalid_chunk", f"chunk {chunk_id[:12]} is too short to be a chunk")
    if blake3.blake3(data).hexdigest() != content_hash:
        raise StoreError(400, "hash_mismatch",
                         f"chunk {chunk_id[:12]} does not match its hash: resend it",
                         chunk_id=chunk_id)


def _store(parts: Services, account_id: int, items: list[tuple[str, str, bytes]]) -> int:
    """Verify (id, hash, ciphertext) items, check the quota, write the new blobs durably,
    then record them. Runs in a worker thread."""
    for chunk_id, content_hash, data in items:
        _verify(chunk_id, content_hash, data)
    with parts.locks.uploading(account_id):
        lacking = set(parts.store.missing_chunks(account_id, [cid for cid, _, _ in items]))
        fresh = {cid: data for cid, _, data in items if cid in lacking}
        parts.store.reserve_space(account_id, sum(len(d) for d in fresh.values()))
        parts.blobs.put_many([(chunk_key(account_id, c), d) for c, d in fresh.items()])
        return parts.store.record_chunks(account_id, [(c, len(d)) for c, d in fresh.items()], now())


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
    item = (chunk_id, x_content_hash, b"".join(pieces))
    stored = await run_in_threadpool(_store, parts, device.account_id, [item])
    return StoredResponse(stored=stored, already_present=1 - stored)


@router.post("/chunks/pack", response_model=StoredResponse, openapi_extra=_BINARY_BODY)
async def put_pack(request: Request, device: Device = Depends(current_device),
                   parts: Services = Depends(services)) -> StoredResponse:
    """Upload many chunks in one request: frames of (32-byte id, 32-byte BLAKE3 of the
    ciphertext, 4-byte big-endian length, ciphertext). Frames are stored as they arrive."""
    account_id = device.account_id
    buffer = bytearray()
    pending: list[tuple[str, str, bytes]] = []
    pending_bytes = total = stored = 0

    async def flush() -> None:
        nonlocal pending, pending_bytes, stored
        if pending:
            stored += await run_in_threadpool(_store, parts, account_id, pending)
        pending, pending_bytes = [], 0

    async for piece in request.stream():
        buffer += piece
        while len(buffer) >= wire.UPLOAD_HEADER_SIZE:
            try:
                chunk_id, content_hash, length = wire.decode_upload_header(
                    bytes(buffer[: wire.UPLOAD_HEADER_SIZE]))
            except wire.FramingError as exc:
                raise StoreError(400, "invalid_pack", str(exc)) from None
            end = wire.UPLOAD_HEADER_SIZE + length
            if len(buffer) < end:
                break
            with memoryview(buffer) as view:  # one copy of the frame, not two
                pending.append((chunk_id, content_hash, bytes(view[wire.UPLOAD_HEADER_SIZE:end])))
            pending_bytes += length
            total += 1
            del buffer[:end]
        if pending_bytes >= _PACK_FLUSH_BYTES:
            await flush()
    if buffer:
        raise StoreError(400, "invalid_pack", "the pack ends in the middle of a frame")
    await flush()
    return StoredResponse(stored=stored, already_present=total - stored)


@router.get("/chunks/{chunk_id}", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}})
def get_chunk(chunk_id: ChunkId, device: Device = Depends(current_device),
              parts: Services = Depends(services)) -> Response:
    """Download one encrypted chunk (Range requests supported)."""
    if parts.store.chunk_size(device.account_id, chunk_id) is None:
        raise StoreError(404, "not_found", "chunk not found")
    key = chunk_key(device.account_id, chunk_id)
    path = parts.blobs.local_path(key)
    if path is not None:
        return FileResponse(path, media_type="application/octet-stream")
    try:
        return Response(parts.blobs.get(key), media_type="application/octet-stream")
    except KeyError:
        raise StoreError(404, "chunk_lost", "chunk is recorded but its data is gone") from None


@router.post("/chunks/fetch", response_class=StreamingResponse,
             responses={200: {"content": {"application/octet-stream": {}}}})
async def fetch_chunks(body: ChunkIdsRequest, device: Device = Depends(current_device),
                       parts: Services = Depends(services)) -> StreamingResponse:
    """Download many chunks in one response: frames of (32-byte id, 4-byte length, data),
    in the order asked. Every id must be this account's, or nothing is sent (404)."""
    account_id = device.account_id
    lacking = await run_in_threadpool(parts.store.missing_chunks, account_id, body.ids)
    if lacking:
        raise StoreError(404, "not_found", f"{len(lacking)} chunk(s) not found",
                         chunks=lacking[:100])

    async def frames() -> AsyncIterator[bytes]:
        for chunk_id in body.ids:
            data = await run_in_threadpool(parts.blobs.get, chunk_key(account_id, chunk_id))
            yield wire.encode_download_frame(chunk_id, data)

    return StreamingResponse(frames(), media_type="application/octet-stream")
