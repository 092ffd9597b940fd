"""The queue every topology uses: its state in storage, leased to the workers that claim it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from assay.config import QueueSettings
from assay.errors import (
    EngineUnavailableError,
    ExecutionError,
    QueueFullError,
    RuntimeNotAvailableError,
    SandboxImageNotFoundError,
    SandboxLostError,
    StorageError,
)
from assay.execution_engine import ExecutionInterface, ExecutionResult
from assay.monitoring import ALL, EventBus, Metrics
from assay.queue.batches import BatchSandboxes
from assay.queue.doorbell import Doorbell
from assay.queue.interface import EvaluationQueue, QueueStats
from assay.queue.output import OutputSink
from assay.storage import (
    Evaluation,
    EvaluationStatus,
    EventType,
    NewEvaluation,
    Outcome,
    Storage,
)

__all__ = ["StorageQueue"]

logger = logging.getLogger(__name__)

#: How long a cancel waits for another replica to end the evaluation before answering.
_REMOTE_CANCEL_SECONDS = 10.0
#: How often a worker reads the cancel requests of what it runs (the bus notice is faster,
#: but only a hint).
_CANCEL_CHECK_SECONDS = 1.0
#: How long ``wait`` trusts the bus without reading storage again.
_WAIT_REREAD_SECONDS = 5.0
_ENGINE_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
#: Engine failures that no evaluation causes: the evaluation waits in the queue for a fix.
_ENGINE_DOWN = (EngineUnavailableError, SandboxImageNotFoundError, RuntimeNotAvailableError)
_WAKING = frozenset({EventType.QUEUED, EventType.REQUEUED})
#: How many of the evaluations queued here are remembered until their own notice comes back.
_OWN_NOTICES = 10_000
_RE_READ = frozenset({EventType.FINISHED, EventType.CANCELLED, EventType.REQUEUED})


class StorageQueue(EvaluationQueue):
    """FIFO within priority, ``concurrency`` runs at once here, bounded by ``max_queued``.

    Queued evaluations live only in storage, so they survive a restart; on start, evaluations
    a crash left ``running`` are re-queued (or ended after ``max_attempts``). The
    ``doorbell`` tells workers there is work: in-process loops, or Celery's workers."""

    def __init__(
        self,
        storage: Storage,
        engine: ExecutionInterface,
        bus: EventBus,
        metrics: Metrics,
        settings: QueueSettings,
        *,
        worker: str,
        doorbell: Doorbell,
    ) -> None:
        self._storage = storage
        self._engine = engine
        self._bus = bus
        self._metrics = metrics
        self._settings = settings
        self._worker = worker
        self._doorbell = doorbell
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancel_requested: set[str] = set()
        #: Evaluations queued here whose notice has not come back yet (their ring woke the
        #: workers already; in insertion order, the oldest forgotten first).
        self._queued_here: dict[str, None] = {}
        self._engine_failures = 0
        self._engine_ok = asyncio.Event()
        self._engine_ok.set()
        self._batch_sandboxes = BatchSandboxes(
            engine, limit=settings.concurrency, idle_seconds=settings.batch_sandbox_idle_seconds
        )

    async def start(self) -> None:
        requeued, ended = await self._storage.recover_interrupted(
            self._worker, self._settings.max_attempts
        )
        if requeued or ended:
            logger.warning(
                "recovered after a crash: %d evaluation(s) re-queued, %d ended",
                len(requeued),
                len(ended),
            )
        self._metrics.track(lambda: len(self._running), self._settings.concurrency)
        self._metrics.batch_sandboxes.set_function(lambda: self._batch_sandboxes.open)
        run_here = self._settings.run_workers
        await self._doorbell.start(
            self._answer, workers=self._settings.concurrency if run_here else 0
        )
        if run_here:
            self._tasks = [
                asyncio.create_task(self._follow_notices(), name="assay-notices"),
                asyncio.create_task(self._keep_leases(), name="assay-leases"),
            ]

    async def stop(self) -> None:
        await self._doorbell.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._batch_sandboxes.close()

    async def submit(self, new: Sequence[NewEvaluation]) -> list[tuple[Evaluation, bool]]:
        try:
            results = await self._storage.create(new, max_queued=self._settings.max_queued)
        except QueueFullError as exc:
            self._metrics.rejected.inc(len(new))
            raise QueueFullError(
                exc.message, retry_after=self._settings.retry_after_seconds
            ) from exc
        created = sum(1 for _, is_new in results if is_new)
        if self._settings.run_workers:
            self._queued_here.update((e.id, None) for e, is_new in results if is_new)
            while len(self._queued_here) > _OWN_NOTICES:
                del self._queued_here[next(iter(self._queued_here))]
        self._metrics.submitted.inc(created)
        self._doorbell.ring(created)
        return results

    async def cancel(self, evaluation_id: str) -> Evaluation:
        evaluation, cancelled = await self._storage.cancel(evaluation_id)
        if cancelled:
            self._metrics.finished.labels(EvaluationStatus.CANCELLED.value).inc()
            language = evaluation.request.language
            self._metrics.by_language.labels(language, EvaluationStatus.CANCELLED.value).inc()
            return evaluation
        if evaluation.status is not EvaluationStatus.RUNNING:
            return evaluation
        task = self._running.get(evaluation_id)
        if task is not None:
            self._stop_run(evaluation_id)
            await asyncio.wait({task})
            return await self._storage.get(evaluation_id)
        # Another worker runs it: it reads the request from storage (the bus notice of the
        # recorded request reaches it sooner). Answer once it has ended, or as it is then.
        return await self._wait(
            evaluation_id, _REMOTE_CANCEL_SECONDS, evaluation, reread=_CANCEL_CHECK_SECONDS
        )

    async def wait(
        self, evaluation_id: str, timeout: float, *, current: Evaluation | None = None
    ) -> Evaluation:
        return await self._wait(evaluation_id, timeout, current, reread=_WAIT_REREAD_SECONDS)

    async def _wait(
        self, evaluation_id: str, timeout: float, current: Evaluation | None, *, reread: float
    ) -> Evaluation:
        """``reread``: how long to trust the bus between reads of storage (notices are
        hints: one may be lost)."""
        deadline = time.monotonic() + timeout
        with self._bus.subscribe(evaluation_id) as subscription:
            evaluation = current or await self._storage.get(evaluation_id)
            while not evaluation.status.terminal:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                notice = await subscription.next(timeout=min(remaining, reread))
                if notice is not None and notice.evaluation is not None:
                    evaluation = notice.evaluation
                elif notice is None or notice.type in _RE_READ:
                    evaluation = await self._storage.get(evaluation_id)
            return evaluation

    @property
    def doorbell(self) -> Doorbell:
        return self._doorbell

    def stats(self) -> QueueStats:
        return QueueStats(
            capacity=self._settings.concurrency if self._settings.run_workers else 0,
            max_queued=self._settings.max_queued,
        )

    async def check_broker(self) -> tuple[bool, str] | None:
        return await self._doorbell.check()

    # -- workers -------------------------------------------------------------------------

    def _stop_run(self, evaluation_id: str) -> None:
        task = self._running.get(evaluation_id)
        if task is not None and not task.done():
            self._cancel_requested.add(evaluation_id)
            task.cancel()

    async def _keep_leases(self) -> None:
        """Act on cancel requests of what runs here; renew its leases; take back what dead
        workers left running."""
        lease = self._settings.lease_seconds
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(min(_CANCEL_CHECK_SECONDS, lease / 3))
            try:
                running = list(self._running)
                for evaluation_id in await self._storage.cancel_requests(self._worker, running):
                    self._stop_run(evaluation_id)
                if time.monotonic() - renewed < lease / 3:
                    continue
                renewed = time.monotonic()
                held = await self._storage.renew_leases(self._worker, running, lease)
                for evaluation_id in set(running) - held:
                    task = self._running.get(evaluation_id)
                    if task is not None and not task.done():
                        logger.warning("lost the lease on %s; stopping its run", evaluation_id)
                        task.cancel()  # its outcome would not be recorded anyway
                requeued, ended = await self._storage.recover_expired(self._settings.max_attempts)
            except StorageError as exc:
                logger.error("cannot renew leases: %s", exc)
                continue
            if requeued or ended:
                logger.warning(
                    "took back %d evaluation(s) from dead workers (%d re-queued)",
                    len(requeued) + len(ended),
                    len(requeued),
                )
            self._doorbell.ring(len(requeued))

    async def _follow_notices(self) -> None:
        """Wake the workers when another replica queued something; stop a run here when a
        cancel of it was recorded (storage is read again by ``_keep_leases`` anyway)."""
        with self._bus.subscribe(ALL) as subscription:
            while True:
                notice = await subscription.next()
                if notice is None:
                    continue
                if notice.type == EventType.QUEUED and notice.evaluation_id in self._queued_here:
                    del self._queued_here[notice.evaluation_id]  # rung when it was queued
                elif notice.type in _WAKING:
                    self._doorbell.wake()
                elif notice.type == EventType.CANCEL_REQUESTED:
                    self._stop_run(notice.evaluation_id)

    async def _answer(self) -> bool:
        await self._engine_ok.wait()
        return await self.run_next()

    async def run_next(self) -> bool:
        """Claim the next queued evaluation (highest priority, then oldest) and run it to
        its end; False when nothing was queued. What a doorbell's worker calls."""
        try:
            evaluation = await self._storage.claim_next(
                self._worker, lease_seconds=self._settings.lease_seconds
            )
        except StorageError as exc:
            logger.error("cannot claim work: %s", exc)
            return False
        if evaluation is None:
            return False
        task = asyncio.create_task(self._execute(evaluation), name=f"assay-run-{evaluation.id}")
        self._running[evaluation.id] = task
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:  # the queue is stopping: stop this run too
            task.cancel()
            await asyncio.wait({task})
            raise
        finally:
            self._running.pop(evaluation.id, None)
            self._cancel_requested.discard(evaluation.id)
        return True

    async def _execute(self, evaluation: Evaluation) -> None:
        started = evaluation.started_at or datetime.now(UTC)
        self._metrics.queue_wait.observe((started - evaluation.created_at).total_seconds())
        sink = OutputSink(self._storage, evaluation.id)
        try:
            result = await self._run(evaluation, sink)
        except asyncio.CancelledError:
            await sink.close()
            await self._interrupted(evaluation)
            return
        except _ENGINE_DOWN as exc:
            self._metrics.engine_errors.labels(exc.code).inc()
            await sink.close()
            await self._engine_down(evaluation, exc)
            return
        except SandboxLostError as exc:
            self._metrics.engine_errors.labels(exc.code).inc()
            await sink.close()
            await self._lost(evaluation, exc)
            return
        except ExecutionError as exc:
            logger.warning("engine failed on %s: %s", evaluation.id, exc.message)
            self._metrics.engine_errors.labels(exc.code).inc()
            outcome = Outcome(status=EvaluationStatus.ERROR, error=exc.message)
        else:
            self._engine_failures = 0
            outcome = Outcome.of(result)
        await self._record(evaluation, outcome, output=await sink.drain())

    async def _run(self, evaluation: Evaluation, sink: OutputSink) -> ExecutionResult:
        batch_id = evaluation.batch_id
        if evaluation.isolation != "batch" or batch_id is None:
            return await self._engine.execute(evaluation.request, on_output=sink.add)
        sandbox = self._batch_sandboxes.take(batch_id)
        self._metrics.batch_programs.inc()
        try:
            return await sandbox.execute(evaluation.request, on_output=sink.add)
        finally:
            self._batch_sandboxes.give_back(batch_id, sandbox)

    async def _engine_down(self, evaluation: Evaluation, exc: ExecutionError) -> None:
        """Put the evaluation back and pause every worker for a while: the engine, not the
        program, failed, and failing the whole queue would lose work."""
        if self._engine_ok.is_set():
            delay = _ENGINE_BACKOFF_SECONDS[
                min(self._engine_failures, len(_ENGINE_BACKOFF_SECONDS) - 1)
            ]
            self._engine_failures += 1
            logger.error(
                "execution engine unavailable (%s); pausing the queue for %.0f s", exc, delay
            )
            # Paused before it is back in the queue: no worker claims it again meanwhile.
            self._engine_ok.clear()
            asyncio.get_running_loop().call_later(delay, self._engine_ok.set)
        reason = f"execution engine unavailable, will retry: {exc.message}"
        await self._requeue(evaluation, reason)

    async def _lost(self, evaluation: Evaluation, exc: SandboxLostError) -> None:
        """The sandbox went away under the program (killed or removed from outside): that
        says nothing about the program, so it runs again while attempts remain."""
        attempts = evaluation.attempts
        if attempts < self._settings.max_attempts:
            logger.warning(
                "sandbox of %s lost (attempt %d): running it again", evaluation.id, attempts
            )
            reason = (
                f"{exc.message}; running it again (attempt {attempts} of at most "
                f"{self._settings.max_attempts})"
            )
            await self._requeue(evaluation, reason)
            return
        message = f"{exc.message}, on each of its {attempts} attempts; giving up"
        await self._record(evaluation, Outcome(status=EvaluationStatus.ERROR, error=message))

    async def _interrupted(self, evaluation: Evaluation) -> None:
        if evaluation.id in self._cancel_requested:
            outcome = Outcome(status=EvaluationStatus.CANCELLED, error="cancelled while running")
            await self._record(evaluation, outcome)
            return
        await self._requeue(evaluation, "the platform was shutting down")

    async def _requeue(self, evaluation: Evaluation, reason: str) -> None:
        try:
            if await self._storage.requeue(evaluation.id, evaluation.attempts, reason):
                self._doorbell.ring(1)
        except StorageError as exc:  # its lease expires, and a worker takes it back then
            logger.error("cannot put %s back in the queue: %s", evaluation.id, exc)

    async def _record(
        self, evaluation: Evaluation, outcome: Outcome, *, output: Sequence[dict[str, str]] = ()
    ) -> None:
        try:
            finished = await self._storage.finish(
                evaluation.id, evaluation.attempts, outcome, output=output
            )
        except StorageError as exc:
            logger.error("cannot record the outcome of %s: %s", evaluation.id, exc)
            return
        if finished is None:
            return
        self._metrics.finished.labels(finished.status.value).inc()
        language = finished.request.language
        self._metrics.by_language.labels(language, finished.status.value).inc()
        if outcome.compile_duration_seconds is not None:
            self._metrics.compile_time.labels(language).observe(outcome.compile_duration_seconds)
        if finished.started_at is not None and finished.finished_at is not None:
            self._metrics.execution_time.observe(
                (finished.finished_at - finished.started_at).total_seconds()
            )
            self._metrics.end_to_end.observe(
                (finished.finished_at - finished.created_at).total_seconds()
            )
