"""The one place errors become HTTP responses: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from assay.errors import (
    AssayError,
    AuthenticationError,
    ExecutionError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
    StorageError,
)
from assay.storage.sql import InvalidCursorError

__all__ = ["error_response", "install_error_handlers"]

logger = logging.getLogger(__name__)

#: Most specific first.
_STATUS: list[tuple[type[AssayError], int]] = [
    (InvalidRequestError, 422),
    (InvalidCursorError, 400),
    (NotFoundError, 404),
    (IdempotencyConflictError, 409),
    (QueueFullError, 429),
    (AuthenticationError, 401),
    (StorageError, 503),
    (ExecutionError, 503),
]
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _assay_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AssayError)  # noqa: S101 - registered for AssayError only
    status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
    headers: dict[str, str] = {}
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500:
        logger.error("request failed: %s", exc)
    return error_response(status, exc.code, exc.message, headers)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    problems = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return error_response(422, "validation_error", "; ".join(problems) or "invalid request")


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)  # noqa: S101
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AssayError, _assay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
