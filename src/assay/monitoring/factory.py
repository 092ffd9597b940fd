"""Choosing the event bus from settings."""

from __future__ import annotations

from typing import assert_never

from assay.config import Settings
from assay.monitoring.bus import EventBus

__all__ = ["create_bus"]


def create_bus(settings: Settings) -> EventBus:
    """In this process only, or between replicas over Redis (``ASSAY_REDIS__URL``)."""
    match settings.bus_backend:
        case "memory":
            return EventBus()
        case "redis":
            from assay.monitoring.redis_bus import RedisEventBus  # noqa: PLC0415 - only with Redis

            return RedisEventBus(settings.redis.url or "")
        case unknown:
            assert_never(unknown)
