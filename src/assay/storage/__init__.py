"""Durable state: evaluations, their events and API keys (SQLAlchemy + Alembic)."""

from assay.storage.interface import Storage
from assay.storage.records import (
    TERMINAL_STATUSES,
    ApiKey,
    Evaluation,
    EvaluationStatus,
    Event,
    Isolation,
    NewEvaluation,
    Outcome,
    Page,
)

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
    "Storage",
    "create_storage",
]


def create_storage(url: str) -> Storage:
    """The storage backend for ``url`` (a SQLAlchemy URL: SQLite or PostgreSQL)."""
    from assay.storage.sql import SqlStorage  # noqa: PLC0415 - keep SQLAlchemy off import paths

    return SqlStorage(url)
