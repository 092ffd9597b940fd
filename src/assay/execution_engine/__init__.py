"""Running untrusted programs in sandboxes: the interface, its values and its backends."""

from typing import TYPE_CHECKING, Any

from assay.execution_engine.interface import (
    BatchSandbox,
    EngineHealth,
    ExecutionInterface,
    OutputCallback,
    PoolStats,
)
from assay.execution_engine.models import (
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    ResolvedRequest,
    resolve_request,
)

__all__ = [
    "BatchSandbox",
    "EngineHealth",
    "ExecutionInterface",
    "ExecutionRequest",
    "ExecutionResult",
    "ExecutionStatus",
    "LocalExecutionEngine",
    "OutputCallback",
    "PoolStats",
    "ResolvedRequest",
    "resolve_request",
]

if TYPE_CHECKING:
    from assay.execution_engine.local import LocalExecutionEngine


def __getattr__(name: str) -> Any:
    # Lazy: only processes that run sandboxes themselves need the Docker SDK.
    if name == "LocalExecutionEngine":
        from assay.execution_engine.local import LocalExecutionEngine  # noqa: PLC0415

        return LocalExecutionEngine
    raise AttributeError(name)
