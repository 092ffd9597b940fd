"""Engine lifecycle on the real Docker engine: the sandboxes of a crashed engine (busy and
warm alike) end by themselves, with no engine restarted to clean up; one with its id then
works as before."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from assay.config import ExecutionSettings
from assay.execution_engine.docker_engine import DockerEngine
from tests.conftest import leftover_containers
from tests.sandbox import cold, run

pytestmark = [pytest.mark.docker, pytest.mark.integration]

CRASHING_ENGINE = textwrap.dedent(
    """
    import asyncio, os, sys
    from assay.config import ExecutionSettings
    from assay.execution_engine.docker_engine import DockerEngine
    from assay.execution_engine.models import ExecutionRequest

    async def main():
        engine = DockerEngine(ExecutionSettings.model_validate_json(sys.argv[1]))
        assert await engine.wait_until_warm(60)
        asyncio.ensure_future(engine.execute(ExecutionRequest(code="import time; time.sleep(60)")))
        assert await engine.wait_until_warm(60)  # the used sandbox is replaced
        await asyncio.sleep(0.5)
        os._exit(0)  # a crash: no cleanup of any kind

    asyncio.run(main())
    """
)


async def test_the_sandboxes_of_a_crashed_engine_end_by_themselves(
    settings: ExecutionSettings,
) -> None:
    """They used to stay until an engine with the same id started and removed them (and that
    same rule destroyed the sandboxes of live engines sharing the id)."""
    subprocess.run(
        [sys.executable, "-c", CRASHING_ENGINE, settings.model_dump_json()],
        check=True,
        timeout=120,
    )
    # The busy sandbox and the warm one: their lifelines ended with the process.
    assert leftover_containers(settings.engine_id, settle_seconds=10) == []
    restarted = DockerEngine(cold(settings))
    try:
        result = await run(restarted, "print('fine')")
        assert result.stdout == "fine\n"
    finally:
        await restarted.close()
