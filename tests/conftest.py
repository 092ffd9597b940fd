"""Shared fixtures. Tests marked ``docker`` use the real Docker engine and sandbox image: when
either is missing they fail under CI (``CI`` set) and skip, with the reason, elsewhere."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from assay.config import ExecutionSettings
from assay.errors import ExecutionError
from assay.execution_engine.docker_client import DockerDaemon
from assay.execution_engine.docker_engine import LABEL_ENGINE, LABEL_MANAGED, DockerEngine
from tests.sandbox import TEST_ENGINE_PREFIX, make_settings


def docker_unavailable(reason: str) -> None:
    message = f"needs Docker and the sandbox image (run `make test`): {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)  # not CI: a developer machine without Docker


def leftover_containers(engine_id: str) -> list[str]:
    daemon = DockerDaemon(None, timeout=30)
    try:
        return daemon.container_ids({LABEL_ENGINE: engine_id})
    finally:
        daemon.close()


@pytest.fixture
def settings() -> ExecutionSettings:
    return make_settings()


@pytest.fixture
async def engine(settings: ExecutionSettings) -> AsyncIterator[DockerEngine]:
    """A started DockerEngine; afterwards, checks that none of its containers is left."""
    docker_engine = DockerEngine(settings)
    try:
        await docker_engine.start()
    except ExecutionError as exc:
        await docker_engine.close()
        docker_unavailable(exc.message)
    try:
        yield docker_engine
    finally:
        await docker_engine.close()
    assert leftover_containers(settings.engine_id) == [], "a sandbox container was left behind"


@pytest.fixture(scope="session", autouse=True)
def _remove_test_containers() -> Iterator[None]:
    """Whatever happens in a test, no test container outlives the session."""
    yield
    try:
        daemon = DockerDaemon(None, timeout=30)
    except ExecutionError:
        return
    try:
        for container_id, labels in daemon.containers_labelled(LABEL_MANAGED):
            if labels.get(LABEL_ENGINE, "").startswith(TEST_ENGINE_PREFIX):
                daemon.remove(container_id)
    finally:
        daemon.close()
