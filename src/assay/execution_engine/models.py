"""The execution contract's values: what is asked (:class:`ExecutionRequest`), what comes
back (:class:`ExecutionResult`), and a request with every limit resolved against the
settings (:class:`ResolvedRequest`)."""

from __future__ import annotations

import enum
import posixpath
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from assay.config import ExecutionSettings
from assay.errors import InvalidRequestError

__all__ = [
    "ExecutionRequest",
    "ExecutionResult",
    "ExecutionStatus",
    "ResolvedRequest",
    "resolve_request",
]

Language = Literal["python"]

#: Name the program is stored under in the sandbox's working directory.
MAIN_FILE = "main.py"


class ExecutionStatus(enum.StrEnum):
    """The verdict on one execution."""

    COMPLETED = "completed"  # exited 0
    FAILED = "failed"  # exited non-zero (or was killed by a signal of its own doing)
    TIMEOUT = "timeout"  # still running at the wall-clock limit; everything was killed
    OOM = "oom"  # hit the memory limit and was killed by the kernel
    OUTPUT_LIMIT = "output_limit"  # wrote more than the output cap; everything was killed
    ERROR = "error"  # the sandbox, not the program, failed for this execution


class ExecutionRequest(BaseModel):
    """One program to run. Limits left as None take the configured defaults; they must be
    finite (NaN or infinity is refused, never taken for the default)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    code: str = Field(description="Source of the program, run as main.py in the working directory.")
    language: Language = "python"
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
    duration_seconds: float = Field(description="Wall time from sandbox start to exit.")
    cpu_time_seconds: float | None = Field(default=None, description="User+system CPU time.")
    peak_memory_bytes: int | None = Field(
        default=None, description="Peak resident memory of the program's largest process."
    )
    error: str | None = Field(default=None, description="Why, when status is 'error'.")


@dataclass(frozen=True, slots=True)
class ResolvedRequest:
    """A request with its limits checked and defaults applied; what engines run."""

    code: str
    language: Language
    stdin: bytes
    timeout_seconds: float
    memory_mb: int
    cpus: float
    output_limit_bytes: int
    files: MappingProxyType[str, str]


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
    _check_files(request.files, settings)
    return ResolvedRequest(
        code=request.code,
        language=request.language,
        stdin=stdin,
        timeout_seconds=_limit(
            "timeout_seconds",
            request.timeout_seconds,
            settings.default_timeout_seconds,
            settings.max_timeout_seconds,
        ),
        memory_mb=int(
            _limit(
                "memory_mb", request.memory_mb, settings.default_memory_mb, settings.max_memory_mb
            )
        ),
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
    )


_MINIMUMS: dict[str, float] = {"memory_mb": 16, "cpus": 0.01, "timeout_seconds": 0.01}


def _limit(name: str, value: float | None, default: float, maximum: float) -> float:
    if value is None:
        return default
    minimum = _MINIMUMS.get(name, 1)
    if value < minimum:
        raise InvalidRequestError(f"{name} must be at least {minimum}, got {value}", field=name)
    if value > maximum:
        raise InvalidRequestError(f"{name} must be at most {maximum}, got {value}", field=name)
    return value


def _check_files(files: dict[str, str], settings: ExecutionSettings) -> None:
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
        if normal == MAIN_FILE:
            raise InvalidRequestError(
                f"file path {MAIN_FILE!r} is reserved for the program itself", field="files"
            )
        total += len(content.encode())
    if total > settings.max_files_bytes:
        raise InvalidRequestError(
            f"files total {total} bytes; the limit is {settings.max_files_bytes}", field="files"
        )
