"""Latency and throughput of the Docker engine on a trivial program.

    .venv/bin/python bench/engine_latency.py [-n 30] [-c 4] [--total 40]

Prints p50/p95 latency of N sequential executions (the whole execute() call: create, start,
run, remove), then throughput at concurrency C, with system-wide CPU-seconds per execution
(from /proc/stat, so dockerd, containerd and runc are counted too). This is the baseline that
later work (warm pools) must beat; compare ratios measured in one run, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics

from _common import concurrently, cpu_seconds, percentile, timed
from assay.config import ExecutionSettings
from assay.execution_engine import ExecutionRequest
from assay.execution_engine.docker_engine import DockerEngine

TRIVIAL = ExecutionRequest(code="print('ok')")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=30, help="sequential executions")
    parser.add_argument("-c", type=int, default=4, help="concurrency for the throughput run")
    parser.add_argument("--total", type=int, default=40, help="executions in the throughput run")
    args = parser.parse_args()

    # The cold baseline: no warm pool (bench/warm_pool.py compares both).
    engine = DockerEngine(ExecutionSettings(engine_id="bench", pool={"size": 0}))
    await engine.start()
    try:
        await timed(engine, TRIVIAL)  # warm the daemon's caches and our connection pool

        cpu_before = cpu_seconds()
        latencies = [await timed(engine, TRIVIAL) for _ in range(args.n)]
        sequential_cpu = (cpu_seconds() - cpu_before) / args.n

        throughput, concurrent_cpu = await concurrently(engine, TRIVIAL, args.total, args.c)
    finally:
        await engine.close()

    print(f"engine: Docker, cold container per execution; {os.cpu_count()} CPUs")
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'sequential executions':<44}{args.n:>12}")
    print(f"{'latency p50 (ms)':<44}{statistics.median(latencies) * 1000:>12.1f}")
    print(f"{'latency p95 (ms)':<44}{percentile(latencies, 0.95) * 1000:>12.1f}")
    print(f"{'latency mean (ms)':<44}{statistics.mean(latencies) * 1000:>12.1f}")
    print(f"{'sequential throughput (exec/s)':<44}{args.n / sum(latencies):>12.2f}")
    print(f"{'CPU-seconds per execution, sequential':<44}{sequential_cpu:>12.3f}")
    print(f"{f'throughput at concurrency {args.c} (exec/s)':<44}{throughput:>12.2f}")
    print(f"{f'CPU-seconds per execution, concurrency {args.c}':<44}{concurrent_cpu:>12.3f}")


if __name__ == "__main__":
    asyncio.run(main())
