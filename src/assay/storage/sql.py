"""SQLAlchemy storage: SQLite (default, one file) or PostgreSQL, by URL."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Connection,
    Row,
    Table,
    bindparam,
    case,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from assay.errors import (
    IdempotencyConflictError,
    InvalidCursorError,
    NotFoundError,
    QueueFullError,
    StorageError,
)
from assay.execution_engine import ExecutionRequest
from assay.storage.interface import DEFAULT_LEASE_SECONDS, Storage
from assay.storage.models import (
    ApiKeyRow,
    EvaluationRow,
    EventRow,
    LabelRow,
    SandboxEventRow,
    SandboxRow,
)
from assay.storage.records import (
    RESULT_FIELDS,
    SANDBOX_LIMITS,
    TERMINAL_EVENTS,
    ApiKey,
    Evaluation,
    EvaluationStatus,
    Event,
    EventType,
    NewEvaluation,
    Outcome,
    Page,
    SandboxEvent,
    SandboxEventType,
    SandboxRecord,
    SandboxState,
)

__all__ = ["InvalidCursorError", "SqlStorage"]

_T = TypeVar("_T")
_P = ParamSpec("_P")

logger = logging.getLogger(__name__)

KEY_PREFIX = "ak_"
_QUEUED = EvaluationStatus.QUEUED.value
_RUNNING = EvaluationStatus.RUNNING.value
_SANDBOX_RUNNING = SandboxState.RUNNING.value
_SANDBOX_ENDED = SandboxState.ENDED.value
#: The tables under the hot path (create, claim, finish): written with SQLAlchemy Core
#: statements built once (their cache keys too) with RETURNING, one round trip each, on the
#: session's connection: a third of the CPU of the ORM's unit of work.
_EVALUATIONS = cast(Table, EvaluationRow.__table__)
_EVENTS = cast(Table, EventRow.__table__)
_LABELS = cast(Table, LabelRow.__table__)
_E = _EVALUATIONS.c
_INSERT_EVALUATION = insert(_EVALUATIONS).returning(*_E)
_INSERT_LABELS = insert(_LABELS)
_INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.id)
_COUNT_QUEUED = select(func.count()).select_from(_EVALUATIONS).where(_E.status == _QUEUED)
#: The next queued evaluation (highest priority, then oldest), running now.
_CLAIM = (
    update(_EVALUATIONS)
    .where(
        _E.seq
        == select(_E.seq)
        .where(_E.status == _QUEUED)
        .order_by(_E.priority.desc(), _E.seq)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery(),
        _E.status == _QUEUED,
    )
    .values(
        status=_RUNNING,
        attempts=_E.attempts + 1,
        started_at=bindparam("claimed_at"),
        executor=bindparam("claimer"),
        lease_until=bindparam("lease"),
    )
    .returning(*_E)
)
#: A running evaluation's attempt, ended (the columns set are the parameters' other keys).
_FINISH = (
    update(_EVALUATIONS)
    .where(
        _E.id == bindparam("finished_id"),
        _E.status == _RUNNING,
        _E.attempts == bindparam("finished_attempt"),
    )
    .returning(*_E)
)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # SQLite drops the zone; everything stored is UTC
    return value


def request_hash(new: NewEvaluation) -> str:
    body = {
        "request": new.request.model_dump(mode="json"),
        "priority": new.priority,
        "labels": new.labels,
    }
    if new.isolation != "evaluation":  # keeps the hashes stored before isolation existed
        body["isolation"] = new.isolation
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _threaded(
    method: Callable[Concatenate[SqlStorage, _P], _T],
) -> Callable[Concatenate[SqlStorage, _P], Coroutine[Any, Any, _T]]:
    """The storage method, run on the storage thread(s) (SQLAlchemy's sync drivers, off the
    event loop); the events it recorded go to the listener once committed."""

    async def call(self: SqlStorage, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        work = functools.partial(self._recording, method, self, *args, **kwargs)
        result, events = await asyncio.get_running_loop().run_in_executor(self._thread, work)
        if events:
            self._announce(events)
        return result

    functools.update_wrapper(call, method)
    return call


class SqlStorage(Storage):
    """Storage on a SQLAlchemy URL: ``sqlite:///path`` or ``postgresql+psycopg://…``."""

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StorageError(f"invalid database URL: {exc}") from exc
        # Async driver names are accepted for convenience; the work runs on sync drivers in
        # threads (one thread for SQLite, which allows a single writer), which is faster
        # than an async driver's hop per statement.
        driver = {"sqlite+aiosqlite": "sqlite", "postgresql+asyncpg": "postgresql+psycopg"}
        parsed = parsed.set(drivername=driver.get(parsed.drivername, parsed.drivername))
        self._sqlite = parsed.get_backend_name() == "sqlite"
        options: dict[str, Any] = {}
        if self._sqlite:
            options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            options.update(pool_size=8, max_overflow=8, pool_pre_ping=True)
        try:
            self._engine = create_engine(parsed, **options)
        except (ArgumentError, ImportError) as exc:
            raise StorageError(f"cannot use database URL {parsed!r}: {exc}") from exc
        if self._sqlite:
            event.listen(self._engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._thread = ThreadPoolExecutor(
            1 if self._sqlite else 8, thread_name_prefix="assay-storage"
        )
        #: Per storage thread: the events committed by the call it runs.
        self._committed = threading.local()

    def _recording(
        self, method: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> tuple[_T, list[Event]]:
        events: list[Event] = []
        self._committed.events = events
        try:
            return method(*args, **kwargs), events
        finally:
            self._committed.events = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._engine.dispose)
        self._thread.shutdown(wait=True)

    @_threaded
    def start(self) -> None:
        try:
            with self._engine.begin() as connection:
                _upgrade(connection)
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot open or migrate the database: {exc}") from exc

    @_threaded
    def ping(self) -> None:
        with self._session() as session:
            session.execute(select(1))

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction. One thread (SQLite) or row locks (PostgreSQL) order the writers.
        Events added with :func:`_record` are handed to the listener once it commits."""
        recorded: list[Callable[[], Event]] = []
        try:
            with self._sessions() as session, session.begin():
                session.info["recorded"] = recorded
                yield session
        except IntegrityError as exc:  # only a concurrent twin of an idempotency key can do this
            raise IdempotencyConflictError(
                "a concurrent request created the same evaluation; retry"
            ) from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc.__class__.__name__}: {exc}") from exc
        events = getattr(self._committed, "events", None)
        if events is not None:
            events.extend(make() for make in recorded)

    # -- evaluations ---------------------------------------------------------------------

    @_threaded
    def create(
        self, new: Sequence[NewEvaluation], *, max_queued: int
    ) -> list[tuple[Evaluation, bool]]:
        with self._session() as session:
            results: list[tuple[Evaluation, bool] | None] = []
            fresh: list[tuple[int, NewEvaluation, str]] = []
            for index, item in enumerate(new):
                digest = request_hash(item)
                if item.idempotency_key is not None:
                    existing = session.scalar(
                        select(EvaluationRow).where(
                            EvaluationRow.idempotency_key == item.idempotency_key
                        )
                    )
                    if existing is not None:
                        if existing.request_hash != digest:
                            raise IdempotencyConflictError(
                                f"Idempotency-Key {item.idempotency_key!r} was used for a "
                                "different request"
                            )
                        results.append((_evaluation(existing), False))
                        continue
                results.append(None)
                fresh.append((index, item, digest))
            if fresh:
                queued = _count_queued(session)
                if queued + len(fresh) > max_queued:
                    raise QueueFullError(
                        f"the queue holds {queued} evaluations and takes at most {max_queued}; "
                        "retry later",
                    )
            now = _now()
            connection = session.connection()
            for index, item, digest in fresh:
                request = item.request
                values = {
                    "id": str(uuid.uuid4()),
                    "status": _QUEUED,
                    "priority": item.priority,
                    "language": request.language,
                    "code": request.code,
                    "stdin": request.stdin,
                    "files": dict(request.files),
                    "timeout_seconds": request.timeout_seconds,
                    "memory_mb": request.memory_mb,
                    "cpus": request.cpus,
                    "output_limit_bytes": request.output_limit_bytes,
                    "program": _program(request),
                    "labels": dict(item.labels),
                    "idempotency_key": item.idempotency_key,
                    "request_hash": digest,
                    "batch_id": item.batch_id,
                    "isolation": item.isolation,
                    "created_at": now,
                    "attempts": 0,
                    "stdout_truncated": False,
                    "stderr_truncated": False,
                    "compile_output_truncated": False,
                }
                row = connection.execute(_INSERT_EVALUATION, values).one()
                if item.labels:
                    connection.execute(
                        _INSERT_LABELS,
                        [
                            {"evaluation_seq": row.seq, "key": k, "value": v}
                            for k, v in item.labels.items()
                        ],
                    )
                _insert_event(session, row, EventType.QUEUED, {}, now)
                results[index] = (_evaluation(row), True)
            return [result for result in results if result is not None]

    @_threaded
    def get(self, evaluation_id: str) -> Evaluation:
        with self._session() as session:
            return _evaluation(_row(session, evaluation_id))

    @_threaded
    def list_evaluations(
        self,
        *,
        statuses: Sequence[EvaluationStatus] = (),
        labels: dict[str, str] | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> Page:
        query = select(EvaluationRow).order_by(EvaluationRow.seq.desc()).limit(limit + 1)
        if statuses:
            query = query.where(EvaluationRow.status.in_([s.value for s in statuses]))
        for key, value in (labels or {}).items():
            query = query.where(
                select(LabelRow.evaluation_seq)
                .where(
                    LabelRow.evaluation_seq == EvaluationRow.seq,
                    LabelRow.key == key,
                    LabelRow.value == value,
                )
                .exists()
            )
        if cursor is not None:
            query = query.where(EvaluationRow.seq < _decode_cursor(cursor))
        with self._session() as session:
            rows = list(session.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].seq) if more and rows else None
        return Page(items=[_evaluation(row) for row in rows], next_cursor=next_cursor)

    @_threaded
    def claim_next(
        self, worker: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> Evaluation | None:
        now = _now()
        claim = {
            "claimed_at": now,
            "claimer": worker,
            "lease": now + timedelta(seconds=lease_seconds),
        }
        with self._session() as session:
            row = session.connection().execute(_CLAIM, claim).one_or_none()
            if row is None:
                return None
            data = {"attempt": row.attempts, "executor": worker}
            _insert_event(session, row, EventType.STARTED, data, now)
            return _evaluation(row)

    @_threaded
    def finish(
        self,
        evaluation_id: str,
        attempt: int,
        outcome: Outcome,
        *,
        output: Sequence[dict[str, Any]] = (),
    ) -> Evaluation | None:
        now = _now()
        end = {"finished_id": evaluation_id, "finished_attempt": attempt, **_ended(outcome, now)}
        with self._session() as session:
            row = session.connection().execute(_FINISH, end).one_or_none()
            if row is None:
                _row(session, evaluation_id)  # NotFoundError unless it exists
                return None  # it is not this attempt's to end any more
            for chunk in output:
                _insert_event(session, row, EventType.OUTPUT, dict(chunk), now)
            ended = _evaluation(row)
            _insert_event(session, row, *_terminal_event(outcome), now, ended=ended)
            return ended

    @_threaded
    def cancel(self, evaluation_id: str) -> tuple[Evaluation, bool]:
        with self._session() as session:
            row = _row(session, evaluation_id)
            now = _now()
            if row.status == _QUEUED:
                outcome = Outcome(status=EvaluationStatus.CANCELLED, error="cancelled while queued")
                _end(session, row, outcome, now)
                session.flush()
                return _evaluation(row), True
            if row.status == _RUNNING and row.cancel_requested_at is None:
                row.cancel_requested_at = now
                _record(session, row, EventType.CANCEL_REQUESTED, {}, now)
                session.flush()
            return _evaluation(row), False

    @_threaded
    def cancel_requests(self, worker: str, evaluation_ids: Sequence[str]) -> set[str]:
        if not evaluation_ids:
            return set()
        with self._session() as session:
            asked = session.scalars(
                select(EvaluationRow.id).where(
                    EvaluationRow.id.in_(list(evaluation_ids)),
                    EvaluationRow.status == _RUNNING,
                    EvaluationRow.executor == worker,
                    EvaluationRow.cancel_requested_at.is_not(None),
                )
            )
            return set(asked)

    @_threaded
    def requeue(self, evaluation_id: str, attempt: int, reason: str) -> bool:
        with self._session() as session:
            row = _row(session, evaluation_id)
            if row.status != _RUNNING or row.attempts != attempt:
                return False
            _take_back(session, [row], max_attempts=attempt + 1, reason=reason)
            return True

    @_threaded
    def recover_interrupted(self, worker: str, max_attempts: int) -> tuple[list[str], list[str]]:
        with self._session() as session:
            rows = session.scalars(
                select(EvaluationRow).where(
                    EvaluationRow.status == _RUNNING, EvaluationRow.executor == worker
                )
            )
            return _take_back(
                session, list(rows), max_attempts, "the platform stopped while this ran"
            )

    @_threaded
    def renew_leases(
        self, worker: str, evaluation_ids: Sequence[str], lease_seconds: float
    ) -> set[str]:
        if not evaluation_ids:
            return set()
        with self._session() as session:
            held = session.scalars(
                update(EvaluationRow)
                .where(
                    EvaluationRow.id.in_(list(evaluation_ids)),
                    EvaluationRow.status == _RUNNING,
                    EvaluationRow.executor == worker,
                )
                .values(lease_until=_now() + timedelta(seconds=lease_seconds))
                .returning(EvaluationRow.id)
            )
            return set(held)

    @_threaded
    def recover_expired(self, max_attempts: int) -> tuple[list[str], list[str]]:
        with self._session() as session:
            rows = session.scalars(
                select(EvaluationRow)
                .where(EvaluationRow.status == _RUNNING, EvaluationRow.lease_until < _now())
                .with_for_update(skip_locked=True)
            )
            return _take_back(
                session, list(rows), max_attempts, "its worker stopped renewing its lease"
            )

    @_threaded
    def counts(self) -> dict[EvaluationStatus, int]:
        with self._session() as session:
            rows = session.execute(
                select(EvaluationRow.status, func.count()).group_by(EvaluationRow.status)
            )
            found = {EvaluationStatus(status): count for status, count in rows.all()}
        return {status: found.get(status, 0) for status in EvaluationStatus}

    @_threaded
    def count_queued(self) -> int:
        with self._session() as session:
            return _count_queued(session)

    # -- events --------------------------------------------------------------------------

    @_threaded
    def add_event(self, evaluation_id: str, type_: EventType, data: dict[str, Any]) -> Event:
        with self._session() as session:
            row = _row(session, evaluation_id)
            event_row = _record(session, row, type_, data, _now())
            session.flush()
            return _event(event_row, row)

    @_threaded
    def events(self, evaluation_id: str, *, after: int = 0, limit: int = 1000) -> list[Event]:
        with self._session() as session:
            row = _row(session, evaluation_id)
            rows = session.scalars(
                select(EventRow)
                .where(EventRow.evaluation_seq == row.seq, EventRow.id > after)
                .order_by(EventRow.id)
                .limit(limit)
            )
            return [_event(event_row, row, terminal_state=False) for event_row in rows]

    # -- live sandboxes ------------------------------------------------------------------

    @_threaded
    def add_sandbox(self, info: dict[str, Any], api_key_id: int | None) -> SandboxRecord:
        sandbox_id = str(info["id"])
        with self._session() as session:
            if session.get(SandboxRow, sandbox_id) is not None:
                raise StorageError(f"a sandbox with id {sandbox_id!r} is already stored")
            now = _now()
            row = SandboxRow(
                id=sandbox_id,
                api_key_id=api_key_id,
                state=_SANDBOX_RUNNING,
                created_at=now,
                info=dict(info),
                labels=dict(info.get("labels") or {}),
            )
            session.add(row)
            session.flush()  # the event's foreign key
            created = {
                "limits": {name: info.get(name) for name in SANDBOX_LIMITS},
                "user": info.get("user"),
                "warm": info.get("warm"),
            }
            _record_sandbox(session, sandbox_id, SandboxEventType.CREATED, created, now)
            return _sandbox(row)

    @_threaded
    def get_sandbox_record(self, sandbox_id: str) -> SandboxRecord:
        with self._session() as session:
            return _sandbox(_sandbox_row(session, sandbox_id))

    @_threaded
    def list_sandbox_records(
        self,
        *,
        api_key_id: int | None = None,
        state: SandboxState | None = None,
        limit: int = 100,
    ) -> list[SandboxRecord]:
        running_first = case((SandboxRow.state == _SANDBOX_RUNNING, 0), else_=1)
        query = (
            select(SandboxRow)
            .order_by(running_first, SandboxRow.created_at.desc(), SandboxRow.id)
            .limit(limit)
        )
        if api_key_id is not None:
            query = query.where(SandboxRow.api_key_id == api_key_id)
        if state is not None:
            query = query.where(SandboxRow.state == state.value)
        with self._session() as session:
            return [_sandbox(row) for row in session.scalars(query)]

    @_threaded
    def end_sandbox_record(
        self, sandbox_id: str, reason: str, at: datetime
    ) -> tuple[SandboxRecord, bool]:
        with self._session() as session:
            row = _sandbox_row(session, sandbox_id, lock=True)
            if row.state == _SANDBOX_ENDED:
                return _sandbox(row), False
            at = _utc(at) or _now()
            row.state = _SANDBOX_ENDED
            row.ended_at = at
            row.end_reason = str(reason)
            _record_sandbox(
                session, sandbox_id, SandboxEventType.ENDED, {"reason": str(reason)}, at
            )
            session.flush()
            return _sandbox(row), True

    @_threaded
    def count_running_sandboxes(self, api_key_id: int | None) -> int:
        query = (
            select(func.count()).select_from(SandboxRow).where(SandboxRow.state == _SANDBOX_RUNNING)
        )
        if api_key_id is not None:
            query = query.where(SandboxRow.api_key_id == api_key_id)
        with self._session() as session:
            return session.scalar(query) or 0

    @_threaded
    def add_sandbox_event(
        self, sandbox_id: str, type_: SandboxEventType, data: dict[str, Any]
    ) -> SandboxEvent:
        with self._session() as session:
            _sandbox_row(session, sandbox_id)
            event_row = _record_sandbox(session, sandbox_id, type_, data, _now())
            session.flush()
            return _sandbox_event(event_row)

    @_threaded
    def sandbox_events(
        self, sandbox_id: str, *, after: int = 0, limit: int = 1000
    ) -> list[SandboxEvent]:
        with self._session() as session:
            _sandbox_row(session, sandbox_id)
            rows = session.scalars(
                select(SandboxEventRow)
                .where(SandboxEventRow.sandbox_id == sandbox_id, SandboxEventRow.seq > after)
                .order_by(SandboxEventRow.seq)
                .limit(limit)
            )
            return [_sandbox_event(row) for row in rows]

    # -- API keys ------------------------------------------------------------------------

    @_threaded
    def create_api_key(self, name: str) -> tuple[ApiKey, str]:
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self._session() as session:
            row = ApiKeyRow(
                name=name, prefix=secret[:10], key_hash=_hash_secret(secret), created_at=_now()
            )
            session.add(row)
            session.flush()
            return _api_key(row), secret

    @_threaded
    def list_api_keys(self) -> list[ApiKey]:
        with self._session() as session:
            return [
                _api_key(row) for row in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))
            ]

    @_threaded
    def revoke_api_key(self, key_id: int) -> ApiKey:
        with self._session() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFoundError(f"no API key with id {key_id}")
            if row.revoked_at is None:
                row.revoked_at = _now()
            return _api_key(row)

    @_threaded
    def has_active_api_keys(self) -> bool:
        with self._session() as session:
            found = session.scalar(
                select(ApiKeyRow.id).where(ApiKeyRow.revoked_at.is_(None)).limit(1)
            )
            return found is not None

    @_threaded
    def verify_api_key(self, secret: str) -> ApiKey | None:
        with self._session() as session:
            row = session.scalar(
                select(ApiKeyRow).where(
                    ApiKeyRow.key_hash == _hash_secret(secret), ApiKeyRow.revoked_at.is_(None)
                )
            )
            return None if row is None else _api_key(row)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        "busy_timeout=30000",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


#: Serialises migrations of processes starting together on one PostgreSQL database (``_upgrade``).
_MIGRATION_LOCK = 0x61737361  # "assa"


def _upgrade(connection: Connection) -> None:
    # Processes starting together on a fresh database migrate one after the other: the lock
    # is held until this transaction ends, and the others then find the schema up to date.
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    elif connection.dialect.name == "sqlite":  # the write lock now, not at the first write
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    config = Config()
    config.set_main_option("script_location", str(resources.files("assay.storage") / "migrations"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _count_queued(session: Session) -> int:
    """Queued evaluations: a range of the status index, not a pass over every row."""
    return session.connection().execute(_COUNT_QUEUED).scalar_one()


def _row(session: Session, evaluation_id: str) -> EvaluationRow:
    row = session.scalar(select(EvaluationRow).where(EvaluationRow.id == evaluation_id))
    if row is None:
        raise NotFoundError(f"no evaluation with id {evaluation_id!r}")
    return row


def _record(
    session: Session, row: EvaluationRow, type_: EventType, data: dict[str, Any], now: datetime
) -> EventRow:
    """Add an event of ``row``'s; the storage's listener hears of it once committed."""
    event_row = EventRow(evaluation_seq=row.seq, type=type_.value, at=now, data=data)
    session.add(event_row)
    session.info["recorded"].append(lambda: _event(event_row, row))
    return event_row


def _insert_event(
    session: Session,
    row: Row[Any],
    type_: EventType,
    data: dict[str, Any],
    now: datetime,
    *,
    ended: Evaluation | None = None,
) -> None:
    """:func:`_record` for a row written with Core; ``ended``: the evaluation, with a
    terminal event."""
    values = {"evaluation_seq": row.seq, "type": type_.value, "at": now, "data": data}
    event_id = session.connection().execute(_INSERT_EVENT, values).scalar_one()
    recorded = Event(
        id=event_id, evaluation_id=row.id, type=type_, at=now, data=data, evaluation=ended
    )
    session.info["recorded"].append(lambda: recorded)


def _end(session: Session, row: EvaluationRow, outcome: Outcome, now: datetime) -> None:
    """Record ``outcome`` on the row, with its terminal event."""
    for name, value in _ended(outcome, now).items():
        setattr(row, name, value)
    _record(session, row, *_terminal_event(outcome), now)


def _ended(outcome: Outcome, now: datetime) -> dict[str, Any]:
    """The columns of an evaluation that ended with ``outcome``."""
    values = {
        name: _storable(value) if isinstance(value, str) else value
        for name, value in outcome.fields().items()
    }
    return {**values, "status": outcome.status.value, "finished_at": now, "lease_until": None}


def _terminal_event(outcome: Outcome) -> tuple[EventType, dict[str, Any]]:
    cancelled = outcome.status is EvaluationStatus.CANCELLED
    data = {name: getattr(outcome, name) for name in _TERMINAL_DATA}
    return EventType.CANCELLED if cancelled else EventType.FINISHED, data


#: What a terminal event's data repeats of the outcome.
_TERMINAL_DATA = ("status", "exit_code", "signal", "duration_seconds", "error")


def _storable(text: str | None) -> str | None:
    """``text`` as a text column can hold it on every database: PostgreSQL's cannot hold NUL,
    so a program's NUL bytes are kept as U+FFFD, as its invalid UTF-8 already is."""
    return None if text is None else text.replace("\x00", "\ufffd")


def _take_back(
    session: Session, rows: list[EvaluationRow], max_attempts: int, reason: str
) -> tuple[list[str], list[str]]:
    """Interrupted runs: back to the queue (a ``requeued`` event), or ended: ``cancelled``
    when a cancel was asked for, ``error`` after ``max_attempts``. Returns (requeued ids,
    ended ids)."""
    requeued: list[str] = []
    ended: list[str] = []
    now = _now()
    for row in rows:
        if row.cancel_requested_at is not None:
            outcome = Outcome(status=EvaluationStatus.CANCELLED, error=f"cancelled ({reason})")
        elif row.attempts < max_attempts:
            row.status = _QUEUED
            row.started_at = None
            row.lease_until = None
            _record(session, row, EventType.REQUEUED, {"reason": reason}, now)
            requeued.append(row.id)
            continue
        else:
            outcome = Outcome(
                status=EvaluationStatus.ERROR,
                error=f"interrupted {row.attempts} times ({reason}); not retried",
            )
        _end(session, row, outcome, now)
        ended.append(row.id)
    return requeued, ended


#: The request's fields kept in the ``program`` column, when given.
_PROGRAM_FIELDS = ("compiler_options", "args", "compile_timeout_seconds", "compile_memory_mb")


def _program(request: ExecutionRequest) -> dict[str, Any]:
    given = request.model_dump(include=set(_PROGRAM_FIELDS), mode="json")
    return {key: value for key, value in given.items() if value not in (None, [], ())}


def _evaluation(row: EvaluationRow | Row[Any]) -> Evaluation:
    status = EvaluationStatus(row.status)
    outcome = None
    if status.terminal:
        outcome = Outcome(status=status, **{name: getattr(row, name) for name in RESULT_FIELDS})
    return Evaluation(
        id=row.id,
        seq=row.seq,
        status=status,
        priority=row.priority,
        request=ExecutionRequest.model_validate(
            {
                "code": row.code,
                "language": row.language,
                "stdin": row.stdin,
                "timeout_seconds": row.timeout_seconds,
                "memory_mb": row.memory_mb,
                "cpus": row.cpus,
                "output_limit_bytes": row.output_limit_bytes,
                "files": dict(row.files),
                **(row.program or {}),
            }
        ),
        labels=dict(row.labels),
        idempotency_key=row.idempotency_key,
        outcome=outcome,
        created_at=_utc(row.created_at) or _now(),
        started_at=_utc(row.started_at),
        finished_at=_utc(row.finished_at),
        attempts=row.attempts,
        worker=row.executor,
        batch_id=row.batch_id,
        isolation="batch" if row.isolation == "batch" else "evaluation",
        cancel_requested=row.cancel_requested_at is not None and not status.terminal,
    )


def _event(event_row: EventRow, row: EvaluationRow, *, terminal_state: bool = True) -> Event:
    """``terminal_state``: a terminal event just recorded carries the evaluation as it ended."""
    type_ = EventType(event_row.type)
    ended = terminal_state and type_ in TERMINAL_EVENTS
    return Event(
        id=event_row.id,
        evaluation_id=row.id,
        type=type_,
        at=_utc(event_row.at) or _now(),
        data=event_row.data,
        evaluation=_evaluation(row) if ended else None,
    )


def _sandbox_row(session: Session, sandbox_id: str, *, lock: bool = False) -> SandboxRow:
    row = session.get(SandboxRow, sandbox_id, with_for_update=lock)
    if row is None:
        raise NotFoundError(f"no sandbox with id {sandbox_id!r}")
    return row


def _record_sandbox(
    session: Session,
    sandbox_id: str,
    type_: SandboxEventType,
    data: dict[str, Any],
    at: datetime,
) -> SandboxEventRow:
    event_row = SandboxEventRow(sandbox_id=sandbox_id, type=type_.value, at=at, data=data)
    session.add(event_row)
    return event_row


def _sandbox(row: SandboxRow) -> SandboxRecord:
    return SandboxRecord(
        id=row.id,
        api_key_id=row.api_key_id,
        state=SandboxState(row.state),
        created_at=_utc(row.created_at) or _now(),
        ended_at=_utc(row.ended_at),
        end_reason=row.end_reason,
        info=dict(row.info),
        labels=dict(row.labels),
    )


def _sandbox_event(row: SandboxEventRow) -> SandboxEvent:
    return SandboxEvent(
        seq=row.seq,
        sandbox_id=row.sandbox_id,
        type=SandboxEventType(row.type),
        at=_utc(row.at) or _now(),
        data=row.data,
    )


def _api_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        created_at=_utc(row.created_at) or _now(),
        revoked_at=_utc(row.revoked_at),
    )


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        if kind != "seq":
            raise ValueError(kind)
        return int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursorError(f"invalid cursor {cursor!r}") from exc
