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

Live sandboxes too, with the contract's semantics: each is a temporary directory of the
host, its commands host processes there (each in its own process group, killed at its time
limit; background processes live on until the sandbox is deleted), output capped per
stream, files read and written under it with the contract's distinct errors (permission
bits judged as the sandbox's unprivileged user would meet them, whoever runs the tests).
Commands run as the test's own user (any other ``user`` is refused) and absolute paths are
the host's; idle and lifetime limits are not enforced: :meth:`FakeEngine.end_sandbox` ends
one as they would, :meth:`FakeEngine.lose_sandbox` forgets one as a crashed engine would.

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
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal

from assay.config import ExecutionSettings
from assay.errors import (
    ExecutionError,
    FileOperationError,
    SandboxEndedError,
    SandboxError,
    SandboxFileNotFoundError,
    SandboxFileTooLargeError,
    SandboxIsADirectoryError,
    SandboxNotFoundError,
    SandboxPermissionError,
    UserUnsupportedError,
)
from assay.execution_engine import (
    BatchSandbox,
    CommandRequest,
    CommandResult,
    EndReason,
    EngineHealth,
    ExecFailure,
    ExecutionInterface,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    FileWritten,
    LanguageInfo,
    OutputCallback,
    PoolStats,
    SandboxInfo,
    SandboxRequest,
    languages_of,
    new_sandbox_info,
    resolve_sandbox,
)
from assay.execution_engine.attach import AttachEnd, Compiled, verdict
from assay.execution_engine.interface import describe_languages
from assay.execution_engine.models import ResolvedRequest, resolve_request
from assay.execution_engine.output import OutputCollector, Trailer

__all__ = ["Call", "FakeBatchSandbox", "FakeEngine", "FakeLiveSandbox", "process_exists"]

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
#: A live sandbox's command has returned once its process has exited and its pipes are
#: read dry; a background process it left may hold them open: that long, no longer.
_COMMAND_DRAIN_SECONDS = 0.2


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
        #: Every live sandbox created, by id, ended ones too (never forgotten unless lost).
        self.live: dict[str, FakeLiveSandbox] = {}

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
        """Kill every running program (its ``execute`` raises SandboxError) and end every
        live sandbox (``engine_closed``)."""
        self._closed = True
        for pid in list(self._running):
            _kill_group(pid)
        for sandbox in list(self.live.values()):
            sandbox.end(EndReason.ENGINE_CLOSED)

    # -- live sandboxes ------------------------------------------------------------------

    def end_sandbox(self, sandbox_id: str, reason: EndReason = EndReason.IDLE) -> None:
        """End a live sandbox by itself, as its idle timeout or lifetime would."""
        self.live[sandbox_id].end(reason)

    def lose_sandbox(self, sandbox_id: str) -> None:
        """Forget a live sandbox, as an engine that crashed and started again would: from
        now on it is SandboxNotFoundError."""
        self.live.pop(sandbox_id).end(EndReason.LOST)

    async def create_sandbox(self, request: SandboxRequest) -> SandboxInfo:
        if self._closed:
            raise SandboxError("the fake engine is closed")
        resolved = resolve_sandbox(request, self.settings)
        sandbox_id = f"sbx-{secrets.token_hex(8)}"
        info = new_sandbox_info(sandbox_id, resolved, runtime="fake", warm=False)
        directory = Path(tempfile.mkdtemp(prefix="assay-fake-sandbox-"))
        sandbox = FakeLiveSandbox(info, directory, self._groups)
        sandbox.touch()
        self.live[sandbox_id] = sandbox
        return sandbox.info

    async def sandbox(self, sandbox_id: str) -> SandboxInfo:
        return self._live(sandbox_id).info

    async def list_sandboxes(self) -> list[SandboxInfo]:
        running = [s.info for s in self.live.values() if s.info.state == "running"]
        return sorted(running, key=lambda info: info.created_at)

    async def delete_sandbox(self, sandbox_id: str) -> SandboxInfo:
        sandbox = self._live(sandbox_id)
        sandbox.end(EndReason.DELETED)
        return sandbox.info

    async def exec_command(
        self, sandbox_id: str, command: CommandRequest, *, on_output: OutputCallback | None = None
    ) -> CommandResult:
        sandbox = self._running_sandbox(sandbox_id)
        timeout, limit = command.check(self.settings)
        _as_sandbox_user(command.user)
        sandbox.touch(command=True)
        return await sandbox.run(command, timeout, limit, on_output)

    async def write_file(
        self, sandbox_id: str, path: str, data: bytes, *, user: str | None = None
    ) -> FileWritten:
        sandbox = self._running_sandbox(sandbox_id)
        _as_sandbox_user(user)
        largest = self.settings.sandboxes.max_file_bytes
        if len(data) > largest:
            raise SandboxFileTooLargeError(
                f"{path}: {len(data)} bytes, over the limit of {largest}", path=path
            )
        sandbox.touch()
        target = sandbox.directory / path
        await asyncio.to_thread(_write_file, target, path, data)
        return FileWritten(path=str(target), size=len(data))

    async def read_file(
        self, sandbox_id: str, path: str, *, max_bytes: int, user: str | None = None
    ) -> bytes:
        sandbox = self._running_sandbox(sandbox_id)
        _as_sandbox_user(user)
        sandbox.touch()
        return await asyncio.to_thread(_read_file, sandbox.directory / path, path, max_bytes)

    def _live(self, sandbox_id: str) -> FakeLiveSandbox:
        sandbox = self.live.get(sandbox_id)
        if sandbox is None:
            raise SandboxNotFoundError(f"no sandbox with id {sandbox_id!r}")
        return sandbox

    def _running_sandbox(self, sandbox_id: str) -> FakeLiveSandbox:
        sandbox = self._live(sandbox_id)
        if sandbox.info.state != "running":
            raise SandboxEndedError(f"sandbox {sandbox_id!r} has ended ({sandbox.info.end_reason})")
        return sandbox

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


@dataclass
class FakeLiveSandbox:
    """One live sandbox of the fake engine: a host directory and the process groups of the
    commands run there."""

    info: SandboxInfo
    directory: Path
    #: The engine's process groups, which every command's joins (``leftover_processes``).
    engine_groups: set[int]
    #: Process groups of its commands (each command leads its own).
    groups: set[int] = field(default_factory=set)

    def touch(self, *, command: bool = False) -> None:
        now = datetime.now(UTC)
        info = self.info
        idle_end = now + timedelta(seconds=info.idle_timeout_seconds)
        lifetime_end = info.created_at + timedelta(seconds=info.lifetime_seconds)
        self.info = info.model_copy(
            update={
                "last_used_at": now,
                "expires_at": min(idle_end, lifetime_end),
                "commands": info.commands + int(command),
            }
        )

    def end(self, reason: EndReason) -> None:
        """Kill everything it runs and remove its directory; once."""
        if self.info.state == "ended":
            return
        for group in self.groups:
            _kill_group(group)
        shutil.rmtree(self.directory, ignore_errors=True)
        now = datetime.now(UTC)
        self.info = self.info.model_copy(
            update={"state": "ended", "ended_at": now, "end_reason": reason}
        )

    async def run(
        self,
        command: CommandRequest,
        timeout: float,
        limit: int,
        on_output: OutputCallback | None,
    ) -> CommandResult:
        """``command`` as a host process in this sandbox's directory."""
        began = time.monotonic()
        cwd = self.directory if command.cwd is None else self.directory / command.cwd
        if not cwd.is_dir():
            message = f"{command.cwd}: no such directory\n".encode()
            return _not_started(ExecFailure.BAD_CWD, 126, message, began)
        loop = asyncio.get_running_loop()
        output = _CommandOutput(limit, on_output, loop.create_future())
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: output,
                *command.command,
                cwd=cwd,
                env={**_ENV, "HOME": str(self.directory), **command.env},
                stdin=subprocess.DEVNULL if command.input is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except (FileNotFoundError, NotADirectoryError):
            message = f"{command.command[0]}: command not found\n".encode()
            return _not_started(ExecFailure.NOT_FOUND, 127, message, began)
        except OSError as exc:
            message = f"{command.command[0]}: {exc.strerror}\n".encode()
            return _not_started(ExecFailure.PERMISSION_DENIED, 126, message, began)
        pid = transport.get_pid()
        self.groups.add(pid)
        self.engine_groups.add(pid)
        try:
            if command.input is not None:
                stdin = transport.get_pipe_transport(0)
                assert isinstance(stdin, asyncio.WriteTransport)
                stdin.write(command.input)
                stdin.close()  # once written: it reads EOF after its stdin
            timed_out = False
            try:
                await asyncio.wait_for(asyncio.shield(output.exited), timeout)
            except TimeoutError:
                timed_out = True
                _kill_group(pid)  # the command and every process it started
                await output.exited
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(output.closed), _COMMAND_DRAIN_SECONDS)
        except asyncio.CancelledError:
            _kill_group(pid)
            raise
        finally:
            transport.close()
        returncode = transport.get_returncode()
        assert returncode is not None
        return CommandResult(
            returncode=128 - returncode if returncode < 0 else returncode,
            stdout=bytes(output.kept[1]),
            stderr=bytes(output.kept[2]),
            stdout_truncated=output.truncated[1],
            stderr_truncated=output.truncated[2],
            timed_out=timed_out,
            duration_seconds=time.monotonic() - began,
        )


class _CommandOutput(asyncio.SubprocessProtocol):
    """A live sandbox command's output, each stream kept up to its cap (the rest read and
    dropped), handed on as it arrives; its exit, and the end of its pipes."""

    def __init__(
        self, limit: int, on_output: OutputCallback | None, exited: asyncio.Future[None]
    ) -> None:
        self.limit = limit
        self.on_output = on_output
        self.kept = {1: bytearray(), 2: bytearray()}
        self.truncated = {1: False, 2: False}
        self.exited = exited
        self.closed: asyncio.Future[None] = exited.get_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        kept = self.kept[fd]
        room = self.limit - len(kept)
        if len(data) > room:
            self.truncated[fd] = True
            data = data[: max(room, 0)]
        if data:
            kept.extend(data)
            if self.on_output is not None:
                self.on_output("stdout" if fd == 1 else "stderr", data)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _not_started(failure: ExecFailure, code: int, stderr: bytes, began: float) -> CommandResult:
    return CommandResult(
        returncode=code,
        stderr=stderr,
        exec_failure=failure,
        duration_seconds=time.monotonic() - began,
    )


def _as_sandbox_user(user: str | None) -> None:
    if user not in (None, "sandbox"):
        raise UserUnsupportedError(
            f"the fake engine runs commands as its own user, not {user!r} (no root sandbox)"
        )


def _file_error(exc: OSError, path: str) -> FileOperationError:
    """The contract's error for what the host's file system said."""
    if isinstance(exc, IsADirectoryError):
        return SandboxIsADirectoryError(f"{path}: is a directory", path=path)
    if isinstance(exc, PermissionError):
        return SandboxPermissionError(f"{path}: permission denied", path=path)
    if isinstance(exc, FileNotFoundError | NotADirectoryError | FileExistsError):
        return SandboxFileNotFoundError(f"{path}: no such file or directory", path=path)
    return FileOperationError(f"{path}: {exc.strerror}", path=path)


def _deny_unless(target: Path, bits: int) -> None:
    """PermissionError unless ``target``'s owner has ``bits``: what the sandbox's
    unprivileged user, who owns what it made, would meet (root would pass every test)."""
    if not target.stat().st_mode & bits:
        raise PermissionError(target)


def _write_file(target: Path, path: str, data: bytes) -> None:
    try:
        if target.is_dir():
            raise IsADirectoryError(target)
        if target.exists():
            _deny_unless(target, stat.S_IWUSR)
        else:
            parent = next(p for p in target.parents if p.exists())
            _deny_unless(parent, stat.S_IWUSR | stat.S_IXUSR)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        raise _file_error(exc, path) from exc


def _read_file(target: Path, path: str, max_bytes: int) -> bytes:
    try:
        if target.is_dir():
            raise IsADirectoryError(target)
        _deny_unless(target, stat.S_IRUSR)
        with target.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise _file_error(exc, path) from exc
    if len(data) > max_bytes:
        raise SandboxFileTooLargeError(
            f"{path}: larger than the limit of {max_bytes} bytes", path=path
        )
    return data


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
