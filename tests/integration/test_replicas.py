"""Two processes sharing PostgreSQL and Redis: an API replica that only accepts, stores and
streams (``run_workers=False``), and an ``assay worker`` that runs the evaluations. A client
talking to the API replica sees live output and verdicts, and can cancel what the worker
runs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from assay.config import Settings
from assay.monitoring.redis_bus import RedisEventBus
from tests.conftest import (
    RunningServer,
    container_exists,
    leftover_containers,
    postgres_database,
    remove_containers,
    running_server,
    unavailable,
)
from tests.e2e.test_crash_recovery import free_port
from tests.sandbox import PRINT_CONTAINER_ID, TEST_ENGINE_PREFIX, platform_settings

pytestmark = [pytest.mark.docker, pytest.mark.integration]

REDIS_URL = os.environ.get("ASSAY_TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Replicas:
    api: RunningServer  # accepts, stores, streams; runs nothing
    worker_engine_id: str  # of the `assay worker` process that runs the evaluations


def start_worker(
    tmp_path: Path, database: str, *args: str, **env: str
) -> tuple[subprocess.Popen[bytes], str]:
    """An ``assay worker`` process (``args`` after ``worker``) on ``database`` and the test
    Redis; returns it and its engine id."""
    engine_id = f"{TEST_ENGINE_PREFIX}worker-{uuid.uuid4().hex[:8]}"
    log = tmp_path / f"{engine_id}.log"
    environment = {
        **os.environ,
        "ASSAY_DATA_DIR": str(tmp_path / engine_id),
        "ASSAY_STORAGE__URL": database,
        "ASSAY_REDIS__URL": REDIS_URL,
        "ASSAY_EXECUTION__ENGINE_ID": engine_id,
        "ASSAY_EXECUTION__POOL__SIZE": "1",
        "ASSAY_QUEUE__CONCURRENCY": "2",
        **env,
    }
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "assay", "worker", *args],
            env=environment,
            stdout=out,
            stderr=out,
        )
    return worker, engine_id


def stop_worker(worker: subprocess.Popen[bytes], engine_id: str) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, "the worker did not stop cleanly"
    assert leftover_containers(engine_id) == [], "the worker left a container behind"


def require_redis() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        unavailable("Redis", f"{REDIS_URL}: {exc}")


def api_only(tmp_path: Path, database: str) -> Settings:
    return platform_settings(
        tmp_path / "api",
        queue={"run_workers": False},
        storage={"url": database},
        redis={"url": REDIS_URL},
    )


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    require_redis()
    with postgres_database() as database:
        worker, engine_id = start_worker(tmp_path, database)
        try:
            async with running_server(api_only(tmp_path, database)) as api:
                yield Replicas(api, engine_id)
        finally:
            stop_worker(worker, engine_id)


async def test_the_api_replica_streams_what_another_replica_runs(replicas: Replicas) -> None:
    code = "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.7)"
    async with replicas.api.client() as client:
        ready = (await httpx.AsyncClient().get(f"{replicas.api.url}/readyz")).json()
        assert ready["status"] == "ready" and "not used" in ready["checks"]["engine"]["detail"]
        evaluation = await client.submit(code)
        seen: list[tuple[str, float]] = []
        text = ""
        async for event in client.events(evaluation.id):
            seen.append((event.type, time.monotonic()))
            if event.type == "output":
                text += str(event.data["text"])
        finished = await client.get(evaluation.id)
    assert text == "tick 0\ntick 1\ntick 2\n"
    assert finished.status == "completed"
    assert finished.executor == replicas.worker_engine_id
    first_output = next(at for kind, at in seen if kind == "output")
    assert seen[-1][0] == "finished" and seen[-1][1] - first_output > 1.0, "output came live"


async def test_a_worker_compiles_and_runs_what_the_api_replica_took(replicas: Replicas) -> None:
    """The scale-out path for a compiled language: accepted by an API-only replica, run by
    an `assay worker` process, its compiler's output kept."""
    async with replicas.api.client() as client:
        ran = await client.submit(
            'package main\nimport "fmt"\nfunc main() { fmt.Println(6 * 7) }',
            language="go",
            wait=60,
        )
        broken = await client.submit("fn main() { let x: u8 = 300; }", language="rust", wait=60)
    assert (ran.status, ran.stdout, ran.executor) == (
        "completed",
        "42\n",
        replicas.worker_engine_id,
    )
    assert broken.status == "compile_error" and "literal out of range" in (
        broken.compile_output or ""
    )


async def test_a_cancel_sent_to_the_api_replica_stops_the_run_elsewhere(
    replicas: Replicas,
) -> None:
    slow = PRINT_CONTAINER_ID + "import time\ntime.sleep(25)"
    async with replicas.api.client() as client:
        evaluation = await client.submit(slow, timeout_seconds=30)
        async for event in client.events(evaluation.id):
            if event.type == "output":
                container_id = str(event.data["text"]).split()[0]
                break
        assert container_exists(container_id)
        began = time.monotonic()
        cancelled = await client.cancel(evaluation.id)
        assert cancelled.status == "cancelled"
        assert time.monotonic() - began < 10
        assert not container_exists(container_id)
        after = await client.submit("print('next')", wait=30)
    assert after.status == "completed" and after.stdout == "next\n"


async def test_notices_flow_again_after_redis_restarts() -> None:
    require_redis()
    one, other = RedisEventBus(REDIS_URL), RedisEventBus(REDIS_URL)
    await one.start()
    await other.start()

    async def crosses(type_: str) -> bool:
        with other.subscribe("e") as subscription:
            one.publish("e", type_)
            notice = await subscription.next(timeout=2)
            return notice is not None and notice.type == type_

    try:
        assert await crosses("before")
        port = str(urlsplit(REDIS_URL).port)
        subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False)
        one.publish("e", "while-down")  # a hint lost, never an error
        subprocess.run(["bash", str(ROOT / "scripts/test-services")], check=True)
        for _ in range(20):
            if await crosses("after"):
                break
        else:
            pytest.fail("no notice crossed after Redis came back")
    finally:
        await one.close()
        await other.close()


async def test_a_killed_workers_evaluations_are_run_again_by_another(tmp_path: Path) -> None:
    require_redis()
    program = "import time\ntime.sleep(3)\nprint('done', {i})"
    with postgres_database() as database:
        lease = {"ASSAY_QUEUE__LEASE_SECONDS": "3"}
        doomed, doomed_id = start_worker(tmp_path, database, **lease)
        survivor, survivor_id = start_worker(tmp_path, database, **lease)
        try:
            async with running_server(api_only(tmp_path, database)) as api, api.client() as client:
                created = await client.submit_batch(
                    [{"code": program.format(i=i)} for i in range(8)]
                )
                for _ in range(200):  # until the doomed worker runs something
                    running = [await client.get(e.id) for e in created]
                    if any(e.executor == doomed_id and e.status == "running" for e in running):
                        break
                    await asyncio.sleep(0.1)
                doomed.kill()
                doomed.wait()
                killed_during = {e.id for e in running if e.executor == doomed_id}
                assert killed_during, "the doomed worker never ran anything"
                results = [await client.wait(e.id, timeout=120) for e in created]
        finally:
            stop_worker(survivor, survivor_id)
            remove_containers(doomed_id)  # what the killed process could not remove
    assert [r.stdout for r in results] == [f"done {i}\n" for i in range(8)]
    assert {r.status for r in results} == {"completed"}
    for result in results:
        if result.id in killed_during and result.executor == survivor_id:
            assert result.attempts == 2, result
    assert any(r.id in killed_during and r.executor == survivor_id for r in results)


def metric(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels) in Prometheus text."""
    (value,) = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(value)


async def test_every_replica_reports_the_shared_queue_and_a_worker_its_own_work(
    tmp_path: Path,
) -> None:
    require_redis()
    port = free_port()
    worker_url = f"http://127.0.0.1:{port}"
    with postgres_database() as database:
        worker, engine_id = start_worker(tmp_path, database, "--port", str(port))
        try:
            async with (
                running_server(api_only(tmp_path, database)) as api,
                api.client() as client,
                httpx.AsyncClient(timeout=10) as http,
            ):
                for _ in range(300):
                    try:
                        if (await http.get(f"{worker_url}/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                ready = (await http.get(f"{worker_url}/readyz")).json()
                assert ready["checks"]["engine"]["ok"] is True, ready
                assert (await http.get(f"{worker_url}/healthz")).json() == {"status": "ok"}
                slow = [await client.submit("import time\ntime.sleep(4)") for _ in range(2)]
                for _ in range(200):  # until both fill the worker's two slots
                    states = {(await client.get(e.id)).status for e in slow}
                    if states == {"running"}:
                        break
                    await asyncio.sleep(0.05)
                else:
                    pytest.fail(f"the two slow evaluations did not both start: {states}")
                later = [await client.submit(f"print({i})") for i in range(3)]
                queue = await client.queue()
                assert (queue.depth, queue.running, queue.capacity) == (3, 2, 0)
                for url in (api.url, worker_url):
                    text = (await http.get(f"{url}/metrics")).text
                    assert metric(text, "assay_queue_depth") == 3, url
                worker_metrics = (await http.get(f"{worker_url}/metrics")).text
                assert metric(worker_metrics, "assay_evaluations_running") == 2
                assert metric(worker_metrics, "assay_queue_capacity") == 2
                results = [await client.wait(e.id, timeout=60) for e in slow + later]
                assert {r.status for r in results} == {"completed"}
                queue = await client.queue()
                assert (queue.depth, queue.running) == (0, 0)
                text = (await http.get(f"{api.url}/metrics")).text
                assert metric(text, "assay_queue_depth") == 0
                worker_metrics = (await http.get(f"{worker_url}/metrics")).text
                assert metric(worker_metrics, 'assay_evaluations_total{status="completed"}') == 5
                assert 'assay_pool_hits_total{profile="' in worker_metrics
        finally:
            stop_worker(worker, engine_id)


def test_a_worker_says_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "assay", "worker", "--port", str(port)],
            env={**os.environ, "ASSAY_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
