"""The HTTP client for the Tandem server: one method per endpoint, retries built in.

Connection errors, 5xx and 429 answers are retried with exponential backoff (with jitter) up
to a bounded total time; every request body is bytes or JSON, so a retry can replay it.
Refusals (4xx) raise `ApiError` carrying the server's stable error code.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from tandem.client.errors import ClientError
from tandem.core import wire

RETRY_STATUSES = {429, 500, 502, 503, 504}


class ServerUnreachable(ClientError):
    """The server could not be reached (after retries)."""


class ApiError(ClientError):
    """The server refused a request; `code` is its machine-readable reason."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    @classmethod
    def from_reply(cls, reply: Reply) -> ApiError:
        try:
            error = reply.json()["error"]
            detail = {k: v for k, v in error.items() if k not in ("code", "message")}
            return cls(reply.status, str(error["code"]), str(error["message"]), detail)
        except (ValueError, KeyError, TypeError):
            text = bytes(reply.content[:200]).decode("utf-8", "replace") or reply.reason
            return cls(reply.status, "http_error", f"HTTP {reply.status}: {text}", {})


@dataclass
class Reply:
    """A server's answer, read whole (bodies are bounded: JSON or a few MiB of chunks)."""

    status: int
    content: bytearray
    reason: str = ""

    def json(self) -> Any:
        return json.loads(self.content)


class Backoff:
    """Exponential backoff with full jitter, bounded in attempts and total time."""

    def __init__(self, attempts: int = 6, base: float = 0.2, cap: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self.sleep = sleep

    def delays(self) -> Iterator[float]:
        for attempt in range(self.attempts - 1):
            yield random.uniform(0, min(self.cap, self.base * 2**attempt))


class ApiClient:
    """A thread-safe client for one server and (optionally) one device token."""

    def __init__(self, base_url: str, token: str | None = None, backoff: Backoff | None = None,
                 timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.backoff = backoff or Backoff()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            # Loading the CA bundle costs ~60 ms of every command's start: only for https.
            # Redirects are never followed, so a plain-http client never speaks TLS.
            verify=self.base_url.startswith("https:"), follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- transport ------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: bytes | Sequence[bytes] | None = None,
              **kwargs: Any) -> Reply:
        """Send with retries and read the whole answer into a buffer of our own.

        httpx responses sit in reference cycles (response <-> stream) that only the cyclic GC
        frees, so their bodies, and the request bodies they point to, would linger; a raw
        body is therefore handed over through a one-shot iterator and read into a bytearray.
        A body may come in parts (pack frames), sent in order without being joined first.
        """
        parts = None if body is None else [body] if isinstance(body, bytes) else list(body)
        delays = self.backoff.delays()
        while True:
            if parts is not None:
                length = sum(len(part) for part in parts)
                headers = {**kwargs.pop("headers", {}), "Content-Length": str(length)}
                kwargs["headers"] = headers
                kwargs["content"] = iter(parts)
            try:
                with self._http.stream(method, path, **kwargs) as response:
                    content = bytearray()
                    for piece in response.iter_bytes():
                        content += piece
                    reply = Reply(response.status_code, content, response.reason_phrase)
            except httpx.TransportError as exc:
                delay = next(delays, None)
                if delay is None:
                    raise ServerUnreachable(
                        f"cannot reach the server at {self.base_url}: {exc or type(exc).__name__}"
                    ) from exc
                self.backoff.sleep(delay)
                continue
            if reply.status in RETRY_STATUSES:
                delay = next(delays, None)
                if delay is not None:
                    self.backoff.sleep(delay)
                    continue
            if reply.status >= 400:
                raise ApiError.from_reply(reply)
            return reply

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self._send(method, path, **kwargs)
        return reply.json() if reply.content else None

    # ---- accounts -----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/health")  # type: ignore[no-any-return]

    def prelogin(self, email: str) -> dict[str, Any]:
        return self._json("POST", "/auth/prelogin", json={"email": email})  # type: ignore[no-any-return]

    def signup(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/auth/signup", json=payload)  # type: ignore[no-any-return]

    def login(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/auth/login", json=payload)  # type: ignore[no-any-return]

    def logout(self) -> None:
        self._send("POST", "/auth/logout")

    def devices(self) -> list[dict[str, Any]]:
        return self._json("GET", "/devices")["devices"]  # type: ignore[no-any-return]

    def revoke_device(self, device_id: str) -> None:
        try:
            self._send("POST", f"/devices/{device_id}/revoke")
        except ApiError as exc:
            # A retry after the revocation landed (its answer lost) is told "not found": if the
            # device is listed as revoked, that is the revocation done.
            if exc.code != "not_found" or not any(
                    d["id"] == device_id and d["revoked_at"] for d in self.devices()):
                raise

    def account(self) -> dict[str, Any]:
        return self._json("GET", "/account")  # type: ignore[no-any-return]

    # ---- tree ---------------------------------------------------------------------------

    def list_tree(self, after: str = "", limit: int = 1000) -> dict[str, Any]:
        return self._json("GET", "/tree", params={"after": after, "limit": limit})  # type: ignore[no-any-return]

    def iter_tree(self, page: int = 1000) -> tuple[list[dict[str, Any]], int]:
        """Every live node, and the cursor of the first page (follow `changes` from it)."""
        first = self.list_tree(limit=page)
        nodes, cursor, after = list(first["nodes"]), int(first["cursor"]), first["next_after"]
        while after:
            more = self.list_tree(after=after, limit=page)
            nodes.extend(more["nodes"])
            after = more["next_after"]
        return nodes, cursor

    def node(self, node_id: str) -> dict[str, Any]:
        return self._json("GET", f"/nodes/{node_id}")  # type: ignore[no-any-return]

    def batch(self, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return self._json("POST", "/tree/batch", json={"ops": ops})  # type: ignore[no-any-return]

    def changes(self, cursor: int, wait: float = 0, limit: int = 1000) -> dict[str, Any]:
        timeout = httpx.Timeout(60.0, read=wait + 30.0)
        return self._json("GET", "/changes", params={"cursor": cursor, "wait": wait, "limit": limit},  # type: ignore[no-any-return]
                          timeout=timeout)

    # ---- history ------------------------------------------------------------------------

    def versions(self, node_id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/nodes/{node_id}/versions")["versions"]  # type: ignore[no-any-return]

    def restore_version(self, node_id: str, number: int, if_rev: int | None = None) -> dict[str, Any]:
        return self._json("POST", f"/nodes/{node_id}/versions/{number}/restore",  # type: ignore[no-any-return]
                          json={"if_rev": if_rev})

    def trash(self) -> list[dict[str, Any]]:
        return self._json("GET", "/trash")["nodes"]  # type: ignore[no-any-return]

    def restore_trash(self, node_id: str, parent_id: str | None = None,
                      name: str | None = None) -> list[dict[str, Any]]:
        body = {k: v for k, v in (("parent_id", parent_id), ("name", name)) if v is not None}
        try:
            return self._json("POST", f"/trash/{node_id}/restore", json=body)["nodes"]  # type: ignore[no-any-return]
        except ApiError as exc:
            # A retry after the restore landed (its answer lost) finds the node no longer in
            # the trash: live again is the restore done, not an unknown node.
            if exc.code != "not_found":
                raise
            node = self.node(node_id)
            if node.get("state") != "live":
                raise
            return [node]

    def empty_trash(self, node_id: str | None = None) -> int:
        body = {"id": node_id} if node_id else {}
        return int(self._json("POST", "/trash/empty", json=body)["purged"])

    def collect_garbage(self) -> int:
        return int(self._json("POST", "/gc")["collected"])

    # ---- backups ------------------------------------------------------------------------

    def create_snapshot(self, backup_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"/backups/{backup_id}/snapshots", json=body)  # type: ignore[no-any-return]

    def backups(self) -> list[dict[str, Any]]:
        """Every backup of the account, whichever device made it."""
        return self._json("GET", "/backups")["backups"]  # type: ignore[no-any-return]

    def snapshots(self, backup_id: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/backups/{backup_id}/snapshots")["snapshots"]  # type: ignore[no-any-return]

    def snapshot(self, snapshot_id: str) -> dict[str, Any]:
        return self._json("GET", f"/snapshots/{snapshot_id}")  # type: ignore[no-any-return]

    def delete_snapshot(self, snapshot_id: str) -> None:
        try:
            self._send("DELETE", f"/snapshots/{snapshot_id}")
        except ApiError as exc:
            # Gone is what was asked: a retry after the delete landed (its answer lost) is
            # told "not found", and that is success.
            if exc.code != "not_found":
                raise

    # ---- chunks -------------------------------------------------------------------------

    def missing_chunks(self, chunk_ids: list[str]) -> list[str]:
        missing: list[str] = []
        for start in range(0, len(chunk_ids), wire.MAX_IDS_PER_QUERY):
            group = chunk_ids[start : start + wire.MAX_IDS_PER_QUERY]
            missing.extend(self._json("POST", "/chunks/missing", json={"ids": group})["missing"])
        return missing

    def put_chunk(self, chunk_id: str, content_hash: str, data: bytes) -> None:
        self._send("PUT", f"/chunks/{chunk_id}", body=data,
                   headers={"X-Content-Hash": content_hash,
                            "Content-Type": "application/octet-stream"})

    def put_pack(self, body: bytes | Sequence[bytes]) -> None:
        self._send("POST", "/chunks/pack", body=body,
                   headers={"Content-Type": "application/octet-stream"})

    def get_chunk(self, chunk_id: str) -> bytes:
        return bytes(self._send("GET", f"/chunks/{chunk_id}").content)

    def fetch_chunks(self, chunk_ids: list[str]) -> list[tuple[str, memoryview]]:
        """Download several chunks in one framed response; retried whole if cut short."""
        delays = self.backoff.delays()
        while True:
            response = self._send("POST", "/chunks/fetch", json={"ids": chunk_ids})
            try:
                frames = wire.split_download_frames(response.content)
            except wire.FramingError:
                delay = next(delays, None)
                if delay is None:
                    raise
                self.backoff.sleep(delay)
                continue
            return frames
