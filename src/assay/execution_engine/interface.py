"""The one abstraction every execution backend implements."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

from assay.execution_engine.models import ExecutionRequest, ExecutionResult
from assay.execution_engine.pool import PoolStats

__all__ = ["EngineHealth", "ExecutionInterface", "OutputCallback"]

#: Called with ("stdout" | "stderr", chunk) while the program runs, on the event loop's thread.
OutputCallback = Callable[[Literal["stdout", "stderr"], bytes], None]


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """Whether an engine can run programs now, and if not, what the operator should do."""

    healthy: bool
    detail: str
    facts: dict[str, str] = field(default_factory=dict)


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
