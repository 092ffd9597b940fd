"""Assay's exception tree.

Every error Assay raises on purpose derives from :class:`AssayError` and carries a
stable machine-readable ``code`` (used in HTTP error bodies, so a remote client can
turn a code back into the same class)::

    AssayError
    ├── ConfigurationError              settings that cannot work together
    ├── ExecutionError                  execution_engine: the sandbox itself failed
    │   ├── InvalidRequestError         a request breaks a limit or the schema (the caller's fault)
    │   ├── EngineUnavailableError      the Docker daemon does not answer
    │   ├── SandboxImageNotFoundError   the sandbox image is not built
    │   ├── RuntimeNotAvailableError    the configured OCI runtime is not installed
    │   ├── ExecutorBusyError           every slot of the executor service is taken
    │   ├── SandboxError                a sandbox broke in an unexpected way
    │   └── SandboxLostError            the sandbox was killed or removed from outside mid-run
    ├── ImageBuildError                 `assay image build` could not build the image
    ├── StorageError                    storage: the database failed
    │   ├── NotFoundError               no such evaluation (or API key)
    │   └── IdempotencyConflictError    an Idempotency-Key reused for a different request
    ├── QueueError                      queue
    │   └── QueueFullError              the queue is at its bound; retry after ``retry_after``
    ├── AuthenticationError             missing or invalid API key
    └── ApiError                        the API answered with an error no class above covers

What user code does (non-zero exit, timeout, running out of memory, flooding its
output) is never an exception: it is a verdict in the ``ExecutionResult``.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "AssayError",
    "AuthenticationError",
    "ConfigurationError",
    "EngineUnavailableError",
    "ExecutionError",
    "ExecutorBusyError",
    "IdempotencyConflictError",
    "ImageBuildError",
    "InvalidRequestError",
    "NotFoundError",
    "QueueError",
    "QueueFullError",
    "RuntimeNotAvailableError",
    "SandboxError",
    "SandboxImageNotFoundError",
    "SandboxLostError",
    "StorageError",
    "execution_error_from_code",
]


class AssayError(Exception):
    """Root of every error Assay raises deliberately."""

    code = "assay_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(AssayError):
    """Settings that are invalid or cannot work together."""

    code = "configuration_error"


class ExecutionError(AssayError):
    """Base for failures of the execution engine (never of the user's program)."""

    code = "execution_error"


class InvalidRequestError(ExecutionError):
    """The execution request breaks the schema or a configured limit.

    ``field`` names the offending request field, when there is one.
    """

    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class EngineUnavailableError(ExecutionError):
    """The container engine (the Docker daemon) cannot be reached."""

    code = "engine_unavailable"


class SandboxImageNotFoundError(ExecutionError):
    """The sandbox image the engine is configured to use does not exist."""

    code = "image_not_found"


class RuntimeNotAvailableError(ExecutionError):
    """The configured OCI runtime (for example ``runsc``) is not registered with Docker."""

    code = "runtime_not_available"


class ExecutorBusyError(ExecutionError):
    """The executor service has no free slot; retry later or elsewhere."""

    code = "executor_busy"


class SandboxError(ExecutionError):
    """A sandbox failed in a way that is neither the user's program nor a known engine fault."""

    code = "sandbox_error"


class SandboxLostError(SandboxError):
    """The sandbox was killed or removed from outside while a program ran in it (``docker
    kill``, ``docker rm -f``, a daemon restart): the program gave no verdict, so the run says
    nothing about it. The queue runs the evaluation again while attempts remain."""

    code = "sandbox_lost"


class ImageBuildError(AssayError):
    """Building the sandbox image failed."""

    code = "image_build_error"


class StorageError(AssayError):
    """The database failed or refused an operation."""

    code = "storage_error"


class NotFoundError(StorageError):
    """No record with that id."""

    code = "not_found"


class IdempotencyConflictError(StorageError):
    """An Idempotency-Key was reused with a different request body."""

    code = "idempotency_conflict"


class QueueError(AssayError):
    """Base for queue failures."""

    code = "queue_error"


class QueueFullError(QueueError):
    """The queue holds as many evaluations as it may; retry after ``retry_after`` seconds."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthenticationError(AssayError):
    """The request has no valid API key and the server requires one."""

    code = "unauthorized"


class ApiError(AssayError):
    """An error response from the API that no more specific class covers."""

    code = "api_error"

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def execution_error_from_code(code: str, message: str) -> ExecutionError:
    """The ExecutionError subclass a remote executor named by ``code`` (SandboxError when the
    code is unknown), so a remote engine raises exactly what a local one would."""
    classes: list[type[ExecutionError]] = [
        InvalidRequestError,
        EngineUnavailableError,
        SandboxImageNotFoundError,
        RuntimeNotAvailableError,
        ExecutorBusyError,
        SandboxLostError,
        SandboxError,
    ]
    for cls in classes:
        if cls.code == code:
            return cls(message)
    return SandboxError(f"{code}: {message}")
