"""Prometheus metrics, in a registry of the platform's own (never the global one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from assay.execution_engine import PoolStats

__all__ = ["Metrics", "PoolCollector"]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "assay_queue_depth",
            "Evaluations waiting to run (in the database every replica shares)",
            registry=r,
        )
        self.running = Gauge(
            "assay_evaluations_running", "Evaluations this process runs now", registry=r
        )
        self.capacity = Gauge(
            "assay_queue_capacity", "Evaluations this process may run at once", registry=r
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
        self.by_language = Counter(
            "assay_language_evaluations",
            "Evaluations that ended, by language and verdict",
            ["language", "status"],
            registry=r,
        )
        self.compile_time = Histogram(
            "assay_compile_seconds",
            "Time the compiler took, by language",
            ["language"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
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
        self.pool = PoolCollector(r)
        self.batch_programs = Counter(
            "assay_batch_programs", "Evaluations run with batch isolation", registry=r
        )
        self.batch_sandboxes = Gauge(
            "assay_batch_sandboxes_open",
            "Batch isolation's sandboxes open in this process, busy or idle",
            registry=r,
        )
        self.sandboxes_created = Counter(
            "assay_sandboxes_created",
            "Live sandboxes started, by whether they came from the warm pool",
            ["warm"],
            registry=r,
        )
        self.sandboxes_ended = Counter(
            "assay_sandboxes_ended",
            "Live sandboxes that ended, by reason (deleted, idle, lifetime, lost, ...)",
            ["reason"],
            registry=r,
        )
        self.sandbox_commands = Counter(
            "assay_sandbox_commands",
            "Commands run in live sandboxes, by outcome (exited, timed_out, exec_failure, error)",
            ["outcome"],
            registry=r,
        )
        self.sandbox_command_time = Histogram(
            "assay_sandbox_command_seconds",
            "Time a command in a live sandbox took",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sandbox_file_operations = Counter(
            "assay_sandbox_file_operations",
            "Files written to or read from live sandboxes, by outcome (ok, or the error code)",
            ["operation", "outcome"],
            registry=r,
        )
        self.sandbox_file_bytes = Counter(
            "assay_sandbox_file_bytes",
            "Bytes written to or read from live sandboxes' files",
            ["operation"],
            registry=r,
        )
        self.engine_errors = Counter(
            "assay_engine_errors",
            "Failures of the execution engine, by error code",
            ["code"],
            registry=r,
        )

    def track(self, running: Callable[[], float], capacity: int) -> None:
        """Read the running count from the queue when scraped (the depth is set by the
        caller from storage, with an await, just before rendering)."""
        self.running.set_function(running)
        self.capacity.set(capacity)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class PoolCollector(Collector):
    """The warm pools' state as of the last ``update`` (the caller refreshes it, with an
    await, just before rendering: pool stats may come from executor services)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.stats: list[PoolStats] = []
        registry.register(self)

    def update(self, stats: list[PoolStats]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        gauges = {
            "target": ("assay_pool_target", "Sandboxes the pool keeps ready"),
            "ready": ("assay_pool_ready", "Sandboxes ready now"),
            "creating": ("assay_pool_creating", "Sandboxes being created for the pool"),
            "refill_seconds": (
                "assay_pool_refill_seconds",
                "Mean time to create and start one pooled sandbox",
            ),
        }
        counters = {
            "hits": ("assay_pool_hits", "Executions served by a ready sandbox"),
            "misses": ("assay_pool_misses", "Executions that found the pool empty (ran cold)"),
            "created": ("assay_pool_created", "Sandboxes created for the pool"),
            "recycled": ("assay_pool_recycled", "Idle sandboxes replaced (too old, or died)"),
            "failures": ("assay_pool_failures", "Failed attempts to create a pooled sandbox"),
        }
        for field, (name, documentation) in gauges.items():
            gauge = GaugeMetricFamily(name, documentation, labels=["profile"])
            for stats in self.stats:
                value = getattr(stats, field)
                if value is not None:
                    gauge.add_metric([stats.profile], float(value))
            yield gauge
        for field, (name, documentation) in counters.items():
            counter = CounterMetricFamily(name, documentation, labels=["profile"])
            for stats in self.stats:
                counter.add_metric([stats.profile], float(getattr(stats, field)))
            yield counter
