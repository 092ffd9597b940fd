"""The queue that holds evaluations in storage and runs them on an execution engine.
:class:`CeleryDoorbell` loads Celery on first use only."""

from typing import TYPE_CHECKING

from assay.lazy import lazy_names
from assay.queue.doorbell import Doorbell, InProcessDoorbell
from assay.queue.factory import create_doorbell, create_queue
from assay.queue.interface import EvaluationQueue, QueueStats
from assay.queue.storage_queue import StorageQueue

__all__ = [
    "CeleryDoorbell",
    "Doorbell",
    "EvaluationQueue",
    "InProcessDoorbell",
    "QueueStats",
    "StorageQueue",
    "create_doorbell",
    "create_queue",
]

if TYPE_CHECKING:
    from assay.queue.celery_doorbell import CeleryDoorbell


__getattr__ = lazy_names({"CeleryDoorbell": "assay.queue.celery_doorbell"})
