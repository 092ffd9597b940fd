"""The orchestrator: builds the platform from Settings (the composition root).

``create_app(settings)`` returns the ASGI application that ``assay serve`` runs: storage,
the execution engine, the queue, monitoring and the REST API, wired together."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import assert_never

from fastapi import FastAPI

from assay.config import Settings
from assay.errors import ExecutionError
from assay.execution_engine import ExecutionInterface
from assay.execution_engine.factory import create_engine
from assay.monitoring import EventBus, Metrics
from assay.queue import EvaluationQueue, LocalQueue
from assay.storage import Evaluation, Storage, create_storage

__all__ = ["Platform", "create_app"]

logger = logging.getLogger(__name__)

_AUTH_CACHE_SECONDS = 2.0


class Platform:
    """Everything the API needs, built from settings; started and stopped as one."""

    def __init__(self, settings: Settings, *, engine: ExecutionInterface | None = None) -> None:
        self.settings = settings
        self.storage: Storage = create_storage(settings.storage_url())
        self.engine: ExecutionInterface = engine or create_engine(settings)
        self.bus = EventBus() if settings.redis_url is None else _redis_bus(settings.redis_url)
        self.metrics = Metrics()
        parts = (self.storage, self.engine, self.bus, self.metrics, settings.queue)
        executor = settings.execution.engine_id
        self.queue: EvaluationQueue
        match settings.queue.backend:
            case "local":
                self.queue = LocalQueue(*parts, executor=executor)
            case "celery":
                from assay.queue.celery_queue import CeleryQueue, celery_app  # noqa: PLC0415

                app, url = celery_app(settings), settings.redis_url or ""
                self.queue = CeleryQueue(*parts, executor=executor, app=app, redis_url=url)
            case unknown:
                assert_never(unknown)
        self._auth_checked_at = float("-inf")
        self._auth_required = False

    async def start(self) -> None:
        if self.settings.storage.url is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await self.storage.start()
        await self.bus.start()
        if self.settings.queue.run_workers:  # an API-only replica never touches the engine
            try:
                await self.engine.start()
            except ExecutionError as exc:  # reported by /readyz; the queue waits for it
                logger.error("execution engine not ready: %s", exc.message)
        await self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop()
        await self.engine.close()
        await self.bus.close()
        await self.storage.close()

    async def auth_required(self) -> bool:
        """Whether API keys exist (re-read every few seconds: keys are managed by the CLI)."""
        now = time.monotonic()
        if now - self._auth_checked_at > _AUTH_CACHE_SECONDS:
            self._auth_required = await self.storage.has_active_api_keys()
            self._auth_checked_at = now
        return self._auth_required

    async def wait_until_finished(
        self, evaluation_id: str, timeout: float, *, current: Evaluation | None = None
    ) -> Evaluation:
        """The evaluation once terminal, or as it is after ``timeout`` seconds.

        ``current``: its state, read with no await since (it saves reading it again)."""
        deadline = time.monotonic() + timeout
        with self.bus.subscribe(evaluation_id) as subscription:
            evaluation = current or await self.storage.get(evaluation_id)
            while not evaluation.status.terminal:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                notice = await subscription.next(timeout=min(remaining, 5.0))
                if notice is not None and notice.evaluation is not None:
                    evaluation = notice.evaluation
                elif notice is None or notice.type in {"finished", "cancelled", "requeued"}:
                    evaluation = await self.storage.get(evaluation_id)
            return evaluation


def _redis_bus(url: str) -> EventBus:
    from assay.monitoring.redis_bus import RedisEventBus  # noqa: PLC0415 - only with Redis

    return RedisEventBus(url)


def create_app(settings: Settings, *, platform: Platform | None = None) -> FastAPI:
    """The ASGI application: the REST API over a platform that starts and stops with it.

    A new Platform is built at each start unless ``platform`` is given (tests)."""
    from assay.api.app import create_api  # noqa: PLC0415 - api imports this module

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = platform or Platform(settings)
        app.state.platform = built
        await built.start()
        try:
            yield
        finally:
            await asyncio.shield(built.stop())

    return create_api(settings, lifespan=lifespan)
