"""The warm pool's bookkeeping, with sandboxes that are only names: filling, handing out each
sandbox once, refilling, recycling by age, backing off on failures, and draining on close."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from assay.execution_engine.pool import WarmPool
from assay.execution_engine.sandbox_spec import Profile

DEFAULT = Profile(256, 1.0)
BIG = Profile(1024, 2.0)


class FakeSandboxes:
    """Creates and destroys named sandboxes, recording everything."""

    def __init__(self, *, create_seconds: float = 0.01) -> None:
        self.create_seconds = create_seconds
        self.names = (f"sandbox-{n}" for n in itertools.count())
        self.created: list[tuple[Profile, str]] = []
        self.destroyed: list[str] = []
        self.failing = False
        self.creating = 0
        self.most_at_once = 0

    async def create(self, profile: Profile) -> str:
        self.creating += 1
        self.most_at_once = max(self.most_at_once, self.creating)
        try:
            await asyncio.sleep(self.create_seconds)
            if self.failing:
                raise RuntimeError("docker is down")
            name = next(self.names)
            self.created.append((profile, name))
            return name
        finally:
            self.creating -= 1

    async def destroy(self, name: str) -> None:
        self.destroyed.append(name)

    def alive(self) -> set[str]:
        return {name for _, name in self.created} - set(self.destroyed)


_open: list[WarmPool] = []


@pytest.fixture(autouse=True)
async def _close_pools() -> AsyncIterator[None]:
    """A failed test still closes its pools (their tasks would outlive the test)."""
    yield
    while _open:
        await _open.pop().close()


def make_pool(sandboxes: FakeSandboxes, targets: dict[Profile, int], **options: float) -> WarmPool:
    pool = WarmPool(
        targets,
        create=sandboxes.create,
        destroy=sandboxes.destroy,
        max_age_seconds=options.get("max_age_seconds", 60.0),
        parallelism=int(options.get("parallelism", 2)),
    )
    _open.append(pool)
    return pool


async def test_fills_each_profile_and_hands_out_each_sandbox_once() -> None:
    sandboxes = FakeSandboxes()
    pool = make_pool(sandboxes, {DEFAULT: 3, BIG: 1})
    pool.start()
    assert await pool.wait_ready(5)
    taken = [await pool.acquire(DEFAULT) for _ in range(3)]
    assert None not in taken and len(set(taken)) == 3
    assert await pool.acquire(Profile(512, 1.0)) is None  # no pool for that profile: cold
    big = await pool.acquire(BIG)
    assert big is not None and (BIG, big) in sandboxes.created
    # Empty: callers wait for the sandboxes being created, each gets its own.
    waited = await asyncio.gather(*(pool.acquire(DEFAULT) for _ in range(5)))
    assert None not in waited and len(set(waited)) == 5
    assert await pool.wait_ready(5)
    again = [await pool.acquire(DEFAULT) for _ in range(3)]
    assert not set(again) & (set(taken) | set(waited)), "a sandbox was handed out twice"
    stats = {s.profile: s for s in pool.stats()}
    assert (stats["256m-1cpu"].hits, stats["256m-1cpu"].misses) == (6, 5)
    assert stats["256m-1cpu"].refill_seconds is not None
    await pool.close()


async def test_a_caller_cancelled_while_waiting_loses_nothing() -> None:
    sandboxes = FakeSandboxes(create_seconds=0.1)
    pool = make_pool(sandboxes, {DEFAULT: 1}, parallelism=1)
    pool.start()
    first = await pool.acquire(DEFAULT)
    waiting = asyncio.ensure_future(pool.acquire(DEFAULT))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await pool.wait_ready(5)
    second = await pool.acquire(DEFAULT)
    assert second not in (None, first)
    await pool.close()
    created = {name for _, name in sandboxes.created}
    assert created - set(sandboxes.destroyed) == {first, second}


async def test_refills_at_most_parallelism_at_once() -> None:
    sandboxes = FakeSandboxes(create_seconds=0.05)
    pool = make_pool(sandboxes, {DEFAULT: 6}, parallelism=2)
    pool.start()
    assert await pool.wait_ready(5)
    assert sandboxes.most_at_once == 2
    await pool.close()


async def test_idle_sandboxes_past_their_age_are_replaced() -> None:
    sandboxes = FakeSandboxes()
    pool = make_pool(sandboxes, {DEFAULT: 2}, max_age_seconds=0.2)
    pool.start()
    assert await pool.wait_ready(5)
    first = {name for _, name in sandboxes.created}
    await asyncio.sleep(0.5)
    assert first <= set(sandboxes.destroyed)
    assert await pool.wait_ready(5)
    assert await pool.acquire(DEFAULT) not in first
    assert pool.stats()[0].recycled >= 2
    await pool.close()


async def test_failures_back_off_and_the_pool_recovers() -> None:
    sandboxes = FakeSandboxes()
    sandboxes.failing = True
    pool = make_pool(sandboxes, {DEFAULT: 1})
    pool.start()
    await asyncio.sleep(0.3)
    failures = pool.stats()[0].failures
    assert failures == 1, "retries wait for the backoff instead of spinning"
    assert await pool.acquire(DEFAULT) is None, "failing: the caller goes cold, no waiting"
    sandboxes.failing = False
    assert await pool.wait_ready(5), "refilled after the backoff"
    await pool.close()


async def test_sandboxes_that_died_while_idle_are_dropped() -> None:
    sandboxes = FakeSandboxes()
    dead: set[str] = set()

    async def alive() -> set[str]:
        return sandboxes.alive() - dead

    pool = WarmPool(
        {DEFAULT: 2},
        create=sandboxes.create,
        destroy=sandboxes.destroy,
        alive=alive,
        max_age_seconds=60,
        parallelism=2,
    )
    pool.start()
    assert await pool.wait_ready(5)
    dead.update(name for _, name in sandboxes.created)
    await pool._drop_dead()
    assert await pool.acquire(DEFAULT) not in dead
    await pool.close()


@pytest.mark.parametrize("create_seconds", [0.0, 0.2])
async def test_close_destroys_everything_including_sandboxes_being_created(
    create_seconds: float,
) -> None:
    sandboxes = FakeSandboxes(create_seconds=create_seconds)
    pool = make_pool(sandboxes, {DEFAULT: 3, BIG: 2})
    pool.start()
    await asyncio.sleep(0.05)
    waiting = [asyncio.ensure_future(pool.acquire(DEFAULT)) for _ in range(5)]
    await asyncio.sleep(0)
    await pool.close()
    taken = {name for name in await asyncio.gather(*waiting) if name is not None}
    created = {name for _, name in sandboxes.created}
    assert created - set(sandboxes.destroyed) == taken
    assert await pool.acquire(DEFAULT) is None
