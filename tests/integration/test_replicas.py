"""Two processes sharing PostgreSQL and Redis: an API replica that only accepts, stores and
streams (``run_workers=False``), and an ``assay worker`` that runs the evaluations. A client
talking to the API replica sees live output and verdicts, and can cancel what the worker
runs."""

from __future__ import annotations

import os
import signal
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

from assay.monitoring.redis_bus import RedisEventBus
from tests.conftest import (
    RunningServer,
    container_exists,
    leftover_containers,
    postgres_database,
    running_server,
    unavailable,
)
from tests.sandbox import PRINT_CONTAINER_ID, TEST_ENGINE_PREFIX, platform_settings

pytestmark = [pytest.mark.docker, pytest.mark.integration]

REDIS_URL = os.environ.get("ASSAY_TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Replicas:
    api: RunningServer  # accepts, stores, streams; runs nothing
    worker_engine_id: str  # of the `assay worker` process that runs the evaluations


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        unavailable("Redis", f"{REDIS_URL}: {exc}")
    with postgres_database() as database:
        api_settings = platform_settings(
            tmp_path / "api",
            queue={"run_workers": False},
            storage={"url": database},
            redis_url=REDIS_URL,
        )
        engine_id = f"{TEST_ENGINE_PREFIX}worker-{uuid.uuid4().hex[:8]}"
        log = tmp_path / "worker.log"
        env = {
            **os.environ,
            "ASSAY_DATA_DIR": str(tmp_path / "worker"),
            "ASSAY_STORAGE__URL": database,
            "ASSAY_REDIS_URL": REDIS_URL,
            "ASSAY_EXECUTION__ENGINE_ID": engine_id,
            "ASSAY_EXECUTION__POOL__SIZE": "1",
            "ASSAY_QUEUE__CONCURRENCY": "2",
        }
        with log.open("ab") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "assay", "worker"], env=env, stdout=out, stderr=out
            )
        try:
            async with running_server(api_settings) as api:
                yield Replicas(api, engine_id)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=60) == 0, log.read_text()
        assert leftover_containers(engine_id) == [], "the worker left a container behind"


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
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        unavailable("Redis", f"{REDIS_URL}: {exc}")
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
