"""The one abstraction every execution backend implements."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

from assay.errors import SandboxError
from assay.execution_engine.languages import Languages
from assay.execution_engine.live import (
    CommandRequest,
    CommandResult,
    FileWritten,
    SandboxInfo,
    SandboxRequest,
)
from assay.execution_engine.models import ExecutionRequest, ExecutionResult

__all__ = [
    "BatchSandbox",
    "EngineHealth",
    "ExecutionInterface",
    "LanguageInfo",
    "OutputCallback",
    "PoolStats",
    "describe_languages",
]

#: Called with ("stdout" | "stderr", chunk) while the program runs, on the event loop's thread.
OutputCallback = Callable[[Literal["stdout", "stderr"], bytes], None]


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """Whether an engine can run programs now, and if not, what the operator should do."""

    healthy: bool
    detail: str
    facts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PoolStats:
    """One profile's pool, as counted since the engine started."""

    profile: str
    target: int
    ready: int
    creating: int
    hits: int
    misses: int
    created: int
    recycled: int
    failures: int
    #: Mean seconds to create and start one sandbox (None before the first).
    refill_seconds: float | None


@dataclass(frozen=True, slots=True)
class LanguageInfo:
    """One language an engine runs."""

    name: str
    title: str
    #: The toolchain's version as measured in the sandbox image; None when unknown (the
    #: image predates the measurement, or no engine could be asked).
    version: str | None
    #: The file the program is stored as (``{entry}.java``: named after its public class).
    source_file: str
    compiled: bool
    extensions: tuple[str, ...]
    example: str


def describe_languages(languages: Languages, versions: Mapping[str, str]) -> list[LanguageInfo]:
    """What clients see of ``languages``, with the ``versions`` measured in the image."""
    return [
        LanguageInfo(
            name=recipe.name,
            title=recipe.title,
            version=versions.get(recipe.name),
            source_file=recipe.source,
            compiled=recipe.compiled,
            extensions=recipe.extensions,
            example=recipe.example,
        )
        for recipe in languages
    ]


class ExecutionInterface(abc.ABC):
    """Runs one program per call in a fresh sandbox and reports a verdict.

    Contract shared by every backend (local Docker, remote executor service):

    * What the *program* does is data: a non-zero exit, a timeout, running out of memory or
      flooding its output all come back as an :class:`ExecutionResult` with a status.
    * Only failures of the *engine* raise, always subclasses of
      :class:`assay.errors.ExecutionError`.
    * Cancelling the awaiting task kills the sandbox and removes it before the
      ``CancelledError`` propagates.
    """

    @abc.abstractmethod
    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        """Run ``request`` in a fresh sandbox.

        Args:
            request: the program and its limits; limits left unset take configured defaults.
            on_output: receives output chunks while the program runs (best effort, in order
                per stream); the result still carries the complete, capped output.

        Returns:
            The verdict, output and measurements.

        Raises:
            InvalidRequestError: the request breaks a configured limit.
            EngineUnavailableError: the container engine cannot be reached.
            SandboxImageNotFoundError: the sandbox image is missing.
            RuntimeNotAvailableError: the configured OCI runtime is not installed.
            SandboxError: the sandbox failed in an unexpected way.
        """

    def batch_sandbox(self) -> BatchSandbox:
        """A sandbox for one batch's programs, run one after another (isolation ``batch``).

        The caller owns it: one per batch, never shared with another batch, closed when the
        batch is done. The default runs every program through :meth:`execute`, each in a
        fresh sandbox: the same verdicts, stronger isolation, no speed-up."""
        return _FreshSandboxes(self)

    async def start(self) -> None:  # noqa: B027 - an optional hook, a no-op unless overridden
        """Connect now rather than on first use, so that problems show at startup.

        Raises:
            ExecutionError: as ``execute`` would for the same cause.
        """

    async def pool_stats(self) -> list[PoolStats]:
        """The warm pools behind this engine, one entry per profile (empty: no pool).

        Never raises for engine problems; an unreachable part reports nothing."""
        return []

    @abc.abstractmethod
    async def languages(self) -> list[LanguageInfo]:
        """The languages programs may be written in, with their versions.

        Never raises for engine problems: versions it cannot learn are None."""

    # -- live sandboxes: started once, many commands and file operations, then deleted ------

    async def create_sandbox(self, request: SandboxRequest) -> SandboxInfo:
        """Start a live sandbox (from the warm pool when one is ready).

        Raises:
            InvalidRequestError: a limit out of range, an unknown language, another image.
            ExecutionError: as ``execute`` would for the same cause.
        """
        raise SandboxError(f"{type(self).__name__} has no live sandboxes")

    async def sandbox(self, sandbox_id: str) -> SandboxInfo:
        """One live sandbox, running or recently ended.

        Raises:
            SandboxNotFoundError: no sandbox has this id here.
        """
        raise SandboxError(f"{type(self).__name__} has no live sandboxes")

    def holds(self, sandbox_id: str) -> bool:
        """Whether ``sandbox_id`` could be one of this engine's sandboxes: False for one
        made by another process's local engine (several ``assay serve`` on one database),
        which this engine can neither reach nor declare lost."""
        return True

    async def list_sandboxes(self) -> list[SandboxInfo]:
        """Every running live sandbox of this engine, oldest first."""
        return []

    async def exec_command(
        self, sandbox_id: str, command: CommandRequest, *, on_output: OutputCallback | None = None
    ) -> CommandResult:
        """Run ``command`` in a live sandbox; its exit, timeout or failure to start is data.
        At its time limit the command's whole process tree is killed.

        Raises:
            SandboxNotFoundError, SandboxEndedError: no such running sandbox.
            InvalidRequestError: the command breaks a limit; UserUnsupportedError for a user
                this sandbox cannot switch to.
            SandboxLostError: the sandbox ended while the command ran.
        """
        raise SandboxError(f"{type(self).__name__} has no live sandboxes")

    async def write_file(
        self, sandbox_id: str, path: str, data: bytes, *, user: str | None = None
    ) -> FileWritten:
        """Write ``data`` to ``path`` (relative to /workspace unless absolute), creating its
        parent directories, as the sandbox's user (or ``user``, root sandboxes).

        Raises:
            FileOperationError: not found, permission denied, is a directory, too large.
            SandboxNotFoundError, SandboxEndedError, SandboxLostError: as ``exec_command``.
        """
        raise SandboxError(f"{type(self).__name__} has no live sandboxes")

    async def read_file(
        self, sandbox_id: str, path: str, *, max_bytes: int, user: str | None = None
    ) -> bytes:
        """The content of ``path``; SandboxFileTooLargeError when it is over ``max_bytes``.

        Raises:
            FileOperationError, SandboxNotFoundError, SandboxEndedError, SandboxLostError.
        """
        raise SandboxError(f"{type(self).__name__} has no live sandboxes")

    async def delete_sandbox(self, sandbox_id: str) -> SandboxInfo:
        """End a live sandbox and remove it (every process in it is killed). Deleting an
        ended one returns it unchanged.

        Raises:
            SandboxNotFoundError: no sandbox has this id here.
        """
        raise SandboxError(f"{type(self).__name__} has no live sandboxes")

    @abc.abstractmethod
    async def check_health(self) -> EngineHealth:
        """Report whether programs can run now. Never raises for engine problems."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop accepting work, and release connections. Safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class BatchSandbox(abc.ABC):
    """Runs the programs of one batch one after another, reusing a sandbox between them.

    Contract, on top of :meth:`ExecutionInterface.execute`'s (same verdicts, same errors):

    * between two programs the sandbox is reset: every process the previous one left is
      killed, and everything it wrote (working directory, /tmp, shared memory) is gone
      before the next one starts;
    * a program that harms the sandbox in a way a reset cannot undo, or that ends other than
      by exiting (timeout, output cap, cancellation, a dead sandbox), gets its verdict and the
      sandbox is replaced for the next program;
    * every limit of the request still applies, per program;
    * one program at a time: concurrent calls wait for each other.
    """

    @abc.abstractmethod
    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        """Run ``request`` in this batch's sandbox; as :meth:`ExecutionInterface.execute`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Destroy the sandbox. Safe to call twice; ``execute`` afterwards raises
        SandboxError."""


class _FreshSandboxes(BatchSandbox):
    """Batch isolation on an engine without reusable sandboxes: one fresh sandbox each."""

    def __init__(self, engine: ExecutionInterface) -> None:
        self._engine = engine
        self._closed = False

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        if self._closed:
            raise SandboxError("batch sandbox is closed")
        return await self._engine.execute(request, on_output=on_output)

    async def close(self) -> None:
        self._closed = True
