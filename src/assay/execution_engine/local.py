"""In-process execution: the monolith's engine."""

from __future__ import annotations

from assay.config import ExecutionSettings
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.interface import (
    BatchSandbox,
    EngineHealth,
    ExecutionInterface,
    OutputCallback,
    PoolStats,
)
from assay.execution_engine.models import ExecutionRequest, ExecutionResult

__all__ = ["LocalExecutionEngine"]


class LocalExecutionEngine(ExecutionInterface):
    """Runs executions on the Docker engine of this host, in this process.

    The platform's view of execution when ``EXECUTION_MODE=local``; it owns a
    :class:`DockerEngine` and delegates to it.
    """

    def __init__(self, settings: ExecutionSettings, *, engine: DockerEngine | None = None) -> None:
        self.engine = engine or DockerEngine(settings)

    async def start(self) -> None:
        """Connect to Docker now rather than on the first execution (see DockerEngine.start)."""
        await self.engine.start()

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        return await self.engine.execute(request, on_output=on_output)

    def batch_sandbox(self) -> BatchSandbox:
        return self.engine.batch_sandbox()

    async def pool_stats(self) -> list[PoolStats]:
        return await self.engine.pool_stats()

    async def check_health(self) -> EngineHealth:
        return await self.engine.check_health()

    async def close(self) -> None:
        await self.engine.close()
