"""SqlStorage on a real SQLite file and on a real PostgreSQL database: ordering,
idempotency, bounds, pagination, recovery, migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from assay.errors import IdempotencyConflictError, NotFoundError, QueueFullError
from assay.execution_engine import ExecutionRequest
from assay.storage import EvaluationStatus, Event, EventType, NewEvaluation, Outcome
from assay.storage.models import Base
from assay.storage.sql import InvalidCursorError, SqlStorage
from tests.conftest import postgres_database

pytestmark = [pytest.mark.integration]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'assay.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[SqlStorage]:
    sql = SqlStorage(database_url)
    await sql.start()
    yield sql
    await sql.close()


def new(code: str = "print(1)", **kwargs: object) -> NewEvaluation:
    return NewEvaluation(request=ExecutionRequest(code=code), **kwargs)  # type: ignore[arg-type]


async def test_migrations_apply_twice_without_harm(database_url: str) -> None:
    # Async driver names are accepted.
    url = database_url.replace("sqlite:", "sqlite+aiosqlite:").replace("+psycopg", "+asyncpg")
    for _ in range(2):
        sql = SqlStorage(url)
        await sql.start()
        await sql.ping()
        await sql.close()


async def test_claims_follow_priority_then_submission_order(storage: SqlStorage) -> None:
    created = await storage.create(
        [new("a"), new("b", priority=5), new("c"), new("d", priority=5)], max_queued=10
    )
    ids = {e.request.code: e.id for e, _ in created}
    assert await storage.count_queued() == 4
    order = []
    while (claimed := await storage.claim_next("w")) is not None:
        order.append(claimed.request.code)
        assert claimed.status is EvaluationStatus.RUNNING
        assert claimed.attempts == 1 and claimed.worker == "w"
    assert order == ["b", "d", "a", "c"]
    assert await storage.count_queued() == 0
    events = await storage.events(ids["a"])
    assert [e.type for e in events] == ["queued", "started"]


async def test_idempotency_keys(storage: SqlStorage) -> None:
    [(first, created)] = await storage.create([new(idempotency_key="k")], max_queued=10)
    [(again, created_again)] = await storage.create([new(idempotency_key="k")], max_queued=10)
    assert created and not created_again and again.id == first.id
    with pytest.raises(IdempotencyConflictError):
        await storage.create([new("other", idempotency_key="k")], max_queued=10)


async def test_the_queue_bound_is_all_or_none(storage: SqlStorage) -> None:
    await storage.create([new(), new()], max_queued=3)
    with pytest.raises(QueueFullError):
        await storage.create([new(), new()], max_queued=3)
    assert (await storage.counts())[EvaluationStatus.QUEUED] == 2


async def test_finish_records_only_the_running_attempt(storage: SqlStorage) -> None:
    [(evaluation, _)] = await storage.create([new()], max_queued=10)
    claimed = await storage.claim_next("w")
    assert claimed is not None
    outcome = Outcome(status=EvaluationStatus.COMPLETED, exit_code=0, stdout="1\n")
    assert await storage.finish(evaluation.id, attempt=2, outcome=outcome) is None
    finished = await storage.finish(evaluation.id, attempt=1, outcome=outcome)
    assert finished is not None and finished.status is EvaluationStatus.COMPLETED
    assert finished.outcome is not None and finished.outcome.stdout == "1\n"
    assert await storage.finish(evaluation.id, attempt=1, outcome=outcome) is None
    assert [e.type for e in await storage.events(evaluation.id)][-1] == "finished"


async def test_a_programs_nul_bytes_are_recorded_on_every_database(storage: SqlStorage) -> None:
    """PostgreSQL text cannot hold NUL: the outcome used to fail to record, leaving the
    evaluation running for ever. NUL is kept as U+FFFD, as invalid UTF-8 already is."""
    [(evaluation, _)] = await storage.create([new()], max_queued=10)
    assert await storage.claim_next("w") is not None
    outcome = Outcome(
        status=EvaluationStatus.FAILED, exit_code=1, stdout="a\x00b", stderr="\x00", error=None
    )
    finished = await storage.finish(evaluation.id, attempt=1, outcome=outcome)
    assert finished is not None and finished.outcome is not None
    assert (finished.outcome.stdout, finished.outcome.stderr) == ("a\ufffdb", "\ufffd")


async def test_cancel_only_affects_queued(storage: SqlStorage) -> None:
    created = await storage.create([new(), new()], max_queued=10)
    running = await storage.claim_next("w")
    assert running is not None
    still, changed = await storage.cancel(running.id)
    assert still.status is EvaluationStatus.RUNNING and not changed
    queued_id = next(e.id for e, _ in created if e.id != running.id)
    cancelled, changed = await storage.cancel(queued_id)
    assert cancelled.status is EvaluationStatus.CANCELLED and changed
    _, changed_again = await storage.cancel(queued_id)
    assert not changed_again
    with pytest.raises(NotFoundError):
        await storage.cancel("missing")


async def test_a_cancel_of_a_running_evaluation_is_kept_until_its_worker_acts(
    storage: SqlStorage,
) -> None:
    """A cancel is a record, not a message: the worker reads it, and a run that is then
    interrupted (its sandbox lost, its worker dead) ends cancelled instead of running again."""
    [(first, _), (second, _)] = await storage.create([new(), new()], max_queued=10)
    assert (await storage.claim_next("w")) is not None
    assert (await storage.claim_next("w")) is not None
    for _ in range(2):  # asking twice records it once
        still, cancelled = await storage.cancel(first.id)
        assert still.status is EvaluationStatus.RUNNING and still.cancel_requested
        assert not cancelled
    assert await storage.cancel_requests("w", [first.id, second.id]) == {first.id}
    assert await storage.cancel_requests("another-worker", [first.id]) == set()
    types = [event.type for event in await storage.events(first.id)]
    assert types == [EventType.QUEUED, EventType.STARTED, EventType.CANCEL_REQUESTED]

    assert await storage.requeue(first.id, 1, "its sandbox was lost")
    ended = await storage.get(first.id)
    assert ended.status is EvaluationStatus.CANCELLED and not ended.cancel_requested
    assert ended.outcome is not None and "its sandbox was lost" in (ended.outcome.error or "")
    assert await storage.requeue(second.id, 1, "its sandbox was lost")
    assert (await storage.get(second.id)).status is EvaluationStatus.QUEUED


async def test_every_event_recorded_reaches_the_listener_once_committed(
    storage: SqlStorage,
) -> None:
    heard: list[Event] = []
    storage.listen(heard.extend)
    [(evaluation, _)] = await storage.create([new(idempotency_key="k")], max_queued=10)
    with pytest.raises(IdempotencyConflictError):
        await storage.create([new("other", idempotency_key="k")], max_queued=10)
    assert await storage.claim_next("w") is not None
    await storage.add_event(evaluation.id, EventType.OUTPUT, {"stream": "stdout", "text": "a"})
    outcome = Outcome(status=EvaluationStatus.COMPLETED, exit_code=0, stdout="ab")
    chunk = {"stream": "stdout", "text": "b"}
    await storage.finish(evaluation.id, attempt=1, outcome=outcome, output=[chunk])

    stored = await storage.events(evaluation.id)
    assert [(e.id, e.type, e.data) for e in heard] == [(e.id, e.type, e.data) for e in stored]
    assert [e.type for e in heard] == [
        EventType.QUEUED,
        EventType.STARTED,
        EventType.OUTPUT,
        EventType.OUTPUT,
        EventType.FINISHED,
    ], "the refused duplicate recorded (and announced) nothing"
    assert heard[-1].evaluation is not None
    assert heard[-1].evaluation.status is EvaluationStatus.COMPLETED
    assert all(e.evaluation is None for e in heard[:-1] + stored)


async def test_recovery_requeues_then_gives_up(storage: SqlStorage) -> None:
    [(elsewhere, _), (evaluation, _)] = await storage.create([new(), new()], max_queued=10)
    other = await storage.claim_next("other-replica")
    assert other is not None and other.id == elsewhere.id
    for attempt in range(1, 3):
        claimed = await storage.claim_next("w")
        assert claimed is not None and claimed.attempts == attempt
        assert await storage.recover_interrupted("w", max_attempts=2) == (
            ([evaluation.id], []) if attempt < 2 else ([], [evaluation.id])
        )
    running = await storage.get(elsewhere.id)
    assert running.status is EvaluationStatus.RUNNING, "another executor's run is not ours"
    ended = await storage.get(evaluation.id)
    assert ended.status is EvaluationStatus.ERROR
    assert ended.outcome is not None and "interrupted" in (ended.outcome.error or "")


async def test_pagination_newest_first_with_label_filters(storage: SqlStorage) -> None:
    created = await storage.create(
        [new(labels={"set": "x", "n": str(i)}) for i in range(5)] + [new(labels={"set": "y"})],
        max_queued=10,
    )
    expected = [e.id for e, _ in created[:5]][::-1]
    seen, cursor = [], None
    while True:
        page = await storage.list_evaluations(labels={"set": "x"}, limit=2, cursor=cursor)
        seen += [e.id for e in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected
    with pytest.raises(InvalidCursorError):
        await storage.list_evaluations(cursor="not-a-cursor")


async def test_api_keys_are_stored_hashed_and_revocable(
    storage: SqlStorage, database_url: str
) -> None:
    assert not await storage.has_active_api_keys()
    key, secret = await storage.create_api_key("ci")
    assert secret.startswith("ak_") and len(secret) > 40
    engine = create_engine(database_url)
    with engine.connect() as connection:
        stored = [
            str(value)
            for row in connection.execute(text("SELECT * FROM api_keys"))
            for value in row
        ]
    engine.dispose()
    assert stored and not any(secret in value for value in stored), "only a hash is stored"
    assert (await storage.verify_api_key(secret)) == key
    assert await storage.verify_api_key(secret + "x") is None
    await storage.revoke_api_key(key.id)
    assert await storage.verify_api_key(secret) is None
    assert not await storage.has_active_api_keys()


async def test_the_migrations_build_exactly_the_models(database_url: str) -> None:
    sql = SqlStorage(database_url)
    await sql.start()
    await sql.close()
    engine = create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == [], "a model changed without a migration (or the reverse)"


async def test_batch_and_isolation_are_kept(storage: SqlStorage) -> None:
    created = await storage.create(
        [new(batch_id="b-1", isolation="batch"), new(idempotency_key="plain")], max_queued=10
    )
    (in_batch, _), (plain, _) = created
    assert (in_batch.batch_id, in_batch.isolation) == ("b-1", "batch")
    assert (plain.batch_id, plain.isolation) == (None, "evaluation")
    claimed = await storage.claim_next("w")
    assert claimed is not None and (claimed.batch_id, claimed.isolation) == ("b-1", "batch")
    with pytest.raises(IdempotencyConflictError):  # the same key, now asking for less isolation
        await storage.create([new(idempotency_key="plain", isolation="batch")], max_queued=10)


async def test_leases_expire_and_their_evaluations_are_taken_back(storage: SqlStorage) -> None:
    created = await storage.create([new("a"), new("b")], max_queued=10)
    first = await storage.claim_next("dies", lease_seconds=0.3)
    second = await storage.claim_next("lives", lease_seconds=0.3)
    assert first is not None and second is not None
    assert await storage.renew_leases("lives", [second.id, first.id], 60) == {second.id}
    await asyncio.sleep(0.5)
    assert await storage.recover_expired(max_attempts=3) == ([first.id], [])
    assert await storage.renew_leases("dies", [first.id], 60) == set(), "it is no longer its"
    retaken = await storage.claim_next("lives", lease_seconds=0.3)
    assert retaken is not None and (retaken.id, retaken.attempts) == (first.id, 2)
    assert [e.type for e in await storage.events(first.id)] == [
        "queued",
        "started",
        "requeued",
        "started",
    ]
    await asyncio.sleep(0.5)
    assert await storage.recover_expired(max_attempts=2) == ([], [first.id]), "out of attempts"
    ended = await storage.get(first.id)
    assert ended.status is EvaluationStatus.ERROR and "lease" in (ended.outcome.error or "")
    assert {e.id for e, _ in created} == {first.id, second.id}


async def test_replicas_starting_together_migrate_once(database_url: str) -> None:
    stores = [SqlStorage(database_url) for _ in range(6)]  # each with its own connection
    try:
        await asyncio.gather(*(store.start() for store in stores))
        created = await stores[0].create([new()], max_queued=10)
        assert (await stores[5].get(created[0][0].id)).status is EvaluationStatus.QUEUED
    finally:
        for store in stores:
            await store.close()
