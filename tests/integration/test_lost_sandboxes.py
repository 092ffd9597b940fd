"""A verdict comes only from the program: an evaluation whose sandbox is killed or removed
from outside runs again (a ``requeued`` event, attempts + 1), then ends ``error`` saying the
sandbox was lost. In the monolith and behind an executor service, alone or in a batch."""

from __future__ import annotations

import asyncio

import pytest

from assay.client import AsyncAssayClient
from assay.execution_engine.docker_daemon import DockerDaemon
from tests.conftest import RunningServer
from tests.sandbox import PRINT_CONTAINER_ID

pytestmark = [pytest.mark.docker, pytest.mark.integration]

CODE = PRINT_CONTAINER_ID + "import time\ntime.sleep(3)\nprint('done')"
TWO_ATTEMPTS = {"queue": {"max_attempts": 2}, "execution": {"default_timeout_seconds": 20.0}}


@pytest.fixture(params=["local", "remote"], autouse=True)
def execution_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["evaluation", "batch"])
def isolation(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def submit(client: AsyncAssayClient, isolation: str) -> str:
    if isolation == "batch":
        [evaluation] = await client.submit_batch([{"code": CODE}], isolation="batch")
    else:
        evaluation = await client.submit(CODE)
    return evaluation.id


async def kill_runs(client: AsyncAssayClient, evaluation_id: str, kills: int, how: str) -> int:
    """Kill (or force-remove) the sandbox of the evaluation's first ``kills`` runs as soon as
    each has printed its container's id; returns how many were killed."""
    daemon = DockerDaemon(None, timeout=30)
    killed = 0
    try:
        async for event in client.events(evaluation_id):
            if event.type == "output" and killed < kills:
                container_id = str(event.data["text"]).split()[0]
                if container_id.startswith("assay-"):
                    stop = daemon.kill if how == "kill" else daemon.remove
                    await asyncio.to_thread(stop, container_id)
                    killed += 1
            if event.type in {"finished", "cancelled"}:
                break
    finally:
        daemon.close()
    return killed


@pytest.mark.parametrize("server", [TWO_ATTEMPTS], indirect=True)
@pytest.mark.parametrize("how", ["kill", "rm -f"])
async def test_a_lost_sandbox_runs_the_evaluation_again(
    server: RunningServer, isolation: str, how: str
) -> None:
    async with server.client() as client:
        evaluation_id = await submit(client, isolation)
        assert await asyncio.wait_for(kill_runs(client, evaluation_id, 1, how), 60) == 1
        evaluation = await client.wait(evaluation_id, timeout=60)
        assert evaluation.status == "completed", evaluation
        assert evaluation.stdout.endswith("done\n")
        assert evaluation.attempts == 2
        events = [event async for event in client.events(evaluation_id)]
    requeued = [event for event in events if event.type == "requeued"]
    assert len(requeued) == 1
    assert "sandbox was lost" in str(requeued[0].data["reason"])


@pytest.mark.parametrize("server", [TWO_ATTEMPTS], indirect=True)
async def test_a_sandbox_lost_on_every_attempt_is_an_error_not_a_verdict(
    server: RunningServer, isolation: str
) -> None:
    async with server.client() as client:
        evaluation_id = await submit(client, isolation)
        assert await asyncio.wait_for(kill_runs(client, evaluation_id, 2, "kill"), 60) == 2
        evaluation = await client.wait(evaluation_id, timeout=60)
    assert evaluation.status == "error"
    assert evaluation.exit_code is None
    assert evaluation.attempts == 2
    assert evaluation.error is not None and "sandbox was lost" in evaluation.error
    assert "each of its 2 attempts" in evaluation.error
