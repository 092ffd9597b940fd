"""Running untrusted programs in sandboxes: the interface, its values and its backends.
``create_engine`` picks one from settings. The Docker engine and the image builder load the
Docker SDK on first use only."""

from typing import TYPE_CHECKING

from assay.execution_engine.factory import create_engine
from assay.execution_engine.interface import (
    BatchSandbox,
    EngineHealth,
    ExecutionInterface,
    LanguageInfo,
    OutputCallback,
    PoolStats,
)
from assay.execution_engine.languages import Languages, Recipe, load_languages
from assay.execution_engine.live import (
    CommandRequest,
    CommandResult,
    EndReason,
    ExecFailure,
    FileWritten,
    ResolvedSandbox,
    SandboxInfo,
    SandboxRequest,
    SandboxUser,
    new_sandbox_info,
    resolve_sandbox,
)
from assay.execution_engine.models import (
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    ResolvedRequest,
    languages_of,
    resolve_request,
)
from assay.lazy import lazy_names

__all__ = [
    "BatchSandbox",
    "CommandRequest",
    "CommandResult",
    "EndReason",
    "EngineHealth",
    "ExecFailure",
    "ExecutionInterface",
    "ExecutionRequest",
    "ExecutionResult",
    "ExecutionStatus",
    "FileWritten",
    "LanguageInfo",
    "Languages",
    "LocalExecutionEngine",
    "OutputCallback",
    "PoolStats",
    "Recipe",
    "ResolvedRequest",
    "ResolvedSandbox",
    "SandboxInfo",
    "SandboxRequest",
    "SandboxUser",
    "build_image",
    "create_engine",
    "image_status",
    "languages_of",
    "load_languages",
    "new_sandbox_info",
    "resolve_request",
    "resolve_sandbox",
]

if TYPE_CHECKING:
    from assay.execution_engine.image import build_image, image_status
    from assay.execution_engine.local import LocalExecutionEngine

#: Lazy: only processes that run sandboxes themselves need the Docker SDK.
_HOMES = {
    "LocalExecutionEngine": "assay.execution_engine.local",
    "build_image": "assay.execution_engine.image",
    "image_status": "assay.execution_engine.image",
}


__getattr__ = lazy_names(_HOMES)
