"""200 evaluations submitted at once all finish with their own output, and never more run at
once than the configured concurrency."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import RunningServer

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]

COUNT = 200


@pytest.mark.parametrize("server", [{"queue": {"concurrency": 3}}], indirect=True)
async def test_two_hundred_at_once(server: RunningServer) -> None:
    samples: list[int] = []
    stop = asyncio.Event()

    async with server.client() as client:

        async def sample() -> None:
            while not stop.is_set():
                samples.append((await client.queue()).running)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        submitted = await asyncio.gather(
            *(client.submit(f"print({i} * {i})", labels={"load": "200"}) for i in range(COUNT))
        )
        finished = [await client.wait(e.id, timeout=300) for e in submitted]
        stop.set()
        await sampler
    assert len({e.id for e in submitted}) == COUNT
    for i, evaluation in enumerate(finished):
        assert evaluation.status == "completed", evaluation
        assert evaluation.stdout == f"{i * i}\n"
    capacity = server.settings.queue.concurrency
    assert max(samples) <= capacity
    # Independent of sampling: the running intervals recorded by storage never overlap more.
    edges = sorted(
        [(e.started_at, 1) for e in finished] + [(e.finished_at, -1) for e in finished],
        key=lambda edge: (edge[0], edge[1]),
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak <= capacity
    assert peak == capacity, "the queue did use its concurrency"
