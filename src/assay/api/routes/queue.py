"""/api/v1/queue: depth, running, capacity, counts by status. Depth, running and counts
come from the database, so every replica answers alike; capacity is this process's."""

from __future__ import annotations

from fastapi import APIRouter

from assay.api.deps import EngineDep, QueueDep, StorageDep
from assay.api.schemas import PoolOut, QueueOut
from assay.api.strict_json import StrictJsonRoute
from assay.storage import EvaluationStatus

__all__ = ["router"]

router = APIRouter(tags=["queue"], route_class=StrictJsonRoute)


@router.get("/queue", response_model=QueueOut)
async def queue(storage: StorageDep, queue: QueueDep, engine: EngineDep) -> QueueOut:
    counts = await storage.counts()
    stats = queue.stats()
    pools = await engine.pool_stats()
    return QueueOut(
        depth=counts[EvaluationStatus.QUEUED],
        running=counts[EvaluationStatus.RUNNING],
        capacity=stats.capacity,
        max_queued=stats.max_queued,
        counts=counts,
        pool=[PoolOut.model_validate(stats, from_attributes=True) for stats in pools],
    )
