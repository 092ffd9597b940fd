"""The one place errors become HTTP responses, for both HTTP services (the platform's API and
the executor service): the status from :func:`assay.errors.http_status`, the body
``{"error": {"code", "message"}}`` from :func:`assay.errors.error_body`."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from assay.errors import (
    VALIDATION_ERROR,
    AssayError,
    AuthenticationError,
    QueueFullError,
    error_body,
    http_status,
)

__all__ = ["assay_error_response", "error_response", "install_error_handlers"]

logger = logging.getLogger(__name__)

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
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def assay_error_response(exc: AssayError) -> JSONResponse:
    """``exc``'s status and body, with the headers its class calls for (``Retry-After``,
    ``WWW-Authenticate``)."""
    status = http_status(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500:
        logger.error("request failed: %s", exc)
    return error_response(status, exc.code, exc.message, headers)


def _assay_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AssayError)  # noqa: S101 - registered for AssayError only
    return assay_error_response(exc)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    problems = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return error_response(422, VALIDATION_ERROR, "; ".join(problems) or "invalid request")


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)  # noqa: S101
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """Every error ``app`` raises answers ``{"error": {"code", "message"}}``."""
    app.add_exception_handler(AssayError, _assay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
