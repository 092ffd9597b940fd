"""Helpers shared by the benchmarks (not a benchmark itself)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from assay.execution_engine import ExecutionRequest, ExecutionStatus
from assay.execution_engine.docker_engine import DockerEngine

__all__ = ["concurrently", "cpu_seconds", "free_port", "percentile", "serving", "timed"]


def cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (all cores), from /proc/stat: dockerd,
    containerd, runc and the shims are counted, not only this process."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def timed(engine: DockerEngine, request: ExecutionRequest) -> float:
    """Seconds one ``execute`` call takes; exits if the program did not print ``ok``."""
    began = time.perf_counter()
    result = await engine.execute(request)
    elapsed = time.perf_counter() - began
    if result.status is not ExecutionStatus.COMPLETED or result.stdout != "ok\n":
        raise SystemExit(f"unexpected result: {result}")
    return elapsed


async def concurrently(
    engine: DockerEngine, request: ExecutionRequest, total: int, concurrency: int
) -> tuple[float, float]:
    """``total`` executions, ``concurrency`` at a time: executions per second, and
    system-wide CPU-seconds per execution."""
    queue: asyncio.Queue[None] = asyncio.Queue()
    for _ in range(total):
        queue.put_nowait(None)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            await timed(engine, request)

    cpu_before = cpu_seconds()
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - began), (cpu_seconds() - cpu_before) / total


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def serving(**env: str) -> AsyncIterator[str]:
    """``assay serve`` in another process on loopback, with its own data directory (and extra
    environment), until ready; yields its URL and stops it afterwards."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as data_dir:
        server = subprocess.Popen(
            [sys.executable, "-m", "assay", "serve", "--port", str(port)],
            env={**os.environ, "ASSAY_DATA_DIR": data_dir, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=60)


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        for _ in range(300):
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not become ready")
