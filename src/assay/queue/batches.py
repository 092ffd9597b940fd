"""Sandboxes of batch isolation, kept open between the programs of one batch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from assay.errors import ExecutionError
from assay.execution_engine import BatchSandbox, ExecutionInterface

__all__ = ["BatchSandboxes"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Idle:
    batch_id: str
    sandbox: BatchSandbox
    since: float


class BatchSandboxes:
    """The batch sandboxes of one queue's workers, each belonging to exactly one batch.

    A worker running an evaluation of batch B takes one of B's idle sandboxes, or a new one,
    and gives it back after the program; a sandbox never serves another batch. Open sandboxes
    (busy and idle) stay within ``limit`` (the queue's concurrency): a new one first closes
    the longest-idle sandbox of another batch. Idle ones close after ``idle_seconds``.
    """

    def __init__(self, engine: ExecutionInterface, *, limit: int, idle_seconds: float) -> None:
        self._engine = engine
        self._limit = limit
        self._idle_seconds = idle_seconds
        self._idle: list[_Idle] = []  # oldest first
        self._busy = 0
        self._closing: set[asyncio.Task[None]] = set()
        self._janitor: asyncio.Task[None] | None = None

    @property
    def open(self) -> int:
        return self._busy + len(self._idle)

    def take(self, batch_id: str) -> BatchSandbox:
        """An idle sandbox of ``batch_id``, or a new one (after making room)."""
        for index in range(len(self._idle) - 1, -1, -1):  # the most recently used
            if self._idle[index].batch_id == batch_id:
                self._busy += 1
                return self._idle.pop(index).sandbox
        while self._idle and self.open >= self._limit:
            self._close(self._idle.pop(0).sandbox)
        if self._janitor is None:
            self._janitor = asyncio.create_task(self._expire(), name="assay-batch-sandboxes")
        sandbox = self._engine.batch_sandbox()
        self._busy += 1
        return sandbox

    def give_back(self, batch_id: str, sandbox: BatchSandbox) -> None:
        self._busy -= 1
        self._idle.append(_Idle(batch_id, sandbox, time.monotonic()))

    async def close(self) -> None:
        """Close every idle sandbox (busy ones belong to workers that are being stopped)."""
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
            self._janitor = None
        idle, self._idle = self._idle, []
        for entry in idle:
            self._close(entry.sandbox)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(max(self._idle_seconds / 2, 0.05))
            cutoff = time.monotonic() - self._idle_seconds
            while self._idle and self._idle[0].since <= cutoff:
                self._close(self._idle.pop(0).sandbox)

    def _close(self, sandbox: BatchSandbox) -> None:
        task = asyncio.create_task(_close_quietly(sandbox))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _close_quietly(sandbox: BatchSandbox) -> None:
    with contextlib.suppress(ExecutionError):
        await sandbox.close()
