"""`assay serve`, `assay run` and `assay executor` on one Docker engine, all with the same
engine id, as a user starts them: none touches another's sandboxes, and a SIGKILLed server
leaves none behind, idle or running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from assay.client import AsyncAssayClient
from assay.execution_engine.docker_daemon import DockerDaemon
from assay.execution_engine.sandbox_spec import LABEL_ENGINE, LABEL_OWNER
from tests.e2e.test_crash_recovery import free_port, start_server, wait_ready
from tests.sandbox import TEST_ENGINE_PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]

EXAMPLE = Path(__file__).parents[2] / "examples" / "hello.py"
TOKEN = "shared-engine-token-0123456789"


def owners(daemon: DockerDaemon, engine_id: str) -> dict[str, set[str]]:
    """Running containers of ``engine_id``, by owner."""
    found: dict[str, set[str]] = {}
    for container in daemon.containers_labelled(LABEL_ENGINE):
        if container.labels[LABEL_ENGINE] == engine_id and container.state == "running":
            found.setdefault(container.labels.get(LABEL_OWNER, "?"), set()).add(container.id)
    return found


async def wait_for_executor(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        for _ in range(300):
            assert process.poll() is None, "the executor exited"
            try:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                if (await http.get("/healthz", headers=headers)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the executor never became healthy")


async def test_serve_run_and_an_executor_share_one_engine(tmp_path: Path) -> None:
    engine_id = f"{TEST_ENGINE_PREFIX}shared-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ASSAY_EXECUTION__ENGINE_ID": engine_id}
    daemon = DockerDaemon(None, timeout=30)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    server = start_server(tmp_path / "data", port, engine_id, log)
    executor = None
    try:
        await wait_ready(url, server, log)
        async with AsyncAssayClient(url) as client:
            slow = await client.submit(
                "import time\nprint('started', flush=True)\ntime.sleep(6)\nprint('survived')",
                timeout_seconds=30,
            )
            async for event in client.events(slow.id):
                if event.type == "output":
                    break
            [server_owner] = owners(daemon, engine_id)
            deadline = time.monotonic() + 30
            while len(owners(daemon, engine_id)[server_owner]) < 2:  # the pool refills
                assert time.monotonic() < deadline, "the server's warm pool never refilled"
                await asyncio.sleep(0.1)
            server_sandboxes = owners(daemon, engine_id)[server_owner]

            ran = subprocess.run(
                [sys.executable, "-m", "assay", "run", str(EXAMPLE), "--timeout", "5"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert ran.returncode == 0, ran.stderr
            assert "Hello, world" in ran.stdout
            assert "orphan" not in ran.stderr and "abandoned" not in ran.stderr

            executor_port = free_port()
            executor = subprocess.Popen(
                [sys.executable, "-m", "assay", "executor", "--port", str(executor_port)],
                env={**env, "ASSAY_EXECUTOR__TOKEN": TOKEN},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await wait_for_executor(f"http://127.0.0.1:{executor_port}", executor)

            finished = await client.wait(slow.id, timeout=60)
            assert finished.status == "completed", finished
            assert finished.stdout == "started\nsurvived\n"
            assert finished.attempts == 1
            now = owners(daemon, engine_id)
            assert len(now) == 2, f"the server's and the executor's sandboxes, not {now}"
            warm_kept = server_sandboxes & now.get(server_owner, set())
            assert warm_kept, "every warm sandbox of the server died"

            spinning = await client.submit(
                "print('spin', flush=True)\nwhile True: pass", timeout_seconds=300
            )
            async for event in client.events(spinning.id):
                if event.type == "output":
                    break
        executor_sandboxes = now.keys() - {server_owner}
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        killed = time.monotonic()
        while server_owner in owners(daemon, engine_id) or _any_of(daemon, server_owner):
            assert time.monotonic() - killed < 60, "the server's sandboxes outlived it"
            await asyncio.sleep(0.2)
        assert executor_sandboxes <= owners(daemon, engine_id).keys(), (
            "the executor's sandboxes died with the server"
        )
    finally:
        server.kill()
        if executor is not None:
            executor.send_signal(signal.SIGTERM)
            executor.wait(30)
        daemon.close()


def _any_of(daemon: DockerDaemon, owner: str) -> bool:
    """Whether any container of ``owner`` is left, in any state."""
    return any(c.labels.get(LABEL_OWNER) == owner for c in daemon.containers_labelled(LABEL_OWNER))
