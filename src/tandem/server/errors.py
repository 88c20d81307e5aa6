"""One JSON error shape for every refusal: {"error": {"code", "message", ...}}.

Clients branch on `code`; people read `message`. Nothing a client sends may produce a 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tandem.server.store.base import StoreError

log = logging.getLogger("tandem.server")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large",
          415: "unsupported_media_type", 429: "too_many_requests"}


class BodyTooLarge(HTTPException):
    """A request body over the cap for its endpoint. An HTTPException, so that FastAPI passes
    it through when it is raised while reading a JSON body (other errors there become 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")
        self.limit = limit


def error_response(status: int, code: str, message: str, **detail: object) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **detail}}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, **exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return error_response(400, "invalid_request", message)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(413, "too_large", str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal", "internal server error")
