"""Request and response bodies of the REST API (the wire format, apart from storage)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from assay.execution_engine import ExecFailure, ExecutionRequest, SandboxInfo, SandboxUser
from assay.storage import Evaluation, EvaluationStatus, Event, Isolation

__all__ = [
    "BatchCreate",
    "BatchOut",
    "CommandIn",
    "CommandOut",
    "Encoding",
    "ErrorBody",
    "EvaluationCreate",
    "EvaluationList",
    "EvaluationOut",
    "EventOut",
    "FileOut",
    "Isolation",
    "NoNul",
    "QueueOut",
    "SandboxCreate",
    "SandboxEventList",
    "SandboxEventOut",
    "SandboxList",
    "SandboxOut",
    "StoredText",
]


def _storable(text: str) -> str:
    if (at := text.find("\x00")) >= 0:
        raise PydanticCustomError(
            "nul_character",
            "holds NUL (\\u0000, at character {at}), which storage cannot hold",
            {"at": at},
        )
    return text


#: For text the platform stores in a text column or looks up by: PostgreSQL's text cannot
#: hold NUL, so no NUL (files are stored as JSON, which can: a file's content may hold NUL).
#: After any length constraint, so that its message stays pydantic's own.
NoNul = AfterValidator(_storable)
StoredText = Annotated[str, NoNul]
LabelKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-/]+$")
]
LabelValue = Annotated[str, StringConstraints(max_length=256), NoNul]


class EvaluationCreate(BaseModel):
    """A program to evaluate. Limits left out take the server's defaults."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    code: StoredText = Field(
        description="Source of the program, stored under its language's file name. No NUL."
    )
    language: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        default="python", description="One of GET /api/v1/languages."
    )
    compiler_options: list[Annotated[str, NoNul]] = Field(
        default_factory=list, description="Arguments for the compiler (compiled languages)."
    )
    args: list[Annotated[str, NoNul]] = Field(
        default_factory=list, description="Arguments for the program."
    )
    compile_timeout_seconds: float | None = Field(
        default=None, description="Wall-clock limit of the compilation."
    )
    compile_memory_mb: int | None = Field(
        default=None, description="Memory limit of the compilation (runc only; see docs)."
    )
    stdin: StoredText = Field(default="", description="Standard input (UTF-8). No NUL.")
    timeout_seconds: float | None = Field(default=None, description="Wall-clock limit.")
    memory_mb: int | None = Field(default=None, description="Memory limit, no swap.")
    cpus: float | None = Field(default=None, description="CPU quota in cores.")
    output_limit_bytes: int | None = Field(default=None, description="Cap on stdout+stderr.")
    files: dict[str, str] = Field(default_factory=dict, description="Extra files, by path.")
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Free-form key/value labels."
    )
    priority: int = Field(default=0, ge=0, le=9, description="Higher runs first; FIFO within.")

    def execution_request(self) -> ExecutionRequest:
        return ExecutionRequest(
            code=self.code,
            language=self.language,
            compiler_options=tuple(self.compiler_options),
            args=tuple(self.args),
            compile_timeout_seconds=self.compile_timeout_seconds,
            compile_memory_mb=self.compile_memory_mb,
            stdin=self.stdin,
            timeout_seconds=self.timeout_seconds,
            memory_mb=self.memory_mb,
            cpus=self.cpus,
            output_limit_bytes=self.output_limit_bytes,
            files=self.files,
        )


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    evaluations: list[EvaluationCreate] = Field(min_length=1)
    isolation: Isolation = Field(
        default="evaluation",
        description=(
            "evaluation: a fresh sandbox for each evaluation. batch: the batch's evaluations "
            "run one after another in sandboxes of this batch alone, reset between them; much "
            "faster for many short programs of one submitter (see docs/batch-isolation.md)."
        ),
    )


class RequestOut(BaseModel):
    code: str
    language: str
    stdin: str
    timeout_seconds: float | None
    memory_mb: int | None
    cpus: float | None
    output_limit_bytes: int | None
    files: dict[str, str]
    compiler_options: list[str] = []
    args: list[str] = []
    compile_timeout_seconds: float | None = None
    compile_memory_mb: int | None = None


class EvaluationOut(BaseModel):
    """An evaluation: its request, its state and, once it ended, its result."""

    id: str
    status: EvaluationStatus
    priority: int
    labels: dict[str, str]
    idempotency_key: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    executor: str | None = Field(
        description="The engine id of the worker that runs (or last ran) it."
    )
    batch_id: str | None = Field(default=None, description="The batch it was submitted in.")
    isolation: Isolation = "evaluation"
    cancel_requested: bool = Field(
        default=False, description="A cancel was asked for while it ran; it ends soon."
    )
    exit_code: int | None = None
    signal: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_seconds: float | None = None
    cpu_time_seconds: float | None = None
    peak_memory_bytes: int | None = None
    error: str | None = None
    compile_output: str | None = Field(
        default=None, description="What the compiler wrote (compiled languages)."
    )
    compile_output_truncated: bool = False
    compile_duration_seconds: float | None = Field(
        default=None, description="Wall time of the compilation; duration_seconds is the run's."
    )
    request: RequestOut | None = Field(
        default=None, description="The submitted program and limits (omitted in lists)."
    )

    @classmethod
    def of(cls, evaluation: Evaluation, *, with_request: bool = True) -> EvaluationOut:
        outcome = evaluation.outcome
        result: dict[str, Any] = {}
        if outcome is not None:
            result = outcome.fields()
        request = None
        if with_request:
            request = RequestOut.model_validate(evaluation.request.model_dump())
        return cls(
            id=evaluation.id,
            status=evaluation.status,
            priority=evaluation.priority,
            labels=evaluation.labels,
            idempotency_key=evaluation.idempotency_key,
            created_at=evaluation.created_at,
            started_at=evaluation.started_at,
            finished_at=evaluation.finished_at,
            attempts=evaluation.attempts,
            executor=evaluation.worker,
            batch_id=evaluation.batch_id,
            isolation=evaluation.isolation,
            cancel_requested=evaluation.cancel_requested,
            request=request,
            **result,
        )


class EvaluationList(BaseModel):
    items: list[EvaluationOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next (older) page.")


class BatchOut(BaseModel):
    batch_id: str = Field(description="Shared by the batch's evaluations (a replay's: the first).")
    isolation: Isolation
    evaluations: list[EvaluationOut]


class EventOut(BaseModel):
    id: int
    evaluation_id: str
    type: str
    at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(
            id=event.id,
            evaluation_id=event.evaluation_id,
            type=event.type,
            at=event.at,
            data=event.data,
        )


class PoolOut(BaseModel):
    """One warm pool: sandboxes started ahead of time for one set of limits."""

    profile: str = Field(description="The limits of this pool's sandboxes, e.g. 256m-1cpu.")
    target: int = Field(description="Sandboxes kept ready.")
    ready: int
    creating: int
    hits: int = Field(description="Executions served by a ready sandbox.")
    misses: int = Field(description="Executions that found the pool empty and ran cold.")
    created: int
    recycled: int = Field(description="Idle sandboxes replaced for age or death.")
    failures: int
    refill_seconds: float | None = Field(
        description="Mean seconds to create and start one sandbox."
    )


class QueueOut(BaseModel):
    depth: int = Field(description="Evaluations waiting to run.")
    running: int = Field(description="Evaluations running now, on any worker.")
    capacity: int = Field(
        description="Evaluations this process may run at once (0: an API-only replica)."
    )
    max_queued: int
    counts: dict[EvaluationStatus, int]
    pool: list[PoolOut] = Field(description="Warm pools of the execution engine(s).")


class LanguageOut(BaseModel):
    """A language programs may be written in."""

    name: str = Field(description="What a request's `language` says.")
    title: str
    version: str | None = Field(description="The toolchain's version, measured in its image.")
    source_file: str = Field(
        description="The file the program is stored as ({entry}: named after its class)."
    )
    compiled: bool
    extensions: list[str] = Field(description="File name endings `assay run` infers it from.")
    example: str = Field(description="A program that prints a greeting.")


class LanguageList(BaseModel):
    languages: list[LanguageOut]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


# -- live sandboxes ----------------------------------------------------------------------


class SandboxCreate(BaseModel):
    """A live sandbox to start. Limits left out take the server's defaults
    (``ASSAY_EXECUTION__SANDBOXES__*``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    memory_mb: int | None = Field(default=None, description="Memory limit, MiB (tmpfs included).")
    cpus: float | None = Field(default=None, gt=0)
    pids_limit: int | None = Field(default=None)
    idle_timeout_seconds: float | None = Field(
        default=None, gt=0, description="Ended after this long without a command or file call."
    )
    lifetime_seconds: float | None = Field(
        default=None, gt=0, description="Ended this long after it started."
    )
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    language: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    image: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    user: SandboxUser = Field(
        default="sandbox",
        description="'sandbox' (uid 10001) or 'root' (may run commands as any user; prefer "
        "gVisor for it).",
    )


class SandboxOut(SandboxInfo):
    """A live sandbox."""


class SandboxList(BaseModel):
    items: list[SandboxOut]


Encoding = Literal["utf-8", "base64"]


class CommandIn(BaseModel):
    """One command, an argv list run without a shell. At most one of ``input`` (text) and
    ``input_base64`` (bytes) is its stdin; none: stdin is empty."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    command: list[str] = Field(min_length=1)
    input: str | None = None
    input_base64: str | None = None
    cwd: str | None = Field(default=None, description="Relative to /workspace unless absolute.")
    env: dict[str, str] = Field(default_factory=dict)
    user: str | None = Field(default=None, description="A user name or uid (root sandboxes).")
    timeout_seconds: float | None = Field(default=None, gt=0)
    output_limit_bytes: int | None = Field(default=None, gt=0, description="Per stream.")
    encoding: Encoding = Field(
        default="utf-8",
        description="How stdout and stderr come back: 'utf-8' (undecodable bytes become "
        "U+FFFD) or 'base64' (exact bytes).",
    )


class CommandOut(BaseModel):
    """What the command did: a non-zero exit, or a timeout, is data."""

    returncode: int
    stdout: str
    stderr: str
    encoding: Encoding
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    exec_failure: ExecFailure | None
    duration_seconds: float


class FileOut(BaseModel):
    path: str
    size: int


class SandboxEventOut(BaseModel):
    """One recorded operation on a live sandbox: ``created``, ``exec``, ``write_file``,
    ``read_file``, ``ended``; its data has the command, exit code, sizes and timings."""

    seq: int
    sandbox_id: str
    type: str
    at: datetime
    data: dict[str, Any]


class SandboxEventList(BaseModel):
    items: list[SandboxEventOut]
