"""The distributed path against the monolith, on this machine: an API-only ``assay serve``
and ``assay worker`` processes sharing PostgreSQL and Redis, the queue on Celery
(``scripts/test-services`` starts both servers on loopback), against one ``assay serve`` on
SQLite.

Prints the p50/p95 latency of ``print('ok')`` end to end (``POST ?wait``) on each path, and
the throughput of 200 short programs with one worker and with two. Every worker and the
monolith run with the platform's default concurrency (CPU count).
Run: .venv/bin/python bench/scale_out.py [--postgres URL] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import psycopg

from _common import percentile, serving
from programs import short_programs

TRIVIAL = "print('ok')"


@asynccontextmanager
async def database(admin_url: str) -> AsyncIterator[str]:
    name = f"assay_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise SystemExit(f"needs PostgreSQL and Redis (sudo scripts/test-services): {exc}") from exc
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@asynccontextmanager
async def worker(env: dict[str, str], name: str) -> AsyncIterator[None]:
    with tempfile.TemporaryDirectory(prefix="assay-bench-worker-") as data_dir:
        process = subprocess.Popen(
            [sys.executable, "-m", "assay", "worker"],
            env={
                **os.environ,
                **env,
                "ASSAY_DATA_DIR": data_dir,
                "ASSAY_EXECUTION__ENGINE_ID": name,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            process.terminate()
            process.wait(timeout=60)


async def settle(http: httpx.AsyncClient) -> None:
    for _ in range(1200):
        queue = (await http.get("/api/v1/queue")).json()
        if queue["counts"]["queued"] == 0 and queue["counts"]["running"] == 0:
            return
        await asyncio.sleep(0.05)
    raise SystemExit("the platform did not settle")


async def latency(url: str, n: int) -> list[float]:
    samples = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for _ in range(n + 1):
            await settle(http)
            await asyncio.sleep(0.3)  # the workers' warm pools refill
            began = time.perf_counter()
            response = await http.post("/api/v1/evaluations?wait=60", json={"code": TRIVIAL})
            samples.append(time.perf_counter() - began)
            if response.json().get("stdout") != "ok\n":
                raise SystemExit(f"unexpected: {response.text}")
    return samples[1:]


async def throughput(url: str, programs: list[tuple[str, str]]) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        await settle(http)
        began = time.perf_counter()
        body = {"evaluations": [{"code": code} for code, _ in programs]}
        created = (await http.post("/api/v1/evaluations/batch", json=body)).json()["evaluations"]
        for evaluation, (_, expected) in zip(created, programs, strict=True):
            result = (await http.get(f"/api/v1/evaluations/{evaluation['id']}?wait=300")).json()
            if result["stdout"] != expected:
                raise SystemExit(f"unexpected: {result}")
        return len(programs) / (time.perf_counter() - began)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=30, help="latency samples per path")
    parser.add_argument("--programs", type=int, default=200)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "ASSAY_TEST_POSTGRES_URL", "postgresql://assay:assay@127.0.0.1:55432/assay"
        ),
    )
    parser.add_argument(
        "--redis", default=os.environ.get("ASSAY_TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
    )
    args = parser.parse_args()
    programs = short_programs(args.programs)
    results: dict[str, tuple[list[float], float]] = {}

    async with serving(ASSAY_EXECUTION__ENGINE_ID="bench-mono") as url:
        results["monolith (SQLite, in-process workers)"] = (
            await latency(url, args.n),
            await throughput(url, programs),
        )

    rates: dict[int, float] = {}
    distributed: list[float] = []
    for workers in (1, 2):
        async with database(args.postgres) as db, AsyncExitStack() as stack:
            shared = {
                "ASSAY_STORAGE__URL": db,
                "ASSAY_REDIS__URL": args.redis,
                "ASSAY_QUEUE__BACKEND": "celery",
            }
            for index in range(workers):
                await stack.enter_async_context(worker(shared, f"bench-worker-{index}"))
            url = await stack.enter_async_context(
                serving(
                    ASSAY_EXECUTION__ENGINE_ID="bench-api",
                    ASSAY_QUEUE__RUN_WORKERS="false",
                    **shared,
                )
            )
            if workers == 1:
                distributed = await latency(url, args.n)
            rates[workers] = await throughput(url, programs)

    mono_latency, mono_rate = results["monolith (SQLite, in-process workers)"]
    print(f"{os.cpu_count()} CPUs; {args.n} latency samples; {args.programs} programs")
    print(f"{'path':<44}{'p50 ms':>9}{'p95 ms':>9}{'programs/s':>12}")
    rows = [
        ("monolith (SQLite, in-process workers)", mono_latency, mono_rate),
        ("distributed, 1 worker (PostgreSQL, Redis)", distributed, rates[1]),
        ("distributed, 2 workers", None, rates[2]),
    ]
    for name, samples, rate in rows:
        if samples:
            p50, p95 = statistics.median(samples) * 1000, percentile(samples, 0.95) * 1000
            print(f"{name:<44}{p50:>9.1f}{p95:>9.1f}{rate:>12.2f}")
        else:
            print(f"{name:<44}{'':>9}{'':>9}{rate:>12.2f}")
    added = (statistics.median(distributed) - statistics.median(mono_latency)) * 1000
    print(f"added latency of the distributed path (p50): {added:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
