"""What the platform adds on top of the engine, for the same trivial program.

    .venv/bin/python bench/platform_overhead.py [-n 30] [--throughput 60]

1. The engine alone: ``DockerEngine.execute`` in this process.
2. End to end: ``POST /api/v1/evaluations?wait=30`` against ``assay serve`` (a separate
   process on loopback, SQLite in a temporary directory).
   1 and 2 alternate, N times each, so both see the machine in the same state.
3. Throughput: M evaluations submitted at once through the API, until all have finished.

Prints p50/p95 of 1 and 2 and their difference (the platform's overhead), and 3 in
evaluations/s. Compare within one run: absolute timings on shared machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx

from _common import percentile, serving
from assay.config import ExecutionSettings
from assay.execution_engine import ExecutionRequest
from assay.execution_engine.docker_engine import DockerEngine

CODE = "print('ok')"


async def paired(url: str, n: int) -> tuple[list[float], list[float]]:
    """Alternate one engine-alone run and one run through the API, so that drift in the
    machine's speed affects both paths alike."""
    engine = DockerEngine(ExecutionSettings(engine_id="bench-engine"))
    await engine.start()
    request = ExecutionRequest(code=CODE)
    alone: list[float] = []
    api: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            await engine.execute(request)
            await http.post("/api/v1/evaluations?wait=30", json={"code": CODE})
            for _ in range(n):
                began = time.perf_counter()
                result = await engine.execute(request)
                alone.append(time.perf_counter() - began)
                assert result.stdout == "ok\n", result
                began = time.perf_counter()
                response = await http.post("/api/v1/evaluations?wait=30", json={"code": CODE})
                api.append(time.perf_counter() - began)
                body = response.json()
                assert body["status"] == "completed" and body["stdout"] == "ok\n", body
    finally:
        await engine.close()
    return alone, api


async def throughput(url: str, total: int) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        began = time.perf_counter()
        created = await http.post(
            "/api/v1/evaluations/batch", json={"evaluations": [{"code": CODE}] * total}
        )
        ids = [e["id"] for e in created.json()["evaluations"]]
        for evaluation_id in ids:
            while True:
                body = (await http.get(f"/api/v1/evaluations/{evaluation_id}?wait=30")).json()
                if body["status"] not in {"queued", "running"}:
                    assert body["stdout"] == "ok\n", body
                    break
        return total / (time.perf_counter() - began)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=30, help="sequential executions per path")
    parser.add_argument("--throughput", type=int, default=60, help="evaluations submitted at once")
    args = parser.parse_args()

    async with serving(ASSAY_EXECUTION__ENGINE_ID="bench-api") as url:
        engine, api = await paired(url, args.n)
        rate = await throughput(url, args.throughput)

    print(f"trivial program {CODE!r}; {args.n} sequential runs per path; {os.cpu_count()} CPUs")
    print(f"{'path':<34}{'p50 ms':>10}{'p95 ms':>10}")
    for name, values in (("engine alone", engine), ("end to end through the API", api)):
        p50, p95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
        print(f"{name:<34}{p50:>10.1f}{p95:>10.1f}")
    overhead = (statistics.median(api) - statistics.median(engine)) * 1000
    paired_overhead = statistics.median(a - e for a, e in zip(api, engine, strict=True)) * 1000
    print(f"{'platform overhead (p50 difference)':<34}{overhead:>10.1f}")
    print(f"{'platform overhead (median of pairs)':<34}{paired_overhead:>10.1f}")
    print(f"throughput: {args.throughput} evaluations at once through the API: {rate:.2f}/s")


if __name__ == "__main__":
    asyncio.run(main())
