"""Refuses request bodies over a size cap with 413, before any of them is parsed.

One cap for every route (``ASSAY_API__MAX_BODY_BYTES``) unless a :class:`RouteLimit` gives
a route its own (a live sandbox's file uploads and commands' stdin are far larger). An
oversized body is read and dropped (up to ``_DRAIN_FACTOR`` times the cap) so that the
client, which sends its whole body before reading, sees the 413 rather than a reset
connection; beyond that the connection is closed."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assay.errors import error_body

__all__ = ["BodyLimitMiddleware", "RouteLimit"]

_DRAIN_FACTOR = 4


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """The body cap of the requests with ``method`` whose path matches ``path`` entirely."""

    method: str
    path: re.Pattern[str]
    max_bytes: int


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int, routes: Sequence[RouteLimit] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.routes = tuple(routes)

    def cap(self, method: str, path: str) -> int:
        """The body cap of a request."""
        for route in self.routes:
            if route.method == method and route.path.fullmatch(path):
                return route.max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        cap = self.cap(scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        too_big = cap * _DRAIN_FACTOR
        if declared is not None and declared.isdigit() and int(declared) > too_big:
            await _refuse(send, cap)
            return
        chunks: deque[bytes] = deque()
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            size += len(body)
            if size > cap:
                chunks.clear()
                if size > too_big or not more:
                    await _refuse(send, cap)
                    return
                continue
            if body:
                chunks.append(body)

        pending = True  # the body is still to be handed on

        async def replay() -> Message:
            # Chunk by chunk as it came (no copy of a large body), each let go once handed on.
            nonlocal pending
            if pending:
                body = chunks.popleft() if chunks else b""
                pending = bool(chunks)
                return {"type": "http.request", "body": body, "more_body": pending}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, cap: int) -> None:
    message = f"request body exceeds {cap} bytes"
    body = json.dumps(error_body("payload_too_large", message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
