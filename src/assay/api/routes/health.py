"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from assay.api.deps import (
    EngineDep,
    MetricsDep,
    QueueDep,
    SettingsDep,
    StorageDep,
    require_api_key,
)
from assay.api.strict_json import StrictJsonRoute
from assay.errors import StorageError

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"], route_class=StrictJsonRoute)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Engine or storage not reachable."}})
async def readyz(
    settings: SettingsDep, engine: EngineDep, queue: QueueDep, storage: StorageDep
) -> JSONResponse:
    """Ready when the execution engine, storage and (for a worker) the broker answer."""
    checks: dict[str, Any] = {}
    ready = True
    if settings.queue.run_workers:
        health = await engine.check_health()
        checks["engine"] = {"ok": health.healthy, "detail": health.detail, **health.facts}
        ready &= health.healthy
    else:
        checks["engine"] = {"ok": True, "detail": "not used: other replicas run evaluations"}
    if (broker := await queue.check_broker()) is not None:
        checks["broker"] = {"ok": broker[0], "detail": broker[1]}
        # A worker without its broker gets no work; a replica still accepts and stores.
        ready &= broker[0] or not settings.queue.run_workers
    try:
        await storage.ping()
        checks["storage"] = {"ok": True, "detail": "ok"}
    except StorageError as exc:
        checks["storage"] = {"ok": False, "detail": exc.message}
        ready = False
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", dependencies=[Depends(require_api_key)], response_class=Response)
async def metrics(metrics: MetricsDep, engine: EngineDep, storage: StorageDep) -> Response:
    """Prometheus text format."""
    metrics.pool.update(await engine.pool_stats())
    try:
        metrics.queue_depth.set(await storage.count_queued())
    except StorageError as exc:  # the rest still renders; /readyz reports the storage
        logger.warning("assay_queue_depth not refreshed: %s", exc.message)
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
