"""What remote mode adds over local mode for the same trivial program (Phase 1).

    .venv/bin/python bench/remote_overhead.py [-n 30]

Alternates, N times each: ``DockerEngine.execute`` in this process (local mode) and
``RemoteExecutionEngine.execute`` against ``assay executor`` in another process on loopback
(remote mode; same Docker engine). Prints p50/p95 of both and the p50 difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

import httpx

from _common import free_port, percentile
from assay.config import ExecutionSettings
from assay.execution_engine import ExecutionInterface, ExecutionRequest
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.remote import RemoteExecutionEngine

TOKEN = "bench-token-0123456789abcdef"
REQUEST = ExecutionRequest(code="print('ok')")


async def timed(engine: ExecutionInterface) -> float:
    began = time.perf_counter()
    result = await engine.execute(REQUEST)
    elapsed = time.perf_counter() - began
    assert result.stdout == "ok\n", result
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=30)
    args = parser.parse_args()
    port = free_port()
    env = {
        **os.environ,
        "ASSAY_EXECUTOR__TOKEN": TOKEN,
        "ASSAY_EXECUTION__ENGINE_ID": "bench-remote",
    }
    executor = subprocess.Popen(
        [sys.executable, "-m", "assay", "executor", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    settings = ExecutionSettings(engine_id="bench-local")
    local = DockerEngine(settings)
    remote = RemoteExecutionEngine([url], token=TOKEN, settings=settings)
    try:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            for _ in range(100):
                try:
                    if (await http.get(f"{url}/healthz", timeout=2)).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        await local.start()
        await timed(local)
        await timed(remote)
        local_times, remote_times = [], []
        for _ in range(args.n):
            local_times.append(await timed(local))
            remote_times.append(await timed(remote))
    finally:
        await local.close()
        await remote.close()
        executor.terminate()
        executor.wait(timeout=30)
    print(f"trivial program; {args.n} alternating runs per mode; {os.cpu_count()} CPUs")
    print(f"{'mode':<36}{'p50 ms':>10}{'p95 ms':>10}")
    modes = (
        ("local (engine in-process)", local_times),
        ("remote (executor over loopback)", remote_times),
    )
    for name, values in modes:
        p50, p95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
        print(f"{name:<36}{p50:>10.1f}{p95:>10.1f}")
    difference = (statistics.median(remote_times) - statistics.median(local_times)) * 1000
    pairs = statistics.median(r - o for r, o in zip(remote_times, local_times, strict=True)) * 1000
    print(f"{'remote overhead, p50 difference':<36}{difference:>10.1f}")
    print(f"{'remote overhead, median of pairs':<36}{pairs:>10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
