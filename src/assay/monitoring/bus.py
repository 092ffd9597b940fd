"""In-process event bus: tells live subscribers that an evaluation has a new event.

Events themselves are persisted by storage, which stays the source of truth; a notice only
says "read storage again". So a subscriber that falls behind loses nothing (it re-reads from
the last event id it saw), and the bus can later be carried between processes unchanged."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assay.storage import Evaluation, Event

__all__ = ["ALL", "EventBus", "Notice", "Subscription"]

#: Subscribe to every evaluation's notices.
ALL = "*"


@dataclass(frozen=True, slots=True)
class Notice:
    evaluation_id: str
    #: The type of the event that storage recorded (``assay.storage.EventType``).
    type: str
    #: The evaluation as the publisher stored it, when it had it at hand (never required).
    evaluation: Evaluation | None = None


class Subscription:
    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(maxsize)

    def offer(self, notice: Notice) -> None:
        # A full queue drops the notice: the subscriber re-reads storage anyway.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(notice)

    async def next(self, timeout: float | None = None) -> Notice | None:
        """The next notice, or None after ``timeout`` seconds without one."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


class EventBus:
    """Publish/subscribe by evaluation id (or :data:`ALL`), within one process."""

    def __init__(self, *, queue_size: int = 1000) -> None:
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._queue_size = queue_size

    async def start(self) -> None:
        """Connect, where notices travel between processes (nothing to do here)."""

    async def close(self) -> None:
        """Disconnect (nothing to do here)."""

    def announce(self, events: Sequence[Event]) -> None:
        """Publish a notice of each event storage recorded (the platform's only publisher:
        it listens to storage, ``Storage.listen``)."""
        for event in events:
            self.publish(event.evaluation_id, event.type, event.evaluation)

    def publish(self, evaluation_id: str, type_: str, evaluation: Evaluation | None = None) -> None:
        notice = Notice(evaluation_id, type_, evaluation)
        for key in (evaluation_id, ALL):
            for subscription in self._subscribers.get(key, ()):
                subscription.offer(notice)

    @contextmanager
    def subscribe(self, key: str) -> Iterator[Subscription]:
        subscription = Subscription(self._queue_size)
        self._subscribers[key].add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers[key].discard(subscription)
            if not self._subscribers[key]:
                del self._subscribers[key]
