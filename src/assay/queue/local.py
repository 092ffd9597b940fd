"""The monolith's queue: state in storage, workers in this process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
from assay.queue.interface import EvaluationQueue, QueueStats
from assay.queue.output import OutputSink
from assay.storage import Evaluation, EvaluationStatus, NewEvaluation, Outcome, Storage

__all__ = ["LocalQueue"]

logger = logging.getLogger(__name__)

_IDLE_RECHECK_SECONDS = 1.0
#: Notice asking whichever replica runs an evaluation to cancel it.
CANCEL_REQUESTED = "cancel_requested"
#: How long a cancel waits for another replica to end the evaluation before answering.
_REMOTE_CANCEL_SECONDS = 10.0
_ENGINE_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
#: Engine failures that no evaluation causes: the evaluation waits in the queue for a fix.
_ENGINE_DOWN = (EngineUnavailableError, SandboxImageNotFoundError, RuntimeNotAvailableError)


class LocalQueue(EvaluationQueue):
    """FIFO within priority, ``concurrency`` workers, bounded by ``max_queued``.

    Queued evaluations live only in storage, so they survive a restart; on start, evaluations
    a crash left ``running`` are re-queued (or ended after ``max_attempts``)."""

    def __init__(
        self,
        storage: Storage,
        engine: ExecutionInterface,
        bus: EventBus,
        metrics: Metrics,
        settings: QueueSettings,
        *,
        executor: str,
        poll: bool = True,
    ) -> None:
        self._storage = storage
        self._engine = engine
        self._bus = bus
        self._metrics = metrics
        self._settings = settings
        self._executor = executor
        #: False: no claiming loop here; a task engine calls ``run_next`` (celery_queue.py).
        self._poll = poll
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancel_requested: set[str] = set()
        self._stopping = False
        self._engine_failures = 0
        self._engine_ok = asyncio.Event()
        self._engine_ok.set()
        self._batch_sandboxes = BatchSandboxes(
            engine, limit=settings.concurrency, idle_seconds=settings.batch_sandbox_idle_seconds
        )

    async def start(self) -> None:
        requeued, ended = await self._storage.recover_interrupted(
            self._executor, self._settings.max_attempts
        )
        if requeued or ended:
            logger.warning(
                "recovered after a crash: %d evaluation(s) re-queued, %d ended",
                len(requeued),
                len(ended),
            )
        for evaluation_id in requeued:
            self._bus.publish(evaluation_id, "requeued")
        for evaluation_id in ended:
            self._bus.publish(evaluation_id, "finished")
        self._metrics.track(lambda: len(self._running), self._settings.concurrency)
        self._metrics.batch_sandboxes.set_function(lambda: self._batch_sandboxes.open)
        if not self._settings.run_workers:
            return
        self._workers = [
            asyncio.create_task(self._work(), name=f"assay-worker-{n}")
            for n in range(self._settings.concurrency if self._poll else 0)
        ]
        self._workers.append(asyncio.create_task(self._follow_notices(), name="assay-notices"))
        self._workers.append(asyncio.create_task(self._keep_leases(), name="assay-leases"))

    async def stop(self) -> None:
        self._stopping = True
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        await self._batch_sandboxes.close()

    async def submit(self, new: Sequence[NewEvaluation]) -> list[tuple[Evaluation, bool]]:
        try:
            results = await self._storage.create(new, max_queued=self._settings.max_queued)
        except QueueFullError as exc:
            self._metrics.rejected.inc(len(new))
            raise QueueFullError(
                exc.message, retry_after=self._settings.retry_after_seconds
            ) from exc
        created = [evaluation for evaluation, is_new in results if is_new]
        self._metrics.submitted.inc(len(created))
        for evaluation in created:
            self._bus.publish(evaluation.id, "queued")
        if created:
            self._wake.set()
        return results

    async def cancel(self, evaluation_id: str) -> Evaluation:
        evaluation, cancelled = await self._storage.cancel_queued(evaluation_id)
        if cancelled:
            self._metrics.finished.labels(EvaluationStatus.CANCELLED.value).inc()
            self._bus.publish(evaluation_id, "cancelled")
            return evaluation
        if evaluation.status is not EvaluationStatus.RUNNING:
            return evaluation
        task = self._running.get(evaluation_id)
        if task is not None:
            self._cancel_requested.add(evaluation_id)
            task.cancel()
            await asyncio.wait({task})
            return await self._storage.get(evaluation_id)
        # Another replica runs it: ask over the bus, and answer once it has ended.
        with self._bus.subscribe(evaluation_id) as subscription:
            self._bus.publish(evaluation_id, CANCEL_REQUESTED)
            deadline = asyncio.get_running_loop().time() + _REMOTE_CANCEL_SECONDS
            while not evaluation.status.terminal:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                await subscription.next(timeout=min(remaining, 1.0))
                evaluation = await self._storage.get(evaluation_id)
        return evaluation

    def stats(self) -> QueueStats:
        return QueueStats(
            capacity=self._settings.concurrency if self._settings.run_workers else 0,
            max_queued=self._settings.max_queued,
        )

    # -- workers -------------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        """Renew the leases of what runs here; take back what dead workers left running."""
        lease = self._settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                running = list(self._running)
                held = await self._storage.renew_leases(self._executor, running, lease)
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
            for evaluation_id in requeued:
                self._bus.publish(evaluation_id, "requeued")
            for evaluation_id in ended:
                self._bus.publish(evaluation_id, "finished")
            if requeued:
                self._wake.set()

    async def _follow_notices(self) -> None:
        """Wake the workers when another replica queued something; cancel what this process
        runs when another replica was asked to."""
        with self._bus.subscribe(ALL) as subscription:
            while True:
                notice = await subscription.next()
                if notice is None:
                    continue
                if notice.type in {"queued", "requeued"}:
                    self._wake.set()
                if notice.type != CANCEL_REQUESTED:
                    continue
                task = self._running.get(notice.evaluation_id)
                if task is not None and not task.done():
                    self._cancel_requested.add(notice.evaluation_id)
                    task.cancel()

    async def _work(self) -> None:
        while not self._stopping:
            await self._engine_ok.wait()
            self._wake.clear()
            if not await self.run_next():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), _IDLE_RECHECK_SECONDS)

    async def run_next(self) -> bool:
        """Claim the next queued evaluation (highest priority, then oldest) and run it to
        its end; False when nothing was queued. The workers' loop, or a task engine's
        worker when ``poll`` is off."""
        try:
            evaluation = await self._storage.claim_next(
                self._executor, lease_seconds=self._settings.lease_seconds
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
        self._bus.publish(evaluation.id, "started")
        started = evaluation.started_at or datetime.now(UTC)
        self._metrics.queue_wait.observe((started - evaluation.created_at).total_seconds())
        sink = OutputSink(self._storage, self._bus, evaluation.id)
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
            outcome = _outcome(result)
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
        reason = f"execution engine unavailable, will retry: {exc.message}"
        if await self._storage.requeue(evaluation.id, evaluation.attempts, reason):
            self._bus.publish(evaluation.id, "requeued")
        if not self._engine_ok.is_set():
            return
        delay = _ENGINE_BACKOFF_SECONDS[
            min(self._engine_failures, len(_ENGINE_BACKOFF_SECONDS) - 1)
        ]
        self._engine_failures += 1
        logger.error("execution engine unavailable (%s); pausing the queue for %.0f s", exc, delay)
        self._engine_ok.clear()
        asyncio.get_running_loop().call_later(delay, self._engine_ok.set)

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
            if await self._storage.requeue(evaluation.id, attempts, reason):
                self._bus.publish(evaluation.id, "requeued")
            return
        message = f"{exc.message}, on each of its {attempts} attempts; giving up"
        await self._record(evaluation, Outcome(status=EvaluationStatus.ERROR, error=message))

    async def _interrupted(self, evaluation: Evaluation) -> None:
        if evaluation.id in self._cancel_requested:
            outcome = Outcome(status=EvaluationStatus.CANCELLED, error="cancelled while running")
            await self._record(evaluation, outcome)
            return
        requeued = await self._storage.requeue(
            evaluation.id, evaluation.attempts, "the platform was shutting down"
        )
        if requeued:
            self._bus.publish(evaluation.id, "requeued")

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
        if finished.started_at is not None and finished.finished_at is not None:
            self._metrics.execution_time.observe(
                (finished.finished_at - finished.started_at).total_seconds()
            )
            self._metrics.end_to_end.observe(
                (finished.finished_at - finished.created_at).total_seconds()
            )
        if output:
            self._bus.publish(evaluation.id, "output")
        self._bus.publish(
            evaluation.id,
            "cancelled" if finished.status is EvaluationStatus.CANCELLED else "finished",
            finished,
        )


def _outcome(result: ExecutionResult) -> Outcome:
    return Outcome(
        status=EvaluationStatus(result.status.value),
        exit_code=result.exit_code,
        signal=result.signal,
        stdout=result.stdout,
        stderr=result.stderr,
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        duration_seconds=result.duration_seconds,
        cpu_time_seconds=result.cpu_time_seconds,
        peak_memory_bytes=result.peak_memory_bytes,
        error=result.error,
    )
