"""Refuses request bodies over a size cap with 413, before any of them is parsed.

An oversized body is read and dropped (up to ``_DRAIN_FACTOR`` times the cap) so that the
client, which sends its whole body before reading, sees the 413 rather than a reset
connection; beyond that the connection is closed."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assay.errors import error_body

__all__ = ["BodyLimitMiddleware"]

_DRAIN_FACTOR = 4


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_big = self.max_bytes * _DRAIN_FACTOR
        if declared is not None and declared.isdigit() and int(declared) > too_big:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            more = bool(message.get("more_body", False))
            size += len(body)
            if size > self.max_bytes:
                chunks.clear()
                if size > self.max_bytes * _DRAIN_FACTOR or not more:
                    await self._refuse(send)
                    return
                continue
            chunks.append(body)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        message = f"request body exceeds {self.max_bytes} bytes"
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
