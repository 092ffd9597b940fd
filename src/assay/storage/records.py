"""The storage layer's values: what the rest of the platform reads and writes."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from assay.execution_engine import ExecutionRequest, ExecutionResult

__all__ = [
    "RESULT_FIELDS",
    "SANDBOX_LIMITS",
    "STATE_CHANGES",
    "TERMINAL_EVENTS",
    "TERMINAL_STATUSES",
    "ApiKey",
    "Evaluation",
    "EvaluationStatus",
    "Event",
    "EventType",
    "Isolation",
    "NewEvaluation",
    "Outcome",
    "Page",
    "SandboxEvent",
    "SandboxEventType",
    "SandboxRecord",
    "SandboxState",
]


class EvaluationStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    OOM = "oom"
    OUTPUT_LIMIT = "output_limit"
    COMPILE_ERROR = "compile_error"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(EvaluationStatus) - {
    EvaluationStatus.QUEUED,
    EvaluationStatus.RUNNING,
}


class EventType(enum.StrEnum):
    """What an evaluation's stored events (and the bus notices announcing them) say."""

    QUEUED = "queued"
    STARTED = "started"
    #: A chunk of live output, ``{"stream", "text"}``.
    OUTPUT = "output"
    #: Someone asked to cancel it while it ran; whichever worker runs it acts on it.
    CANCEL_REQUESTED = "cancel_requested"
    #: Back in the queue (a lost sandbox, a stopped platform, an expired lease).
    REQUEUED = "requeued"
    FINISHED = "finished"
    CANCELLED = "cancelled"


#: The last event of every evaluation: a stream ends after one of these.
TERMINAL_EVENTS = frozenset({EventType.FINISHED, EventType.CANCELLED})
#: Events that change an evaluation's status (not output, not cancel requests).
STATE_CHANGES = frozenset(
    {EventType.QUEUED, EventType.STARTED, EventType.REQUEUED, *TERMINAL_EVENTS}
)


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
    """How an evaluation ended: the engine's result (its fields, :data:`RESULT_FIELDS`, are
    :class:`ExecutionResult`'s), or an error of the platform's with only ``error`` set."""

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
    compile_output: str | None = None
    compile_output_truncated: bool = False
    compile_duration_seconds: float | None = None

    @classmethod
    def of(cls, result: ExecutionResult) -> Outcome:
        """The outcome of an execution that ended with ``result``."""
        fields = result.model_dump(include=set(RESULT_FIELDS))
        return cls(status=EvaluationStatus(result.status.value), **fields)

    def fields(self) -> dict[str, Any]:
        """Every result field by name (what storage keeps and the API shows)."""
        return {name: getattr(self, name) for name in RESULT_FIELDS}


#: The result's fields, besides the status: one list for storage, queue and API.
RESULT_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Outcome) if f.name != "status"
)


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
    #: The engine id of the worker that runs (or last ran) it.
    worker: str | None
    batch_id: str | None = None
    isolation: Isolation = "evaluation"
    #: A cancel was asked for while it ran (the running worker acts on it).
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    evaluation_id: str
    type: EventType
    at: datetime
    data: dict[str, Any]
    #: With a terminal event just recorded: the evaluation as it ended (never stored).
    evaluation: Evaluation | None = None


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


# -- live sandboxes ----------------------------------------------------------------------


class SandboxState(enum.StrEnum):
    RUNNING = "running"
    ENDED = "ended"


class SandboxEventType(enum.StrEnum):
    """What a live sandbox's stored events say."""

    #: ``{"limits", "user", "warm"}``: its first event.
    CREATED = "created"
    #: One command: its argv (cut to 4 KiB), exit, sizes and duration, or ``error``.
    EXEC = "exec"
    #: ``{"path", "size", "duration_seconds"}``, or ``{"path", "error"}``.
    WRITE_FILE = "write_file"
    READ_FILE = "read_file"
    #: ``{"reason"}``: its last event.
    ENDED = "ended"


#: The limits a sandbox's ``created`` event repeats of its info.
SANDBOX_LIMITS = ("memory_mb", "cpus", "pids_limit", "idle_timeout_seconds", "lifetime_seconds")


@dataclass(frozen=True, slots=True)
class SandboxRecord:
    """A live sandbox as storage keeps it: whose it is, whether it still runs, and what its
    engine said of it when it was created."""

    id: str
    #: The API key that created it; None on a server without keys.
    api_key_id: int | None
    state: SandboxState
    created_at: datetime
    ended_at: datetime | None
    #: An ``assay.execution_engine.EndReason`` value, once it has ended.
    end_reason: str | None
    #: The engine's ``SandboxInfo`` at creation, as JSON.
    info: dict[str, Any]
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class SandboxEvent:
    seq: int
    sandbox_id: str
    type: SandboxEventType
    at: datetime
    data: dict[str, Any]
