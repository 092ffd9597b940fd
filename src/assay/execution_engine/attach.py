"""The conversation with a sandbox over Docker's attach socket: sending the program in,
reading its output back, and the verdict from what came back; :class:`Run`, one program's
run, shared by the engine's one-shot and batch paths.

Blocking socket I/O, run on the engine's worker threads; no Docker API calls.
"""

from __future__ import annotations

import contextlib
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from assay.errors import SandboxError
from assay.execution_engine.models import (
    ExecutionResult,
    ExecutionStatus,
    ResolvedRequest,
)
from assay.execution_engine.output import CollectedOutput, OutputCollector
from assay.execution_engine.sandbox_spec import Profile

__all__ = [
    "GO",
    "SIGKILL",
    "AttachEnd",
    "Cancelled",
    "Compiled",
    "Conversation",
    "Emit",
    "Run",
    "close_attach",
    "encode_frame",
    "encode_payload",
    "pump",
    "verdict",
    "write_stdin",
]

SIGKILL = 9
#: Tells a sandbox's PID 1 that waits after a successful compilation to run the program.
GO = b"ASSAYG"
#: How a conversation with a sandbox ended (the engine then reads the verdict).
AttachEnd = Literal["exited", "timeout", "output_limit", "cancelled"]
Emit = Callable[[Literal["stdout", "stderr"], bytes], None]

_INLINE_WRITE_LIMIT = 64 * 1024
_FRAME_HEADER = struct.Struct(">BxxxI")
_STREAMS: dict[int, Literal["stdout", "stderr"]] = {1: "stdout", 2: "stderr"}


@dataclass(slots=True)
class Run:
    """One program's run: what the event loop and the worker thread talking to its sandbox
    share."""

    request: ResolvedRequest
    emit: Emit | None
    #: A started container from the pool, or None: create one (cold).
    warm_id: str | None = None
    run_id: str = field(default_factory=lambda: secrets.token_hex(8))
    cancelled: threading.Event = field(default_factory=threading.Event)
    container_id: str | None = None
    #: Epoch seconds when the program was sent in (Docker's event log is asked from then).
    began: float = 0.0

    @property
    def profile(self) -> Profile:
        return Profile(self.request.memory_mb, self.request.cpus)


@dataclass(frozen=True, slots=True)
class Compiled:
    """How a compilation went: what the compiler wrote, and for how long it ran."""

    output: str
    truncated: bool
    duration: float

    def fields(self) -> dict[str, Any]:
        """The result's compile fields."""
        return {
            "compile_output": self.output,
            "compile_output_truncated": self.truncated,
            "compile_duration_seconds": round(self.duration, 6),
        }


@dataclass(slots=True)
class Conversation:
    """How the conversation with a sandbox about one program went: in which ``phase`` it
    ended, how, what came back in that phase, and the compilation's report if it had one."""

    phase: Literal["compile", "run"]
    outcome: AttachEnd
    collector: OutputCollector
    duration: float
    writer: threading.Thread | None
    compiled: Compiled | None = None


class Cancelled(Exception):
    """The awaiting task was cancelled; the sandbox is being torn down."""


def close_attach(sock: socket.socket) -> None:
    """Shut down and close an attach socket (a sandbox's lifeline: its stdin closes)."""
    # Shut down before any kill: Docker will not finish a container whose output it is
    # still handing to an attached reader that stopped reading. (close() alone would wait
    # for docker-py's references to the socket to go.)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def encode_payload(request: ResolvedRequest, nonce: str, *, batch: bool) -> bytes:
    """The frame the sandbox's PID 1 (``sandbox_init.c``) reads from stdin before running
    ``request``'s program (see :func:`encode_frame`)."""
    plan = request.plan
    return encode_frame(
        nonce,
        request.source_files,
        stdin=request.stdin,
        batch=batch,
        compile_argv=plan.compile or (),
        run_argv=plan.run,
    )


def encode_frame(
    nonce: str,
    files: Mapping[str, str],
    *,
    stdin: bytes,
    batch: bool,
    compile_argv: Sequence[str] = (),
    run_argv: Sequence[str],
) -> bytes:
    """One frame of the supervisor's protocol: the nonce, the compile command (empty:
    nothing to compile) and the run command, the files, then the program's stdin. ``batch``:
    a frame of batch mode (``ASSAYB``), which the next frame may follow; otherwise the
    sandbox's only program (``ASSAY4``)."""
    if len(nonce) != 32:  # the supervisor reads exactly 32 hex digits
        raise ValueError("the nonce must be 32 hex digits")
    parts = [nonce.encode()]
    for field_ in (_command(compile_argv), _command(run_argv)):
        parts += [b"%010d" % len(field_), field_]
    for path, text in files.items():
        for field_ in (path.encode(), text.encode()):
            parts += [b"%010d" % len(field_), field_]
    header = b"".join(parts)
    magic = b"ASSAYB" if batch else b"ASSAY4"
    return magic + b"%010d" % len(header) + header + b"%010d" % len(stdin) + stdin


def _command(argv: Sequence[str]) -> bytes:
    """A command as the supervisor reads it: each argument ended by a NUL."""
    return b"".join(part.encode() + b"\x00" for part in argv)


def write_stdin(sock: socket.socket, payload: bytes, *, close: bool) -> threading.Thread | None:
    """Send the payload; with ``close``, then close our writing side (the program sees EOF).

    Large payloads go from a thread, so a program that writes before reading cannot deadlock
    against us."""

    def send() -> None:
        try:
            sock.sendall(payload)
            if close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the program (or its sandbox) exited without reading all of it

    if len(payload) <= _INLINE_WRITE_LIMIT:
        send()
        return None
    thread = threading.Thread(target=send, name="assay-stdin", daemon=True)
    thread.start()
    return thread


def pump(
    sock: socket.socket,
    collector: OutputCollector,
    deadline: float,
    cancelled: threading.Event,
    emit: Emit | None,
) -> AttachEnd:
    """Demultiplex Docker's attach stream until the trailer, EOF, the deadline, the output
    cap, or cancellation. Stops right after the frame that completes the trailer: in batch
    mode the next program's output follows on the same socket."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    pending = bytearray()
    while True:
        if cancelled.is_set():
            return "cancelled"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        if not poller.poll(min(remaining, 0.5) * 1000):
            continue
        # Never read past the frame in progress: what follows it belongs to the next program.
        want = _FRAME_HEADER.size - len(pending)
        if want <= 0:
            _, size = _FRAME_HEADER.unpack_from(pending)
            want = _FRAME_HEADER.size + size - len(pending)
        try:
            chunk = sock.recv(min(want, 256 * 1024))
        except OSError:
            chunk = b""
        if not chunk:
            return "cancelled" if cancelled.is_set() else "exited"
        pending += chunk
        outcome = _deliver(pending, collector, emit)
        if outcome is not None:
            return outcome


def _deliver(pending: bytearray, collector: OutputCollector, emit: Emit | None) -> AttachEnd | None:
    """Consume the complete frame at the start of ``pending``; an outcome if the run ended."""
    if len(pending) < _FRAME_HEADER.size:
        return None
    kind, size = _FRAME_HEADER.unpack_from(pending)
    end = _FRAME_HEADER.size + size
    if len(pending) < end:
        return None
    data = bytes(pending[_FRAME_HEADER.size : end])
    del pending[:end]
    stream = _STREAMS.get(kind)
    if stream is None:
        return None
    if not collector.feed(stream, data):
        return "output_limit"
    if emit is not None:
        visible = collector.live(stream, data)
        if visible:
            emit(stream, visible)
    if collector.ended:  # every byte the program wrote has arrived
        return "exited"
    return None


def compile_failure(
    outcome: AttachEnd, output: CollectedOutput, compiled: Compiled, request: ResolvedRequest
) -> ExecutionResult | None:
    """The verdict when the compilation failed (None: it succeeded): ``compile_error``, with
    the compiler's output and, when it was stopped, why; ``error`` when the sandbox could
    not compile at all."""
    trailer = output.trailer
    if outcome == "exited" and trailer is not None and trailer.setup_error:
        return ExecutionResult(
            status=ExecutionStatus.ERROR,
            error=trailer.setup_error,
            duration_seconds=0.0,
            **compiled.fields(),
        )
    why = None
    if outcome == "timeout":
        why = f"the compiler ran past its time limit of {request.compile_timeout_seconds:g} s"
    elif outcome == "output_limit":
        why = f"the compiler wrote more than {request.output_limit_bytes} bytes"
    elif trailer is not None and trailer.oom_kills:
        why = f"the compiler ran out of memory (limit {request.compile_memory_mb} MiB)"
    elif trailer is not None and trailer.exit_code == 0 and output.over_limit:
        why = f"the compiler wrote more than {request.output_limit_bytes} bytes"
    elif trailer is not None and trailer.exit_code == 0:
        return None
    text = compiled.output
    if why is not None:
        text += ("" if not text or text.endswith("\n") else "\n") + f"[assay] {why}\n"
    return ExecutionResult(
        status=ExecutionStatus.COMPILE_ERROR,
        duration_seconds=0.0,
        **{**compiled.fields(), "compile_output": text},
    )


def verdict(
    outcome: AttachEnd,
    exit_code: int | None,
    oom_killed: bool,
    output: CollectedOutput,
    duration: float,
    *,
    compiled: Compiled | None = None,
) -> ExecutionResult:
    """The result of one program from how its run ended and what came back.

    ``exit_code`` and ``oom_killed``: Docker's view, used when the trailer is missing.
    ``compiled``: how its compilation went, when it had one.

    Raises:
        SandboxError: neither the trailer nor Docker says how the program ended.
    """
    trailer = output.trailer
    common: dict[str, Any] = {
        **(compiled.fields() if compiled is not None else {}),
        "stdout": output.stdout.decode(errors="replace"),
        "stderr": output.stderr.decode(errors="replace"),
        "stdout_truncated": output.stdout_truncated,
        "stderr_truncated": output.stderr_truncated,
        "duration_seconds": round(duration, 6),
        "cpu_time_seconds": trailer.cpu_time_seconds if trailer else None,
        "peak_memory_bytes": trailer.peak_memory_bytes if trailer else None,
    }
    if outcome == "timeout":
        return ExecutionResult(status=ExecutionStatus.TIMEOUT, signal=SIGKILL, **common)
    if outcome == "output_limit":
        return ExecutionResult(status=ExecutionStatus.OUTPUT_LIMIT, signal=SIGKILL, **common)
    if trailer is not None and trailer.setup_error:
        return ExecutionResult(status=ExecutionStatus.ERROR, error=trailer.setup_error, **common)
    if trailer is not None and trailer.exit_code is not None:
        code, signal = trailer.exit_code, trailer.signal
    elif exit_code is not None:  # no usable trailer (PID 1 failed, or its line was lost)
        code, signal = exit_code, exit_code - 128 if 128 < exit_code <= 192 else None
    else:
        raise SandboxError("the sandbox ended without a verdict")
    if oom_killed:
        status = ExecutionStatus.OOM
    elif output.over_limit:  # exited by itself, a few bytes over the cap
        status = ExecutionStatus.OUTPUT_LIMIT
    else:
        status = ExecutionStatus.COMPLETED if code == 0 else ExecutionStatus.FAILED
    return ExecutionResult(status=status, exit_code=code, signal=signal, **common)
