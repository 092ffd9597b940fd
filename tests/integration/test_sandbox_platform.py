"""Live sandboxes through the whole platform with the real engine, locally and through an
executor service: the REST API with the Python client, the `assay sandbox` CLI, events,
the quota, a 100 MiB file. The routes' own behaviour (validation, errors, streams) is
tested in-process with the fake engine, in ``tests/unit/test_sandbox_api.py``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from assay.errors import SandboxEndedError, SandboxQuotaError
from tests.conftest import RunningServer

pytestmark = [pytest.mark.docker, pytest.mark.integration]

_MIB = 1024 * 1024


@pytest.fixture(params=["local", "remote"], autouse=True)
def execution_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("server", [{"api": {"max_sandboxes_per_key": 2}}], indirect=True)
async def test_a_sandbox_through_the_api(server: RunningServer) -> None:
    async with server.client() as client:
        info = await client.create_sandbox(labels={"task": "t1"}, memory_mb=512)
        assert (info.state, info.labels, info.memory_mb) == ("running", {"task": "t1"}, 512)
        data = os.urandom(100 * _MIB)
        written = await client.write_file(info.id, "big.bin", data)
        assert (written.path, written.size) == ("/workspace/big.bin", len(data))
        summed = await client.exec(info.id, ["sh", "-c", "sha256sum big.bin | cut -c1-64"])
        import hashlib  # noqa: PLC0415

        assert summed.stdout.decode().strip() == hashlib.sha256(data).hexdigest()
        assert await client.read_file(info.id, "big.bin") == data
        chunks = []
        async for item in client.exec_stream(info.id, ["sh", "-c", "echo a; echo b >&2"]):
            chunks.append(item)
        assert ("stdout", b"a\n") in chunks and ("stderr", b"b\n") in chunks
        timed = await client.exec(info.id, ["sleep", "10"], timeout=1)
        assert timed.timed_out

        second = await client.create_sandbox()
        with pytest.raises(SandboxQuotaError):
            await client.create_sandbox()
        await client.delete_sandbox(second.id)

        events = [event async for event in client.sandbox_events(info.id)]
        kinds = [event.type for event in events]
        assert kinds[0] == "created" and kinds.count("exec") == 3
        assert {"write_file", "read_file"} <= set(kinds)
        timeout_event = next(e for e in events if e.data.get("timed_out"))
        assert timeout_event.data["command"] == ["sleep", "10"]

        ended = await client.delete_sandbox(info.id)
        assert (ended.state, ended.end_reason) == ("ended", "deleted")
        with pytest.raises(SandboxEndedError, match="deleted"):
            await client.exec(info.id, ["true"])
        assert [s.id for s in await client.list_sandboxes(state="running")] == []


async def test_the_cli_drives_a_sandbox(server: RunningServer, tmp_path: Path) -> None:
    async def assay(*args: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "assay",
            "sandbox",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "ASSAY_URL": server.url},
        )
        out, err = await asyncio.wait_for(process.communicate(stdin), 60)
        assert process.returncode is not None
        return process.returncode, out, err

    code, out, err = await assay("create", "--label", "via=cli")
    assert code == 0, err
    sandbox_id = out.decode().strip()
    local = tmp_path / "in.txt"
    local.write_bytes(b"hello from the host\n")
    assert (await assay("cp", str(local), f"{sandbox_id}:in.txt"))[0] == 0
    code, out, _ = await assay("exec", sandbox_id, "--", "sh", "-c", "tr a-z A-Z < in.txt; exit 3")
    assert (code, out) == (3, b"HELLO FROM THE HOST\n")
    code, out, _ = await assay("cp", f"{sandbox_id}:in.txt", "-")
    assert (code, out) == (0, b"hello from the host\n")
    code, out, _ = await assay("ls")
    assert code == 0 and sandbox_id in out.decode()
    assert (await assay("rm", sandbox_id))[0] == 0
    code, out, _ = await assay("ls")
    assert sandbox_id not in out.decode()
