"""The execution contract's values: what is asked (:class:`ExecutionRequest`), what comes
back (:class:`ExecutionResult`), and a request with every limit resolved against the
settings (:class:`ResolvedRequest`)."""

from __future__ import annotations

import enum
import functools
import posixpath
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field

from assay.config import ExecutionSettings
from assay.errors import InvalidRequestError
from assay.execution_engine.languages import Languages, Plan, Recipe, load_languages

__all__ = [
    "ExecutionRequest",
    "ExecutionResult",
    "ExecutionStatus",
    "ResolvedRequest",
    "languages_of",
    "resolve_request",
]

#: Most compiler options, or program arguments, one request may give; and their longest.
MAX_ARGUMENTS = 256
MAX_ARGUMENT_BYTES = 4096


class ExecutionStatus(enum.StrEnum):
    """The verdict on one execution."""

    COMPLETED = "completed"  # exited 0
    FAILED = "failed"  # exited non-zero (or was killed by a signal of its own doing)
    TIMEOUT = "timeout"  # still running at the wall-clock limit; everything was killed
    OOM = "oom"  # hit the memory limit and was killed by the kernel
    OUTPUT_LIMIT = "output_limit"  # wrote more than the output cap; everything was killed
    COMPILE_ERROR = "compile_error"  # the compiler refused it (or hit its limits): never ran
    ERROR = "error"  # the sandbox, not the program, failed for this execution


class ExecutionRequest(BaseModel):
    """One program to run. Limits left as None take the configured defaults; they must be
    finite (NaN or infinity is refused, never taken for the default)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    code: str = Field(
        description="Source of the program, stored under its language's file name (main.py, "
        "main.c, Main.java...) in the working directory."
    )
    language: str = Field(default="python", description="One of GET /api/v1/languages.")
    compiler_options: tuple[str, ...] = Field(
        default=(), description="Arguments for the compiler (compiled languages only)."
    )
    args: tuple[str, ...] = Field(default=(), description="Arguments for the program.")
    compile_timeout_seconds: float | None = Field(
        default=None, description="Wall-clock limit of the compilation."
    )
    compile_memory_mb: int | None = Field(
        default=None, description="Memory limit of the compilation."
    )
    stdin: str = Field(default="", description="Bytes (UTF-8) fed to the program's standard input.")
    timeout_seconds: float | None = Field(default=None, description="Wall-clock limit.")
    memory_mb: int | None = Field(default=None, description="Memory limit; no swap.")
    cpus: float | None = Field(default=None, description="CPU quota, in cores.")
    output_limit_bytes: int | None = Field(
        default=None, description="Cap on stdout and stderr together; beyond it the run is killed."
    )
    files: dict[str, str] = Field(
        default_factory=dict,
        description="Extra text files for the working directory, by relative path.",
    )


class ExecutionResult(BaseModel):
    """What happened. User-program failures are verdicts here, never exceptions."""

    model_config = ConfigDict(frozen=True)

    status: ExecutionStatus
    exit_code: int | None = Field(default=None, description="None when the program never exited.")
    signal: int | None = Field(default=None, description="Signal that killed the program, if any.")
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_seconds: float = Field(description="Wall time of the program, start to exit.")
    cpu_time_seconds: float | None = Field(default=None, description="User+system CPU time.")
    peak_memory_bytes: int | None = Field(
        default=None, description="Peak resident memory of the program's largest process."
    )
    error: str | None = Field(default=None, description="Why, when status is 'error'.")
    compile_output: str | None = Field(
        default=None, description="What the compiler wrote; None for interpreted languages."
    )
    compile_output_truncated: bool = False
    compile_duration_seconds: float | None = Field(
        default=None, description="Wall time of the compilation, when there was one."
    )


@dataclass(frozen=True, slots=True)
class ResolvedRequest:
    """A request with its limits checked and defaults applied; what engines run."""

    code: str
    language: str
    stdin: bytes
    timeout_seconds: float
    memory_mb: int
    cpus: float
    output_limit_bytes: int
    files: MappingProxyType[str, str]
    #: The commands and the program's file name, from its language's recipe.
    plan: Plan
    compile_timeout_seconds: float
    compile_memory_mb: int

    @property
    def source_files(self) -> dict[str, str]:
        """The files the sandbox receives: the program under its name, then the others."""
        return {self.plan.source: self.code, **self.files}


def languages_of(settings: ExecutionSettings) -> Languages:
    """The languages these settings enable.

    Raises:
        ConfigurationError: the operator's languages file is unreadable or malformed.
    """
    return _languages(settings.languages_file, settings.languages)


@functools.lru_cache(maxsize=16)
def _languages(path: Path | None, enabled: tuple[str, ...] | None) -> Languages:
    return load_languages(path, enabled=enabled)


def resolve_request(request: ExecutionRequest, settings: ExecutionSettings) -> ResolvedRequest:
    """Apply defaults and check every limit against ``settings``.

    Raises:
        InvalidRequestError: naming the first field that breaks a limit.
    """
    code_bytes = len(request.code.encode())
    if code_bytes == 0:
        raise InvalidRequestError("code is empty", field="code")
    if code_bytes > settings.max_code_bytes:
        raise InvalidRequestError(
            f"code is {code_bytes} bytes; the limit is {settings.max_code_bytes}", field="code"
        )
    stdin = request.stdin.encode()
    if len(stdin) > settings.max_stdin_bytes:
        raise InvalidRequestError(
            f"stdin is {len(stdin)} bytes; the limit is {settings.max_stdin_bytes}", field="stdin"
        )
    recipe = _recipe(request.language, settings)
    _check_arguments("compiler_options", request.compiler_options)
    _check_arguments("args", request.args)
    if request.compiler_options and not recipe.compiled:
        raise InvalidRequestError(
            f"{recipe.name} is not compiled: compiler_options do not apply",
            field="compiler_options",
        )
    plan = recipe.plan(
        request.code, request.files, options=request.compiler_options, args=request.args
    )
    _check_files(request.files, plan.source, settings)
    compile_fields = (request.compile_timeout_seconds, request.compile_memory_mb)
    if not recipe.compiled and any(value is not None for value in compile_fields):
        raise InvalidRequestError(
            f"{recipe.name} is not compiled: compile limits do not apply",
            field="compile_timeout_seconds"
            if request.compile_timeout_seconds is not None
            else "compile_memory_mb",
        )
    memory_mb = int(
        _limit("memory_mb", request.memory_mb, settings.default_memory_mb, settings.max_memory_mb)
    )
    return ResolvedRequest(
        code=request.code,
        language=recipe.name,
        stdin=stdin,
        timeout_seconds=_limit(
            "timeout_seconds",
            request.timeout_seconds,
            settings.default_timeout_seconds,
            settings.max_timeout_seconds,
        ),
        memory_mb=memory_mb,
        cpus=_limit("cpus", request.cpus, settings.default_cpus, settings.max_cpus),
        output_limit_bytes=int(
            _limit(
                "output_limit_bytes",
                request.output_limit_bytes,
                settings.default_output_limit_bytes,
                settings.max_output_limit_bytes,
            )
        ),
        files=MappingProxyType(dict(request.files)),
        plan=plan,
        compile_timeout_seconds=_limit(
            "compile_timeout_seconds",
            request.compile_timeout_seconds,
            min(recipe.compile_timeout_seconds, settings.max_compile_timeout_seconds),
            settings.max_compile_timeout_seconds,
        ),
        compile_memory_mb=int(
            _limit(
                "compile_memory_mb",
                request.compile_memory_mb,
                min(max(recipe.compile_memory_mb, memory_mb), settings.max_compile_memory_mb),
                settings.max_compile_memory_mb,
            )
        ),
    )


def _recipe(name: str, settings: ExecutionSettings) -> Recipe:
    languages = languages_of(settings)
    recipe = languages.get(name)
    if recipe is None:
        known = ", ".join(languages.recipes)
        raise InvalidRequestError(
            f"unknown language {name!r}; this server runs: {known}", field="language"
        )
    return recipe


def _check_arguments(name: str, values: tuple[str, ...]) -> None:
    if len(values) > MAX_ARGUMENTS:
        raise InvalidRequestError(
            f"{len(values)} {name} given; the limit is {MAX_ARGUMENTS}", field=name
        )
    for value in values:
        if "\x00" in value:
            raise InvalidRequestError(f"{name} may not hold NUL", field=name)
        if len(value.encode()) > MAX_ARGUMENT_BYTES:
            raise InvalidRequestError(
                f"an item of {name} is over {MAX_ARGUMENT_BYTES} bytes", field=name
            )


_MINIMUMS: dict[str, float] = {
    "memory_mb": 16,
    "compile_memory_mb": 16,
    "cpus": 0.01,
    "timeout_seconds": 0.01,
    "compile_timeout_seconds": 0.01,
}


def _limit(name: str, value: float | None, default: float, maximum: float) -> float:
    if value is None:
        return default
    minimum = _MINIMUMS.get(name, 1)
    if value < minimum:
        raise InvalidRequestError(f"{name} must be at least {minimum}, got {value}", field=name)
    if value > maximum:
        raise InvalidRequestError(f"{name} must be at most {maximum}, got {value}", field=name)
    return value


def _check_files(files: dict[str, str], source: str, settings: ExecutionSettings) -> None:
    if len(files) > settings.max_files:
        raise InvalidRequestError(
            f"{len(files)} files given; the limit is {settings.max_files}", field="files"
        )
    total = 0
    for path, content in files.items():
        normal = posixpath.normpath(path)
        if (
            not path
            or path.startswith("/")
            or normal != path.rstrip("/")
            or normal.split("/")[0] == ".."
            or "\x00" in path
        ):
            raise InvalidRequestError(
                f"file path {path!r} must be relative and normalised, without '..'", field="files"
            )
        if normal == source:
            raise InvalidRequestError(
                f"file path {source!r} is reserved for the program itself", field="files"
            )
        total += len(content.encode())
    if total > settings.max_files_bytes:
        raise InvalidRequestError(
            f"files total {total} bytes; the limit is {settings.max_files_bytes}", field="files"
        )
