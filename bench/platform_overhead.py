"""What the platform adds on top of the engine, for the same trivial program.

    .venv/bin/python bench/platform_overhead.py [-n 30] [--throughput 60]

1. The engine alone: ``DockerEngine.execute`` in this process, N times in sequence.
2. End to end: ``POST /api/v1/evaluations?wait=30`` against ``assay serve`` (a separate
   process on loopback, SQLite in a temporary directory), N times in sequence.
3. Throughput: M evaluations submitted at once through the API, until all have finished.

Prints p50/p95 of 1 and 2 and their difference (the platform's overhead), and 3 in
evaluations/s. Compare within one run: absolute timings on shared machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from assay.config import ExecutionSettings
from assay.execution_engine import ExecutionRequest
from assay.execution_engine.docker_engine import DockerEngine

CODE = "print('ok')"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def engine_alone(n: int) -> list[float]:
    engine = DockerEngine(ExecutionSettings(engine_id="bench-engine"))
    await engine.start()
    request = ExecutionRequest(code=CODE)
    await engine.execute(request)
    latencies = []
    try:
        for _ in range(n):
            began = time.perf_counter()
            result = await engine.execute(request)
            latencies.append(time.perf_counter() - began)
            assert result.stdout == "ok\n", result
    finally:
        await engine.close()
    return latencies


async def through_api(url: str, n: int, total: int) -> tuple[list[float], float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await http.post("/api/v1/evaluations?wait=30", json={"code": CODE})
        latencies = []
        for _ in range(n):
            began = time.perf_counter()
            response = await http.post("/api/v1/evaluations?wait=30", json={"code": CODE})
            latencies.append(time.perf_counter() - began)
            body = response.json()
            assert body["status"] == "completed" and body["stdout"] == "ok\n", body
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
        return latencies, total / (time.perf_counter() - began)


def serve(data_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ASSAY_DATA_DIR": data_dir, "ASSAY_EXECUTION__ENGINE_ID": "bench-api"}
    return subprocess.Popen(
        [sys.executable, "-m", "assay", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_ready(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        for _ in range(300):
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("server did not become ready")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=30, help="sequential executions per path")
    parser.add_argument("--throughput", type=int, default=60, help="evaluations submitted at once")
    args = parser.parse_args()

    engine = await engine_alone(args.n)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as data_dir:
        server = serve(data_dir, port)
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_ready(url)
            api, throughput = await through_api(url, args.n, args.throughput)
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"trivial program {CODE!r}; {args.n} sequential runs per path; {os.cpu_count()} CPUs")
    print(f"{'path':<34}{'p50 ms':>10}{'p95 ms':>10}")
    for name, values in (("engine alone", engine), ("end to end through the API", api)):
        p50, p95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
        print(f"{name:<34}{p50:>10.1f}{p95:>10.1f}")
    overhead = (statistics.median(api) - statistics.median(engine)) * 1000
    print(f"{'platform overhead (p50 difference)':<34}{overhead:>10.1f}")
    print(f"throughput: {args.throughput} evaluations at once through the API: {throughput:.2f}/s")


if __name__ == "__main__":
    asyncio.run(main())
