"""The queue's batch sandboxes (``queue/batches.py``) on a fake engine: a sandbox serves one
batch only, open sandboxes stay within the limit, idle ones close."""

from __future__ import annotations

import asyncio

from assay.execution_engine import (
    BatchSandbox,
    EngineHealth,
    ExecutionInterface,
    ExecutionRequest,
    ExecutionResult,
    OutputCallback,
)
from assay.queue.batches import BatchSandboxes


class FakeSandbox(BatchSandbox):
    def __init__(self) -> None:
        self.closed = False

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        raise AssertionError("not used here")

    async def close(self) -> None:
        self.closed = True


class FakeEngine(ExecutionInterface):
    def __init__(self) -> None:
        self.made: list[FakeSandbox] = []

    def batch_sandbox(self) -> BatchSandbox:
        self.made.append(FakeSandbox())
        return self.made[-1]

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        raise AssertionError("not used here")

    async def check_health(self) -> EngineHealth:
        return EngineHealth(healthy=True, detail="ok")

    async def close(self) -> None:
        pass


async def test_a_sandbox_is_reused_by_its_batch_and_no_other() -> None:
    engine = FakeEngine()
    sandboxes = BatchSandboxes(engine, limit=4, idle_seconds=60)
    a = sandboxes.take("a")
    sandboxes.give_back("a", a)
    b = sandboxes.take("b")
    assert b is not a, "batch b never gets batch a's sandbox"
    sandboxes.give_back("b", b)
    assert sandboxes.take("a") is a
    assert sandboxes.take("a") is not a, "a busy sandbox is not handed out twice"
    await sandboxes.close()


async def test_open_sandboxes_stay_within_the_limit() -> None:
    engine = FakeEngine()
    sandboxes = BatchSandboxes(engine, limit=2, idle_seconds=60)
    for batch in ("a", "b"):
        sandboxes.give_back(batch, sandboxes.take(batch))
    first_a, first_b = engine.made
    c = sandboxes.take("c")
    await asyncio.sleep(0)
    assert first_a.closed and not first_b.closed, "the longest idle one makes room"
    assert sandboxes.open == 2
    sandboxes.give_back("c", c)
    await sandboxes.close()
    assert all(sandbox.closed for sandbox in engine.made)


async def test_idle_sandboxes_close() -> None:
    engine = FakeEngine()
    sandboxes = BatchSandboxes(engine, limit=2, idle_seconds=0.1)
    sandbox = sandboxes.take("a")
    sandboxes.give_back("a", sandbox)
    for _ in range(100):
        if engine.made[0].closed:
            break
        await asyncio.sleep(0.02)
    assert engine.made[0].closed and sandboxes.open == 0
    await sandboxes.close()
