"""The storage backend contract."""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from assay.storage.records import (
    ApiKey,
    Evaluation,
    EvaluationStatus,
    Event,
    EventType,
    NewEvaluation,
    Outcome,
    Page,
    SandboxEvent,
    SandboxEventType,
    SandboxRecord,
    SandboxState,
)

__all__ = ["DEFAULT_LEASE_SECONDS", "Listener", "Storage"]

logger = logging.getLogger(__name__)

#: Hears of the events each write recorded, once committed, on the event loop.
Listener = Callable[[Sequence[Event]], None]

#: How long a claimed evaluation stays its worker's without a renewal.
DEFAULT_LEASE_SECONDS = 30.0


class Storage(abc.ABC):
    """Durable state of the platform: evaluations, their events, live sandboxes and their
    events, API keys.

    Every method raises :class:`assay.errors.StorageError` (or a subclass) on failure.
    Every evaluation event a write records is handed, once committed, to the listeners given
    to :meth:`listen` (the platform announces them on its bus from there, and only there).
    Sandbox events are not: the API that records them announces them.
    """

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Hand every event recorded from now on to ``listener`` (which must not raise)."""
        self._listeners.append(listener)

    def _announce(self, events: Sequence[Event]) -> None:
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:  # a listener's bug must not undo a committed write
                logger.exception("storage listener failed")

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and apply migrations."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StorageError unless the database answers."""

    # -- evaluations ---------------------------------------------------------------------

    @abc.abstractmethod
    async def create(
        self, new: Sequence[NewEvaluation], *, max_queued: int
    ) -> list[tuple[Evaluation, bool]]:
        """Store evaluations as ``queued`` with a ``queued`` event each, atomically.

        An idempotency key already stored returns the existing evaluation with ``False``.

        Raises:
            IdempotencyConflictError: a key is reused for a different request.
            QueueFullError: storing the new ones would leave more than ``max_queued`` queued.
        """

    @abc.abstractmethod
    async def get(self, evaluation_id: str) -> Evaluation:
        """Raises NotFoundError."""

    @abc.abstractmethod
    async def list_evaluations(
        self,
        *,
        statuses: Sequence[EvaluationStatus] = (),
        labels: dict[str, str] | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        """Newest first. ``cursor`` is a page's ``next_cursor``.

        Raises:
            InvalidCursorError (a StorageError) for a cursor this storage did not make.
        """

    @abc.abstractmethod
    async def claim_next(
        self, worker: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> Evaluation | None:
        """Move the next queued evaluation (highest priority, then oldest) to ``running``,
        count the attempt, lease it to ``worker`` for ``lease_seconds`` and record a
        ``started`` event; None when nothing is queued."""

    @abc.abstractmethod
    async def renew_leases(
        self, worker: str, evaluation_ids: Sequence[str], lease_seconds: float
    ) -> set[str]:
        """Extend ``worker``'s leases on these running evaluations; returns the ids it
        still holds (one missing was taken back, cancelled or finished)."""

    @abc.abstractmethod
    async def cancel_requests(self, worker: str, evaluation_ids: Sequence[str]) -> set[str]:
        """Which of ``worker``'s running evaluations have a cancel asked for."""

    @abc.abstractmethod
    async def recover_expired(self, max_attempts: int) -> tuple[list[str], list[str]]:
        """Take back running evaluations whose lease has expired (their worker died):
        requeue them, or end them as ``error`` after ``max_attempts``. Returns (requeued
        ids, ended ids)."""

    @abc.abstractmethod
    async def finish(
        self,
        evaluation_id: str,
        attempt: int,
        outcome: Outcome,
        *,
        output: Sequence[dict[str, Any]] = (),
    ) -> Evaluation | None:
        """Record the outcome of ``attempt``, the last ``output`` events and a terminal event,
        if that attempt is still the running one; None otherwise (cancelled meanwhile, or a
        stale attempt)."""

    @abc.abstractmethod
    async def cancel(self, evaluation_id: str) -> tuple[Evaluation, bool]:
        """Cancel the evaluation: a queued one at once (returns True), a running one by
        recording the request (``cancel_requested``, with an event; the worker that runs it
        acts on it, and a running evaluation whose run is interrupted then ends
        ``cancelled`` instead of running again). Returns it in its current state and
        whether this call cancelled it. A finished evaluation is returned unchanged.

        Raises:
            NotFoundError.
        """

    @abc.abstractmethod
    async def requeue(self, evaluation_id: str, attempt: int, reason: str) -> bool:
        """Put a running attempt back in the queue (it will run again), or end it as
        ``cancelled`` if a cancel was asked for; False when that attempt is not running."""

    @abc.abstractmethod
    async def recover_interrupted(
        self, worker: str, max_attempts: int
    ) -> tuple[list[str], list[str]]:
        """After a crash of ``worker``: requeue the evaluations it left ``running``, or end
        them as ``error`` when they have had ``max_attempts``. Others' runs are left alone
        (replicas sharing a database each recover their own). Returns (requeued ids, ended
        ids)."""

    @abc.abstractmethod
    async def counts(self) -> dict[EvaluationStatus, int]: ...

    @abc.abstractmethod
    async def count_queued(self) -> int:
        """``counts()[QUEUED]`` without counting every other status: for frequent callers."""

    # -- events --------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_event(self, evaluation_id: str, type_: EventType, data: dict[str, Any]) -> Event:
        """Record one event (live output) of a stored evaluation. Raises NotFoundError."""

    @abc.abstractmethod
    async def events(self, evaluation_id: str, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """Events of one evaluation with id > ``after``, oldest first. Raises NotFoundError."""

    # -- live sandboxes ------------------------------------------------------------------

    @abc.abstractmethod
    async def add_sandbox(self, info: dict[str, Any], api_key_id: int | None) -> SandboxRecord:
        """Store a live sandbox just started as ``running``, with a ``created`` event, in one
        transaction. ``info`` is its engine's ``SandboxInfo`` as JSON (``id`` its key);
        ``api_key_id`` the key that asked for it (None without keys).

        Raises:
            StorageError: a sandbox with this id is already stored.
        """

    @abc.abstractmethod
    async def get_sandbox_record(self, sandbox_id: str) -> SandboxRecord:
        """Raises NotFoundError."""

    @abc.abstractmethod
    async def list_sandbox_records(
        self,
        *,
        api_key_id: int | None = None,
        state: SandboxState | None = None,
        limit: int = 100,
    ) -> list[SandboxRecord]:
        """Running ones first, then newest first; only ``api_key_id``'s when it is given
        (None: every key's), only those in ``state`` when it is given."""

    @abc.abstractmethod
    async def end_sandbox_record(
        self, sandbox_id: str, reason: str, at: datetime
    ) -> tuple[SandboxRecord, bool]:
        """Mark a running sandbox ended at ``at`` for ``reason`` (an ``EndReason``), with an
        ``ended`` event, in one transaction. Returns it and whether this call ended it: one
        already ended is returned unchanged (its first reason stays).

        Raises:
            NotFoundError.
        """

    @abc.abstractmethod
    async def count_running_sandboxes(self, api_key_id: int | None) -> int:
        """Running sandboxes of ``api_key_id`` (None: of every key)."""

    @abc.abstractmethod
    async def add_sandbox_event(
        self, sandbox_id: str, type_: SandboxEventType, data: dict[str, Any]
    ) -> SandboxEvent:
        """Record one event of a stored sandbox. Raises NotFoundError."""

    @abc.abstractmethod
    async def sandbox_events(
        self, sandbox_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[SandboxEvent]:
        """Events of one sandbox with seq > ``after``, oldest first. Raises NotFoundError."""

    # -- API keys ------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_api_key(self, name: str) -> tuple[ApiKey, str]:
        """Returns the key and its secret, which is stored only as a hash."""

    @abc.abstractmethod
    async def list_api_keys(self) -> list[ApiKey]: ...

    @abc.abstractmethod
    async def revoke_api_key(self, key_id: int) -> ApiKey:
        """Raises NotFoundError."""

    @abc.abstractmethod
    async def has_active_api_keys(self) -> bool: ...

    @abc.abstractmethod
    async def verify_api_key(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
