"""The distributed queue under failure: two API processes and two ``assay worker``
processes (Celery on Redis, PostgreSQL as the truth), 500 evaluations; one worker is
SIGKILLed mid-run and Redis is restarted once. Every evaluation ends with its own output,
exactly once, and none is left queued or running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.conftest import postgres_database, remove_containers, unavailable
from tests.e2e.test_crash_recovery import free_port, wait_ready
from tests.sandbox import TEST_ENGINE_PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.e2e]

REDIS_URL = os.environ.get("ASSAY_TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
ROOT = Path(__file__).resolve().parents[2]
TOTAL = 500


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "assay", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()


def restart_redis() -> None:
    port = str(urlsplit(REDIS_URL).port)
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False)
    subprocess.run(["bash", str(ROOT / "scripts/test-services")], check=True)


async def test_500_evaluations_survive_a_killed_worker_and_a_redis_restart(
    tmp_path: Path,
) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        unavailable("Redis", f"{REDIS_URL}: {exc}")
    run = uuid.uuid4().hex[:8]
    workers = [f"{TEST_ENGINE_PREFIX}scale-{run}-w{n}" for n in range(2)]
    with postgres_database() as database:
        shared = {
            "ASSAY_STORAGE__URL": database,
            "ASSAY_REDIS__URL": REDIS_URL,
            "ASSAY_QUEUE__BACKEND": "celery",
            "ASSAY_QUEUE__LEASE_SECONDS": "4",
            "ASSAY_QUEUE__MAX_QUEUED": "1000",
        }
        ports = [free_port(), free_port()]

        def worker(n: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
            env = {
                "ASSAY_DATA_DIR": str(tmp_path / f"w{n}"),
                "ASSAY_EXECUTION__ENGINE_ID": workers[n],
                "ASSAY_EXECUTION__POOL__SIZE": "2",
            }
            return process(["worker"], {**shared, **env}, tmp_path / f"w{n}.log")

        def api(n: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
            env = {
                "ASSAY_DATA_DIR": str(tmp_path / f"a{n}"),
                "ASSAY_EXECUTION__ENGINE_ID": f"{TEST_ENGINE_PREFIX}scale-{run}-a{n}",
                "ASSAY_QUEUE__RUN_WORKERS": "false",
            }
            command = ["serve", "--port", str(ports[n])]
            return process(command, {**shared, **env}, tmp_path / f"a{n}.log")

        with worker(0) as doomed, worker(1) as survivor, api(0) as api0, api(1) as api1:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            await wait_ready(urls[0], api0, tmp_path / "a0.log")
            await wait_ready(urls[1], api1, tmp_path / "a1.log")
            ids: dict[str, int] = {}
            async with httpx.AsyncClient(timeout=60) as http:
                for start in range(0, TOTAL, 50):  # half through each API process
                    body = {
                        "evaluations": [
                            {"code": f"import time\ntime.sleep(0.05)\nprint({i})"}
                            for i in range(start, start + 50)
                        ]
                    }
                    response = await http.post(
                        f"{urls[(start // 50) % 2]}/api/v1/evaluations/batch", json=body
                    )
                    assert response.status_code == 202, response.text
                    for offset, evaluation in enumerate(response.json()["evaluations"]):
                        ids[evaluation["id"]] = start + offset
                killed = await kill_when_running(http, urls[0], doomed, workers[0])
                restart_redis()
                finished = await wait_all_terminal(http, urls, list(ids), deadline=600)
            survivor_alive = survivor.poll() is None
        remove_containers(workers[0])  # what the killed worker could not remove
        duplicates = finished_twice(database)
    assert killed, "the doomed worker was killed while running evaluations"
    assert survivor_alive
    wrong = {
        evaluation_id: (result["status"], result.get("stdout"))
        for evaluation_id, result in finished.items()
        if result["status"] != "completed" or result.get("stdout") != f"{ids[evaluation_id]}\n"
    }
    assert wrong == {}, f"{len(wrong)} evaluations ended wrong"
    assert duplicates == [], "an evaluation finished twice"
    rerun = [r for r in finished.values() if r["attempts"] > 1]
    assert rerun, "what the killed worker ran was run again"


async def kill_when_running(
    http: httpx.AsyncClient, url: str, worker: subprocess.Popen[bytes], engine_id: str
) -> list[str]:
    """SIGKILL ``worker`` once it runs evaluations; returns their ids."""
    for _ in range(600):
        page = (await http.get(f"{url}/api/v1/evaluations?status=running&limit=50")).json()
        mine = [e["id"] for e in page["items"] if e["executor"] == engine_id]
        if mine:
            worker.kill()
            worker.wait()
            return mine
        await asyncio.sleep(0.05)
    return []


async def wait_all_terminal(
    http: httpx.AsyncClient, urls: list[str], ids: list[str], deadline: float
) -> dict[str, dict[str, object]]:
    began = time.monotonic()
    finished: dict[str, dict[str, object]] = {}
    pending = list(ids)
    while pending and time.monotonic() - began < deadline:
        evaluation_id = pending[0]
        url = urls[len(finished) % 2]  # read through both API processes
        result = (await http.get(f"{url}/api/v1/evaluations/{evaluation_id}?wait=30")).json()
        if result["status"] in {"queued", "running"}:
            continue
        finished[evaluation_id] = result
        pending.pop(0)
    assert not pending, f"{len(pending)} evaluations stuck after {deadline} s"
    return finished


def finished_twice(database: str) -> list[str]:
    url = make_url(database).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT e.id FROM evaluation_events v JOIN evaluations e ON e.seq = v.evaluation_seq"
            " WHERE v.type = 'finished' GROUP BY e.id HAVING count(*) > 1"
        ).fetchall()
    return [row[0] for row in rows]
