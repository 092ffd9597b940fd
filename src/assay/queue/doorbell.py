"""Doorbells: how the workers that claim from storage learn that there is work.

Storage holds the queue (decision 0008); a doorbell only says "claim the next evaluation".
A lost ring costs a delay, never an evaluation: in-process workers also look every second,
and the Celery doorbell tops up what is missing."""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Awaitable, Callable

__all__ = ["Answer", "Doorbell", "InProcessDoorbell"]

#: Claims and runs the next queued evaluation; False when there was none.
Answer = Callable[[], Awaitable[bool]]

_IDLE_RECHECK_SECONDS = 1.0


class Doorbell(abc.ABC):
    """Rung when evaluations are queued; answered by workers that claim them."""

    @abc.abstractmethod
    async def start(self, answer: Answer, *, workers: int) -> None:
        """Start ringing, and answering with up to ``workers`` in this process when this
        doorbell's workers live here (0: an API-only replica)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop; runs in progress are the caller's to stop."""

    @abc.abstractmethod
    def ring(self, count: int) -> None:
        """``count`` evaluations were queued by this process."""

    @abc.abstractmethod
    def wake(self) -> None:
        """Another process queued work (a bus notice): in-process workers look now."""

    async def check(self) -> tuple[bool, str] | None:
        """Whether the doorbell's broker answers (ok, detail); None: it has none."""
        return None


class InProcessDoorbell(Doorbell):
    """Workers in this process, each claiming in a loop: woken by a ring, a notice, or every
    second (so work queued by a replica whose notice was lost is still found)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    async def start(self, answer: Answer, *, workers: int) -> None:
        self._loops = [
            asyncio.create_task(self._work(answer), name=f"assay-worker-{n}")
            for n in range(workers)
        ]

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []

    def ring(self, count: int) -> None:
        if count:
            self._event.set()

    def wake(self) -> None:
        self._event.set()

    async def _work(self, answer: Answer) -> None:
        while True:
            self._event.clear()
            if not await answer():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), _IDLE_RECHECK_SECONDS)
