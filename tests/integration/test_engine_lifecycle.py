"""The Docker engine's own lifecycle: orphans of a crashed engine."""

from __future__ import annotations

import asyncio

import pytest

from assay.execution_engine.docker_engine import DockerEngine
from tests.conftest import leftover_containers
from tests.sandbox import run

pytestmark = [pytest.mark.docker, pytest.mark.integration]


async def test_orphans_of_a_crashed_engine_are_removed_on_start(engine: DockerEngine) -> None:
    """A container left by an engine that died is removed when an engine with its id starts."""
    settings = engine.settings
    crashed = DockerEngine(settings)
    await crashed.start()
    task = asyncio.create_task(run(crashed, "import time\ntime.sleep(60)"))
    for _ in range(100):
        if leftover_containers(settings.engine_id):
            break
        await asyncio.sleep(0.1)
    orphans = leftover_containers(settings.engine_id)
    assert len(orphans) == 1
    # Simulate the crash: forget the run without letting the engine clean up.
    crashed._active.clear()  # deliberately bypass the engine's own cleanup
    task.cancel()
    restarted = DockerEngine(settings)
    await restarted.start()
    assert orphans[0] not in leftover_containers(settings.engine_id)
    await restarted.close()
    with pytest.raises(BaseException):  # noqa: B017, PT011 - cancelled or the container vanished
        await task
    await crashed.close()
