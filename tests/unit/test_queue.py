"""The storage-lease queue (``queue/storage_queue.py``) on SQLite with the fake engine: runs
again after a lost sandbox, waits out an engine outage, cancels here and through storage
from another platform, recovers after a crash and from dead workers' leases, follows
priorities, and answers ``wait`` when an evaluation ends.

Nothing here sleeps to outlast one of the queue's intervals: each test polls observable state
(storage, the fake engine) until a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from assay.app import Platform
from assay.config import Settings
from assay.errors import EngineUnavailableError, NotFoundError, SandboxLostError
from assay.execution_engine import ExecutionRequest
from assay.queue import InProcessDoorbell
from assay.storage import Evaluation, EvaluationStatus, Event, EventType, NewEvaluation, Storage
from assay.storage import create_storage as open_storage
from tests.fakes import FakeEngine, process_exists
from tests.sandbox import platform_settings

#: Prints its pid first (flushed), then runs until it is stopped.
LONG = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)"


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 10.0
) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        held = check()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def started(settings: Settings, engine: FakeEngine | None = None) -> AsyncIterator[Platform]:
    """A started platform on ``settings``, with the fake engine (its own unless given)."""
    platform = Platform(settings, engine=engine or FakeEngine(settings.execution))
    await platform.start()
    try:
        yield platform
    finally:
        await platform.stop()


@asynccontextmanager
async def bare_storage(settings: Settings) -> AsyncIterator[Storage]:
    """The platform's database without a platform: what a crashed one left behind."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(settings.storage_url())
    await storage.start()
    try:
        yield storage
    finally:
        await storage.close()


def fake(platform: Platform) -> FakeEngine:
    assert isinstance(platform.engine, FakeEngine)
    return platform.engine


async def submit(platform: Platform, code: str, **fields: object) -> Evaluation:
    new = NewEvaluation(request=ExecutionRequest(code=code), **fields)  # type: ignore[arg-type]
    [(evaluation, created)] = await platform.queue.submit([new])
    assert created
    return evaluation


async def events(storage: Storage, evaluation: Evaluation) -> list[Event]:
    return await storage.events(evaluation.id)


async def types(storage: Storage, evaluation: Evaluation) -> list[EventType]:
    """Its events' types, output left out."""
    return [event.type for event in await events(storage, evaluation) if event.type != "output"]


async def running_pid(engine: FakeEngine) -> int:
    """The pid of the one program the engine runs, once it runs."""
    await eventually(lambda: len(engine.processes) == 1, "a program runs")
    return engine.processes[0]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return platform_settings(tmp_path / "data", queue={"concurrency": 1})


async def test_the_engines_verdicts_are_recorded_as_it_gave_them(settings: Settings) -> None:
    programs = {
        "timeout": ExecutionRequest(code="while True:\n    pass", timeout_seconds=0.5),
        "flood": ExecutionRequest(
            code="while True:\n    print('x' * 100)", output_limit_bytes=1000
        ),
        "failed": ExecutionRequest(code="import sys\nprint('oops', file=sys.stderr)\nsys.exit(3)"),
    }
    async with started(settings) as platform:
        created = await platform.queue.submit([NewEvaluation(request=r) for r in programs.values()])
        timeout, flood, failed = [await platform.queue.wait(e.id, 10) for e, _ in created]
    assert timeout.status is EvaluationStatus.TIMEOUT
    assert timeout.outcome is not None and timeout.outcome.signal == 9
    assert timeout.outcome.duration_seconds is not None
    assert 0.5 <= timeout.outcome.duration_seconds < 1.5
    assert flood.status is EvaluationStatus.OUTPUT_LIMIT and flood.outcome is not None
    assert flood.outcome.stdout is not None and len(flood.outcome.stdout) == 1000
    assert flood.outcome.stdout_truncated
    assert failed.status is EvaluationStatus.FAILED and failed.outcome is not None
    assert (failed.outcome.exit_code, failed.outcome.stderr) == (3, "oops\n")


async def test_a_lost_sandbox_runs_again_then_ends_as_error_after_max_attempts(
    tmp_path: Path,
) -> None:
    settings = platform_settings(tmp_path, queue={"concurrency": 1, "max_attempts": 3})
    async with started(settings) as platform:
        fake(platform).fail_next(SandboxLostError("the sandbox was removed from outside"), 3)
        evaluation = await submit(platform, "print('never')")
        done = await platform.queue.wait(evaluation.id, 10)
        assert done.status is EvaluationStatus.ERROR
        assert done.attempts == 3
        assert done.outcome is not None and done.outcome.error is not None
        assert "on each of its 3 attempts" in done.outcome.error
        assert "removed from outside" in done.outcome.error
        assert fake(platform).executions == 3
        assert await types(platform.storage, evaluation) == [
            EventType.QUEUED,
            *[EventType.STARTED, EventType.REQUEUED] * 2,
            EventType.STARTED,
            EventType.FINISHED,
        ]


async def test_a_lost_sandbox_says_nothing_about_the_program(settings: Settings) -> None:
    async with started(settings) as platform:
        fake(platform).fail_next(SandboxLostError("the sandbox was killed from outside"))
        evaluation = await submit(platform, "print('second time lucky')")
        done = await platform.queue.wait(evaluation.id, 10)
        assert done.status is EvaluationStatus.COMPLETED, done.outcome
        assert done.outcome is not None and done.outcome.stdout == "second time lucky\n"
        assert done.attempts == 2 and fake(platform).executions == 2
        [requeued] = [e for e in await events(platform.storage, evaluation) if e.type == "requeued"]
        assert "running it again (attempt 1 of at most 3)" in requeued.data["reason"]


async def test_an_unavailable_engine_puts_the_evaluation_back_and_pauses_every_worker(
    tmp_path: Path,
) -> None:
    settings = platform_settings(tmp_path, queue={"concurrency": 2})
    async with started(settings) as platform:
        storage = platform.storage
        fake(platform).fail_next(EngineUnavailableError("the Docker daemon does not answer"))
        first = await submit(platform, "print('first')")
        await eventually(
            lambda: _has(storage, first, EventType.REQUEUED), "the first is back in the queue"
        )
        # Queued while the queue is paused, with the second worker idle.
        second = await submit(platform, "print('second')")
        done = [await platform.queue.wait(e.id, 15) for e in (first, second)]
        assert [d.status for d in done] == [EvaluationStatus.COMPLETED] * 2
        assert fake(platform).executions == 3
        history = [e for e in await events(storage, first) if e.type != "output"]
        assert [e.type for e in history] == [
            EventType.QUEUED,
            EventType.STARTED,
            EventType.REQUEUED,
            EventType.STARTED,
            EventType.FINISHED,
        ]
        assert "engine unavailable, will retry" in history[2].data["reason"]
        [second_queued, second_started, *_] = await events(storage, second)
        retried = history[3]
        assert retried.id > second_queued.id, "the queue paused: no retry at once"
        assert retried.id < second_started.id, (
            "no worker ran anything during the pause: both resumed together, oldest first"
        )
        metrics = platform.metrics.render().decode()
        assert 'assay_engine_errors_total{code="engine_unavailable"} 1.0' in metrics


async def _has(storage: Storage, evaluation: Evaluation, type_: EventType) -> bool:
    return type_ in await types(storage, evaluation)


async def test_cancelling_a_queued_evaluation_never_runs_it(settings: Settings) -> None:
    async with started(settings) as platform:
        running = await submit(platform, LONG)
        await running_pid(fake(platform))
        queued = await submit(platform, "print('never')")
        cancelled = await platform.queue.cancel(queued.id)
        assert cancelled.status is EvaluationStatus.CANCELLED
        assert cancelled.started_at is None and cancelled.attempts == 0
        assert cancelled.outcome is not None and cancelled.outcome.error == "cancelled while queued"
        assert (await platform.queue.cancel(running.id)).status is EvaluationStatus.CANCELLED
        after = await submit(platform, "print('after')")
        assert (await platform.queue.wait(after.id, 10)).status is EvaluationStatus.COMPLETED
        assert [call.request.code for call in fake(platform).calls] == [LONG, "print('after')"]
        assert await types(platform.storage, queued) == [EventType.QUEUED, EventType.CANCELLED]


async def test_cancelling_a_running_evaluation_kills_its_program(settings: Settings) -> None:
    async with started(settings) as platform:
        evaluation = await submit(platform, LONG)
        pid = await running_pid(fake(platform))
        began = time.monotonic()
        cancelled = await platform.queue.cancel(evaluation.id)
        assert time.monotonic() - began < 5
        assert cancelled.status is EvaluationStatus.CANCELLED
        assert cancelled.outcome is not None
        assert cancelled.outcome.error == "cancelled while running"
        assert not process_exists(pid), "killed before the cancel answered"
        assert fake(platform).leftover_processes() == []
        history = await types(platform.storage, evaluation)
        assert EventType.CANCEL_REQUESTED in history and history[-1] == EventType.CANCELLED
        again = await platform.queue.cancel(evaluation.id)
        assert again.status is EvaluationStatus.CANCELLED
        done = await submit(platform, "print('after')")
        assert (await platform.queue.wait(done.id, 10)).status is EvaluationStatus.COMPLETED
        unchanged = await platform.queue.cancel(done.id)
        assert unchanged.status is EvaluationStatus.COMPLETED, "a finished one stays as it is"


async def test_a_cancel_reaches_the_platform_running_it_through_storage_alone(
    tmp_path: Path,
) -> None:
    """Two platforms share a database, each with its own in-process bus: no notice crosses
    between them, so the cancel request recorded in storage is all the runner has."""
    runner_settings = platform_settings(tmp_path, queue={"concurrency": 1})
    replica_settings = platform_settings(tmp_path, queue={"run_workers": False})
    assert runner_settings.storage_url() == replica_settings.storage_url()
    async with started(runner_settings) as runner, started(replica_settings) as replica:
        assert runner.bus is not replica.bus
        evaluation = await submit(runner, LONG)
        pid = await running_pid(fake(runner))
        answer = asyncio.create_task(replica.queue.cancel(evaluation.id))

        async def ended() -> bool:
            return (await replica.storage.get(evaluation.id)).status.terminal

        await eventually(ended, "the runner acts on the cancel request")
        stored = await replica.storage.get(evaluation.id)
        assert stored.status is EvaluationStatus.CANCELLED
        assert not process_exists(pid)
        assert (await asyncio.wait_for(answer, 15)).status is EvaluationStatus.CANCELLED
        assert fake(replica).executions == 0


async def test_a_platform_stopping_puts_what_it_runs_back_in_the_queue(tmp_path: Path) -> None:
    settings = platform_settings(tmp_path, queue={"concurrency": 1})
    async with started(settings) as platform:
        evaluation = await submit(platform, LONG)
        pid = await running_pid(fake(platform))
    assert not process_exists(pid)
    async with started(settings) as again:
        await running_pid(fake(again))
        stored = await again.storage.get(evaluation.id)
        assert (stored.status, stored.attempts) == (EvaluationStatus.RUNNING, 2)
        [requeued] = [e for e in await events(again.storage, evaluation) if e.type == "requeued"]
        assert requeued.data["reason"] == "the platform was shutting down"
        await again.queue.cancel(evaluation.id)


async def test_on_start_evaluations_left_running_are_recovered(tmp_path: Path) -> None:
    settings = platform_settings(tmp_path, queue={"concurrency": 1, "max_attempts": 2})
    worker = settings.execution.engine_id
    async with bare_storage(settings) as crashed:
        created = await crashed.create(
            [NewEvaluation(request=ExecutionRequest(code=f"print({i})")) for i in range(3)],
            max_queued=10,
        )
        first, twice, elsewhere = (evaluation for evaluation, _ in created)
        assert (await crashed.claim_next(worker)) is not None  # first: attempt 1
        claimed = await crashed.claim_next(worker)  # twice: attempt 1
        assert claimed is not None and claimed.id == twice.id
        assert await crashed.requeue(twice.id, 1, "a lost sandbox")
        claimed = await crashed.claim_next(worker)  # twice again: attempt 2, the last
        assert claimed is not None and (claimed.id, claimed.attempts) == (twice.id, 2)
        other = await crashed.claim_next("another-replica")
        assert other is not None and other.id == elsewhere.id
    async with started(settings) as platform:
        done = await platform.queue.wait(first.id, 10)
        assert done.status is EvaluationStatus.COMPLETED and done.attempts == 2
        assert done.outcome is not None and done.outcome.stdout == "0\n"
        ended = await platform.storage.get(twice.id)
        assert ended.status is EvaluationStatus.ERROR
        assert ended.outcome is not None and ended.outcome.error is not None
        assert "interrupted 2 times" in ended.outcome.error
        untouched = await platform.storage.get(elsewhere.id)
        assert untouched.status is EvaluationStatus.RUNNING, "another replica's run is its own"
        assert [call.request.code for call in fake(platform).calls] == ["print(0)"]


async def test_a_dead_workers_evaluation_is_taken_back_when_its_lease_expires(
    tmp_path: Path,
) -> None:
    settings = platform_settings(tmp_path, queue={"concurrency": 1, "lease_seconds": 3})
    async with bare_storage(settings) as storage:
        [(evaluation, _)] = await storage.create(
            [NewEvaluation(request=ExecutionRequest(code="print('taken back')"))], max_queued=10
        )
        assert await storage.claim_next("a-dead-worker", lease_seconds=0.01) is not None
    async with started(settings) as platform:
        done = await platform.queue.wait(evaluation.id, 10)
        assert done.status is EvaluationStatus.COMPLETED
        assert done.worker == settings.execution.engine_id and done.attempts == 2
        [requeued] = [e for e in await events(platform.storage, evaluation) if e.type == "requeued"]
        assert requeued.data["reason"] == "its worker stopped renewing its lease"


async def test_higher_priorities_run_first_then_the_oldest(settings: Settings) -> None:
    priorities = {"a": 0, "b": 5, "c": 1, "d": 5}
    async with bare_storage(settings) as storage:
        await storage.create(
            [
                NewEvaluation(request=ExecutionRequest(code=f"print('{name}')"), priority=priority)
                for name, priority in priorities.items()
            ],
            max_queued=10,
        )
    async with started(settings) as platform:
        engine = fake(platform)
        await eventually(
            lambda: _counts(platform, EvaluationStatus.COMPLETED, 4), "every evaluation ran"
        )
        assert [call.request.code for call in engine.calls] == [
            f"print('{name}')" for name in "bdca"
        ]


async def _counts(platform: Platform, status: EvaluationStatus, expected: int) -> bool:
    return (await platform.storage.counts())[status] == expected


async def test_wait_answers_when_the_evaluation_ends_or_at_its_timeout(
    settings: Settings,
) -> None:
    async with started(settings) as platform:
        quick = await submit(platform, "import time\ntime.sleep(0.3)\nprint('done')")
        began = time.monotonic()
        done = await platform.queue.wait(quick.id, 30)
        assert done.status is EvaluationStatus.COMPLETED
        assert time.monotonic() - began < 10, "answered when it ended, not at the timeout"
        slow = await submit(platform, LONG)
        began = time.monotonic()
        meanwhile = await platform.queue.wait(slow.id, 0.3)
        assert meanwhile.status in {EvaluationStatus.QUEUED, EvaluationStatus.RUNNING}
        assert 0.3 <= time.monotonic() - began < 3
        await platform.queue.cancel(slow.id)
        with pytest.raises(NotFoundError):
            await platform.queue.wait("no-such-evaluation", 1)


async def test_a_batchs_programs_share_its_sandbox_and_no_other(settings: Settings) -> None:
    async with started(settings) as platform:
        batches = {"b1": 3, "b2": 2}
        submitted = []
        for batch_id, size in batches.items():
            new = [
                NewEvaluation(
                    request=ExecutionRequest(code=f"print('{batch_id}-{i}')"),
                    batch_id=batch_id,
                    isolation="batch",
                )
                for i in range(size)
            ]
            submitted += [evaluation for evaluation, _ in await platform.queue.submit(new)]
        done = [await platform.queue.wait(e.id, 10) for e in submitted]
        assert {d.status for d in done} == {EvaluationStatus.COMPLETED}
        sandboxes = fake(platform).batch_sandboxes
        assert [[r.code for r in s.requests] for s in sandboxes] == [
            [f"print('b1-{i}')" for i in range(3)],
            [f"print('b2-{i}')" for i in range(2)],
        ]


async def test_a_ring_wakes_one_idle_worker_per_evaluation_and_a_notice_wakes_them_all() -> None:
    """Every claim that finds nothing costs a transaction: one evaluation queued here sends
    one idle worker to claim it, not every worker; a notice from elsewhere sends all."""
    claims: list[float] = []
    claimed = asyncio.Event()

    async def answer() -> bool:
        claims.append(time.monotonic())
        claimed.set()
        return False  # nothing queued: back to idle

    # Idle workers look by themselves only every 60 s here: every claim below is a ring's.
    doorbell = InProcessDoorbell(idle_recheck_seconds=60)
    await doorbell.start(answer, workers=3)
    try:
        await eventually(lambda: len(claims) == 3, "each worker's first look")
        for rings, expected in ((1, 1), (2, 2), (5, 3)):
            claims.clear()
            claimed.clear()
            doorbell.ring(rings)
            await asyncio.wait_for(claimed.wait(), 1)
            await asyncio.sleep(0.1)  # any further claim this ring caused
            assert len(claims) == expected, (rings, claims)
        claims.clear()
        doorbell.wake()
        await eventually(lambda: len(claims) == 3, "every idle worker claims on a notice")
        await asyncio.sleep(0.1)
        assert len(claims) == 3
    finally:
        await doorbell.stop()
