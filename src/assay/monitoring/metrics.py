"""Prometheus metrics, in a registry of the platform's own (never the global one)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("assay_queue_depth", "Evaluations waiting to run", registry=r)
        self.running = Gauge("assay_evaluations_running", "Evaluations running now", registry=r)
        self.capacity = Gauge(
            "assay_queue_capacity", "Evaluations that may run at once", registry=r
        )
        self.submitted = Counter(
            "assay_evaluations_submitted", "Evaluations accepted into the queue", registry=r
        )
        self.rejected = Counter(
            "assay_evaluations_rejected",
            "Submissions refused because the queue was full",
            registry=r,
        )
        self.finished = Counter(
            "assay_evaluations", "Evaluations that ended, by verdict", ["status"], registry=r
        )
        self.queue_wait = Histogram(
            "assay_queue_wait_seconds",
            "Time from submission to start",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.execution_time = Histogram(
            "assay_execution_seconds",
            "Time from start to end of execution",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "assay_end_to_end_seconds",
            "Time from submission to a terminal state",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.engine_errors = Counter(
            "assay_engine_errors",
            "Failures of the execution engine, by error code",
            ["code"],
            registry=r,
        )

    def track(
        self, depth: Callable[[], float], running: Callable[[], float], capacity: int
    ) -> None:
        """Read queue depth and running count from the queue when scraped."""
        self.queue_depth.set_function(depth)
        self.running.set_function(running)
        self.capacity.set(capacity)

    def render(self) -> bytes:
        return generate_latest(self.registry)
