"""Batch isolation against the default: 200 short real programs submitted as one batch to
``assay serve`` (the platform's own queue, storage and concurrency), once with
``isolation: evaluation`` (a fresh sandbox each) and once with ``isolation: batch``.

Prints, per isolation: throughput (programs from submission to the last verdict), p50 and p95
of each program's run (started to finished, as the platform records it) and machine CPU per
program. Every program's output is checked. Run: .venv/bin/python bench/batch_isolation.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from datetime import datetime

import httpx

from _common import cpu_seconds, percentile, serving
from programs import short_programs


@dataclass(frozen=True)
class Run:
    isolation: str
    wall: float
    cpu: float
    per_program: list[float]

    @property
    def rate(self) -> float:
        return len(self.per_program) / self.wall


async def settle(http: httpx.AsyncClient) -> None:
    """Until nothing runs and the warm pool is full: each run starts from the same state."""
    for _ in range(1200):
        queue = (await http.get("/api/v1/queue")).json()
        full = all(pool["ready"] == pool["target"] for pool in queue["pool"])
        if full and queue["running"] == 0 and queue["depth"] == 0:
            return
        await asyncio.sleep(0.05)
    raise SystemExit("the platform did not settle")


async def run_batch(
    http: httpx.AsyncClient, isolation: str, programs: list[tuple[str, str]]
) -> Run:
    await settle(http)
    await asyncio.sleep(2.5)  # the previous run's batch sandboxes close when idle
    body = {"isolation": isolation, "evaluations": [{"code": code} for code, _ in programs]}
    cpu = cpu_seconds()
    began = time.perf_counter()
    response = await http.post("/api/v1/evaluations/batch", json=body)
    if response.status_code != 202:
        raise SystemExit(f"submission refused: {response.status_code} {response.text}")
    ids = [evaluation["id"] for evaluation in response.json()["evaluations"]]
    finished = []
    for evaluation_id, (_, expected) in zip(ids, programs, strict=True):
        result = (await http.get(f"/api/v1/evaluations/{evaluation_id}?wait=120")).json()
        if result["status"] != "completed" or result["stdout"] != expected:
            raise SystemExit(f"{isolation}: unexpected evaluation {result}")
        finished.append(result)
    wall = time.perf_counter() - began
    cpu = cpu_seconds() - cpu
    per_program = [
        (
            datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(r["started_at"])
        ).total_seconds()
        for r in finished
    ]
    return Run(isolation, wall, cpu, per_program)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--programs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both")
    args = parser.parse_args()
    programs = short_programs(args.programs)
    runs: list[Run] = []
    async with (
        serving(ASSAY_EXECUTION__ENGINE_ID="bench-batch") as url,
        httpx.AsyncClient(base_url=url, timeout=180) as http,
    ):
        concurrency = (await http.get("/api/v1/queue")).json()["capacity"]
        for _ in range(args.rounds):
            for isolation in ("evaluation", "batch"):
                runs.append(await run_batch(http, isolation, programs))

    print(f"{os.cpu_count()} CPUs; platform concurrency {concurrency}; {args.programs} programs")
    print(f"{'isolation':<12}{'programs/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'CPU-s/prog':>12}")
    for run in runs:
        p50 = statistics.median(run.per_program) * 1000
        p95 = percentile(run.per_program, 0.95) * 1000
        cpu_each = run.cpu / len(run.per_program)
        print(f"{run.isolation:<12}{run.rate:>11.2f}{p50:>9.1f}{p95:>9.1f}{cpu_each:>12.3f}")
    default = statistics.mean(run.rate for run in runs if run.isolation == "evaluation")
    batch = statistics.mean(run.rate for run in runs if run.isolation == "batch")
    print(f"batch / default throughput: {batch / default:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
