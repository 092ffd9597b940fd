"""What differs under gVisor (runsc): run in both suites, each asserting its runtime's side."""

from __future__ import annotations

import os

import pytest

from assay.errors import InvalidRequestError
from assay.execution_engine import ExecutionRequest
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.isolation import GVISOR
from tests.sandbox import TEST_RUNTIME, make_settings, run

pytestmark = [pytest.mark.docker, pytest.mark.integration]


async def test_gvisor_refuses_batch_isolation() -> None:
    """The batch reset proves a sandbox clean with kernel counters gVisor does not show (pids
    refusals, SysV IPC objects): refused with a clear error rather than unverified."""
    engine = DockerEngine(make_settings(runtime=GVISOR, pool={"size": 0}))
    try:
        with pytest.raises(InvalidRequestError, match="not available under gVisor"):
            engine.batch_sandbox()
    finally:
        await engine.close()


async def test_the_sandbox_kernel_is_the_runtimes(engine: DockerEngine) -> None:
    result = await run(engine, "import platform\nprint(platform.release())")
    if TEST_RUNTIME == GVISOR:
        assert result.stdout == "4.4.0\n"
    else:
        assert result.stdout == os.uname().release + "\n"
    assert (await engine.execute(ExecutionRequest(code="pass"))).exit_code == 0
