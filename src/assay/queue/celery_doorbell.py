"""The Celery doorbell on Redis (``ASSAY_QUEUE__BACKEND=celery``).

PostgreSQL stays the truth (decision 0008): what to run next, in which order (priority,
then submission) and who runs it is decided by the database claim, under a lease. A Celery
message is a doorbell: "claim the next queued evaluation and run it". Celery carries the
doorbells to ``assay worker`` processes (``assay.worker``), bounds each one's concurrency
(its threads pool) and redelivers what a dead worker held. So:

* a duplicate doorbell finds nothing to claim and returns;
* a lost doorbell (Redis restarted without persistence, a crash between commit and send) is
  made up: every replica keeps at least as many doorbells waiting as evaluations queued;
* a worker SIGKILLed mid-run loses its leases, and any worker takes its evaluations back
  (re-queued, so they get doorbells again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis
from celery import Celery  # type: ignore[import-untyped]

from assay.errors import ConfigurationError, StorageError
from assay.queue.doorbell import Answer, Doorbell

__all__ = ["CeleryDoorbell", "celery_app"]

logger = logging.getLogger(__name__)

TASK = "assay.run_next"
QUEUE = "assay"
_TOP_UP_SECONDS = 2.0


def celery_app(redis_url: str | None, *, visibility_timeout: float) -> Celery:
    """The Celery application on ``redis_url`` (broker only, no result backend)."""
    if not redis_url:
        raise ConfigurationError("ASSAY_QUEUE__BACKEND=celery needs ASSAY_REDIS__URL")
    app = Celery("assay", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_ignore_result=True,
        # A doorbell is acknowledged after its run: a worker that dies holding one gives
        # it back (after the visibility timeout); the lease has re-queued its run by then.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": visibility_timeout},
        worker_hijack_root_logger=False,
    )
    return app


class CeleryDoorbell(Doorbell):
    """Rings by sending Celery tasks; answered by ``assay worker`` processes, whose Celery
    task calls the queue's ``run_next`` (so it starts no workers of its own)."""

    def __init__(self, app: Celery, redis_url: str, count_queued: Callable[[], Awaitable[int]]):
        self.app = app
        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=10)
        self._count_queued = count_queued
        self._tasks: set[asyncio.Task[None]] = set()
        self._top_up: asyncio.Task[None] | None = None

    async def start(self, answer: Answer, *, workers: int) -> None:
        del answer, workers  # Celery's worker answers (assay.worker)
        self._top_up = asyncio.create_task(self._keep_doorbells(), name="assay-doorbells")

    async def stop(self) -> None:
        pending = [*self._tasks, *([self._top_up] if self._top_up else [])]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._redis.close()

    def ring(self, count: int) -> None:
        if count:
            task = asyncio.create_task(self._ring(count))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def wake(self) -> None:
        """Nothing to do: the process that queued the work rang Celery."""

    def serve(self, run_next: Callable[[], None], *, concurrency: int, hostname: str) -> None:
        """Answer doorbells in this process until Celery's warm shutdown (SIGTERM): a
        threads pool of ``concurrency``, each doorbell calling ``run_next``."""
        self.app.task(name=TASK)(run_next)
        self.app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={concurrency}",
                f"--queues={QUEUE}",
                f"--hostname={hostname}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=WARNING",
            ]
        )

    async def check(self) -> tuple[bool, str]:
        try:
            await asyncio.to_thread(self._redis.ping)
        except redis.RedisError as exc:
            return False, f"Redis does not answer ({exc}); evaluations wait in the database"
        return True, "ok"

    async def _ring(self, count: int) -> None:
        try:
            await asyncio.to_thread(self._send, count)
        except Exception as exc:
            logger.warning("could not ring %d doorbell(s): %s", count, exc)

    def _send(self, count: int) -> None:
        with self.app.producer_or_acquire() as producer:
            for _ in range(count):
                self.app.send_task(TASK, producer=producer)

    async def _keep_doorbells(self) -> None:
        """At least as many doorbells waiting in Redis as evaluations queued."""
        while True:
            await asyncio.sleep(_TOP_UP_SECONDS)
            try:
                queued = await self._count_queued()
                waiting = await asyncio.to_thread(self._redis.llen, QUEUE)
            except (StorageError, redis.RedisError) as exc:
                logger.warning("cannot count doorbells: %s", exc)
                continue
            if queued > int(waiting):
                await self._ring(queued - int(waiting))
