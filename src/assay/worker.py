"""``assay worker``: the platform's queue workers and engine without the REST API (with a
listening socket, its health and metrics routes). Two kinds, by ``ASSAY_QUEUE__BACKEND``:
``local`` workers claim from the database in their own loops; ``celery`` workers answer
Celery doorbells (``assay.queue.celery_doorbell``)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from typing import assert_never

from assay.api import StatusServer
from assay.app import Platform
from assay.config import Settings

__all__ = ["run_worker"]

logger = logging.getLogger(__name__)


def run_worker(settings: Settings, listening: socket.socket | None = None) -> None:
    """Run until SIGTERM or SIGINT, after which running evaluations are killed and put back
    in the queue; with ``listening``, serve the health and metrics routes on it."""
    settings = settings.model_copy(
        update={"queue": settings.queue.model_copy(update={"run_workers": True})}
    )
    match settings.queue.backend:
        case "local":
            asyncio.run(_claiming_worker(settings, listening))
        case "celery":
            _celery_worker(settings, listening)
        case unknown:
            assert_never(unknown)


async def _claiming_worker(settings: Settings, listening: socket.socket | None) -> None:
    platform = Platform(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    server = StatusServer(platform.services(), listening) if listening else None
    await platform.start()
    if server is not None:
        server.start()
    logger.warning(
        "worker %s: %d at once", settings.execution.engine_id, settings.queue.concurrency
    )
    try:
        await stopping.wait()
    finally:
        if server is not None:
            await asyncio.shield(server.stop())
        await asyncio.shield(platform.stop())


def _celery_worker(settings: Settings, listening: socket.socket | None) -> None:
    """The platform (storage, engine, bus, leases) on an event loop in a thread, and a
    Celery worker (threads pool, ``concurrency`` threads) whose task runs the next
    evaluation on that loop. Returns after Celery's warm shutdown (SIGTERM), once the
    platform has stopped."""
    from assay.queue import CeleryDoorbell  # noqa: PLC0415 - loads Celery

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="assay-loop", daemon=True)
    thread.start()
    platform = Platform(settings)
    queue = platform.queue
    doorbell = queue.doorbell
    assert isinstance(doorbell, CeleryDoorbell)  # noqa: S101 - the factory's choice for celery
    server = StatusServer(platform.services(), listening) if listening else None
    asyncio.run_coroutine_threadsafe(platform.start(), loop).result()
    if server is not None:
        loop.call_soon_threadsafe(server.start)

    def run_next() -> None:
        asyncio.run_coroutine_threadsafe(queue.run_next(), loop).result()

    try:
        doorbell.serve(
            run_next,
            concurrency=settings.queue.concurrency,
            hostname=settings.execution.engine_id,
        )
    finally:
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
        asyncio.run_coroutine_threadsafe(platform.stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
