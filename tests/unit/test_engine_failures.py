"""Failures of the engine itself raise specific errors that tell the user the fix."""

from __future__ import annotations

import pytest

from assay.errors import EngineUnavailableError, InvalidRequestError
from assay.execution_engine import ExecutionRequest
from assay.execution_engine.docker_engine import DockerEngine
from tests.sandbox import make_settings


async def test_an_unreachable_daemon_says_how_to_start_one() -> None:
    engine = DockerEngine(make_settings(docker_host="unix:///nonexistent/docker.sock"))
    with pytest.raises(EngineUnavailableError) as caught:
        await engine.execute(ExecutionRequest(code="print(1)"))
    message = caught.value.message
    assert "unix:///nonexistent/docker.sock" in message
    assert "scripts/bootstrap" in message and "dockerd --bridge=none" in message
    health = await engine.check_health()
    assert not health.healthy and "not reachable" in health.detail
    await engine.close()


async def test_invalid_requests_are_rejected_before_touching_docker() -> None:
    engine = DockerEngine(make_settings(docker_host="unix:///nonexistent/docker.sock"))
    with pytest.raises(InvalidRequestError, match="memory_mb"):
        await engine.execute(ExecutionRequest(code="print(1)", memory_mb=10**6))
    await engine.close()
