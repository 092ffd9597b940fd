"""How the command line shows a verdict, for a local result or a stored evaluation alike;
and the program options that ``assay run`` and ``assay submit`` share."""

from __future__ import annotations

import argparse
import enum
from pathlib import Path
from typing import Any, Protocol

from assay.execution_engine import load_languages

__all__ = ["add_program_options", "program_fields", "verdict_line"]


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
