"""Live sandboxes' values: what is asked (:class:`SandboxRequest`, :class:`CommandRequest`)
and what comes back (:class:`SandboxInfo`, :class:`CommandResult`, :class:`FileWritten`).

A live sandbox is started once and then serves many commands and file operations, until it
is deleted or reaches its idle timeout or lifetime. Its hardening is an evaluation
sandbox's (no network, no capabilities, Assay's seccomp profile, read-only root, pids,
memory and CPU limits); what differs is written in docs/decisions/0013-live-sandboxes.md.

These models are also the executor service's wire format: bytes travel as base64.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from assay.config import ExecutionSettings
from assay.errors import InvalidRequestError

__all__ = [
    "MAX_COMMAND_ARGS",
    "MAX_COMMAND_BYTES",
    "MAX_ENV_BYTES",
    "CommandRequest",
    "CommandResult",
    "EndReason",
    "ExecFailure",
    "FileWritten",
    "ResolvedSandbox",
    "SandboxInfo",
    "SandboxRequest",
    "SandboxUser",
    "WireBytes",
    "new_sandbox_info",
    "resolve_sandbox",
]

#: A command's most arguments, and their total size (Linux's own ARG_MAX is 2 MiB, with the
#: environment); the environment's total size.
MAX_COMMAND_ARGS = 65536
MAX_COMMAND_BYTES = 1536 * 1024
MAX_ENV_BYTES = 256 * 1024
_MAX_PATH = 4096
_MAX_LABELS = 64
_MAX_LABEL_BYTES = 256

SandboxUser = Literal["sandbox", "root"]


def _from_base64(value: object) -> object:
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


#: Bytes in Python, base64 in JSON (the executor service's wire format).
WireBytes = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(lambda data: base64.b64encode(data).decode(), when_used="json"),
]


class EndReason(enum.StrEnum):
    """Why a live sandbox ended."""

    DELETED = "deleted"  # DELETE /api/v1/sandboxes/{id}
    IDLE = "idle"  # no command or file operation for its idle timeout
    LIFETIME = "lifetime"  # reached its lifetime
    LOST = "lost"  # it stopped by itself, or was killed or removed from outside
    ENGINE_CLOSED = "engine_closed"  # its engine (assay serve, or the executor) stopped


class SandboxRequest(BaseModel):
    """A live sandbox to start. Limits left as None take the configured defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    memory_mb: int | None = Field(default=None, description="Memory limit (MiB), tmpfs included.")
    cpus: float | None = Field(default=None, gt=0, description="CPU limit, in cores.")
    pids_limit: int | None = Field(default=None, description="Most processes at once.")
    idle_timeout_seconds: float | None = Field(
        default=None, gt=0, description="Ended after this long with no command or file call."
    )
    lifetime_seconds: float | None = Field(
        default=None, gt=0, description="Ended this long after it started, whatever it does."
    )
    labels: dict[str, str] = Field(default_factory=dict)
    language: str | None = Field(
        default=None,
        description="A language of GET /api/v1/languages the sandbox is meant for (one image "
        "holds them all: this checks it is enabled, and is kept as a label).",
    )
    image: str | None = Field(
        default=None, description="The sandbox image; only the configured one is accepted."
    )
    user: SandboxUser = Field(
        default="sandbox",
        description="'sandbox' (uid 10001, the default) or 'root'. A root sandbox may run "
        "commands as any user of the image; prefer gVisor (runsc) for it.",
    )


@dataclass(frozen=True, slots=True)
class ResolvedSandbox:
    """A sandbox request with its limits checked and defaults applied."""

    memory_mb: int
    cpus: float
    pids_limit: int
    idle_timeout_seconds: float
    lifetime_seconds: float
    labels: dict[str, str]
    language: str | None
    image: str
    user: SandboxUser


def resolve_sandbox(request: SandboxRequest, settings: ExecutionSettings) -> ResolvedSandbox:
    """``request`` with every limit checked against ``settings``.

    Raises:
        InvalidRequestError: a limit out of range, an unknown language, another image,
            or labels too many or too long; ``field`` names it.
    """
    live = settings.sandboxes

    def bounded(name: str, value: float | None, default: float, top: float, low: float) -> float:
        chosen = default if value is None else value
        if not low <= chosen <= top:
            raise InvalidRequestError(f"{name} must be between {low:g} and {top:g}", field=name)
        return chosen

    memory = bounded(
        "memory_mb", request.memory_mb, live.default_memory_mb, settings.max_memory_mb, 64
    )
    cpus = bounded("cpus", request.cpus, live.default_cpus, float(settings.max_cpus), 0.01)
    pids = bounded(
        "pids_limit", request.pids_limit, live.default_pids_limit, live.max_pids_limit, 16
    )
    idle = bounded(
        "idle_timeout_seconds",
        request.idle_timeout_seconds,
        live.default_idle_timeout_seconds,
        live.max_idle_timeout_seconds,
        1,
    )
    lifetime = bounded(
        "lifetime_seconds",
        request.lifetime_seconds,
        live.default_lifetime_seconds,
        live.max_lifetime_seconds,
        1,
    )
    if request.image is not None and request.image != settings.image:
        raise InvalidRequestError(
            f"image {request.image!r} is not this server's sandbox image ({settings.image!r})",
            field="image",
        )
    if request.language is not None:
        from assay.execution_engine.models import languages_of  # noqa: PLC0415 - no cycle

        if languages_of(settings).get(request.language) is None:
            raise InvalidRequestError(
                f"unknown language {request.language!r}; GET /api/v1/languages lists them",
                field="language",
            )
    if len(request.labels) > _MAX_LABELS or any(
        len(k.encode()) > _MAX_LABEL_BYTES or len(v.encode()) > _MAX_LABEL_BYTES
        for k, v in request.labels.items()
    ):
        raise InvalidRequestError(
            f"at most {_MAX_LABELS} labels of at most {_MAX_LABEL_BYTES} bytes each",
            field="labels",
        )
    return ResolvedSandbox(
        memory_mb=int(memory),
        cpus=float(cpus),
        pids_limit=int(pids),
        idle_timeout_seconds=float(idle),
        lifetime_seconds=float(lifetime),
        labels=dict(request.labels),
        language=request.language,
        image=settings.image,
        user=request.user,
    )


class SandboxInfo(BaseModel):
    """A live sandbox, as its engine knows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    state: Literal["running", "ended"]
    created_at: datetime
    ended_at: datetime | None = None
    end_reason: EndReason | None = None
    memory_mb: int
    cpus: float
    pids_limit: int
    idle_timeout_seconds: float
    lifetime_seconds: float
    labels: dict[str, str] = Field(default_factory=dict)
    language: str | None = None
    image: str
    user: SandboxUser
    runtime: str = Field(description="The OCI runtime it runs under (runc, runsc).")
    last_used_at: datetime
    expires_at: datetime = Field(description="When it ends unless used again (idle) first.")
    warm: bool = Field(description="Whether it came from the warm pool.")
    commands: int = Field(default=0, description="Commands run so far.")


def new_sandbox_info(
    sandbox_id: str, sandbox: ResolvedSandbox, *, runtime: str, warm: bool
) -> SandboxInfo:
    """What an engine says of a sandbox it has just started."""
    now = datetime.now(UTC)
    return SandboxInfo(
        id=sandbox_id,
        state="running",
        created_at=now,
        memory_mb=sandbox.memory_mb,
        cpus=sandbox.cpus,
        pids_limit=sandbox.pids_limit,
        idle_timeout_seconds=sandbox.idle_timeout_seconds,
        lifetime_seconds=sandbox.lifetime_seconds,
        labels=sandbox.labels,
        language=sandbox.language,
        image=sandbox.image,
        user=sandbox.user,
        runtime=runtime,
        last_used_at=now,
        expires_at=datetime.fromtimestamp(
            now.timestamp() + min(sandbox.idle_timeout_seconds, sandbox.lifetime_seconds), UTC
        ),
        warm=warm,
    )


class CommandRequest(BaseModel):
    """One command to run in a live sandbox. ``command`` is an argv list, run without a
    shell (``["sh", "-c", "..."]`` for one)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    command: list[str] = Field(min_length=1)
    input: WireBytes | None = Field(default=None, description="Its stdin (base64 on the wire).")
    cwd: str | None = Field(
        default=None, description="Working directory; relative to /workspace unless absolute."
    )
    env: dict[str, str] = Field(default_factory=dict)
    user: str | None = Field(default=None, description="A user name or uid (root sandboxes).")
    timeout_seconds: float | None = Field(default=None, gt=0)
    output_limit_bytes: int | None = Field(
        default=None, gt=0, description="Cap on each of stdout and stderr."
    )

    def check(self, settings: ExecutionSettings) -> tuple[float, int]:
        """The command's time limit and output cap; its argv, environment and paths checked.

        Raises:
            InvalidRequestError: naming the field.
        """
        live = settings.sandboxes
        if len(self.command) > MAX_COMMAND_ARGS or (
            sum(len(arg.encode()) + 1 for arg in self.command) > MAX_COMMAND_BYTES
        ):
            raise InvalidRequestError(
                f"the command is longer than {MAX_COMMAND_ARGS} arguments or "
                f"{MAX_COMMAND_BYTES} bytes",
                field="command",
            )
        if any("\0" in arg for arg in self.command) or not self.command[0]:
            raise InvalidRequestError(
                "command arguments may not contain NUL, and the first may not be empty",
                field="command",
            )
        if sum(len(k.encode()) + len(v.encode()) + 2 for k, v in self.env.items()) > MAX_ENV_BYTES:
            raise InvalidRequestError(f"env is larger than {MAX_ENV_BYTES} bytes", field="env")
        if any(not k or "=" in k or "\0" in k + v for k, v in self.env.items()):
            raise InvalidRequestError(
                "env names must be non-empty without '=', and nothing may contain NUL",
                field="env",
            )
        for name, value in (("cwd", self.cwd), ("user", self.user)):
            if value is not None and ("\0" in value or not value or len(value) > _MAX_PATH):
                raise InvalidRequestError(f"{name} must be a non-empty string", field=name)
        if self.input is not None and len(self.input) > live.max_file_bytes:
            raise InvalidRequestError(
                f"input is larger than {live.max_file_bytes} bytes", field="input"
            )
        timeout = (
            live.default_command_timeout_seconds
            if self.timeout_seconds is None
            else self.timeout_seconds
        )
        if timeout > live.max_command_timeout_seconds:
            raise InvalidRequestError(
                f"timeout_seconds may be at most {live.max_command_timeout_seconds:g}",
                field="timeout_seconds",
            )
        limit = (
            live.default_command_output_bytes
            if self.output_limit_bytes is None
            else self.output_limit_bytes
        )
        if limit > live.max_command_output_bytes:
            raise InvalidRequestError(
                f"output_limit_bytes may be at most {live.max_command_output_bytes}",
                field="output_limit_bytes",
            )
        return timeout, limit


class ExecFailure(enum.StrEnum):
    """Why a command could not start (its ``returncode`` is then 126 or 127)."""

    NOT_FOUND = "not_found"  # no such program (127)
    PERMISSION_DENIED = "permission_denied"  # not executable, or not allowed (126)
    UNKNOWN_USER = "unknown_user"  # no such user in the image (126)
    BAD_CWD = "bad_cwd"  # the working directory does not exist or is not one (126)


class CommandResult(BaseModel):
    """What one command did. A non-zero exit or a timeout is data, not an error."""

    model_config = ConfigDict(frozen=True)

    returncode: int = Field(
        description="Its exit status; 128+N when signal N ended it; 126/127 when it could "
        "not start (see exec_failure)."
    )
    stdout: WireBytes = b""
    stderr: WireBytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = Field(
        default=False, description="Still running at its time limit: its process tree was killed."
    )
    exec_failure: ExecFailure | None = None
    duration_seconds: float


class FileWritten(BaseModel):
    """A file written into a live sandbox."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description="Its absolute path in the sandbox.")
    size: int
