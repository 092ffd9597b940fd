"""Queues that hold evaluations and run them on an execution engine."""

from assay.queue.interface import EvaluationQueue, QueueStats
from assay.queue.local import LocalQueue

__all__ = ["EvaluationQueue", "LocalQueue", "QueueStats"]
