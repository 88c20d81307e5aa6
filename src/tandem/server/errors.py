"""One JSON error shape for every refusal: {"error": {"code", "message", ...}}.

Clients branch on `code`; people read `message`. Nothing a client sends may produce a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tandem.server.blobs.base import BlobStoreUnavailable
from tandem.server.store.base import StoreError

log = logging.getLogger("tandem.server")

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large",
          415: "unsupported_media_type", 429: "too_many_requests"}


#: Seconds a client is told to wait when the blob store is down.
STORAGE_RETRY_AFTER = 10


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
        response = error_response(exc.status, exc.code, exc.message, **exc.detail)
        if "retry_after" in exc.detail:
            response.headers["Retry-After"] = str(exc.detail["retry_after"])
        return response

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

    @app.exception_handler(BlobStoreUnavailable)
    async def _storage_down(_: Request, exc: BlobStoreUnavailable) -> JSONResponse:
        # The store failed after its own retries: the client's retry may find it back.
        log.warning("%s", exc)
        response = error_response(503, "storage_unavailable", "the blob store is unavailable:"
                                  " try again later", retry_after=STORAGE_RETRY_AFTER)
        response.headers["Retry-After"] = str(STORAGE_RETRY_AFTER)
        return response

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal", "internal server error")


#: The refusal shape as a schema: every operation documents it as its `default` response.
_ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "description": "Stable `code` for programs, `message` for people; some codes add fields.",
    }},
}


def document_errors(app: FastAPI) -> None:
    """Make /openapi.json tell the truth about refusals: FastAPI documents a 422 with its own
    body, but this server answers invalid input with a 400 in the one error shape, and any
    operation may refuse (401, 404, 409, 413, 429, ...)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            components["Error"] = _ERROR_SCHEMA
            refusal = {"description": "Refused: a 4xx in the one error shape",
                       "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
                    operation["responses"]["default"] = refusal
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
