"""The warm pool on the real Docker engine: one sandbox per execution, never two; limits that
match no pool run cold with the same verdict; dead or aged sandboxes are replaced; nothing is
left after close; pool state is visible through the executor service too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from assay.config import ExecutionSettings
from assay.errors import ExecutionError
from assay.execution_engine import ExecutionStatus
from assay.execution_engine.docker_daemon import DockerDaemon
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.protocol import POOL_PATH
from assay.execution_engine.remote import RemoteExecutionEngine
from assay.execution_engine.sandbox_spec import LABEL_ENGINE
from tests.conftest import EXECUTOR_TOKEN, docker_unavailable, leftover_containers, running_executor
from tests.sandbox import cold, idle_sandbox_containers, make_settings, run

pytestmark = [pytest.mark.docker, pytest.mark.integration]

#: Prints the id of the container it runs in, and whether anything ran there before it.
WHO_AM_I = """
import os, re
seen = os.path.exists('/tmp/used') or os.path.exists('used')
open('/tmp/used', 'w').write('x'); open('used', 'w').write('x')
print(re.search(r'[0-9a-f]{64}', open('/proc/self/cgroup').read()).group(0))
print('REUSED' if seen else 'fresh')
"""


@pytest.fixture
async def pooled(request: pytest.FixtureRequest) -> AsyncIterator[DockerEngine]:
    overrides = getattr(request, "param", {})
    engine = DockerEngine(make_settings(pool={"size": 2, **overrides}))
    try:
        await engine.start()
    except ExecutionError as exc:
        await engine.close()
        docker_unavailable(exc.message)
    assert await engine.wait_until_warm(60)
    yield engine
    await engine.close()
    assert leftover_containers(engine.settings.engine_id, settle_seconds=0) == []


async def test_a_pooled_sandbox_never_serves_two_executions(pooled: DockerEngine) -> None:
    sequential = []
    for _ in range(6):
        assert await pooled.wait_until_warm(60)
        sequential.append(await run(pooled, WHO_AM_I))
    concurrent = await asyncio.gather(*(run(pooled, WHO_AM_I) for _ in range(6)))
    results = sequential + list(concurrent)
    assert all(r.status is ExecutionStatus.COMPLETED for r in results), results
    assert [r.stdout.split()[1] for r in results] == ["fresh"] * 12
    containers = [r.stdout.split()[0] for r in results]
    assert len(set(containers)) == 12, "two executions shared a container"
    (stats,) = await pooled.pool_stats()
    assert stats.hits >= 6, "the sequential runs were served from the pool"
    assert stats.hits + stats.misses == 12
    # Every used sandbox is destroyed, not returned to the pool.
    daemon = DockerDaemon(None, timeout=30)
    try:
        for _ in range(100):
            alive = set(daemon.container_ids({LABEL_ENGINE: pooled.settings.engine_id}))
            if not alive & set(containers):
                break
            await asyncio.sleep(0.05)
        assert not alive & set(containers), "a used sandbox is still there"
    finally:
        daemon.close()


@pytest.mark.parametrize(
    "pooled", [{"profiles": [{"memory_mb": 64, "cpus": 0.5, "size": 1}]}], indirect=True
)
async def test_limits_without_a_pool_run_cold_with_the_same_verdicts(pooled: DockerEngine) -> None:
    cold_engine = DockerEngine(cold(make_settings()))
    bomb = "x = bytearray(200 * 2**20)\nprint('survived')"
    spin = "import time\nwhile True: pass"
    try:
        for memory_mb, cpus in [(64, 0.5), (96, 1.0)]:  # the extra pool, then no pool at all
            assert await pooled.wait_until_warm(60)
            warm = await run(pooled, bomb, memory_mb=memory_mb, cpus=cpus)
            fresh = await run(cold_engine, bomb, memory_mb=memory_mb, cpus=cpus)
            assert warm.status is fresh.status is ExecutionStatus.OOM
            assert (warm.exit_code, warm.signal) == (fresh.exit_code, fresh.signal) == (137, 9)
        timed = await run(pooled, spin, timeout_seconds=1, memory_mb=64, cpus=0.5)
        assert timed.status is ExecutionStatus.TIMEOUT
        assert timed.cpu_time_seconds is None or timed.cpu_time_seconds < 0.8
        stats = {s.profile: s for s in await pooled.pool_stats()}
        assert stats["64m-0.5cpu"].hits >= 1
    finally:
        await cold_engine.close()


@pytest.mark.parametrize("fate", ["killed", "removed"])
async def test_a_sandbox_that_died_while_waiting_is_replaced_and_the_run_goes_cold(
    pooled: DockerEngine, fate: str
) -> None:
    daemon = DockerDaemon(None, timeout=30)
    try:
        mine = set(daemon.container_ids({LABEL_ENGINE: pooled.settings.engine_id}))
        for container_id in idle_sandbox_containers() & mine:
            if fate == "killed":
                daemon.kill(container_id)
            else:
                daemon.remove(container_id)
    finally:
        daemon.close()
    results = await asyncio.gather(*(run(pooled, "print('ok')") for _ in range(2)))
    assert [r.stdout for r in results] == ["ok\n", "ok\n"]
    assert await pooled.wait_until_warm(60)


@pytest.mark.parametrize("pooled", [{"max_age_seconds": 1.0}], indirect=True)
async def test_idle_sandboxes_are_recycled_after_their_maximum_age(pooled: DockerEngine) -> None:
    engine_id = pooled.settings.engine_id
    first = set(leftover_containers(engine_id, settle_seconds=0))
    assert len(first) == 2
    await asyncio.sleep(2.5)
    assert await pooled.wait_until_warm(60)
    now = set(leftover_containers(engine_id, settle_seconds=0))
    assert len(now) == 2 and not now & first
    (stats,) = await pooled.pool_stats()
    assert stats.recycled >= 2


async def test_pool_state_through_the_executor_service() -> None:
    settings = make_settings(pool={"size": 2})
    async with running_executor(settings) as url:
        remote = RemoteExecutionEngine([url], token=EXECUTOR_TOKEN, settings=settings)
        try:
            for _ in range(200):
                stats = await remote.pool_stats()
                if stats and stats[0].ready == 2:
                    break
                await asyncio.sleep(0.05)
            result = await run(remote, "print('remote warm')")
            assert result.stdout == "remote warm\n"
            (stats,) = await remote.pool_stats()
            assert (stats.profile, stats.target, stats.hits) == ("128m-1cpu", 2, 1)
            async with httpx.AsyncClient(base_url=url) as http:
                assert (await http.get(POOL_PATH)).status_code == 401
                auth = {"Authorization": f"Bearer {EXECUTOR_TOKEN}"}
                metrics = (await http.get("/metrics", headers=auth)).text
            assert 'assay_pool_hits_total{profile="128m-1cpu"} 1.0' in metrics
            assert 'assay_pool_target{profile="128m-1cpu"} 2.0' in metrics
        finally:
            await remote.close()
    assert leftover_containers(settings.engine_id, settle_seconds=0) == []


def test_pool_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from assay.config import Settings  # noqa: PLC0415 - this test only

    monkeypatch.setenv("ASSAY_EXECUTION__POOL__SIZE", "3")
    monkeypatch.setenv(
        "ASSAY_EXECUTION__POOL__PROFILES", '[{"memory_mb": 512, "cpus": 2, "size": 1}]'
    )
    pool = Settings().execution.pool
    assert pool.size == 3
    assert (pool.profiles[0].memory_mb, pool.profiles[0].cpus) == (512, 2.0)
    assert isinstance(Settings().execution, ExecutionSettings)
