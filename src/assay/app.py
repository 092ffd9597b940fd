"""The orchestrator: builds the platform from Settings (the composition root).

The only module that knows every concrete class: it picks each backend through its
module's factory and hands each part what it needs. ``create_app(settings)`` returns the
ASGI application that ``assay serve`` runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from assay.api import ApiKeys, Services, bind, create_api
from assay.config import Settings
from assay.errors import ExecutionError
from assay.execution_engine import ExecutionInterface, create_engine
from assay.monitoring import Metrics, create_bus
from assay.queue import StorageQueue, create_queue
from assay.storage import create_storage

__all__ = ["Platform", "create_app"]

logger = logging.getLogger(__name__)


class Platform:
    """Storage, engine, bus, metrics and queue, built from settings and wired together;
    started and stopped as one. Storage's recorded events are announced on the bus."""

    def __init__(self, settings: Settings, *, engine: ExecutionInterface | None = None) -> None:
        self.settings = settings
        self.storage = create_storage(settings.storage_url())
        self.engine = engine or create_engine(settings)
        self.bus = create_bus(settings)
        self.storage.listen(self.bus.announce)
        self.metrics = Metrics()
        self.queue: StorageQueue = create_queue(
            settings, storage=self.storage, engine=self.engine, bus=self.bus, metrics=self.metrics
        )
        self.keys = ApiKeys(self.storage, cache_seconds=settings.api.key_cache_seconds)

    def services(self) -> Services:
        """What the API's routes are given."""
        return Services(
            settings=self.settings,
            storage=self.storage,
            queue=self.queue,
            bus=self.bus,
            engine=self.engine,
            metrics=self.metrics,
            keys=self.keys,
        )

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


def create_app(settings: Settings, *, platform: Platform | None = None) -> FastAPI:
    """The ASGI application: the REST API over a platform that starts and stops with it.

    A new Platform is built at each start unless ``platform`` is given (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = platform or Platform(settings)
        bind(app, built.services())
        await built.start()
        try:
            yield
        finally:
            await asyncio.shield(built.stop())

    return create_api(settings, lifespan=lifespan)
