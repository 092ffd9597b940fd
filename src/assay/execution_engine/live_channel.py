"""The engine's side of a live sandbox's conversation with its PID 1 (``sandbox_init.c``,
live mode): many commands and file operations at once over the one attach socket.

Messages are a 9-byte head (type, 4-byte id, 4-byte length, big-endian) and a payload; they
travel inside Docker's attach stream (stdin one way, stdout frames the other). One reader
thread demultiplexes what comes back to each operation by its id; writers share the socket
under a lock. Everything here blocks: the engine calls it on its worker threads. Whatever
comes from the sandbox is untrusted: lengths are bounded, unknown ids dropped, and a
malformed message ends the channel (and with it the sandbox).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from assay.errors import SandboxLostError

__all__ = ["MAGIC", "Channel", "Operation", "Outcome"]

MAGIC = b"ASSAYL"
_HEAD = struct.Struct(">cII")
_DOCKER_FRAME = struct.Struct(">BxxxI")
#: The largest message either side sends (PID 1 refuses bigger ones too).
_MAX_MESSAGE = 4 << 20
_INPUT_CHUNK = 1 << 20
#: How long after its own time limit an operation may take to report before the sandbox is
#: taken for lost: PID 1 kills at the limit itself, this covers a sandbox that stopped.
_GRACE_SECONDS = 30.0

#: Called on the reader thread with ("stdout" | "stderr", bytes) as output arrives.
OutputSink = Callable[[str, bytes], None]


@dataclass(slots=True)
class Outcome:
    """What PID 1 reported when an operation ended, and the output it sent."""

    report: dict[str, Any]
    stdout: bytes
    stderr: bytes


@dataclass(slots=True)
class Operation:
    """One command or file operation in flight."""

    id: int
    sink: OutputSink | None
    replies: queue.SimpleQueue[tuple[bytes, bytes]] = field(default_factory=queue.SimpleQueue)


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class Channel:
    """A live sandbox's attach socket, once its PID 1 has been told to go live."""

    def __init__(self, sock: socket.socket, *, on_end: Callable[[], None] | None = None) -> None:
        self._sock = sock
        self._write_lock = threading.Lock()
        self._ops: dict[int, Operation] = {}
        self._ops_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._hello: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._ended = threading.Event()
        self._on_end = on_end
        self._send(MAGIC)
        self._reader = threading.Thread(target=self._read, name="assay-live-reader", daemon=True)
        self._reader.start()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def hello(self, timeout: float) -> dict[str, Any]:
        """PID 1's first word: the isolation facts it sees (a trailer's fields).

        Raises:
            SandboxLostError: it said nothing, or the sandbox ended first.
        """
        try:
            facts = self._hello.get(timeout=timeout)
        except queue.Empty:
            facts = None
        if facts is None:
            raise SandboxLostError("the live sandbox did not start (its PID 1 said nothing)")
        return facts

    def command(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: str,
        user: str,
        timeout: float,
        output_limit: int,
        stdin: bytes | None,
        sink: OutputSink | None,
        op_id: int | None = None,
    ) -> Outcome:
        """Run one command to its end (or its time limit, when PID 1 kills its tree);
        ``op_id`` (from :meth:`next_id`) lets another thread :meth:`kill` it meanwhile."""
        payload = (
            _field(b"".join(arg.encode() + b"\0" for arg in argv))
            + _field(b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()))
            + _field(cwd.encode())
            + _field(user.encode())
            + struct.pack(">IIB", _millis(timeout), output_limit, 1 if stdin is not None else 0)
        )
        return self._operate(b"X", payload, stdin, timeout=timeout, sink=sink, op_id=op_id)

    def write_file(self, path: str, data: bytes, *, user: str, timeout: float) -> Outcome:
        payload = (
            _field(path.encode()) + _field(user.encode()) + struct.pack(">I", _millis(timeout))
        )
        return self._operate(b"W", payload, data, timeout=timeout, sink=None)

    def read_file(self, path: str, *, max_bytes: int, user: str, timeout: float) -> Outcome:
        payload = (
            _field(path.encode())
            + _field(user.encode())
            + struct.pack(">IQ", _millis(timeout), max_bytes)
        )
        return self._operate(b"R", payload, None, timeout=timeout, sink=None)

    def next_id(self) -> int:
        return next(self._ids)

    def close(self) -> None:
        """Close the socket: PID 1 sees its stdin end and ends the sandbox."""
        self._ended.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()

    # -- internals -------------------------------------------------------------------------

    def _operate(
        self,
        kind: bytes,
        payload: bytes,
        stdin: bytes | None,
        *,
        timeout: float,
        sink: OutputSink | None,
        op_id: int | None = None,
    ) -> Outcome:
        if self._ended.is_set():
            raise SandboxLostError("the live sandbox has ended")
        op = Operation(op_id if op_id is not None else self.next_id(), sink)
        with self._ops_lock:
            self._ops[op.id] = op
        try:
            self._message(kind, op.id, payload)
            if stdin is not None:
                feeder = threading.Thread(
                    target=self._feed, args=(op.id, stdin), name="assay-live-input", daemon=True
                )
                feeder.start()
            return self._collect(op, time.monotonic() + timeout + _GRACE_SECONDS)
        finally:
            with self._ops_lock:
                self._ops.pop(op.id, None)

    def _feed(self, op_id: int, data: bytes) -> None:
        view = memoryview(data)
        try:
            for at in range(0, len(view), _INPUT_CHUNK):
                with self._ops_lock:
                    if op_id not in self._ops:
                        return  # it ended (killed, or it closed its stdin and exited)
                self._message(b"I", op_id, view[at : at + _INPUT_CHUNK])
            self._message(b"E", op_id, b"")
        except SandboxLostError:
            return

    def _collect(self, op: Operation, deadline: float) -> Outcome:
        stdout, stderr = bytearray(), bytearray()
        killed_at: float | None = None
        while True:
            wait = deadline - time.monotonic()
            if wait <= 0:
                if killed_at is None:
                    # PID 1 should have killed it at its limit: ask again, then give up.
                    with contextlib.suppress(SandboxLostError):
                        self._message(b"K", op.id, b"")
                    killed_at = time.monotonic()
                    deadline = killed_at + 5
                    continue
                raise SandboxLostError("the live sandbox stopped answering")
            try:
                kind, data = op.replies.get(timeout=min(wait, 1.0))
            except queue.Empty:
                continue
            if kind == b"O":
                stdout += data
            elif kind == b"e":
                stderr += data
            elif kind == b"Z":
                try:
                    report = json.loads(data)
                except ValueError as exc:
                    raise SandboxLostError("the live sandbox sent a malformed report") from exc
                if not isinstance(report, dict):
                    raise SandboxLostError("the live sandbox sent a malformed report")
                return Outcome(report, bytes(stdout), bytes(stderr))
            else:  # the end of the channel
                raise SandboxLostError("the live sandbox ended while the operation ran")

    def kill(self, op_id: int) -> None:
        with contextlib.suppress(SandboxLostError):
            self._message(b"K", op_id, b"")

    def _message(self, kind: bytes, op_id: int, payload: bytes | memoryview) -> None:
        self._send(_HEAD.pack(kind, op_id, len(payload)), payload)

    def _send(self, *parts: bytes | memoryview) -> None:
        if self._ended.is_set():
            raise SandboxLostError("the live sandbox has ended")
        try:
            with self._write_lock:
                for part in parts:
                    self._sock.sendall(part)
        except OSError as exc:
            raise SandboxLostError(f"the live sandbox's stdin is gone: {exc}") from exc

    def _read(self) -> None:
        """The reader thread: Docker's frames, then PID 1's messages, to their operations."""
        stream = bytearray()  # PID 1's stdout, unframed
        pending = bytearray()  # Docker's framing, not yet a whole frame
        try:
            while True:
                try:
                    ready, _, _ = select.select([self._sock], [], [], 1.0)
                except (OSError, ValueError):
                    return
                if not ready:
                    if self._ended.is_set():
                        return
                    continue
                try:
                    chunk = self._sock.recv(1 << 20)
                except OSError:
                    return
                if not chunk:
                    return
                pending += chunk
                _unframe(pending, stream)
                if not self._dispatch(stream):
                    return
        finally:
            self._ended.set()
            self._hello.put(None)
            with self._ops_lock:
                ops = list(self._ops.values())
            for op in ops:
                op.replies.put((b"!", b""))
            if self._on_end is not None:
                self._on_end()

    def _dispatch(self, stream: bytearray) -> bool:
        while len(stream) >= _HEAD.size:
            kind, op_id, size = _HEAD.unpack_from(stream)
            if size > _MAX_MESSAGE:
                return False
            if len(stream) < _HEAD.size + size:
                return True
            data = bytes(stream[_HEAD.size : _HEAD.size + size])
            del stream[: _HEAD.size + size]
            if kind == b"H":
                try:
                    facts = json.loads(data)
                except ValueError:
                    return False
                self._hello.put(facts if isinstance(facts, dict) else None)
                continue
            with self._ops_lock:
                op = self._ops.get(op_id)
            if op is None:
                continue
            if kind in (b"O", b"e") and op.sink is not None:
                op.sink("stdout" if kind == b"O" else "stderr", data)
            op.replies.put((kind, data))
        return True


def _unframe(pending: bytearray, stream: bytearray) -> None:
    """Moves the stdout of each whole Docker frame in ``pending`` to ``stream`` (PID 1's own
    stderr says nothing the engine needs)."""
    while len(pending) >= _DOCKER_FRAME.size:
        kind, size = _DOCKER_FRAME.unpack_from(pending)
        if len(pending) < _DOCKER_FRAME.size + size:
            return
        if kind == 1:
            stream += pending[_DOCKER_FRAME.size : _DOCKER_FRAME.size + size]
        del pending[: _DOCKER_FRAME.size + size]


def _millis(seconds: float) -> int:
    return max(1, min(int(seconds * 1000), 2**32 - 1))
