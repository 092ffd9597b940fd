"""SIGKILL the server with evaluations queued and running, restart it: every evaluation
ends, none is lost or duplicated, and no container is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from assay.client import AsyncAssayClient
from tests.conftest import leftover_containers
from tests.sandbox import TEST_ENGINE_PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]

TERMINAL = {"completed", "failed", "timeout", "oom", "output_limit", "error", "cancelled"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(data_dir: Path, port: int, engine_id: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ASSAY_DATA_DIR": str(data_dir),
        "ASSAY_EXECUTION__ENGINE_ID": engine_id,
        "ASSAY_QUEUE__CONCURRENCY": "2",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "assay", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        for _ in range(200):
            if process.poll() is not None:
                raise AssertionError(f"server exited: {log.read_text()}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"server not ready: {log.read_text()}")


async def test_sigkill_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    engine_id = f"{TEST_ENGINE_PREFIX}crash-{uuid.uuid4().hex[:8]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    server = start_server(tmp_path / "data", port, engine_id, log)
    try:
        await wait_ready(url, server, log)
        async with AsyncAssayClient(url) as client:
            submitted = [
                await client.submit(
                    f"import time\ntime.sleep(2)\nprint('result {i}')", labels={"i": str(i)}
                )
                for i in range(8)
            ]
            for _ in range(100):
                if (await client.queue()).running == 2:
                    break
                await asyncio.sleep(0.1)
            assert (await client.queue()).running == 2
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        # The two running sandboxes, and whatever its warm pool held or was creating, end by
        # themselves: nothing waits for a restart to clean up.
        assert leftover_containers(engine_id, settle_seconds=10) == [], (
            "the killed server's sandboxes outlived it"
        )

        server = start_server(tmp_path / "data", port, engine_id, log)
        await wait_ready(url, server, log)
        async with AsyncAssayClient(url) as client:
            deadline = time.monotonic() + 120
            results = {}
            for evaluation in submitted:
                done = await client.wait(evaluation.id, timeout=max(1, deadline - time.monotonic()))
                results[evaluation.id] = done
            page = await client.list(limit=100)
            interrupted = [e for e in results.values() if e.attempts > 1]
            events = [[e.type async for e in client.events(x.id)] for x in interrupted]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert len(page.items) == 8, "nothing duplicated, nothing lost"
    for i, evaluation in enumerate(submitted):
        done = results[evaluation.id]
        assert done.status == "completed", done
        assert done.stdout == f"result {i}\n"
        assert done.labels == {"i": str(i)}
    assert len(interrupted) == 2, "the two running at the kill were run again"
    for types in events:
        assert types.count("requeued") == 1 and types.count("finished") == 1
    assert leftover_containers(engine_id) == []
