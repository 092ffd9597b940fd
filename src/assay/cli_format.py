"""How the command line shows a verdict, for a local result or a stored evaluation alike;
the program options that ``assay run`` and ``assay submit`` share; and how ``assay sandbox``
shows live sandboxes and their events."""

from __future__ import annotations

import argparse
import enum
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from assay.api.schemas import SandboxEventOut, SandboxOut
from assay.execution_engine import load_languages

__all__ = [
    "add_program_options",
    "event_line",
    "program_fields",
    "sandbox_details",
    "sandbox_table",
    "span",
    "verdict_line",
]


def add_program_options(parser: argparse.ArgumentParser) -> None:
    """--language, --compiler-option and --arg."""
    parser.add_argument(
        "--language",
        help="the program's language (default: from the file name's ending, e.g. .c, .rs)",
    )
    parser.add_argument(
        "--compiler-option",
        dest="compiler_options",
        action="append",
        default=[],
        metavar="OPTION",
        help="passed to the compiler (repeatable; --compiler-option=-O2)",
    )
    parser.add_argument(
        "--arg",
        dest="program_args",
        action="append",
        default=[],
        metavar="ARG",
        help="passed to the program (repeatable)",
    )


def program_fields(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """The request's language (given, or inferred from ``path``), compiler options and
    arguments; only what is set.

    Raises:
        ValueError: no --language, and ``path``'s ending names no known language.
    """
    language = args.language
    if language is None:
        recipe = load_languages().by_extension(path.name)
        if recipe is None:
            raise ValueError(
                f"cannot tell the language of {path.name} from its name; pass --language"
            )
        language = recipe.name
    fields: dict[str, Any] = {"language": language}
    if args.compiler_options:
        fields["compiler_options"] = list(args.compiler_options)
    if args.program_args:
        fields["args"] = list(args.program_args)
    return fields


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
    @property
    def compile_duration_seconds(self) -> float | None: ...


def verdict_line(result: Verdict) -> str:
    """``[assay] completed, exit 0, 0.071 s, cpu 0.016 s, peak 8.6 MiB``."""
    parts = [f"[assay] {result.status.value}"]
    if result.exit_code is not None:
        parts.append(f"exit {result.exit_code}")
    if result.signal is not None:
        parts.append(f"signal {result.signal}")
    if result.compile_duration_seconds is not None:
        parts.append(f"compiled in {result.compile_duration_seconds:.3f} s")
    if result.duration_seconds is not None and result.status.value != "compile_error":
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


def span(seconds: float) -> str:
    """A duration as a person reads it: ``42s``, ``5m``, ``3h10m``, ``2d4h``."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        hours, minutes = divmod(whole // 60, 60)
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(whole // 3600, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def _state(sandbox: SandboxOut) -> str:
    if sandbox.state == "ended" and sandbox.end_reason is not None:
        return f"ended ({sandbox.end_reason.value})"
    return sandbox.state


def _label_text(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def sandbox_table(sandboxes: Sequence[SandboxOut], now: datetime) -> list[str]:
    """``assay sandbox ls``: a header and one aligned row per sandbox (id, state, age,
    idle-expires, commands, labels)."""
    rows = [("ID", "STATE", "AGE", "IDLE-EXPIRES", "COMMANDS", "LABELS")]
    for sandbox in sandboxes:
        expires = sandbox.expires_at - now
        rows.append(
            (
                sandbox.id,
                _state(sandbox),
                span((now - sandbox.created_at).total_seconds()),
                f"in {span(expires.total_seconds())}" if sandbox.state == "running" else "-",
                str(sandbox.commands),
                _label_text(sandbox.labels),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, [*widths, 0], strict=True)).rstrip()
        for row in rows
    ]


def sandbox_details(sandbox: SandboxOut, now: datetime) -> list[str]:
    """``assay sandbox show``: one ``name: value`` line per fact."""
    age = span((now - sandbox.created_at).total_seconds())
    idle, lifetime = span(sandbox.idle_timeout_seconds), span(sandbox.lifetime_seconds)
    lines = [
        f"id:        {sandbox.id}",
        f"state:     {_state(sandbox)}",
        f"created:   {sandbox.created_at:%Y-%m-%d %H:%M:%S} ({age} ago)",
    ]
    if sandbox.ended_at is not None:
        lines.append(f"ended:     {sandbox.ended_at:%Y-%m-%d %H:%M:%S}")
    else:
        lines.append(
            f"expires:   {sandbox.expires_at:%Y-%m-%d %H:%M:%S} unless used "
            f"(idle {idle}, lifetime {lifetime})"
        )
    warm = "yes" if sandbox.warm else "no"
    language = f" ({sandbox.language})" if sandbox.language else ""
    lines += [
        f"limits:    {sandbox.memory_mb} MiB, {sandbox.cpus:g} cpus, {sandbox.pids_limit} pids",
        f"user:      {sandbox.user}  runtime: {sandbox.runtime}  warm: {warm}",
        f"image:     {sandbox.image}{language}",
        f"commands:  {sandbox.commands}",
    ]
    if sandbox.labels:
        lines.append(f"labels:    {_label_text(sandbox.labels)}")
    return lines


def event_line(event: SandboxEventOut) -> str:
    """``assay sandbox events``: ``   3 12:00:01 exec {"command": ["true"], ...}``."""
    data = json.dumps(event.data, ensure_ascii=False, separators=(", ", ": "))
    return f"{event.seq:>4} {event.at:%H:%M:%S} {event.type:<10} {data}"
