"""The storage layer's values: what the rest of the platform reads and writes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from assay.execution_engine import ExecutionRequest

__all__ = [
    "TERMINAL_STATUSES",
    "ApiKey",
    "Evaluation",
    "EvaluationStatus",
    "Event",
    "Isolation",
    "NewEvaluation",
    "Outcome",
    "Page",
]


class EvaluationStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    OOM = "oom"
    OUTPUT_LIMIT = "output_limit"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(EvaluationStatus) - {
    EvaluationStatus.QUEUED,
    EvaluationStatus.RUNNING,
}


#: ``evaluation``: a fresh sandbox for each evaluation (the default). ``batch``: a batch's
#: evaluations may run one after another in a sandbox of that batch, reset between them.
Isolation = Literal["evaluation", "batch"]


@dataclass(frozen=True, slots=True)
class NewEvaluation:
    request: ExecutionRequest
    priority: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    #: The submission this evaluation came in with, when it came in a batch.
    batch_id: str | None = None
    isolation: Isolation = "evaluation"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an evaluation ended: the engine's result fields, or an error."""

    status: EvaluationStatus
    exit_code: int | None = None
    signal: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_seconds: float | None = None
    cpu_time_seconds: float | None = None
    peak_memory_bytes: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    id: str
    seq: int
    status: EvaluationStatus
    priority: int
    request: ExecutionRequest
    labels: dict[str, str]
    idempotency_key: str | None
    outcome: Outcome | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    executor: str | None
    batch_id: str | None = None
    isolation: Isolation = "evaluation"


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    evaluation_id: str
    type: str
    at: datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Evaluation]
    next_cursor: str | None
