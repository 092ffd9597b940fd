"""runc against gVisor (runsc): latency, throughput and CPU per execution, in one run.

    .venv/bin/python bench/runtimes.py [-n 20] [-c 4] [--total 40]

For each runtime, with the same engine settings otherwise: p50/p95 latency of N sequential
executions cold (a container created per execution) and warm (from the warm pool), then
throughput at concurrency C (warm pool of C), with system-wide CPU-seconds per execution
(/proc/stat: dockerd, containerd, the shims and runsc's Sentry are counted). Then the same
for a system-call-heavy program (1e5 getpid-like calls through os.stat), where gVisor's cost
shows. Needs runsc registered (`scripts/bootstrap --runsc`). Compare the ratios; absolute
numbers are noisy on shared machines.
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
SYSCALLS = ExecutionRequest(code="import os\nfor _ in range(100_000): os.stat('.')\nprint('ok')")


async def sequential(
    runtime: str, pool: int, n: int, request: ExecutionRequest
) -> tuple[list[float], float]:
    settings = ExecutionSettings(engine_id=f"bench-{runtime}", runtime=runtime, pool={"size": pool})
    engine = DockerEngine(settings)
    try:
        await engine.wait_until_warm(120)
        await timed(engine, request)
        latencies = []
        cpu_before = cpu_seconds()
        for _ in range(n):
            await engine.wait_until_warm(120)  # each warm run finds a ready sandbox
            latencies.append(await timed(engine, request))
        return latencies, (cpu_seconds() - cpu_before) / n
    finally:
        await engine.close()


async def concurrent(runtime: str, c: int, total: int) -> tuple[float, float]:
    settings = ExecutionSettings(engine_id=f"bench-{runtime}", runtime=runtime, pool={"size": c})
    engine = DockerEngine(settings)
    try:
        await engine.wait_until_warm(120)
        return await concurrently(engine, TRIVIAL, total, c)
    finally:
        await engine.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20, help="sequential executions per measure")
    parser.add_argument("-c", type=int, default=4, help="concurrency for the throughput run")
    parser.add_argument("--total", type=int, default=40, help="executions in the throughput run")
    args = parser.parse_args()
    rows: dict[str, dict[str, float]] = {}
    for runtime in ("runc", "runsc"):
        row = rows[runtime] = {}
        for label, pool, request in (
            ("cold", 0, TRIVIAL),
            ("warm", 1, TRIVIAL),
            ("warm, 1e5 stat calls", 1, SYSCALLS),
        ):
            latencies, cpu = await sequential(runtime, pool, args.n, request)
            row[f"{label}: p50 (ms)"] = statistics.median(latencies) * 1000
            row[f"{label}: p95 (ms)"] = percentile(latencies, 0.95) * 1000
            row[f"{label}: CPU-s per execution"] = cpu
        throughput, cpu = await concurrent(runtime, args.c, args.total)
        row[f"warm, concurrency {args.c}: exec/s"] = throughput
        row[f"warm, concurrency {args.c}: CPU-s per execution"] = cpu
    print(f"runc against runsc (gVisor), same settings; {os.cpu_count()} CPUs, n={args.n}")
    print(f"{'measure':<44}{'runc':>10}{'runsc':>10}{'runsc/runc':>12}")
    for measure in rows["runc"]:
        runc, runsc = rows["runc"][measure], rows["runsc"][measure]
        digits = 3 if "CPU" in measure else 1
        ratio = runsc / runc if runc else float("nan")
        print(f"{measure:<44}{runc:>10.{digits}f}{runsc:>10.{digits}f}{ratio:>12.2f}")


if __name__ == "__main__":
    asyncio.run(main())
