"""Live sandboxes on the Docker engine: started once (from their own warm pool when one is
ready), then many commands and file operations over the one attach socket, until deleted,
idle for their idle timeout, at their lifetime, or their owner's process is gone.

Each is a container of ``live_sandbox_spec`` whose PID 1 (``sandbox_init.c``) is told to go
live (``live_channel.py``): it proves its isolation first (the same check as an evaluation's
trailer), then runs each command in a session of its own and kills the session's processes
at its time limit. The attach socket stays the lifeline: when this process dies Docker
closes the sandbox's stdin and its PID 1 kills everything; the container removes itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import hashlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from assay.config import ExecutionSettings
from assay.errors import (
    ExecutionError,
    FileOperationError,
    InvalidRequestError,
    RuntimeNotAvailableError,
    SandboxEndedError,
    SandboxError,
    SandboxFileNotFoundError,
    SandboxFileTooLargeError,
    SandboxIsADirectoryError,
    SandboxLostError,
    SandboxNotFoundError,
    SandboxPermissionError,
    UserUnsupportedError,
)
from assay.execution_engine.attach import close_attach
from assay.execution_engine.interface import OutputCallback, PoolStats
from assay.execution_engine.isolation import Isolation
from assay.execution_engine.live import (
    CommandRequest,
    CommandResult,
    EndReason,
    ExecFailure,
    FileWritten,
    ResolvedSandbox,
    SandboxInfo,
    SandboxRequest,
    new_sandbox_info,
    resolve_sandbox,
)
from assay.execution_engine.live_channel import Channel, Outcome
from assay.execution_engine.output import Trailer
from assay.execution_engine.pool import WarmPool
from assay.execution_engine.sandbox_spec import SANDBOX_UID, WORKDIR, Profile

__all__ = ["LiveEngine", "LiveSandboxes"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
#: Ended sandboxes remembered (for GET and a clear 409), most recent last.
_REMEMBER_ENDED = 1000
#: How long a new sandbox's PID 1 may take to say hello.
_HELLO_SECONDS = 30.0
#: A file operation's time limit inside the sandbox.
_FILE_SECONDS = 300.0
_SWEEP_SECONDS = 1.0
_SANDBOX_USERS = ("sandbox", str(SANDBOX_UID))


class LiveEngine(Protocol):
    """What live sandboxes need of their Docker engine (``DockerEngine`` is one)."""

    @property
    def settings(self) -> ExecutionSettings: ...
    @property
    def owner(self) -> str: ...
    async def start(self) -> None: ...
    def isolation(self) -> Isolation: ...
    def create_live(self, sandbox: ResolvedSandbox) -> tuple[str, socket.socket]: ...
    def take_lifeline(self, container_id: str) -> socket.socket | None: ...
    def give_lifeline(self, container_id: str, sock: socket.socket) -> None: ...
    def destroy_pooled(self, container_id: str) -> None: ...
    def running_ids(self) -> set[str]: ...
    def remove(self, container_id: str) -> None: ...


@dataclasses.dataclass(slots=True)
class _Live:
    info: SandboxInfo
    container_id: str
    channel: Channel
    resolved: ResolvedSandbox
    last_used: float  # monotonic
    started: float  # monotonic
    busy: int = 0
    commands: int = 0
    ending: bool = False


class LiveSandboxes:
    """One engine's live sandboxes: a registry, a warm pool, and the sweeper that ends the
    idle and the old."""

    def __init__(self, engine: LiveEngine) -> None:
        self._engine = engine
        self._settings = engine.settings
        live = self._settings.sandboxes
        # Commands can run for an hour: their threads are not the evaluations'.
        self._threads = ThreadPoolExecutor(256, thread_name_prefix="assay-live")
        self._live: dict[str, _Live] = {}
        self._ended: collections.OrderedDict[str, SandboxInfo] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._default = resolve_sandbox(SandboxRequest(), self._settings)
        self._pool: WarmPool | None = None
        self._pool_size = live.pool_size
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        #: Every id this engine makes starts with it: another process's are told apart.
        self.prefix = f"sbx-{hashlib.sha256(engine.owner.encode()).hexdigest()[:8]}-"

    # -- the engine's methods --------------------------------------------------------------

    async def create(self, request: SandboxRequest) -> SandboxInfo:
        if self._closed:
            raise SandboxError("engine is closed")
        resolved = resolve_sandbox(request, self._settings)
        await self._engine.start()
        self._begin()
        pooled = dataclasses.replace(
            resolved, labels={}, language=None, idle_timeout_seconds=0, lifetime_seconds=0
        )
        default = dataclasses.replace(
            self._default, labels={}, idle_timeout_seconds=0, lifetime_seconds=0
        )
        opened: tuple[str, socket.socket] | None = None
        if self._pool is not None and pooled == default:
            warm_id = await self._pool.acquire(self._profile)
            warm_sock = self._engine.take_lifeline(warm_id) if warm_id is not None else None
            if warm_id is not None and warm_sock is not None:
                opened = (warm_id, warm_sock)
        warm = opened is not None
        if opened is None:
            opened = await self._in_thread(self._engine.create_live, resolved)
        container_id, sock = opened
        try:
            channel = await self._in_thread(self._open, container_id, sock)
        except BaseException:
            close_attach(sock)
            await self._in_thread(self._engine.remove, container_id)
            raise
        token = container_id[:12]
        sandbox_id = f"{self.prefix}{secrets.token_hex(8)}"
        info = new_sandbox_info(
            sandbox_id, resolved, runtime=self._engine.isolation().runtime, warm=warm
        )
        clock = time.monotonic()
        entry = _Live(info, container_id, channel, resolved, clock, clock)
        with self._lock:
            self._live[sandbox_id] = entry
        channel_end = threading.Thread(
            target=self._watch, args=(sandbox_id, entry), name="assay-live-watch", daemon=True
        )
        channel_end.start()
        logger.info("live sandbox %s started (container %s, warm %s)", sandbox_id, token, warm)
        return self._view(entry)

    async def get(self, sandbox_id: str) -> SandboxInfo:
        with self._lock:
            entry = self._live.get(sandbox_id)
            if entry is not None:
                return self._view(entry)
            ended = self._ended.get(sandbox_id)
        if ended is None:
            raise self._not_found(sandbox_id)
        return ended

    async def running(self) -> list[SandboxInfo]:
        with self._lock:
            return [self._view(entry) for entry in self._live.values()]

    async def exec(
        self, sandbox_id: str, command: CommandRequest, on_output: OutputCallback | None
    ) -> CommandResult:
        timeout, limit = command.check(self._settings)
        entry = self._running(sandbox_id)
        user = self._user(entry, command.user)
        sink = None
        if on_output is not None:
            loop = asyncio.get_running_loop()
            callback = on_output

            def sink(stream: str, data: bytes) -> None:
                loop.call_soon_threadsafe(callback, stream, data)  # type: ignore[arg-type]

        began = time.monotonic()
        op_id = entry.channel.next_id()
        outcome = await self._operate(
            entry,
            lambda: entry.channel.command(
                command.command,
                env=command.env,
                cwd=command.cwd or "",
                user=user,
                timeout=timeout,
                output_limit=limit,
                stdin=command.input,
                sink=sink,
                op_id=op_id,
            ),
            op_id,
        )
        entry.commands += 1
        report = outcome.report
        failure = report.get("failure")
        stderr = outcome.stderr
        exec_failure = None
        if failure == "setup":
            raise SandboxError(f"the sandbox could not start the command: {report.get('error')}")
        if failure in ("not_found", "permission_denied", "unknown_user", "bad_cwd"):
            exec_failure = ExecFailure(failure)
            stderr += _failure_message(exec_failure, command, str(report.get("error", "")))
        return CommandResult(
            returncode=int(report.get("returncode", 126)),
            stdout=outcome.stdout,
            stderr=stderr,
            stdout_truncated=bool(report.get("stdout_truncated")),
            stderr_truncated=bool(report.get("stderr_truncated")),
            timed_out=bool(report.get("timed_out")),
            exec_failure=exec_failure,
            duration_seconds=round(time.monotonic() - began, 6),
        )

    async def write_file(
        self, sandbox_id: str, path: str, data: bytes, user: str | None
    ) -> FileWritten:
        _check_path(path)
        limit = self._settings.sandboxes.max_file_bytes
        if len(data) > limit:
            raise SandboxFileTooLargeError(
                f"cannot write {path}: {len(data)} bytes is more than the limit of {limit}",
                path=path,
            )
        entry = self._running(sandbox_id)
        as_user = self._user(entry, user)
        outcome = await self._operate(
            entry,
            lambda: entry.channel.write_file(path, data, user=as_user, timeout=_FILE_SECONDS),
        )
        _file_errors(outcome, path, "write")
        return FileWritten(path=_absolute(path), size=len(data))

    async def read_file(
        self, sandbox_id: str, path: str, max_bytes: int, user: str | None
    ) -> bytes:
        _check_path(path)
        entry = self._running(sandbox_id)
        as_user = self._user(entry, user)
        outcome = await self._operate(
            entry,
            lambda: entry.channel.read_file(
                path, max_bytes=max_bytes, user=as_user, timeout=_FILE_SECONDS
            ),
        )
        _file_errors(outcome, path, "read", max_bytes=max_bytes)
        if len(outcome.stdout) > max_bytes:
            raise SandboxFileTooLargeError(
                f"cannot read {path}: it is larger than the limit of {max_bytes} bytes", path=path
            )
        return outcome.stdout

    async def delete(self, sandbox_id: str) -> SandboxInfo:
        with self._lock:
            entry = self._live.get(sandbox_id)
        if entry is None:
            return await self.get(sandbox_id)
        return await self._end(sandbox_id, entry, EndReason.DELETED)

    def pool_stats(self) -> list[PoolStats]:
        if self._pool is None:
            return []
        return [
            dataclasses.replace(stats, profile=f"live-{stats.profile}")
            for stats in self._pool.stats()
        ]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        with self._lock:
            entries = list(self._live.items())
        for sandbox_id, entry in entries:
            with contextlib.suppress(ExecutionError):
                await self._end(sandbox_id, entry, EndReason.ENGINE_CLOSED)
        if self._pool is not None:
            await self._pool.close()
        self._threads.shutdown(wait=True)

    # -- internals -------------------------------------------------------------------------

    @property
    def _profile(self) -> Profile:
        return Profile(self._default.memory_mb, self._default.cpus)

    def _begin(self) -> None:
        """On the first sandbox: the sweeper, and the pool (an unused feature costs nothing)."""
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())
        if self._pool is None and self._pool_size > 0:
            engine = self._engine
            default = self._default
            self._pool = WarmPool(
                {self._profile: self._pool_size},
                create=lambda _profile: self._in_thread(self._create_pooled, default),
                destroy=lambda sandbox_id: self._in_thread(engine.destroy_pooled, sandbox_id),
                alive=lambda: self._in_thread(engine.running_ids),
                max_age_seconds=self._settings.pool.max_age_seconds,
                parallelism=1,
            )
            self._pool.start()

    def _create_pooled(self, sandbox: ResolvedSandbox) -> str:
        container_id, sock = self._engine.create_live(sandbox)
        self._engine.give_lifeline(container_id, sock)
        return container_id

    def _open(self, container_id: str, sock: socket.socket) -> Channel:
        """Tell the sandbox's PID 1 to go live, and check the isolation it reports."""
        channel = Channel(sock)
        facts = channel.hello(_HELLO_SECONDS)
        setup_error = facts.get("setup_error")
        if setup_error:
            channel.close()
            raise RuntimeNotAvailableError(str(setup_error))
        self._engine.isolation().check(
            Trailer(
                kernel=_text(facts.get("kernel")),
                seccomp=_number(facts.get("seccomp")),
                io_uring_errno=_number(facts.get("io_uring_errno")),
            )
        )
        return channel

    def _running(self, sandbox_id: str) -> _Live:
        with self._lock:
            entry = self._live.get(sandbox_id)
            ended = self._ended.get(sandbox_id)
        if entry is not None and not entry.ending:
            return entry
        if ended is not None:
            reason = ended.end_reason.value if ended.end_reason else "ended"
            raise SandboxEndedError(f"sandbox {sandbox_id} has ended ({reason})")
        if entry is not None:
            raise SandboxEndedError(f"sandbox {sandbox_id} is ending")
        raise self._not_found(sandbox_id)

    def _not_found(self, sandbox_id: str) -> SandboxNotFoundError:
        if sandbox_id.startswith("sbx-") and not sandbox_id.startswith(self.prefix):
            return SandboxNotFoundError(
                f"sandbox {sandbox_id} is held by another Assay process's engine, which this "
                "one cannot reach; several servers share live sandboxes only in "
                "EXECUTION_MODE=remote (through executor services)"
            )
        return SandboxNotFoundError(f"no live sandbox {sandbox_id!r} here")

    @staticmethod
    def _user(entry: _Live, user: str | None) -> str:
        if entry.resolved.user == "root":
            return user or ""
        if user is None or user in _SANDBOX_USERS:
            return ""
        raise UserUnsupportedError(
            f"this sandbox runs as user 'sandbox' and cannot run commands as {user!r}; create "
            "it with user 'root' to switch users",
            field="user",
        )

    async def _operate(
        self, entry: _Live, work: Callable[[], Outcome], op_id: int | None = None
    ) -> Outcome:
        """``work`` on a thread; cancelled meanwhile, the command's tree is killed."""
        entry.busy += 1
        future = asyncio.get_running_loop().run_in_executor(self._threads, work)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if op_id is not None:
                entry.channel.kill(op_id)
            raise
        except SandboxLostError:
            if entry.ending or self._closed:
                raise SandboxEndedError(f"sandbox {entry.info.id} ended meanwhile") from None
            raise
        finally:
            entry.busy -= 1
            entry.last_used = time.monotonic()

    async def _end(self, sandbox_id: str, entry: _Live, reason: EndReason) -> SandboxInfo:
        with self._lock:
            if entry.ending:
                ended = self._ended.get(sandbox_id)
                if ended is not None:
                    return ended
            entry.ending = True
        entry.channel.close()
        await self._in_thread(self._engine.remove, entry.container_id)
        return self._forget(sandbox_id, entry, reason)

    def _forget(self, sandbox_id: str, entry: _Live, reason: EndReason) -> SandboxInfo:
        now = datetime.now(UTC)
        view = self._view(entry)
        info = view.model_copy(
            update={"state": "ended", "ended_at": now, "end_reason": reason, "expires_at": now}
        )
        with self._lock:
            self._live.pop(sandbox_id, None)
            if sandbox_id not in self._ended:
                self._ended[sandbox_id] = info
            while len(self._ended) > _REMEMBER_ENDED:
                self._ended.popitem(last=False)
            return self._ended[sandbox_id]

    def _watch(self, sandbox_id: str, entry: _Live) -> None:
        """Waits for a sandbox's channel to end; ended by itself (not by us): lost."""
        while not entry.channel.ended:
            time.sleep(0.2)
        if not entry.ending:
            entry.ending = True
            logger.warning("live sandbox %s ended by itself (lost)", sandbox_id)
            with contextlib.suppress(ExecutionError):
                self._engine.remove(entry.container_id)
            self._forget(sandbox_id, entry, EndReason.LOST)

    async def _sweep(self) -> None:
        """Ends the sandboxes idle for their idle timeout or older than their lifetime."""
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            now = time.monotonic()
            with self._lock:
                entries = list(self._live.items())
            for sandbox_id, entry in entries:
                if entry.ending:
                    continue
                resolved = entry.resolved
                reason = None
                if now - entry.started >= resolved.lifetime_seconds:
                    reason = EndReason.LIFETIME
                elif entry.busy == 0 and now - entry.last_used >= resolved.idle_timeout_seconds:
                    reason = EndReason.IDLE
                if reason is not None:
                    logger.info("live sandbox %s ended (%s)", sandbox_id, reason.value)
                    try:
                        await self._end(sandbox_id, entry, reason)
                    except ExecutionError as exc:
                        logger.warning("could not end live sandbox %s: %s", sandbox_id, exc)

    def _view(self, entry: _Live) -> SandboxInfo:
        clock = time.monotonic()
        now = datetime.now(UTC)
        resolved = entry.resolved
        idle_left = resolved.idle_timeout_seconds - (clock - entry.last_used)
        life_left = resolved.lifetime_seconds - (clock - entry.started)
        return entry.info.model_copy(
            update={
                "last_used_at": _at(now, entry.last_used - clock),
                "expires_at": _at(now, max(0.0, min(idle_left, life_left))),
                "commands": entry.commands,
            }
        )

    async def _in_thread(self, func: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, func, *args)


def _at(now: datetime, seconds: float) -> datetime:
    return datetime.fromtimestamp(now.timestamp() + seconds, UTC)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_path(path: str) -> None:
    if not path or "\0" in path or len(path) > 4096:
        raise InvalidRequestError("path must be a non-empty string without NUL", field="path")


def _absolute(path: str) -> str:
    import posixpath  # noqa: PLC0415

    return posixpath.normpath(posixpath.join(WORKDIR, path))


def _failure_message(failure: ExecFailure, command: CommandRequest, error: str) -> bytes:
    if failure is ExecFailure.UNKNOWN_USER:
        text = f"assay: unknown user {command.user!r}: no such user in the sandbox"
    elif failure is ExecFailure.BAD_CWD:
        text = f"assay: cannot change to directory {command.cwd!r}: {error}"
    else:
        text = f"assay: cannot run {command.command[0]!r}: {error}"
    return (text + "\n").encode()


def _file_errors(outcome: Outcome, path: str, verb: str, max_bytes: int = 0) -> None:
    """Raises the error a file operation's report names, if any."""
    report = outcome.report
    failure = report.get("failure")
    if failure is None and not report.get("timed_out"):
        if report.get("returncode") == 0:
            return
        raise SandboxError(f"cannot {verb} {path}: the operation failed")
    if report.get("timed_out"):
        raise SandboxError(f"cannot {verb} {path}: it took longer than {_FILE_SECONDS:g} s")
    if failure == "unknown_user":
        raise InvalidRequestError(f"cannot {verb} {path}: no such user", field="user")
    code = int(report.get("errno") or 0)
    reason = str(report.get("error") or errno.errorcode.get(code, "failed"))
    message = f"cannot {verb} {path}: {reason}"
    if code in (errno.ENOENT, errno.ENOTDIR):
        raise SandboxFileNotFoundError(f"{message} (no such file or directory)", path=path)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise SandboxPermissionError(f"{message} (permission denied)", path=path)
    if code == errno.EISDIR:
        raise SandboxIsADirectoryError(f"{message} (it is a directory)", path=path)
    if code == errno.EFBIG:
        raise SandboxFileTooLargeError(
            f"cannot {verb} {path}: it is larger than the limit of {max_bytes} bytes"
            if verb == "read"
            else f"{message} (larger than the sandbox allows)",
            path=path,
        )
    raise FileOperationError(message, path=path)
