"""The warm pool against the cold path and against naive ``docker run``, in one run.

    .venv/bin/python bench/warm_pool.py [-n 50] [--programs 200] [--concurrency 1 2 4]

1. Latency of a trivial program, N runs each (p50/p95/p99):
   - engine cold: ``DockerEngine`` without a pool (create, start, run, remove);
   - engine warm: with a pool, each run starting with the pool full;
   - API warm: ``POST /api/v1/evaluations?wait=30`` against ``assay serve`` (a separate
     process; default settings, so a warm pool) until the verdict is in the answer.
2. Throughput of ``--programs`` short real programs (``programs.py``) at each concurrency:
   - naive: ``docker run --rm -i`` per program, same image, no network, same limits;
   - engine cold, and engine pooled (default pool settings).
   Evaluations/s from wall time; CPU-seconds per evaluation system-wide (/proc/stat, so
   dockerd, containerd, runc and the shims count), until every container is gone and the
   pool is full again (it starts full: its refills are paid for inside the measurement).

Compare within one run: absolute timings on shared machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from _common import cpu_seconds, percentile, serving
from assay.config import ExecutionSettings
from assay.execution_engine import ExecutionRequest, ExecutionStatus
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.sandbox_spec import SANDBOX_UID
from programs import short_programs

TRIVIAL = "print('ok')"


@dataclass(frozen=True)
class Batch:
    wall: float
    cpu: float
    count: int

    @property
    def rate(self) -> float:
        return self.count / self.wall

    @property
    def cpu_each(self) -> float:
        return self.cpu / self.count


async def engine_latency(engine: DockerEngine, n: int) -> list[float]:
    samples = []
    request = ExecutionRequest(code=TRIVIAL)
    for _ in range(n + 1):
        await engine.wait_until_warm()
        began = time.perf_counter()
        result = await engine.execute(request)
        samples.append(time.perf_counter() - began)
        if result.stdout != "ok\n":
            raise SystemExit(f"unexpected result: {result}")
    return samples[1:]  # the first warms our connection pool and the daemon's caches


async def api_latency(url: str, n: int) -> list[float]:
    samples = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        for _ in range(n + 1):
            for _ in range(600):  # until the pool is full again
                pools = (await http.get("/api/v1/queue")).json()["pool"]
                if all(pool["ready"] == pool["target"] for pool in pools):
                    break
                await asyncio.sleep(0.02)
            began = time.perf_counter()
            response = await http.post("/api/v1/evaluations?wait=30", json={"code": TRIVIAL})
            samples.append(time.perf_counter() - began)
            body = response.json()
            if body.get("status") != "completed" or body.get("stdout") != "ok\n":
                raise SystemExit(f"unexpected evaluation: {body}")
    return samples[1:]


async def bounded(
    programs: list[tuple[str, str]],
    concurrency: int,
    run_one: Callable[[str, str], Awaitable[None]],
) -> float:
    """Run every program, at most ``concurrency`` at once; returns the wall time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(code: str, expected: str) -> None:
        async with gate:
            await run_one(code, expected)

    began = time.perf_counter()
    await asyncio.gather(*(one(code, expected) for code, expected in programs))
    return time.perf_counter() - began


async def naive_batch(image: str, programs: list[tuple[str, str]], concurrency: int) -> Batch:
    command = [
        "docker", "run", "--rm", "-i", "--network", "none", "--read-only",
        "--tmpfs=/tmp", "--memory", "256m", "--memory-swap", "256m", "--cpus", "1",
        "--pids-limit", "128", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--user", f"{SANDBOX_UID}:{SANDBOX_UID}", image, "python3", "-",
    ]  # fmt: skip

    async def run_one(code: str, expected: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await process.communicate(code.encode())
        if stdout.decode() != expected:
            raise SystemExit(f"naive docker run: unexpected output {stdout!r} {stderr!r}")

    cpu = cpu_seconds()
    wall = await bounded(programs, concurrency, run_one)
    return Batch(wall, cpu_seconds() - cpu, len(programs))


async def engine_batch(
    engine: DockerEngine, programs: list[tuple[str, str]], concurrency: int
) -> Batch:
    async def run_one(code: str, expected: str) -> None:
        result = await engine.execute(ExecutionRequest(code=code))
        if result.status is not ExecutionStatus.COMPLETED or result.stdout != expected:
            raise SystemExit(f"engine: unexpected result {result}")

    await engine.wait_until_warm()
    cpu = cpu_seconds()
    wall = await bounded(programs, concurrency, run_one)
    await engine.wait_until_warm()  # the pool refilled, every used sandbox removed
    return Batch(wall, cpu_seconds() - cpu, len(programs))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50, help="runs per latency path")
    parser.add_argument("--programs", type=int, default=200, help="programs per throughput run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    settings = ExecutionSettings(engine_id="bench-pool")
    cold = DockerEngine(ExecutionSettings(engine_id="bench-cold", pool={"size": 0}))
    warm = DockerEngine(settings)
    programs = short_programs(args.programs)
    latency: dict[str, list[float]] = {}
    batches: dict[tuple[str, int], Batch] = {}
    try:
        latency["engine, cold"] = await engine_latency(cold, args.n)
        latency["engine, warm"] = await engine_latency(warm, args.n)
        await warm.close()  # its pool would compete with the server's
        async with serving(ASSAY_EXECUTION__ENGINE_ID="bench-api") as url:
            latency["API end to end, warm"] = await api_latency(url, args.n)
        warm = DockerEngine(settings)
        for concurrency in args.concurrency:
            batches["naive docker run", concurrency] = await naive_batch(
                settings.image, programs, concurrency
            )
            batches["engine, cold", concurrency] = await engine_batch(cold, programs, concurrency)
            batches["engine, pooled", concurrency] = await engine_batch(warm, programs, concurrency)
    finally:
        await cold.close()
        await warm.close()

    print(f"{os.cpu_count()} CPUs; pool size {settings.pool.size}, ")
    print(f"\nlatency of {TRIVIAL!r}, {args.n} runs each")
    print(f"{'path':<26}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, values in latency.items():
        p50 = statistics.median(values) * 1000
        p95, p99 = percentile(values, 0.95) * 1000, percentile(values, 0.99) * 1000
        print(f"{name:<26}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}")
    print(f"\nthroughput of {args.programs} short programs")
    print(f"{'path':<20}{'concurrency':>12}{'evals/s':>9}{'CPU-s/eval':>12}{'vs naive':>10}")
    for (name, concurrency), batch in batches.items():
        naive = batches["naive docker run", concurrency]
        print(
            f"{name:<20}{concurrency:>12}{batch.rate:>9.2f}{batch.cpu_each:>12.3f}"
            f"{batch.rate / naive.rate:>9.2f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
