"""Turning a running program's output chunks into stored, streamed ``output`` events."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
from typing import Literal

from assay.errors import StorageError
from assay.storage import EventType, Storage

__all__ = ["OutputSink"]

logger = logging.getLogger(__name__)

Stream = Literal["stdout", "stderr"]


class OutputSink:
    """Coalesces chunks (every ``interval`` seconds or ``max_bytes``) into ``output`` events
    ``{"stream", "text"}``, in order, decoding UTF-8 across chunk boundaries (storage
    announces each one it records)."""

    def __init__(
        self,
        storage: Storage,
        evaluation_id: str,
        *,
        interval: float = 0.1,
        max_bytes: int = 64 * 1024,
    ) -> None:
        self._storage = storage
        self._id = evaluation_id
        self._interval = interval
        self._max_bytes = max_bytes
        self._pending: list[tuple[Stream, bytes]] = []
        self._pending_bytes = 0
        streams: tuple[Stream, ...] = ("stdout", "stderr")
        self._decoders = {
            stream: codecs.getincrementaldecoder("utf-8")(errors="replace") for stream in streams
        }
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._sleeping = False

    def add(self, stream: Stream, data: bytes) -> None:
        if self._pending and self._pending[-1][0] == stream:
            self._pending[-1] = (stream, self._pending[-1][1] + data)
        else:
            self._pending.append((stream, data))
        self._pending_bytes += len(data)
        if self._timer is None or self._timer.done():
            delay = 0 if self._pending_bytes >= self._max_bytes else self._interval
            self._timer = asyncio.create_task(self._flush_after(delay))

    async def _flush_after(self, delay: float) -> None:
        self._sleeping = True
        try:
            await asyncio.sleep(delay)
        finally:
            self._sleeping = False
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            for stream, text in self._decode(final=False):
                await self._emit(stream, text)

    def _decode(self, *, final: bool) -> list[tuple[Stream, str]]:
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        chunks = []
        for stream, data in pending:
            text = self._decoders[stream].decode(data, final=final)
            if text:
                chunks.append((stream, text))
        if final:
            for stream, decoder in self._decoders.items():
                rest = decoder.decode(b"", final=True)
                if rest:
                    chunks.append((stream, rest))
        return chunks

    async def _emit(self, stream: Stream, text: str) -> None:
        try:
            await self._storage.add_event(
                self._id, EventType.OUTPUT, {"stream": stream, "text": text}
            )
        except StorageError as exc:
            logger.warning("lost an output chunk of %s: %s", self._id, exc)

    async def drain(self) -> list[dict[str, str]]:
        """Stop, and return what is not yet stored as ``output`` event data, so the caller can
        store it in the same transaction as the outcome. Safe while being cancelled."""
        timer = self._timer
        if timer is not None and not timer.done():
            if self._sleeping:
                timer.cancel()  # nothing lost: drain() returns what it would have flushed
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        async with self._lock:
            return [{"stream": stream, "text": text} for stream, text in self._decode(final=True)]

    async def close(self) -> None:
        """Store everything left."""
        for chunk in await self.drain():
            await self._storage.add_event(self._id, EventType.OUTPUT, chunk)
