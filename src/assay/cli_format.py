"""How the command line shows a verdict, for a local result or a stored evaluation alike."""

from __future__ import annotations

import enum
from typing import Protocol

__all__ = ["verdict_line"]


class Verdict(Protocol):
    @property
    def status(self) -> enum.StrEnum: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def signal(self) -> int | None: ...
    @property
    def duration_seconds(self) -> float | None: ...
    @property
    def cpu_time_seconds(self) -> float | None: ...
    @property
    def peak_memory_bytes(self) -> int | None: ...
    @property
    def stdout_truncated(self) -> bool: ...
    @property
    def stderr_truncated(self) -> bool: ...
    @property
    def error(self) -> str | None: ...


def verdict_line(result: Verdict) -> str:
    """``[assay] completed, exit 0, 0.071 s, cpu 0.016 s, peak 8.6 MiB``."""
    parts = [f"[assay] {result.status.value}"]
    if result.exit_code is not None:
        parts.append(f"exit {result.exit_code}")
    if result.signal is not None:
        parts.append(f"signal {result.signal}")
    if result.duration_seconds is not None:
        parts.append(f"{result.duration_seconds:.3f} s")
    if result.cpu_time_seconds is not None:
        parts.append(f"cpu {result.cpu_time_seconds:.3f} s")
    if result.peak_memory_bytes is not None:
        parts.append(f"peak {result.peak_memory_bytes / 2**20:.1f} MiB")
    if result.stdout_truncated or result.stderr_truncated:
        parts.append("output truncated")
    if result.error:
        parts.append(result.error)
    return ", ".join(parts)
