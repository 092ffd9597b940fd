"""Remote mode when things go wrong: tokens, executors down before and during an execution,
and one executor of two gone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from assay.config import Settings
from assay.errors import EngineUnavailableError
from assay.execution_engine import ExecutionRequest, ExecutionStatus
from assay.execution_engine.remote import RemoteExecutionEngine
from tests.conftest import (
    EXECUTOR_TOKEN,
    leftover_containers,
    running_executor,
    running_server,
)
from tests.e2e.test_crash_recovery import free_port
from tests.sandbox import TEST_ENGINE_PREFIX, make_settings, platform_settings

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def remote_settings(data_dir: Path, executor_urls: list[str], **overrides: object) -> Settings:
    settings = platform_settings(data_dir, **overrides)
    return settings.model_copy(
        update={
            "execution_mode": "remote",
            "execution_service_url": ",".join(executor_urls),
            "executor": settings.executor.model_copy(update={"token": SecretStr(EXECUTOR_TOKEN)}),
        }
    )


async def test_a_wrong_or_missing_token_is_refused_and_nothing_runs() -> None:
    settings = make_settings()
    async with running_executor(settings) as url, httpx.AsyncClient(base_url=url) as http:
        body = {"code": "print('should not run')"}
        for headers in ({}, {"Authorization": "Bearer wrong-token"}):
            response = await http.post("/v1/executions", json=body, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthorized"
        assert (await http.get("/v1/capacity")).status_code == 401
        metrics = await http.get("/metrics", headers={"Authorization": f"Bearer {EXECUTOR_TOKEN}"})
        assert "assay_executor_executions_total{" not in metrics.text, "nothing ran"
        engine = RemoteExecutionEngine([url], token="wrong-token", settings=settings)
        with pytest.raises(EngineUnavailableError):
            await engine.execute(ExecutionRequest(code="print(1)"))
        await engine.close()
    assert leftover_containers(settings.engine_id) == []


async def test_executor_health_is_open_and_its_details_need_the_token() -> None:
    settings = make_settings()
    auth = {"Authorization": f"Bearer {EXECUTOR_TOKEN}"}
    async with running_executor(settings) as url, httpx.AsyncClient(base_url=url) as http:
        health = await http.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"}), "no details"
        assert (await http.get("/v1/capacity")).status_code == 401
        capacity = (await http.get("/v1/capacity", headers=auth)).json()
        engine = RemoteExecutionEngine([url], token=EXECUTOR_TOKEN, settings=settings)
        remote = await engine.check_health()
        await engine.close()
    assert (capacity["total"], capacity["free"], capacity["running"]) == (4, 4, 0)
    facts = capacity["engine"]
    assert (facts["healthy"], facts["detail"]) == (True, "ok"), facts
    assert (facts["engine"], facts["image"]) == ("docker", settings.image), facts
    assert facts["docker_version"] not in {"", "?"}, facts
    assert remote.healthy and remote.facts[url] == "ok"
    # What the executor's sandboxes proved reaches the platform: the same values.
    assert remote.facts[f"{url} runtime"] == facts["runtime"]
    assert "the sandbox shares the host's kernel" in facts["runtime"] or "4.4.0" in facts["runtime"]
    assert remote.facts[f"{url} seccomp"] == facts["seccomp"]
    assert "io_uring_setup refused with EPERM" in facts["seccomp"]
    assert leftover_containers(settings.engine_id) == []


async def test_an_executor_without_docker_is_unhealthy_and_says_why_behind_the_token() -> None:
    settings = make_settings(docker_host="unix:///nonexistent/docker.sock")
    auth = {"Authorization": f"Bearer {EXECUTOR_TOKEN}"}
    async with running_executor(settings) as url, httpx.AsyncClient(base_url=url) as http:
        health = await http.get("/healthz")
        capacity = (await http.get("/v1/capacity", headers=auth)).json()
        engine = RemoteExecutionEngine([url], token=EXECUTOR_TOKEN, settings=settings)
        remote = await engine.check_health()
        await engine.close()
    assert (health.status_code, health.json()) == (503, {"status": "unhealthy"})
    assert capacity["engine"]["healthy"] is False
    assert "/nonexistent/docker.sock" in capacity["engine"]["detail"], capacity
    assert not remote.healthy
    assert "/nonexistent/docker.sock" in remote.facts[url], "the reason reaches the platform"


async def test_with_one_executor_of_two_down_all_work_goes_to_the_other() -> None:
    settings = make_settings()
    dead = f"http://127.0.0.1:{free_port()}"
    async with running_executor(settings) as alive:
        engine = RemoteExecutionEngine([dead, alive], token=EXECUTOR_TOKEN, settings=settings)
        results = await asyncio.gather(
            *(engine.execute(ExecutionRequest(code=f"print({i})")) for i in range(6))
        )
        health = await engine.check_health()
        await engine.close()
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]
    assert all(r.status is ExecutionStatus.COMPLETED for r in results)
    assert health.healthy
    assert health.facts[dead] != "ok"


async def test_evaluations_wait_for_an_executor_that_is_down_then_run(tmp_path: Path) -> None:
    port = free_port()
    settings = remote_settings(tmp_path / "data", [f"http://127.0.0.1:{port}"])
    async with running_server(settings) as server, server.client() as client:
        ready = await client.ready()
        assert ready["status"] == "not_ready"
        evaluation = await client.submit("print('eventually')")
        await asyncio.sleep(2)
        waiting = await client.get(evaluation.id)
        assert waiting.status in {"queued", "running"}, "it waits; it does not fail"
        async with running_executor(settings.execution, port=port):
            done = await client.wait(evaluation.id, timeout=60)
        events = [e.type async for e in client.events(evaluation.id)]
    assert done.status == "completed"
    assert done.stdout == "eventually\n"
    assert "requeued" in events


async def test_an_executor_killed_mid_execution_means_a_rerun(tmp_path: Path) -> None:
    """Policy: the program may have partly run, so the evaluation is put back in the queue and
    run again in a fresh sandbox once an executor answers (documented in remote.py)."""
    port = free_port()
    engine_id = f"{TEST_ENGINE_PREFIX}killed-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "ASSAY_EXECUTOR__TOKEN": EXECUTOR_TOKEN,
        "ASSAY_EXECUTION__ENGINE_ID": engine_id,
    }
    command = [sys.executable, "-m", "assay", "executor", "--port", str(port)]
    executor = subprocess.Popen(command, env=env)
    settings = remote_settings(
        tmp_path / "data", [f"http://127.0.0.1:{port}"], execution={"engine_id": engine_id}
    )
    try:
        async with running_server(settings) as server, server.client() as client:
            for _ in range(100):
                if (await client.ready())["status"] == "ready":
                    break
                await asyncio.sleep(0.1)
            evaluation = await client.submit(
                "import time\nprint('first run output', flush=True)\ntime.sleep(3)\nprint('end')"
            )
            async for event in client.events(evaluation.id):
                if event.type == "output":
                    break
            executor.send_signal(signal.SIGKILL)
            executor.wait(timeout=10)
            await asyncio.sleep(1)
            executor = subprocess.Popen(command, env=env)
            done = await client.wait(evaluation.id, timeout=90)
            events = [e.type async for e in client.events(evaluation.id)]
    finally:
        executor.send_signal(signal.SIGTERM)
        executor.wait(timeout=30)
    assert done.status == "completed", done
    assert done.stdout == "first run output\nend\n"
    assert done.attempts >= 2
    assert events.count("requeued") >= 1
    assert events[-1] == "finished"
    assert leftover_containers(engine_id) == []
