"""Observability: the event bus that streams evaluation events, and Prometheus metrics."""

from assay.monitoring.bus import ALL, EventBus, Notice, Subscription
from assay.monitoring.factory import create_bus
from assay.monitoring.metrics import Metrics, PoolCollector

__all__ = ["ALL", "EventBus", "Metrics", "Notice", "PoolCollector", "Subscription", "create_bus"]
