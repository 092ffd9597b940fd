"""SQLAlchemy tables. Kept apart from the API's schemas and from the domain records."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiKeyRow",
    "Base",
    "EvaluationRow",
    "EventRow",
    "LabelRow",
    "SandboxEventRow",
    "SandboxRow",
]


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class EvaluationRow(Base):
    __tablename__ = "evaluations"

    #: Insertion order; the cursor for listing newest first.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)

    language: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(Text)
    stdin: Mapped[str] = mapped_column(Text, default="")
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timeout_seconds: Mapped[float | None] = mapped_column(Float)
    memory_mb: Mapped[int | None] = mapped_column(Integer)
    cpus: Mapped[float | None] = mapped_column(Float)
    output_limit_bytes: Mapped[int | None] = mapped_column(BigInteger)
    #: The request's compiler_options, args and compile limits, those it gave.
    program: Mapped[dict[str, Any]] = mapped_column(default=dict)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))

    exit_code: Mapped[int | None] = mapped_column(Integer)
    signal: Mapped[int | None] = mapped_column(Integer)
    stdout: Mapped[str | None] = mapped_column(Text)
    stderr: Mapped[str | None] = mapped_column(Text)
    stdout_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    stderr_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    cpu_time_seconds: Mapped[float | None] = mapped_column(Float)
    peak_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    compile_output: Mapped[str | None] = mapped_column(Text)
    compile_output_truncated: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default="0"
    )
    compile_duration_seconds: Mapped[float | None] = mapped_column(Float)

    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    executor: Mapped[str | None] = mapped_column(String(128))
    #: A running evaluation's worker renews this; once it has passed, the worker is presumed
    #: dead and the evaluation is taken back (re-queued or ended).
    lease_until: Mapped[datetime | None]
    #: When a cancel was asked for while it ran; the worker running it acts on it.
    cancel_requested_at: Mapped[datetime | None]
    batch_id: Mapped[str | None] = mapped_column(String(36), index=True)
    isolation: Mapped[str] = mapped_column(
        String(16), default="evaluation", server_default="evaluation"
    )

    __table_args__ = (Index("ix_evaluations_status_priority_seq", "status", "priority", "seq"),)


class LabelRow(Base):
    """One client label of an evaluation, for filtering by label."""

    __tablename__ = "evaluation_labels"

    evaluation_seq: Mapped[int] = mapped_column(
        ForeignKey("evaluations.seq", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))

    __table_args__ = (Index("ix_evaluation_labels_key_value", "key", "value"),)


class EventRow(Base):
    __tablename__ = "evaluation_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evaluation_seq: Mapped[int] = mapped_column(
        ForeignKey("evaluations.seq", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class SandboxRow(Base):
    """A live sandbox: its owner and state; its engine's description at creation."""

    __tablename__ = "sandboxes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)

    #: Counting and listing the running sandboxes, all or one key's.
    __table_args__ = (Index("ix_sandboxes_state_api_key_id", "state", "api_key_id"),)


class SandboxEventRow(Base):
    __tablename__ = "sandbox_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sandbox_id: Mapped[str] = mapped_column(ForeignKey("sandboxes.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index("ix_sandbox_events_sandbox_id_seq", "sandbox_id", "seq"),)
