"""A warm pool: sandboxes created and started ahead of time, each waiting for its program.

Every pooled sandbox serves exactly one execution and is then destroyed; the pool only moves
the expensive part of a sandbox's life (create and start, about 0.3 s here) off the request's
path. Sandboxes are grouped by :class:`Profile`, the limits fixed when a container is created
(memory and CPU); a request whose profile has no pool takes the cold path. The pool knows
nothing of Docker: it is given ``create`` and ``destroy`` coroutines.

Lifecycle: ``start`` begins filling in the background; ``acquire`` hands out the oldest ready
sandbox; sandboxes idle for longer than ``max_age_seconds`` are destroyed and replaced;
``close`` waits for creations in flight and destroys everything it holds.

When a pool is empty, ``acquire`` waits for the next sandbox being created for it (more are
started, up to ``parallelism`` at once, or one per waiting caller if there are more) rather
than answering None: under sustained load
the pool becomes a pipeline that creates sandboxes as fast as the machine can, instead of
cold creations piling on top of refills and fighting them for the CPU. Only when the pool
cannot create (failures, backing off) or is closing does the caller go cold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from assay.execution_engine.interface import PoolStats
from assay.execution_engine.sandbox_spec import Profile

__all__ = ["WarmPool", "merge_pool_stats"]

logger = logging.getLogger(__name__)

_FAILURE_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
#: How often ready sandboxes are checked for having died while idle (a Docker restart).
_CHECK_SECONDS = 5.0


def merge_pool_stats(reports: list[list[PoolStats]]) -> list[PoolStats]:
    """Several engines' pools (executor services) added up per profile."""
    merged: dict[str, PoolStats] = {}
    for report in reports:
        for stats in report:
            seen = merged.get(stats.profile)
            if seen is None:
                merged[stats.profile] = stats
                continue
            refill_total = sum((s.refill_seconds or 0.0) * s.created for s in (seen, stats))
            created = seen.created + stats.created
            merged[stats.profile] = PoolStats(
                profile=stats.profile,
                target=seen.target + stats.target,
                ready=seen.ready + stats.ready,
                creating=seen.creating + stats.creating,
                hits=seen.hits + stats.hits,
                misses=seen.misses + stats.misses,
                created=created,
                recycled=seen.recycled + stats.recycled,
                failures=seen.failures + stats.failures,
                refill_seconds=refill_total / created if created else None,
            )
    return [merged[profile] for profile in sorted(merged)]


@dataclass(slots=True)
class _Ready:
    sandbox_id: str
    created_at: float


@dataclass(slots=True)
class _ProfilePool:
    target: int
    ready: deque[_Ready] = field(default_factory=deque)
    creating: int = 0
    waiters: deque[asyncio.Future[str | None]] = field(default_factory=deque)
    hits: int = 0
    misses: int = 0
    created: int = 0
    recycled: int = 0
    failures: int = 0
    refill_total: float = 0.0
    consecutive_failures: int = 0
    retry_at: float = float("-inf")


class WarmPool:
    """Keeps ``targets[profile]`` started sandboxes ready per profile."""

    def __init__(
        self,
        targets: Mapping[Profile, int],
        *,
        create: Callable[[Profile], Awaitable[str]],
        destroy: Callable[[str], Awaitable[None]],
        alive: Callable[[], Awaitable[set[str]]] | None = None,
        max_age_seconds: float,
        parallelism: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pools = {profile: _ProfilePool(size) for profile, size in targets.items() if size}
        self._create = create
        self._destroy = destroy
        self._alive = alive
        self._max_age = max_age_seconds
        self._parallelism = max(1, parallelism)
        self._clock = clock
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._maintainer: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        """Begin filling; returns at once."""
        if self._maintainer is None and self._pools and not self._closed:
            self._maintainer = asyncio.create_task(self._maintain(), name="assay-warm-pool")

    async def acquire(self, profile: Profile) -> str | None:
        """A sandbox of ``profile``, now the caller's to use once and destroy; waits for one
        being created when none is ready. None: no pool for ``profile``, or it cannot create
        sandboxes now (create one yourself)."""
        pool = self._pools.get(profile)
        if pool is None or self._closed:
            return None
        self._wake.set()
        if pool.ready:
            pool.hits += 1
            return pool.ready.popleft().sandbox_id
        pool.misses += 1
        if pool.consecutive_failures or self._maintainer is None:
            return None
        waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        pool.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter in pool.waiters:
                pool.waiters.remove(waiter)
            elif not waiter.cancelled() and (handed := waiter.result()) is not None:
                # Handed over just as the caller was cancelled: still unused, keep it.
                pool.ready.appendleft(_Ready(handed, self._clock()))
            raise

    def stats(self) -> list[PoolStats]:
        return [
            PoolStats(
                profile=str(profile),
                target=pool.target,
                ready=len(pool.ready),
                creating=pool.creating,
                hits=pool.hits,
                misses=pool.misses,
                created=pool.created,
                recycled=pool.recycled,
                failures=pool.failures,
                refill_seconds=pool.refill_total / pool.created if pool.created else None,
            )
            for profile, pool in sorted(self._pools.items())
        ]

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until every pool is full (for benchmarks and tests); False on timeout."""
        deadline = self._clock() + timeout
        while any(len(pool.ready) < pool.target for pool in self._pools.values()):
            if self._clock() > deadline or self._closed:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        """Stop refilling, wait for creations in flight, destroy every ready sandbox."""
        if self._closed:
            return
        self._closed = True
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        leftovers = [ready for pool in self._pools.values() for ready in pool.ready]
        for pool in self._pools.values():
            pool.ready.clear()
            _release(pool.waiters, None)
        await asyncio.gather(*(self._discard(ready.sandbox_id) for ready in leftovers))

    # -- background ------------------------------------------------------------------------

    async def _maintain(self) -> None:
        next_check = self._clock() + _CHECK_SECONDS
        while not self._closed:
            self._wake.clear()
            now = self._clock()
            self._recycle_expired(now)
            if now >= next_check and self._alive is not None:
                next_check = now + _CHECK_SECONDS
                await self._drop_dead()
            self._refill(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_wakeup(now))

    def _recycle_expired(self, now: float) -> None:
        for pool in self._pools.values():
            while pool.ready and now - pool.ready[0].created_at >= self._max_age:
                expired = pool.ready.popleft()
                pool.recycled += 1
                self._spawn(self._discard(expired.sandbox_id))

    async def _drop_dead(self) -> None:
        if self._alive is None:
            return
        try:
            alive = await self._alive()
        except Exception as exc:  # the engine being down is the refill's concern
            logger.debug("could not list pooled sandboxes: %s", exc)
            return
        for pool in self._pools.values():
            dead = [ready for ready in pool.ready if ready.sandbox_id not in alive]
            for ready in dead:
                pool.ready.remove(ready)
                pool.recycled += 1
                self._spawn(self._discard(ready.sandbox_id))
            if dead:
                logger.warning("%d pooled sandbox(es) died while idle; replacing", len(dead))

    def _refill(self, now: float) -> None:
        creating = sum(pool.creating for pool in self._pools.values())
        # A waiting caller would otherwise have created its own sandbox: never fewer at once.
        limit = max(self._parallelism, sum(len(pool.waiters) for pool in self._pools.values()))
        progress = True
        while progress and creating < limit:
            progress = False
            # Round-robin over profiles, emptiest first, so one profile cannot starve another.
            for profile, pool in sorted(self._pools.items(), key=lambda item: len(item[1].ready)):
                if creating >= limit:
                    break
                wanted = pool.target + len(pool.waiters)
                if len(pool.ready) + pool.creating < wanted and now >= pool.retry_at:
                    pool.creating += 1
                    creating += 1
                    progress = True
                    self._spawn(self._fill_one(profile, pool))

    def _next_wakeup(self, now: float) -> float:
        wakeups = [now + _CHECK_SECONDS]
        for pool in self._pools.values():
            if pool.ready:
                wakeups.append(pool.ready[0].created_at + self._max_age)
            if pool.retry_at > now:
                wakeups.append(pool.retry_at)
        return max(min(wakeups) - now, 0.01)

    async def _fill_one(self, profile: Profile, pool: _ProfilePool) -> None:
        began = self._clock()
        try:
            sandbox_id = await self._create(profile)
        except Exception as exc:  # any failure: back off and try again later
            pool.failures += 1
            pool.consecutive_failures += 1
            delay = _FAILURE_BACKOFF_SECONDS[
                min(pool.consecutive_failures, len(_FAILURE_BACKOFF_SECONDS)) - 1
            ]
            pool.retry_at = self._clock() + delay
            logger.warning("could not fill the %s pool (retrying in %gs): %s", profile, delay, exc)
            _release(pool.waiters, None)  # they go cold rather than wait for the backoff
            return
        finally:
            pool.creating -= 1
            self._wake.set()
        pool.consecutive_failures = 0
        pool.created += 1
        pool.refill_total += self._clock() - began
        if self._closed:
            await self._discard(sandbox_id)
            return
        if not _release(pool.waiters, sandbox_id, first_only=True):
            pool.ready.append(_Ready(sandbox_id, self._clock()))

    async def _discard(self, sandbox_id: str) -> None:
        try:
            await self._destroy(sandbox_id)
        except Exception as exc:  # logged; its lifeline was closed, it ends and goes by itself
            logger.warning("could not destroy pooled sandbox %s: %s", sandbox_id[:12], exc)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _release(
    waiters: deque[asyncio.Future[str | None]], value: str | None, *, first_only: bool = False
) -> bool:
    """Resolve the oldest waiter still waiting (or all of them) with ``value``; whether
    any was."""
    released = False
    while waiters:
        waiter = waiters.popleft()
        if waiter.done():
            continue
        waiter.set_result(value)
        released = True
        if first_only:
            break
    return released
