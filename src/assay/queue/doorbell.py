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
    """Workers in this process, each claiming in a loop while it finds work: an idle one
    claims again when a ring hands it a turn (a ring of ``count`` hands out ``count``
    turns, so one evaluation wakes one worker, not all of them), on a notice (every idle
    worker), or every second (so work queued by a replica whose notice was lost is still
    found). Every claim that finds nothing costs a transaction."""

    def __init__(self, *, idle_recheck_seconds: float = _IDLE_RECHECK_SECONDS) -> None:
        self._idle_recheck = idle_recheck_seconds
        self._event = asyncio.Event()
        self._turns = 0
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
        self._hand_out(count)

    def wake(self) -> None:
        self._hand_out(len(self._loops))

    def _hand_out(self, turns: int) -> None:
        # More turns than workers would only be claims that find nothing.
        self._turns = min(self._turns + turns, len(self._loops))
        if self._turns:
            self._event.set()

    async def _work(self, answer: Answer) -> None:
        while True:
            while await answer():
                pass
            await self._idle()

    async def _idle(self) -> None:
        """Until this worker's turn comes, or it is time to look anyway."""
        deadline = asyncio.get_running_loop().time() + self._idle_recheck
        while not self._turns:
            self._event.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), remaining)
        self._turns -= 1
