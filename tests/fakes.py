"""A fake execution engine for tests whose subject is not the sandbox: :class:`FakeEngine`
runs each program as a local process (its recipe's commands, ``python3`` being this
interpreter), without Docker and without isolation; a compiled language compiles first
with the host's compiler, when it has one.

It keeps :class:`ExecutionInterface`'s contract (it runs through the contract suite,
``tests/integration/test_contract.py``, for every case that is not about isolation): limits
resolved and checked as the real engines do, verdicts for timeouts (the process group
killed), the output cap, exit codes and signals, live output, and cancellation (the
process group killed and reaped before ``CancelledError`` propagates). Memory, CPU, pids and
network are not limited. CPU time and peak memory are the kernel's count for the process
(its peak counts what it shared with the test process when it was spawned).

Knobs for tests of what drives it: :meth:`FakeEngine.fail_next` scripts engine failures,
:attr:`FakeEngine.calls` records every call, :attr:`FakeEngine.healthy` and
:attr:`FakeEngine.pools` set what health and pool statistics report.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from assay.config import ExecutionSettings
from assay.errors import ExecutionError, SandboxError
from assay.execution_engine import (
    BatchSandbox,
    EngineHealth,
    ExecutionInterface,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    LanguageInfo,
    OutputCallback,
    PoolStats,
    languages_of,
)
from assay.execution_engine.attach import AttachEnd, Compiled, verdict
from assay.execution_engine.interface import describe_languages
from assay.execution_engine.models import ResolvedRequest, resolve_request
from assay.execution_engine.output import OutputCollector, Trailer

__all__ = ["Call", "FakeBatchSandbox", "FakeEngine", "process_exists"]

Stream = Literal["stdout", "stderr"]

#: What the sandbox's environment has, with HOME set to the working directory.
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
#: After the program ends and its group is killed, the pipes close at once; this bounds the
#: wait for a process that left the group (the fake does not isolate) and keeps a pipe open.
_DRAIN_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Call:
    """One call of :meth:`FakeEngine.execute`, failed or not."""

    request: ExecutionRequest
    #: ``time.monotonic()`` when it was made.
    at: float


class FakeEngine(ExecutionInterface):
    """Runs each program as ``python main.py`` in its own process group, in a fresh
    temporary directory holding ``main.py`` and the request's files, with a minimal
    environment.

    ``workspace``: run every program in this one directory instead (emptied before each
    program and removed after it, one program at a time), so that tests know the working
    directory a program sees, as they know a sandbox's ``/workspace``.
    """

    def __init__(
        self, settings: ExecutionSettings | None = None, *, workspace: Path | None = None
    ) -> None:
        self.settings = settings or ExecutionSettings()
        self.workspace = workspace.resolve() if workspace is not None else None
        #: Every call of ``execute``, in order (scripted failures and invalid requests too).
        self.calls: list[Call] = []
        #: What ``check_health`` reports (and whether it reports healthy).
        self.healthy = True
        #: What ``pool_stats`` reports.
        self.pools: list[PoolStats] = []
        #: Every batch sandbox handed out, in order.
        self.batch_sandboxes: list[FakeBatchSandbox] = []
        self._failures: collections.deque[ExecutionError] = collections.deque()
        self._running: dict[int, subprocess.Popen[bytes]] = {}
        self._groups: set[int] = set()
        self._one_at_a_time = asyncio.Lock()
        self._closed = False

    @property
    def executions(self) -> int:
        """How many times ``execute`` was called."""
        return len(self.calls)

    @property
    def processes(self) -> list[int]:
        """Pids of the programs running now."""
        return list(self._running)

    def fail_next(self, error: ExecutionError, times: int = 1) -> None:
        """The next ``times`` calls of ``execute`` raise ``error`` without running anything
        (after any failures already scripted)."""
        self._failures.extend([error] * times)

    def leftover_processes(self) -> list[int]:
        """Live processes (not zombies) in the process group of any program this engine has
        started: what a killed sandbox would have taken with it."""
        left = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
            state, _ppid, pgrp, *_ = stat[stat.rfind(")") + 2 :].split()
            if int(pgrp) in self._groups and state != "Z":
                left.append(int(entry.name))
        return left

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        self.calls.append(Call(request, time.monotonic()))
        if self._closed:
            raise SandboxError("the fake engine is closed")
        resolved = resolve_request(request, self.settings)
        if self._failures:
            raise self._failures.popleft()
        if self.workspace is None:
            workdir = Path(tempfile.mkdtemp(prefix="assay-fake-"))
            try:
                return await self._run(resolved, workdir, on_output)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        async with self._one_at_a_time:
            shutil.rmtree(self.workspace, ignore_errors=True)
            self.workspace.mkdir(parents=True)
            try:
                return await self._run(resolved, self.workspace, on_output)
            finally:
                shutil.rmtree(self.workspace, ignore_errors=True)

    def batch_sandbox(self) -> BatchSandbox:
        sandbox = FakeBatchSandbox(self)
        self.batch_sandboxes.append(sandbox)
        return sandbox

    async def pool_stats(self) -> list[PoolStats]:
        return list(self.pools)

    async def languages(self) -> list[LanguageInfo]:
        return describe_languages(languages_of(self.settings), {})

    async def check_health(self) -> EngineHealth:
        if self._closed:
            return EngineHealth(healthy=False, detail="the fake engine is closed")
        if not self.healthy:
            return EngineHealth(healthy=False, detail="the fake engine is set unhealthy")
        return EngineHealth(healthy=True, detail="fake engine: programs run as local processes")

    async def close(self) -> None:
        """Kill every running program (its ``execute`` raises SandboxError)."""
        self._closed = True
        for pid in list(self._running):
            _kill_group(pid)

    async def _run(
        self, request: ResolvedRequest, workdir: Path, on_output: OutputCallback | None
    ) -> ExecutionResult:
        for path, text in request.source_files.items():
            target = workdir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode())
        compiled = None
        if request.plan.compile is not None:
            compiled, failed = await asyncio.to_thread(_compile, request, workdir)
            if failed is not None:
                return failed
        try:
            process = subprocess.Popen(
                _host_command(request.plan.run),
                cwd=workdir,
                env={**_ENV, "HOME": str(workdir)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start the program: {exc}") from exc
        self._running[process.pid] = process
        self._groups.add(process.pid)
        run = _Run(process, request, on_output)
        try:
            outcome = await run.supervise()
        finally:
            run.end()
            del self._running[process.pid]
        if self._closed:
            raise SandboxError("the fake engine was closed while the program ran")
        return run.result(outcome, compiled)


def _host_command(argv: tuple[str, ...]) -> list[str]:
    """A recipe's command on this host: ``python3`` is the interpreter running the tests."""
    return [
        part for arg in argv for part in ([sys.executable, "-s"] if arg == "python3" else [arg])
    ]


def _compile(request: ResolvedRequest, workdir: Path) -> tuple[Compiled, ExecutionResult | None]:
    """The compiler on the host, output merged, under the compile time limit; the failure's
    verdict, if it failed."""
    assert request.plan.compile is not None
    began = time.monotonic()
    try:
        done = subprocess.run(
            _host_command(request.plan.compile),
            cwd=workdir,
            env={**_ENV, "HOME": str(workdir)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=request.compile_timeout_seconds,
            check=False,
        )
        text, why = done.stdout, None if done.returncode == 0 else ""
    except subprocess.TimeoutExpired as exc:
        text = exc.output or b""
        limit_seconds = request.compile_timeout_seconds
        why = f"[assay] the compiler ran past its time limit of {limit_seconds:g} s\n"
    except OSError as exc:
        raise SandboxError(f"cannot start the compiler: {exc}") from exc
    limit = request.output_limit_bytes
    compiled = Compiled(
        output=text[:limit].decode(errors="replace"),
        truncated=len(text) > limit,
        duration=time.monotonic() - began,
    )
    if why is None:
        return compiled, None
    failed = ExecutionResult(
        status=ExecutionStatus.COMPILE_ERROR,
        duration_seconds=0.0,
        **{**compiled.fields(), "compile_output": compiled.output + why},
    )
    return compiled, failed


class FakeBatchSandbox(BatchSandbox):
    """A batch's programs through its engine, one at a time, each in a fresh directory (the
    reset between programs is the engine's fresh process and directory)."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        #: Every request run in this sandbox, in order.
        self.requests: list[ExecutionRequest] = []
        self.closed = False
        self._one_at_a_time = asyncio.Lock()

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        async with self._one_at_a_time:
            if self.closed:
                raise SandboxError("batch sandbox is closed")
            self.requests.append(request)
            return await self.engine.execute(request, on_output=on_output)

    async def close(self) -> None:
        self.closed = True


def process_exists(pid: int) -> bool:
    """Whether a live process (not a zombie) has this pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class _Pipe(asyncio.Protocol):
    """One of the program's output pipes, feeding ``received``."""

    def __init__(self, stream: Stream, run: _Run) -> None:
        self.stream: Stream = stream
        self.run = run
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.run.received(self.stream, data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Run:
    """One program's process, from start to reaped: its pipes, deadline and verdict."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        request: ResolvedRequest,
        on_output: OutputCallback | None,
    ) -> None:
        self.process = process
        self.request = request
        self.on_output = on_output
        self.began = time.monotonic()
        self.ended_at: float | None = None
        self.collector = OutputCollector(
            limit=request.output_limit_bytes, nonce=secrets.token_hex(16)
        )
        self.over_limit = asyncio.Event()
        self.transports: list[asyncio.BaseTransport] = []
        self.pipes: list[_Pipe] = []
        self.status: int | None = None
        self.usage: resource.struct_rusage | None = None
        self._pidfd: int | None = None

    def received(self, stream: Stream, data: bytes) -> None:
        if self.over_limit.is_set():
            return
        if not self.collector.feed(stream, data):
            self.over_limit.set()  # this chunk is not shown: the program is being killed
            return
        if self.on_output is not None:
            self.on_output(stream, data)

    async def supervise(self) -> AttachEnd:
        """Feed stdin, read the output, and wait for the program's exit, the deadline or the
        output cap; then kill what is left of its group, reap it and read its pipes dry."""
        loop = asyncio.get_running_loop()
        process = self.process
        assert process.stdin and process.stdout and process.stderr
        exited = loop.create_future()
        self._pidfd = pidfd = os.pidfd_open(process.pid)

        def on_exit() -> None:
            loop.remove_reader(pidfd)  # readable from now on: once is enough
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        await self._read("stdout", process.stdout)
        await self._read("stderr", process.stderr)
        writer, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, process.stdin)
        self.transports.append(writer)
        if self.request.stdin:
            writer.write(self.request.stdin)
        writer.close()  # once written: the program reads EOF after its stdin
        over = asyncio.ensure_future(self.over_limit.wait())
        try:
            remaining = self.began + self.request.timeout_seconds - time.monotonic()
            await asyncio.wait({exited, over}, timeout=remaining, return_when="FIRST_COMPLETED")
        finally:
            over.cancel()
        outcome: AttachEnd = "timeout"
        if exited.done():
            outcome = "exited"
            self.ended_at = time.monotonic()
        elif self.over_limit.is_set():
            outcome = "output_limit"
        _kill_group(process.pid)  # the program (unless it exited), and whatever it left
        await exited
        self.ended_at = self.ended_at or time.monotonic()
        self._reap()
        drained = asyncio.gather(*(pipe.closed for pipe in self.pipes))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained, _DRAIN_SECONDS)
        return outcome

    async def _read(self, stream: Stream, pipe: IO[bytes]) -> None:
        reader = _Pipe(stream, self)
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(lambda: reader, pipe)
        self.transports.append(transport)
        self.pipes.append(reader)

    def end(self) -> None:
        """However the run ended (cancelled too): nothing of it is left running."""
        if self.status is None:
            _kill_group(self.process.pid)
            self._reap()
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        for transport in self.transports:
            transport.close()

    def _reap(self) -> None:
        # Only now may the pid be reused: the group was killed while its leader was a zombie.
        _, self.status, self.usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(self.status)

    def result(self, outcome: AttachEnd, compiled: Compiled | None = None) -> ExecutionResult:
        assert self.status is not None and self.ended_at is not None
        usage = self.usage
        assert usage is not None
        if os.WIFSIGNALED(self.status):
            code, sig = 128 + os.WTERMSIG(self.status), os.WTERMSIG(self.status)
        else:
            code, sig = os.WEXITSTATUS(self.status), None
        trailer = Trailer(
            exit_code=code,
            signal=sig,
            cpu_time_seconds=usage.ru_utime + usage.ru_stime,
            peak_memory_bytes=usage.ru_maxrss * 1024,  # KiB on Linux
        )
        output = dataclasses.replace(self.collector.finish(), trailer=trailer)
        return verdict(outcome, code, False, output, self.ended_at - self.began, compiled=compiled)
