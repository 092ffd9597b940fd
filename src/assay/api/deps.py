"""FastAPI dependencies: each route asks for the parts it uses (storage, queue, bus,
settings…), never the whole platform; and API-key authentication."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from assay.api.auth import ApiKeys
from assay.config import Settings
from assay.execution_engine import ExecutionInterface
from assay.monitoring import EventBus, Metrics
from assay.queue import EvaluationQueue
from assay.storage import Storage

__all__ = [
    "BusDep",
    "EngineDep",
    "MetricsDep",
    "QueueDep",
    "Services",
    "SettingsDep",
    "StorageDep",
    "bind",
    "require_api_key",
]

_bearer = HTTPBearer(auto_error=False, description="An API key made with `assay keys create`.")


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes are given: built by the composition root (``assay.app``)."""

    settings: Settings
    storage: Storage
    queue: EvaluationQueue
    bus: EventBus
    engine: ExecutionInterface
    metrics: Metrics
    keys: ApiKeys


def bind(app: FastAPI, services: Services) -> None:
    """Give ``app``'s routes their services (in its lifespan, before it serves)."""
    app.state.services = services


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _part(name: str) -> Any:
    """A dependency on one of the services, by name (async: FastAPI runs a plain function
    in its thread pool, a hop per dependency per request)."""

    async def get(request: Request) -> object:
        return getattr(_services(request), name)

    return Depends(get)


SettingsDep = Annotated[Settings, _part("settings")]
StorageDep = Annotated[Storage, _part("storage")]
QueueDep = Annotated[EvaluationQueue, _part("queue")]
BusDep = Annotated[EventBus, _part("bus")]
EngineDep = Annotated[ExecutionInterface, _part("engine")]
MetricsDep = Annotated[Metrics, _part("metrics")]


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Open when no API key exists (only allowed on loopback); otherwise a valid key, kept
    as ``request.state.api_key`` (None on an open server)."""
    if credentials is None:
        key = await _services(request).keys.check(None, None)
    else:
        key = await _services(request).keys.check(credentials.scheme, credentials.credentials)
    request.state.api_key = key
