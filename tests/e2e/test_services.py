"""Phase 1 as deployed: build both service images offline (scripts/build-images), run them
with compose.yaml (host networking), and evaluate code through the stack end to end."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assay import __version__
from tests.conftest import leftover_containers
from tests.e2e.test_crash_recovery import free_port
from tests.sandbox import TEST_ENGINE_PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def run(*command: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    completed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert completed.returncode == 0, f"{command}: {completed.stdout}\n{completed.stderr}"
    return completed.stdout


@pytest.fixture(scope="module")
def images() -> None:
    run("scripts/build-images")


@pytest.fixture
def stack(images: None) -> Iterator[tuple[str, str]]:
    engine_id = f"{TEST_ENGINE_PREFIX}stack-{uuid.uuid4().hex[:8]}"
    project = f"assaytest{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "ASSAY_EXECUTOR_TOKEN": "stack-token-" + uuid.uuid4().hex,
        "ASSAY_EXECUTOR_ENGINE_ID": engine_id,
        "ASSAY_PORT": str(free_port()),
        "ASSAY_EXECUTOR_PORT": str(free_port()),
        "ASSAY_VERSION": __version__,
    }
    compose = ["docker-compose", "-f", "compose.yaml", "-p", project]
    run(*compose, "up", "-d", env=env)
    try:
        yield f"http://127.0.0.1:{env['ASSAY_PORT']}", engine_id
    finally:
        run(*compose, "down", "-v", env=env, timeout=120)
    assert leftover_containers(engine_id) == []


def test_only_the_executor_image_has_the_docker_sdk(images: None) -> None:
    probe = ["python3", "-c", "import docker"]
    platform = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            f"assay-platform:{__version__}",
            "/opt/assay/bin/python",
            *probe[1:],
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert platform.returncode != 0 and "No module named 'docker'" in platform.stderr
    run(
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        f"assay-executor:{__version__}",
        "/opt/assay/bin/python",
        *probe[1:],
    )


def test_code_runs_end_to_end_through_the_stack(stack: tuple[str, str]) -> None:
    url, _ = stack
    for _ in range(300):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    ready = httpx.get(f"{url}/readyz", timeout=10).json()
    assert ready["status"] == "ready", ready
    assert ready["checks"]["engine"]["mode"] == "remote"
    response = httpx.post(
        f"{url}/api/v1/evaluations?wait=60",
        json={"code": "import sys\nprint('through the stack', sys.stdin.read())", "stdin": "ok"},
        timeout=90,
    )
    body = response.json()
    assert body["status"] == "completed", body
    assert body["stdout"] == "through the stack ok\n"
