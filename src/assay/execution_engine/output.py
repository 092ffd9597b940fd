"""Collecting a sandbox's output under a cap, and reading the supervisor's trailer.

Pure functions and values, no I/O: the Docker engine feeds decoded stream chunks in.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["TRAILER_RESERVE", "CollectedOutput", "OutputCollector", "Trailer", "trailer_marker"]

Stream = Literal["stdout", "stderr"]

#: Room kept beyond the user's cap for the supervisor's trailer lines (one per stream).
TRAILER_RESERVE = 4096
#: Longest trailer line the supervisor writes (marker, JSON of a few numbers, newline).
_MAX_TRAILER = TRAILER_RESERVE // 2


def trailer_marker(nonce: str) -> bytes:
    return b"\x00ASSAY-TRAILER-" + nonce.encode() + b":"


@dataclass(frozen=True, slots=True)
class Trailer:
    """What the sandbox's PID 1 reported about the program it ran."""

    exit_code: int | None = None
    signal: int | None = None
    cpu_time_seconds: float | None = None
    peak_memory_bytes: int | None = None
    #: OOM kills in the sandbox while the program ran; None when the cgroup was not visible.
    oom_kills: int | None = None
    setup_error: str | None = None
    #: Batch mode: what the program did that the next one must not inherit (the sandbox is
    #: replaced); None when the reset left it clean.
    damage: str | None = None
    #: The kernel release the sandbox saw (gVisor's is not the host's).
    kernel: str | None = None
    #: The sandbox's seccomp mode (2: a filter), -1 when /proc did not say.
    seccomp: int | None = None
    #: What io_uring_setup answered in the sandbox: an errno, 0 when it was allowed.
    io_uring_errno: int | None = None
    #: ``compile``: the compiler's trailer; ``run`` (or None, an older supervisor): the program's.
    phase: str | None = None


@dataclass(frozen=True, slots=True)
class CollectedOutput:
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    over_limit: bool
    trailer: Trailer | None


@dataclass(slots=True)
class OutputCollector:
    """Keeps at most ``limit`` bytes of stdout and stderr together, in arrival order.

    ``feed`` returns False once the program has written more than it may; the engine then
    kills the sandbox. Memory held never exceeds ``limit + TRAILER_RESERVE``. ``ended`` turns
    true once the supervisor's trailer has arrived whole on both streams.
    """

    limit: int
    nonce: str
    _buffers: dict[Stream, bytearray] = field(
        default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()}
    )
    _dropped: dict[Stream, bool] = field(default_factory=lambda: {"stdout": False, "stderr": False})
    _stored: int = 0
    _trailer_seen: dict[Stream, bool] = field(
        default_factory=lambda: {"stdout": False, "stderr": False}
    )
    _hiding_trailer: dict[Stream, bool] = field(
        default_factory=lambda: {"stdout": False, "stderr": False}
    )
    _held: dict[Stream, bytes] = field(default_factory=lambda: {"stdout": b"", "stderr": b""})

    @property
    def over_limit(self) -> bool:
        return self._dropped["stdout"] or self._dropped["stderr"]

    @property
    def ended(self) -> bool:
        return self._trailer_seen["stdout"] and self._trailer_seen["stderr"]

    def feed(self, stream: Stream, data: bytes) -> bool:
        room = self.limit + TRAILER_RESERVE - self._stored
        if len(data) > room:
            self._dropped[stream] = True
            data = data[: max(room, 0)]
        buffer = self._buffers[stream]
        searched_from = max(len(buffer) - _MAX_TRAILER, 0)
        buffer += data
        self._stored += len(data)
        if not self._trailer_seen[stream]:
            start = buffer.rfind(trailer_marker(self.nonce), searched_from)
            self._trailer_seen[stream] = start >= 0 and buffer.find(b"\n", start) >= 0
        return not self.over_limit

    def live(self, stream: Stream, data: bytes) -> bytes:
        """What of a chunk to show while the program runs: the trailer is not the program's.

        A chunk ending in what may be the start of the trailer is held back until the next."""
        data, self._held[stream] = self._held[stream] + data, b""
        shown = bytearray()
        marker = trailer_marker(self.nonce)
        while data:
            if self._hiding_trailer[stream]:
                end = data.find(b"\n")
                if end < 0:
                    return bytes(shown)
                self._hiding_trailer[stream] = False
                data = data[end + 1 :]
                continue
            start = data.find(marker)
            if start >= 0:
                shown += data[:start]
                self._hiding_trailer[stream] = True
                data = data[start + len(marker) :]
                continue
            keep = _partial_suffix(data, marker)
            shown += data[: len(data) - keep]
            self._held[stream] = data[len(data) - keep :]
            break
        return bytes(shown)

    def finish(self) -> CollectedOutput:
        marker = trailer_marker(self.nonce)
        stdout, stdout_trailer = _split_trailer(bytes(self._buffers["stdout"]), marker)
        stderr, trailer = _split_trailer(bytes(self._buffers["stderr"]), marker)
        truncated = dict(self._dropped)
        excess = len(stdout) + len(stderr) - self.limit
        if excess > 0:
            # Only possible within the trailer reserve: trim the newest bytes to the cap.
            cut = min(excess, len(stderr))
            stderr, stdout = stderr[: len(stderr) - cut], stdout[: len(stdout) - (excess - cut)]
            truncated["stderr"] = truncated["stderr"] or cut > 0
            truncated["stdout"] = truncated["stdout"] or excess > cut
        return CollectedOutput(
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=truncated["stdout"],
            stderr_truncated=truncated["stderr"],
            over_limit=truncated["stdout"] or truncated["stderr"],
            trailer=trailer or stdout_trailer,
        )


def _partial_suffix(data: bytes, marker: bytes) -> int:
    """Length of the longest end of ``data`` that is a proper start of ``marker``."""
    for size in range(min(len(marker) - 1, len(data)), 0, -1):
        if data.endswith(marker[:size]):
            return size
    return 0


def _split_trailer(output: bytes, marker: bytes) -> tuple[bytes, Trailer | None]:
    start = output.rfind(marker)
    if start < 0:
        return output, None
    end = output.find(b"\n", start)
    if end < 0:
        return output[:start], None  # cut off by the cap or a kill: unusable
    trailer = _parse_trailer(output[start + len(marker) : end])
    return output[:start] + output[end + 1 :], trailer


def _parse_trailer(raw: bytes) -> Trailer | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    setup_error = data.get("setup_error")
    damage = data.get("damage")
    kernel = data.get("kernel")
    phase = data.get("phase")
    return Trailer(
        phase=phase if isinstance(phase, str) else None,
        exit_code=_int(data.get("exit_code")),
        signal=_int(data.get("signal")),
        cpu_time_seconds=_seconds(data.get("cpu_time_seconds")),
        peak_memory_bytes=_int(data.get("peak_memory_bytes")),
        oom_kills=_int(data.get("oom_kills")),
        setup_error=setup_error if isinstance(setup_error, str) else None,
        damage=damage if isinstance(damage, str) else None,
        kernel=kernel if isinstance(kernel, str) else None,
        seccomp=_int(data.get("seccomp")),
        io_uring_errno=_int(data.get("io_uring_errno")),
    )


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62:
        return value
    return None


def _seconds(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and number >= 0:
            return number
    return None
