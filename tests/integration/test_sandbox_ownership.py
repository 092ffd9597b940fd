"""Processes sharing one Docker engine never touch each other's sandboxes; no sandbox
outlives the process that owns it; a sandbox killed or removed from outside gives no verdict."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest

from assay.errors import SandboxLostError
from assay.execution_engine import ExecutionRequest, ExecutionStatus
from assay.execution_engine.docker_daemon import DockerDaemon
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.sandbox_spec import LABEL_ENGINE, LABEL_LIVE, LABEL_MANAGED, LABEL_OWNER
from tests.conftest import leftover_containers
from tests.sandbox import PRINT_CONTAINER_ID, make_settings

pytestmark = [pytest.mark.docker, pytest.mark.integration]


@pytest.fixture
def daemon() -> DockerDaemon:
    return DockerDaemon(None, timeout=30)


async def test_an_engine_with_the_same_id_leaves_a_running_one_alone(
    daemon: DockerDaemon,
) -> None:
    """The README's `assay run` beside `assay serve` (both engine id ``local`` by default)
    used to remove the server's sandboxes as orphans: a running evaluation failed and the
    warm pool died."""
    settings = make_settings(pool={"size": 2})
    first = DockerEngine(settings)
    try:
        assert await first.wait_until_warm(60)
        warm = set(daemon.container_ids({LABEL_OWNER: first.owner}, running=True))
        assert len(warm) == 2
        running = asyncio.create_task(
            first.execute(ExecutionRequest(code="import time\ntime.sleep(4)\nprint('survived')"))
        )
        await asyncio.sleep(1)
        second = DockerEngine(settings)  # the same engine id, another process's engine
        try:
            assert (await second.execute(ExecutionRequest(code="print(1)"))).stdout == "1\n"
        finally:
            await second.close()
        result = await running
        assert (result.status, result.stdout) == (ExecutionStatus.COMPLETED, "survived\n")
        still = set(daemon.container_ids({LABEL_OWNER: first.owner}, running=True))
        assert len(warm & still) >= 1, "the second engine removed the first one's warm sandboxes"
    finally:
        await first.close()
    assert leftover_containers(settings.engine_id) == []


async def test_sandboxes_abandoned_before_starting_are_removed_others_are_not(
    daemon: DockerDaemon,
) -> None:
    settings = make_settings(docker_api_timeout_seconds=1.0, pool={"size": 0})
    labels = {LABEL_MANAGED: "true", LABEL_ENGINE: settings.engine_id, LABEL_OWNER: "gone.0"}
    never_started = daemon.create_container(
        settings.image, command=["true"], labels=labels, host_config=daemon.host_config()
    )
    busy_owner = {**labels, LABEL_OWNER: "alive.0"}
    running = daemon.create_container(
        settings.image,
        command=["sleep", "60"],
        labels=busy_owner,
        host_config=daemon.host_config(network_mode="none"),
    )
    try:
        daemon.start(running)
        await asyncio.sleep(4.5)  # older than 4 API timeouts: no live owner leaves one unstarted
        engine = DockerEngine(settings)
        try:
            await engine.start()
        finally:
            await engine.close()
        left = set(daemon.container_ids({LABEL_ENGINE: settings.engine_id}))
        assert never_started not in left
        assert running in left, "a running sandbox of another owner was touched"
    finally:
        daemon.remove(never_started)
        daemon.remove(running)


def test_no_sandbox_outlives_its_owner_process(daemon: DockerDaemon) -> None:
    """SIGKILL the process that owns a warm pool and a program spinning with a 300 s limit:
    every one of its sandboxes is gone well within 60 s, though nobody restarts it."""
    settings = make_settings(pool={"size": 2}, max_timeout_seconds=300.0)
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, settings.model_dump_json()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "spinning", "the owner never started"
        mine = daemon.container_ids({LABEL_ENGINE: settings.engine_id}, running=True)
        assert len(mine) >= 2  # the spinning one, and the warm pool
        owner.kill()
        owner.wait(10)
        killed = time.monotonic()
        while daemon.container_ids({LABEL_ENGINE: settings.engine_id}):
            assert time.monotonic() - killed < 60, "sandboxes outlived their owner"
            time.sleep(0.1)
    finally:
        owner.kill()


_OWNER = textwrap.dedent(
    """
    import asyncio, sys
    from assay.config import ExecutionSettings
    from assay.execution_engine import ExecutionRequest
    from assay.execution_engine.docker_engine import DockerEngine

    async def main():
        engine = DockerEngine(ExecutionSettings.model_validate_json(sys.argv[1]))
        await engine.wait_until_warm(60)
        def said(stream, data):
            if b"spinning" in data:
                print("spinning", flush=True)
        code = "print('spinning', flush=True)\\nwhile True: pass"
        request = ExecutionRequest(code=code, timeout_seconds=300)
        await engine.execute(request, on_output=said)

    asyncio.run(main())
    """
)


def test_no_live_sandbox_outlives_its_owner_process(daemon: DockerDaemon) -> None:
    """SIGKILL the process that owns a live sandbox running a command: it is gone well
    within 60 s, though nobody deletes it."""
    settings = make_settings(pool={"size": 0}, sandboxes={"pool_size": 1})
    owner = subprocess.Popen(
        [sys.executable, "-c", _LIVE_OWNER, settings.model_dump_json()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "running", "the owner never started"
        labels = {LABEL_ENGINE: settings.engine_id, LABEL_LIVE: "true"}
        assert daemon.container_ids(labels, running=True)
        owner.kill()
        owner.wait(10)
        killed = time.monotonic()
        while daemon.container_ids({LABEL_ENGINE: settings.engine_id}):
            assert time.monotonic() - killed < 60, "a live sandbox outlived its owner"
            time.sleep(0.1)
    finally:
        owner.kill()


_LIVE_OWNER = textwrap.dedent(
    """
    import asyncio, sys
    from assay.config import ExecutionSettings
    from assay.execution_engine import CommandRequest, SandboxRequest
    from assay.execution_engine.docker_engine import DockerEngine

    async def main():
        engine = DockerEngine(ExecutionSettings.model_validate_json(sys.argv[1]))
        info = await engine.create_sandbox(SandboxRequest())
        def said(stream, data):
            if b"running" in data:
                print("running", flush=True)
        command = CommandRequest(command=["sh", "-c", "echo running; sleep 600"])
        await engine.exec_command(info.id, command, on_output=said)

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("how", ["kill", "rm -f"])
async def test_a_sandbox_killed_from_outside_gives_no_verdict(
    engine: DockerEngine, daemon: DockerDaemon, how: str
) -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()

    def on_output(_stream: str, data: bytes) -> None:
        seen.put_nowait(data.decode().strip())

    code = PRINT_CONTAINER_ID + "import time\ntime.sleep(20)\nprint('finished')"
    run = asyncio.create_task(
        engine.execute(ExecutionRequest(code=code, timeout_seconds=30), on_output=on_output)
    )
    container_id = await asyncio.wait_for(seen.get(), 30)
    if how == "kill":
        await asyncio.to_thread(daemon.kill, container_id)
    else:
        await asyncio.to_thread(daemon.remove, container_id)
    with pytest.raises(SandboxLostError, match="lost"):
        await asyncio.wait_for(run, 30)
    result = await engine.execute(ExecutionRequest(code="print('next')"))
    assert (result.status, result.stdout) == (ExecutionStatus.COMPLETED, "next\n")


async def test_a_reaper_that_died_is_replaced() -> None:
    engine = DockerEngine(make_settings(pool={"size": 0}))
    try:
        await engine.start()
        first = engine._reaper
        assert first is not None and first.poll() is None
        first.kill()
        first.wait(10)
        assert (await engine.check_health()).healthy
        assert engine._reaper is not None and engine._reaper is not first
        assert engine._reaper.poll() is None
    finally:
        await engine.close()
    assert engine._reaper is not None and engine._reaper.returncode == 0, "closed cleanly"
