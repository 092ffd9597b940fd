"""Running untrusted programs in sandboxes: the interface, its values and its backends."""

from assay.execution_engine.interface import EngineHealth, ExecutionInterface, OutputCallback
from assay.execution_engine.local import LocalExecutionEngine
from assay.execution_engine.models import (
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    ResolvedRequest,
    resolve_request,
)

__all__ = [
    "EngineHealth",
    "ExecutionInterface",
    "ExecutionRequest",
    "ExecutionResult",
    "ExecutionStatus",
    "LocalExecutionEngine",
    "OutputCallback",
    "ResolvedRequest",
    "resolve_request",
]
