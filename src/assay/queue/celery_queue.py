"""The queue distributed by Celery on Redis (``ASSAY_QUEUE__BACKEND=celery``).

PostgreSQL stays the truth (decision 0008): what to run next, in which order (priority,
then submission) and who runs it is decided by the database claim, under a lease. A Celery
message is a doorbell: "claim the next queued evaluation and run it". Celery carries the
doorbells to ``assay worker`` processes, bounds each one's concurrency (its threads pool)
and redelivers what a dead worker held. So:

* a duplicate doorbell finds nothing to claim and returns;
* a lost doorbell (Redis restarted without persistence, a crash between commit and send) is
  made up: every replica keeps at least as many doorbells waiting as evaluations queued;
* a worker SIGKILLed mid-run loses its leases, and any worker takes its evaluations back
  (re-queued, so they get doorbells again);
* cancellation goes over the Redis event bus, as between replicas.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery  # type: ignore[import-untyped]

from assay.config import Settings
from assay.errors import StorageError
from assay.queue.local import LocalQueue
from assay.storage import Evaluation, NewEvaluation

__all__ = ["CeleryQueue", "celery_app", "run_celery_worker"]

logger = logging.getLogger(__name__)

TASK = "assay.run_next"
QUEUE = "assay"
_TOP_UP_SECONDS = 2.0


def celery_app(settings: Settings) -> Celery:
    """The Celery application on ``settings.redis_url`` (broker only, no result backend)."""
    if not settings.redis_url:
        raise ValueError("ASSAY_QUEUE__BACKEND=celery needs ASSAY_REDIS_URL")
    app = Celery("assay", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_ignore_result=True,
        # A doorbell is acknowledged after its run: a worker that dies holding one gives
        # it back (after the visibility timeout); the lease has re-queued its run by then.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.execution.max_timeout_seconds + 300
        },
        worker_hijack_root_logger=False,
    )
    return app


class CeleryQueue(LocalQueue):
    """:class:`LocalQueue`'s storage, bus, leases and cancellation, with Celery doorbells
    instead of a claiming loop: the same class in API replicas (which ring) and in workers
    (which answer, through :func:`run_celery_worker`)."""

    def __init__(self, *args: Any, app: Celery, redis_url: str, **kwargs: Any) -> None:
        super().__init__(*args, poll=False, **kwargs)
        self.app = app
        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=10)
        self._top_up: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        self._top_up = asyncio.create_task(self._keep_doorbells(), name="assay-doorbells")

    async def stop(self) -> None:
        if self._top_up is not None:
            self._top_up.cancel()
            await asyncio.gather(self._top_up, return_exceptions=True)
        await super().stop()
        self._redis.close()

    async def check_broker(self) -> tuple[bool, str]:
        try:
            await asyncio.to_thread(self._redis.ping)
        except redis.RedisError as exc:
            return False, f"Redis does not answer ({exc}); evaluations wait in the database"
        return True, "ok"

    async def submit(self, new: Sequence[NewEvaluation]) -> list[tuple[Evaluation, bool]]:
        results = await super().submit(new)
        created = sum(1 for _, is_new in results if is_new)
        if created:
            await self._ring(created)
        return results

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
                queued = await self._storage.count_queued()
                waiting = await asyncio.to_thread(self._redis.llen, QUEUE)
            except (StorageError, redis.RedisError) as exc:
                logger.warning("cannot count doorbells: %s", exc)
                continue
            if queued > int(waiting):
                await self._ring(queued - int(waiting))


def run_celery_worker(settings: Settings, listening: socket.socket | None = None) -> None:
    """``assay worker`` with the Celery backend: the platform (storage, engine, bus, leases)
    on an event loop in a thread, and a Celery worker (threads pool, ``concurrency`` threads)
    whose task runs the next evaluation on that loop; with ``listening``, the health and
    metrics routes served on it. Returns after Celery's warm shutdown (SIGTERM), once the
    platform has stopped."""
    from assay.api.status_server import StatusServer  # noqa: PLC0415
    from assay.app import Platform  # noqa: PLC0415 - app imports the queue package

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="assay-loop", daemon=True)
    thread.start()
    platform = Platform(settings)
    queue = platform.queue
    if not isinstance(queue, CeleryQueue):
        raise TypeError("run_celery_worker needs ASSAY_QUEUE__BACKEND=celery")
    server = StatusServer(platform, listening) if listening else None
    asyncio.run_coroutine_threadsafe(platform.start(), loop).result()
    if server is not None:
        loop.call_soon_threadsafe(server.start)

    @queue.app.task(name=TASK)  # type: ignore[untyped-decorator]
    def run_next() -> None:
        asyncio.run_coroutine_threadsafe(queue.run_next(), loop).result()

    try:
        queue.app.worker_main(
            [
                "worker",
                "--pool=threads",
                f"--concurrency={settings.queue.concurrency}",
                f"--queues={QUEUE}",
                f"--hostname={settings.execution.engine_id}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=WARNING",
            ]
        )
    finally:
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        asyncio.run_coroutine_threadsafe(platform.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
