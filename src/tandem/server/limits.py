"""Request body caps: uvicorn enforces none, so this ASGI middleware does (DESIGN.md)."""

from __future__ import annotations

from typing import Any

from tandem.core.wire import MAX_CHUNK_CIPHERTEXT, MAX_JSON_BODY, MAX_PACK_BODY
from tandem.server.errors import BodyTooLarge, error_response


def body_limit_for(method: str, path: str) -> int:
    if path == "/chunks/pack":
        return MAX_PACK_BODY
    if method == "PUT" and path.startswith("/chunks/"):
        return MAX_CHUNK_CIPHERTEXT
    return MAX_JSON_BODY


class BodyLimitMiddleware:
    """Refuses a declared Content-Length over the cap at once, and cuts a streamed body off
    the moment it passes the cap, so no request is ever buffered beyond it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit_for(scope["method"], scope["path"])
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > limit:
                    message = (f"request body exceeds {limit} bytes" if declared > limit
                               else "invalid Content-Length")
                    status = 413 if declared > limit else 400
                    code = "too_large" if declared > limit else "bad_request"
                    await error_response(status, code, message)(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)
