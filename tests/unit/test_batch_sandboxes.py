"""Batch sandboxes on fake engines: the queue's (``queue/batches.py``: a sandbox serves one
batch only, open sandboxes stay within the limit, idle ones close), and Docker's
(``docker_batch.py``: one container reused until a program damages it or needs other limits,
retired on close), through its engine API with a fake PID 1 at the end of the attach."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

from assay.config import ExecutionSettings
from assay.errors import SandboxError
from assay.execution_engine import (
    BatchSandbox,
    EngineHealth,
    ExecutionInterface,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    LanguageInfo,
    OutputCallback,
)
from assay.execution_engine.attach import (
    Conversation,
    Run,
    encode_payload,
    pump,
    verdict,
    write_stdin,
)
from assay.execution_engine.docker_batch import DockerBatchSandbox
from assay.execution_engine.models import resolve_request
from assay.execution_engine.output import OutputCollector, trailer_marker
from assay.execution_engine.sandbox_spec import Profile
from assay.queue.batches import BatchSandboxes


class FakeSandbox(BatchSandbox):
    def __init__(self) -> None:
        self.closed = False

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        raise AssertionError("not used here")

    async def close(self) -> None:
        self.closed = True


class FakeEngine(ExecutionInterface):
    def __init__(self) -> None:
        self.made: list[FakeSandbox] = []

    def batch_sandbox(self) -> BatchSandbox:
        self.made.append(FakeSandbox())
        return self.made[-1]

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        raise AssertionError("not used here")

    async def languages(self) -> list[LanguageInfo]:
        raise AssertionError("not used here")

    async def check_health(self) -> EngineHealth:
        return EngineHealth(healthy=True, detail="ok")

    async def close(self) -> None:
        pass


async def test_a_sandbox_is_reused_by_its_batch_and_no_other() -> None:
    engine = FakeEngine()
    sandboxes = BatchSandboxes(engine, limit=4, idle_seconds=60)
    a = sandboxes.take("a")
    sandboxes.give_back("a", a)
    b = sandboxes.take("b")
    assert b is not a, "batch b never gets batch a's sandbox"
    sandboxes.give_back("b", b)
    assert sandboxes.take("a") is a
    assert sandboxes.take("a") is not a, "a busy sandbox is not handed out twice"
    await sandboxes.close()


async def test_open_sandboxes_stay_within_the_limit() -> None:
    engine = FakeEngine()
    sandboxes = BatchSandboxes(engine, limit=2, idle_seconds=60)
    for batch in ("a", "b"):
        sandboxes.give_back(batch, sandboxes.take(batch))
    first_a, first_b = engine.made
    c = sandboxes.take("c")
    await asyncio.sleep(0)
    assert first_a.closed and not first_b.closed, "the longest idle one makes room"
    assert sandboxes.open == 2
    sandboxes.give_back("c", c)
    await sandboxes.close()
    assert all(sandbox.closed for sandbox in engine.made)


async def test_idle_sandboxes_close() -> None:
    engine = FakeEngine()
    sandboxes = BatchSandboxes(engine, limit=2, idle_seconds=0.1)
    sandbox = sandboxes.take("a")
    sandboxes.give_back("a", sandbox)
    for _ in range(100):
        if engine.made[0].closed:
            break
        await asyncio.sleep(0.02)
    assert engine.made[0].closed and sandboxes.open == 0
    await sandboxes.close()


class FakeContainer:
    """A batch container's PID 1 at the far end of its attach: runs each frame's program by
    printing its container's name, and reports damage when the program's code says so."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.attach, far = socket.socketpair()
        threading.Thread(target=self._serve, args=(far,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock, sock.makefile("rb") as frames:
            while frames.read(6) == b"ASSAYB":
                header = frames.read(int(frames.read(10)))
                frames.read(int(frames.read(10)))  # stdin
                nonce = header[:32].decode()
                damage = "left a process behind" if b"damage" in header else None
                line = json.dumps({"exit_code": 0, "damage": damage}).encode()
                trailer = trailer_marker(nonce) + line + b"\n"
                for kind, data in ((1, f"ran in {self.name}\n".encode() + trailer), (2, trailer)):
                    sock.sendall(struct.pack(">BxxxI", kind, len(data)) + data)


class FakeBatchEngine:
    """DockerEngine's side of a batch sandbox, recording what the sandbox asked of it."""

    def __init__(self) -> None:
        self.settings = ExecutionSettings(max_cpus=4)
        self.opened: list[FakeContainer] = []
        self.acquired: list[Profile] = []
        self.disposed: list[str] = []

    async def prepare(
        self, request: ExecutionRequest, on_output: OutputCallback | None, *, batch: bool = False
    ) -> Run:
        assert batch, "a batch sandbox's runs are batch runs (refused under gVisor)"
        return Run(resolve_request(request, self.settings), None)

    async def acquire(self, profile: Profile) -> str | None:
        self.acquired.append(profile)
        return None

    async def guarded(self, run: Run, work: Callable[[Run], ExecutionResult]) -> ExecutionResult:
        return await asyncio.to_thread(work, run)

    def open_sandbox(self, run: Run) -> tuple[str, socket.socket]:
        container = FakeContainer(f"c{len(self.opened)}")
        self.opened.append(container)
        run.container_id = container.name
        return container.name, container.attach

    def converse(self, run: Run, sock: socket.socket, *, batch: bool) -> Conversation:
        assert batch
        request = run.request
        nonce = secrets.token_hex(16)
        writer = write_stdin(sock, encode_payload(request, nonce, batch=True), close=False)
        collector = OutputCollector(limit=request.output_limit_bytes, nonce=nonce)
        deadline = time.monotonic() + request.timeout_seconds
        outcome = pump(sock, collector, deadline, run.cancelled, None)
        return Conversation("run", outcome, collector, 0.01, writer)

    def judge(self, run: Run, talk: Conversation) -> ExecutionResult:
        return verdict(talk.outcome, None, False, talk.collector.finish(), talk.duration)

    def dispose(self, container_id: str, *, now: bool = False) -> None:
        self.disposed.append(container_id)


async def ran_in(sandbox: BatchSandbox, code: str = "pass", **limits: object) -> str:
    result = await sandbox.execute(ExecutionRequest.model_validate({"code": code, **limits}))
    assert result.status is ExecutionStatus.COMPLETED, result
    return result.stdout.strip().removeprefix("ran in ")


async def test_a_docker_batch_reuses_its_container_until_a_program_damages_it() -> None:
    engine = FakeBatchEngine()
    sandbox = DockerBatchSandbox(engine, on_close=lambda _: None)
    assert [await ran_in(sandbox), await ran_in(sandbox)] == ["c0", "c0"]
    assert engine.disposed == [] and engine.acquired == [Profile(256, 1.0)]
    assert await ran_in(sandbox, "damage") == "c0", "the damaging program gets its verdict"
    assert engine.disposed == ["c0"], "then its container is retired"
    assert await ran_in(sandbox) == "c1"
    await sandbox.close()


async def test_a_docker_batch_program_with_other_limits_gets_another_container() -> None:
    engine = FakeBatchEngine()
    sandbox = DockerBatchSandbox(engine, on_close=lambda _: None)
    assert await ran_in(sandbox, memory_mb=256) == "c0"
    assert await ran_in(sandbox, memory_mb=512, cpus=2) == "c1"
    assert engine.disposed == ["c0"]
    assert engine.acquired == [Profile(256, 1.0), Profile(512, 2.0)]
    assert await ran_in(sandbox, memory_mb=512, cpus=2) == "c1"
    await sandbox.close()


async def test_closing_a_docker_batch_retires_its_container() -> None:
    engine = FakeBatchEngine()
    closed: list[DockerBatchSandbox] = []
    sandbox = DockerBatchSandbox(engine, on_close=closed.append)
    await ran_in(sandbox)
    await sandbox.close()
    assert engine.disposed == ["c0"] and closed == [sandbox]
    with pytest.raises(SandboxError, match="closed"):
        await ran_in(sandbox)
    await sandbox.close()
    assert engine.disposed == ["c0"], "closing twice retires nothing more"
