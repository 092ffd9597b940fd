"""/api/v1/queue: depth, running, capacity, counts by status."""

from __future__ import annotations

from fastapi import APIRouter

from assay.api.deps import PlatformDep
from assay.api.schemas import QueueOut
from assay.storage import EvaluationStatus

__all__ = ["router"]

router = APIRouter(tags=["queue"])


@router.get("/queue", response_model=QueueOut)
async def queue(platform: PlatformDep) -> QueueOut:
    counts = await platform.storage.counts()
    stats = platform.queue.stats()
    return QueueOut(
        depth=counts[EvaluationStatus.QUEUED],
        running=stats.running,
        capacity=stats.capacity,
        max_queued=stats.max_queued,
        counts=counts,
    )
