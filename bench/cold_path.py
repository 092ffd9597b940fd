"""Where a cold execution's time and CPU go, phase by phase.

    .venv/bin/python bench/cold_path.py [-n 20]

Drives the Docker daemon the way ``DockerEngine`` does for one cold execution of a trivial
program and times each step: create, attach, start, the program (payload sent until its
trailer has arrived on both streams), and the container stopping and being removed by
Docker after that (AutoRemove; what the engine no longer waits for). Wall time per step,
and system-wide CPU (from /proc/stat: dockerd, containerd, runc, the shim and the sandbox
itself). Medians of N.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import socket
import statistics
import time

from _common import cpu_seconds
from assay.config import ExecutionSettings
from assay.execution_engine.attach import encode_payload
from assay.execution_engine.docker_daemon import DockerDaemon
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.output import OutputCollector
from assay.execution_engine.sandbox_spec import Profile, SandboxSpec

PHASES = ["create", "attach", "start", "program", "stops and goes by itself"]


def one(daemon: DockerDaemon, spec: SandboxSpec) -> list[tuple[float, float]]:
    marks = [(time.perf_counter(), cpu_seconds())]

    def mark() -> None:
        marks.append((time.perf_counter(), cpu_seconds()))

    container_id = daemon.create_from_config(spec.config, name=spec.name)
    mark()
    sock = daemon.attach(container_id)
    mark()
    daemon.start(container_id)
    mark()
    nonce = secrets.token_hex(16)
    # The attach stays open until the trailer: it is the sandbox's lifeline.
    sock.sendall(encode_payload({"main.py": "print('ok')"}, nonce, stdin=b"", batch=False))
    collector = OutputCollector(limit=1 << 20, nonce=nonce)
    received = bytearray()
    while not collector.ended:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the sandbox ended without its trailer")
        received += chunk
        while len(received) >= 8:
            size = int.from_bytes(received[4:8], "big")
            if len(received) < 8 + size:
                break
            stream = "stdout" if received[0] == 1 else "stderr"
            collector.feed(stream, bytes(received[8 : 8 + size]))
            del received[: 8 + size]
    mark()
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    if not daemon.wait_removed(container_id, timeout=30):  # AutoRemove
        raise SystemExit("the sandbox was not removed by itself")
    mark()
    return [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(marks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    settings = ExecutionSettings(engine_id="bench-phases", pool={"size": 0})
    daemon = DockerDaemon(settings.docker_host, timeout=60)

    async def sandbox_specs(count: int) -> list[SandboxSpec]:
        """The engine's own sandbox specs, one per container (each has its name)."""
        async with DockerEngine(settings) as engine:
            await engine.start()
            profile = Profile(settings.default_memory_mb, settings.default_cpus)
            return [engine.spec(profile) for _ in range(count)]

    specs = asyncio.run(sandbox_specs(args.n + 1))
    runs = [one(daemon, spec) for spec in specs][1:]
    daemon.close()
    print(f"cold execution of print('ok'), phase by phase, median of {args.n}")
    print(f"{'phase':<26}{'wall ms':>9}{'CPU ms':>9}")
    for index, phase in enumerate(PHASES):
        wall = statistics.median(run[index][0] for run in runs) * 1000
        cpu = statistics.median(run[index][1] for run in runs) * 1000
        print(f"{phase:<26}{wall:>9.1f}{cpu:>9.1f}")
    total_wall = statistics.median(sum(p[0] for p in run) for run in runs) * 1000
    total_cpu = statistics.median(sum(p[1] for p in run) for run in runs) * 1000
    print(f"{'total':<26}{total_wall:>9.1f}{total_cpu:>9.1f}")


if __name__ == "__main__":
    main()
