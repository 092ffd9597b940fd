"""The queue contract."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from assay.storage import Evaluation, NewEvaluation

__all__ = ["EvaluationQueue", "QueueStats"]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """This process's limits: what it may run at once (0: an API-only replica). Depth,
    running and counts are the database's (``Storage.counts``), shared by every replica."""

    capacity: int
    max_queued: int


class EvaluationQueue(abc.ABC):
    """Accepts evaluations, runs them on the engine with bounded concurrency, records outcomes.

    Guarantees: an accepted evaluation is durable before ``submit`` returns; it reaches a
    terminal state even across crashes (re-run, or ended with a reason); each attempt's
    outcome is recorded at most once.
    """

    @abc.abstractmethod
    async def start(self) -> None:
        """Recover evaluations interrupted by a crash, then start the workers."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the workers; running evaluations are killed and put back in the queue."""

    @abc.abstractmethod
    async def submit(self, new: Sequence[NewEvaluation]) -> list[tuple[Evaluation, bool]]:
        """Store and enqueue, all or none. Returns each evaluation and whether it is new
        (False: an earlier submission with the same idempotency key).

        Raises:
            QueueFullError: the queue is at its bound.
            IdempotencyConflictError: a key was reused for a different request.
        """

    @abc.abstractmethod
    async def cancel(self, evaluation_id: str) -> Evaluation:
        """Cancel a queued or running evaluation (a running one's sandbox is killed);
        returns its state afterwards. A finished evaluation is returned unchanged.

        Raises:
            NotFoundError.
        """

    @abc.abstractmethod
    async def wait(
        self, evaluation_id: str, timeout: float, *, current: Evaluation | None = None
    ) -> Evaluation:
        """The evaluation once it has ended, or as it is after ``timeout`` seconds.

        ``current``: its state, read with no await since (it saves reading it again).

        Raises:
            NotFoundError.
        """

    @abc.abstractmethod
    def stats(self) -> QueueStats: ...

    async def check_broker(self) -> tuple[bool, str] | None:
        """Whether the message broker answers (ok, detail); None: this queue has none."""
        return None
