"""Request bodies parsed as strict JSON (RFC 8259), for both HTTP APIs: the platform's and the
executor service's.

Python's ``json`` module reads more than JSON: ``NaN`` and ``±Infinity``, lone surrogate
escapes (``"\\ud800"``: no UTF-8 text can hold one), numbers beyond a float's range (read as
infinity), integers of thousands of digits, and nesting down to the interpreter's recursion
limit. Each of them used to get past validation and fail later (a 500 where the text was
encoded, a ``NaN`` limit silently replaced by the default). :func:`parse_json` refuses them
where the body is read, and :class:`StrictJsonRoute` turns a refusal into a
``RequestValidationError`` whose location is the place in the body, so each API answers 422 in
its own error shape.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response, params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

__all__ = ["MAX_DEPTH", "InvalidJsonError", "StrictJsonRoute", "parse_json"]

#: Arrays and objects nested deeper than this are refused (the APIs' bodies need four).
MAX_DEPTH = 32
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1  # what the databases' BIGINT holds
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidJsonError(ValueError):
    """A body that is not strict JSON; ``path`` is where in it, as keys and indices."""

    def __init__(self, path: tuple[str | int, ...], reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Refused:
    """Put in place of a value the parser must not accept, so its path can be reported."""

    reason: str


def parse_json(body: bytes) -> Any:
    """The JSON document ``body`` holds.

    Raises:
        InvalidJsonError: the body is not UTF-8 or not JSON; it holds NaN or ±Infinity, a
            number out of range (a float beyond ±1.8e308, an integer beyond 64 bits), a lone
            surrogate in a string or a key, or nesting deeper than :data:`MAX_DEPTH`.
    """
    try:
        text = body.decode("utf-8")  # strict: no invalid bytes, no UTF-8-encoded surrogates
    except UnicodeDecodeError as exc:
        raise InvalidJsonError((), f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        document = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise InvalidJsonError((), f"invalid JSON: {exc.msg} at position {exc.pos}") from exc
    except RecursionError as exc:
        raise InvalidJsonError((), f"nested deeper than {MAX_DEPTH} levels") from exc
    _check(document)
    return document


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a JSON number; numbers must be finite")


def _float(literal: str) -> float | _Refused:
    value = float(literal)
    return value if math.isfinite(value) else _Refused("number out of range (beyond ±1.8e308)")


def _int(literal: str) -> int | _Refused:
    # The length test comes first: int() of thousands of digits is slow, then refused.
    if len(literal) <= 20 and _INT_MIN <= (value := int(literal)) <= _INT_MAX:
        return value
    return _Refused("integer out of range (beyond 64 bits)")


def _check(document: Any) -> None:
    """Refuse what the parser marked, lone surrogates and excessive nesting; iteratively, so
    that no document can exhaust the stack."""
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, _Refused):
            raise InvalidJsonError(path, value.reason)
        if isinstance(value, str):
            _check_text(path, value, "a string")
            continue
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_DEPTH:
            raise InvalidJsonError(path, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key in value:
                _check_text(path, key, "a key")
            pending.extend(((*path, key), item) for key, item in reversed(value.items()))
        else:
            pending.extend(((*path, i), value[i]) for i in reversed(range(len(value))))


def _check_text(path: tuple[str | int, ...], text: str, what: str) -> None:
    if not text.isascii() and (found := _SURROGATE.search(text)):
        raise InvalidJsonError(
            path,
            f"{what} holds a lone surrogate ({ascii(found.group())[1:-1]} at character "
            f"{found.start()}), which is not Unicode text",
        )


class StrictJsonRoute(APIRoute):
    """An ``APIRoute`` whose request body is read by :func:`parse_json`: a body it refuses
    raises ``RequestValidationError`` located at ``("body", *path)``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        if self.body_field is None or isinstance(self.body_field.field_info, params.Form):
            return handle

        async def handle_strictly(request: Request) -> Response:
            strict = _StrictJsonRequest(request.scope, request.receive)
            if await strict.body():
                await strict.json()  # refused here, whatever the content type
            return await handle(strict)

        return handle_strictly


class _StrictJsonRequest(Request):
    _document: Any

    async def json(self) -> Any:
        if not hasattr(self, "_document"):
            try:
                self._document = parse_json(await self.body())
            except InvalidJsonError as exc:
                error = {"type": "json_invalid", "loc": ("body", *exc.path), "msg": exc.reason}
                raise RequestValidationError([{**error, "input": None}]) from exc
        return self._document
