"""Durable state: evaluations, their events, live sandboxes and theirs, and API keys
(SQLAlchemy + Alembic)."""

from assay.storage.interface import Listener, Storage
from assay.storage.records import (
    RESULT_FIELDS,
    SANDBOX_LIMITS,
    STATE_CHANGES,
    TERMINAL_EVENTS,
    TERMINAL_STATUSES,
    ApiKey,
    Evaluation,
    EvaluationStatus,
    Event,
    EventType,
    Isolation,
    NewEvaluation,
    Outcome,
    Page,
    SandboxEvent,
    SandboxEventType,
    SandboxRecord,
    SandboxState,
)

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
    "Listener",
    "NewEvaluation",
    "Outcome",
    "Page",
    "SandboxEvent",
    "SandboxEventType",
    "SandboxRecord",
    "SandboxState",
    "Storage",
    "create_storage",
]


def create_storage(url: str) -> Storage:
    """The storage backend for ``url`` (a SQLAlchemy URL: SQLite or PostgreSQL)."""
    from assay.storage.sql import SqlStorage  # noqa: PLC0415 - keep SQLAlchemy off import paths

    return SqlStorage(url)
