"""Choosing the queue's doorbell from settings (``ASSAY_QUEUE__BACKEND``)."""

from __future__ import annotations

from typing import assert_never

from assay.config import Settings
from assay.execution_engine import ExecutionInterface
from assay.monitoring import EventBus, Metrics
from assay.queue.doorbell import Doorbell, InProcessDoorbell
from assay.queue.storage_queue import StorageQueue
from assay.storage import Storage

__all__ = ["create_doorbell", "create_queue"]


def create_queue(
    settings: Settings,
    *,
    storage: Storage,
    engine: ExecutionInterface,
    bus: EventBus,
    metrics: Metrics,
) -> StorageQueue:
    """The storage-lease queue, with the doorbell the settings name."""
    return StorageQueue(
        storage,
        engine,
        bus,
        metrics,
        settings.queue,
        worker=settings.execution.engine_id,
        doorbell=create_doorbell(settings, storage),
    )


def create_doorbell(settings: Settings, storage: Storage) -> Doorbell:
    """``local``: workers in this process. ``celery``: Celery tasks on Redis."""
    match settings.queue.backend:
        case "local":
            return InProcessDoorbell()
        case "celery":
            from assay.queue.celery_doorbell import CeleryDoorbell, celery_app  # noqa: PLC0415

            url = settings.redis.url
            timeout = settings.execution.max_timeout_seconds + 300
            app = celery_app(url, visibility_timeout=timeout)
            return CeleryDoorbell(app, url or "", storage.count_queued)
        case unknown:
            assert_never(unknown)
