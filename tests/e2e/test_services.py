"""Phase 1 and the scale-out profile as deployed: build the service images without a registry
(scripts/build-images), run them with compose.yaml (host networking), and evaluate code
through each stack end to end."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from assay import __version__
from assay.client import AssayClient
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


@contextmanager
def compose_up(
    env: dict[str, str], *up_options: str, profile: str | None = None
) -> Iterator[list[str]]:
    """``docker-compose up -d`` in a project of its own; ``down -v`` afterwards."""
    compose = ["docker-compose", "-f", "compose.yaml", "-p", f"assaytest{uuid.uuid4().hex[:6]}"]
    if profile:
        compose += ["--profile", profile]
    run(*compose, "up", "-d", *up_options, env=env)
    try:
        yield compose
    finally:
        run(*compose, "down", "-v", env=env, timeout=120)


def wait_ready(url: str) -> dict[str, object]:
    for _ in range(300):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    ready: dict[str, object] = httpx.get(f"{url}/readyz", timeout=10).json()
    assert ready["status"] == "ready", ready
    return ready


@pytest.fixture
def stack(images: None) -> Iterator[tuple[str, str]]:
    engine_id = f"{TEST_ENGINE_PREFIX}stack-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "ASSAY_EXECUTOR__TOKEN": "stack-token-" + uuid.uuid4().hex,
        "ASSAY_EXECUTOR_ENGINE_ID": engine_id,
        "ASSAY_PORT": str(free_port()),
        "ASSAY_EXECUTOR_PORT": str(free_port()),
        "ASSAY_VERSION": __version__,
    }
    with compose_up(env):
        yield f"http://127.0.0.1:{env['ASSAY_PORT']}", engine_id
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
    ready = wait_ready(url)
    assert ready["checks"]["engine"]["mode"] == "remote"  # type: ignore[index]
    response = httpx.post(
        f"{url}/api/v1/evaluations?wait=60",
        json={"code": "import sys\nprint('through the stack', sys.stdin.read())", "stdin": "ok"},
        timeout=90,
    )
    body = response.json()
    assert body["status"] == "completed", body
    assert body["stdout"] == "through the stack ok\n"


@dataclass
class ScaleOut:
    compose: list[str]
    env: dict[str, str]
    apis: list[str]
    executors: list[str]
    workers: list[str]
    engine_id: str


@pytest.fixture
def scale_out(images: None) -> Iterator[ScaleOut]:
    engine_id = f"{TEST_ENGINE_PREFIX}scale-{uuid.uuid4().hex[:8]}"
    ports = {
        name: str(free_port())
        for name in (
            "POSTGRES",
            "REDIS",
            "EXECUTOR",
            "EXECUTOR_2",
            "API_1",
            "API_2",
            "WORKER_1",
            "WORKER_2",
        )
    }
    env = {
        **os.environ,
        **{f"ASSAY_{name}_PORT": port for name, port in ports.items()},
        "ASSAY_EXECUTOR__TOKEN": "scale-token-" + uuid.uuid4().hex,
        "ASSAY_DB_PASSWORD": uuid.uuid4().hex,
        "ASSAY_REDIS_PASSWORD": uuid.uuid4().hex,
        "ASSAY_EXECUTOR_ENGINE_ID": engine_id,
        "ASSAY_VERSION": __version__,
    }
    with compose_up(env, "--scale", "platform=0", profile="scale-out") as compose:
        yield ScaleOut(
            compose,
            env,
            apis=[f"http://127.0.0.1:{ports[name]}" for name in ("API_1", "API_2")],
            executors=[f"http://127.0.0.1:{ports[name]}" for name in ("EXECUTOR", "EXECUTOR_2")],
            workers=[f"http://127.0.0.1:{ports[name]}" for name in ("WORKER_1", "WORKER_2")],
            engine_id=engine_id,
        )
    assert leftover_containers(engine_id) == []
    assert leftover_containers(f"{engine_id}-2") == []


def containers(stack: ScaleOut) -> dict[str, dict[str, Any]]:
    """The stack's running containers by compose service name, as ``docker inspect`` has them."""
    ids = run(*stack.compose, "ps", "-q", env=stack.env).split()
    inspected = json.loads(run("docker", "inspect", *ids))
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}


def total(url: str, metric: str, token: str | None = None) -> float:
    """The sum of a metric's samples, all labels, in ``url``'s /metrics."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    metrics = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    samples = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith((metric + "{", metric + " "))
    ]
    assert samples, f"no {metric} in {url}/metrics"
    return sum(samples)


def health_statuses(stack: ScaleOut, timeout: float = 60) -> dict[str, str | None]:
    """Each service's healthcheck status, once none is ``starting`` any more."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = {
            name: container["State"].get("Health", {}).get("Status")
            for name, container in containers(stack).items()
        }
        if "starting" not in statuses.values() or time.monotonic() > deadline:
            return statuses
        time.sleep(1)


def assert_executor_health_is_open_and_details_need_the_token(url: str, token: str) -> None:
    health = httpx.get(f"{url}/healthz", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "ok"}), "no details, no token"
    assert httpx.get(f"{url}/v1/capacity", timeout=10).status_code == 401
    capacity = httpx.get(
        f"{url}/v1/capacity", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    engine = capacity["engine"]
    assert engine["healthy"] is True and engine["detail"] == "ok", capacity
    assert engine["engine"] == "docker" and engine["docker_version"], capacity


def test_the_scale_out_profile_runs_replicas_workers_and_executors(scale_out: ScaleOut) -> None:
    running = containers(scale_out)
    assert sorted(running) == sorted(
        ["postgres", "redis", "executor", "executor-2", "worker-1", "worker-2", "api-1", "api-2"]
    ), "the profile without the Phase 1 platform"
    for service, container in running.items():
        sockets = [m for m in container["Mounts"] if m["Source"] == "/var/run/docker.sock"]
        assert bool(sockets) == service.startswith("executor"), f"{service} and the socket"
        if service.startswith(("api", "worker")):
            assert container["Config"]["User"] == "65534:65534", service
    for url in scale_out.apis:
        ready = wait_ready(url)
        assert "not used" in ready["checks"]["engine"]["detail"], ready  # type: ignore[index]
    for url in scale_out.workers:
        assert wait_ready(url)["checks"]["engine"]["ok"] is True  # type: ignore[index]

    first, second = (AssayClient(url) for url in scale_out.apis)
    with first, second:
        ticks = (
            "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.5)"
        )
        watched = first.submit(ticks)  # streamed by the other replica
        streamed = [e for e in second.events(watched.id) if e.type == "output"]
        assert "".join(e.data["text"] for e in streamed) == "tick 0\ntick 1\ntick 2\n"
        expected: dict[str, int] = {}
        for start, client in ((0, first), (20, second)):
            programs = [
                f"import time\ntime.sleep(0.2)\nprint({i})" for i in range(start, start + 20)
            ]
            batch = client.submit_batch([{"code": code} for code in programs])
            expected |= {evaluation.id: i for i, evaluation in enumerate(batch, start)}
        readers = (second, first)  # each evaluation read through the replica that did not take it
        results = [readers[expected[eid] // 20].wait(eid, timeout=300) for eid in expected]
    wrong = [r for r in results if r.status != "completed" or r.stdout != f"{expected[r.id]}\n"]
    assert wrong == []
    assert {r.executor for r in results} == {"worker-1", "worker-2"}, "both workers ran some"
    token = scale_out.env["ASSAY_EXECUTOR__TOKEN"]
    ran = [total(url, "assay_executor_executions_total", token) for url in scale_out.executors]
    assert sum(ran) == len(results) + 1 and min(ran) > 0, ran
    recorded = [total(url, "assay_evaluations_total") for url in scale_out.workers]
    assert sum(recorded) == len(results) + 1 and min(recorded) > 0, recorded
    depth = [total(url, "assay_queue_depth") for url in scale_out.apis + scale_out.workers]
    assert depth == [0, 0, 0, 0]
    assert health_statuses(scale_out) == dict.fromkeys(running, "healthy"), "every service"
    for url in scale_out.executors:
        assert_executor_health_is_open_and_details_need_the_token(url, token)

    run(*scale_out.compose, "stop", "redis", env=scale_out.env)
    worker = httpx.get(f"{scale_out.workers[0]}/readyz", timeout=30)
    replica = httpx.get(f"{scale_out.apis[0]}/readyz", timeout=30)
    assert worker.status_code == 503 and worker.json()["checks"]["broker"]["ok"] is False
    assert replica.status_code == 200 and replica.json()["checks"]["broker"]["ok"] is False
    run(*scale_out.compose, "start", "redis", env=scale_out.env)
    assert wait_ready(scale_out.workers[0])["checks"]["broker"]["ok"] is True  # type: ignore[index]
