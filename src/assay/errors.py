"""Assay's exception tree, and the one table of what each error answers over HTTP.

Every error Assay raises on purpose derives from :class:`AssayError` and carries a
stable machine-readable ``code``; :data:`HTTP_STATUS` gives its HTTP status. Both HTTP
services (the platform's API and the executor service) answer an error with that status
and the body :func:`error_body`, and :func:`error_from_code` turns a code back into the
same class, so a client raises what the server did::

    AssayError
    ├── ConfigurationError              settings that cannot work together
    ├── ExecutionError                  execution_engine: the sandbox itself failed
    │   ├── InvalidRequestError         a request breaks a limit or the schema (the caller's fault)
    │   │   └── UserUnsupportedError    a command asks for a user this sandbox cannot be
    │   ├── EngineUnavailableError      the Docker daemon does not answer
    │   ├── SandboxImageNotFoundError   the sandbox image is not built
    │   ├── RuntimeNotAvailableError    the configured OCI runtime is not installed
    │   ├── ExecutorBusyError           every slot of the executor service is taken
    │   ├── SandboxError                a sandbox broke in an unexpected way
    │   │   └── SandboxLostError        the sandbox was killed or removed from outside mid-run
    │   ├── SandboxNotFoundError        no such live sandbox (never was, or forgotten)
    │   ├── SandboxEndedError           the live sandbox has ended (idle, lifetime, deleted)
    │   ├── SandboxQuotaError           the API key has as many live sandboxes as it may
    │   └── FileOperationError          a file of a live sandbox could not be read or written
    │       ├── SandboxFileNotFoundError    no such file (or a parent is missing)
    │       ├── SandboxPermissionError      the sandbox's user may not
    │       ├── SandboxIsADirectoryError    the path is a directory
    │       └── SandboxFileTooLargeError    larger than the limit
    ├── ImageBuildError                 `assay image build` could not build the image
    ├── StorageError                    storage: the database failed
    │   ├── NotFoundError               no such evaluation (or API key)
    │   ├── IdempotencyConflictError    an Idempotency-Key reused for a different request
    │   └── InvalidCursorError          a page cursor this storage did not make
    ├── QueueError                      queue
    │   └── QueueFullError              the queue is at its bound; retry after ``retry_after``
    ├── AuthenticationError             missing or invalid API key
    └── ClientError                     client: no usable answer from the API
        ├── ServerUnreachableError      the server could not be reached (or stopped answering)
        └── ApiError                    the API answered with an error no class above covers

What user code does (non-zero exit, timeout, running out of memory, flooding its
output) is never an exception: it is a verdict in the ``ExecutionResult``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "HTTP_STATUS",
    "VALIDATION_ERROR",
    "ApiError",
    "AssayError",
    "AuthenticationError",
    "ClientError",
    "ConfigurationError",
    "EngineUnavailableError",
    "ExecutionError",
    "ExecutorBusyError",
    "FileOperationError",
    "IdempotencyConflictError",
    "ImageBuildError",
    "InvalidCursorError",
    "InvalidRequestError",
    "NotFoundError",
    "QueueError",
    "QueueFullError",
    "RuntimeNotAvailableError",
    "SandboxEndedError",
    "SandboxError",
    "SandboxFileNotFoundError",
    "SandboxFileTooLargeError",
    "SandboxImageNotFoundError",
    "SandboxIsADirectoryError",
    "SandboxLostError",
    "SandboxNotFoundError",
    "SandboxPermissionError",
    "SandboxQuotaError",
    "ServerUnreachableError",
    "StorageError",
    "UserUnsupportedError",
    "error_body",
    "error_from_code",
    "http_status",
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


class SandboxNotFoundError(ExecutionError):
    """No live sandbox has this id here (it never existed, or ended long ago)."""

    code = "sandbox_not_found"


class SandboxEndedError(ExecutionError):
    """The live sandbox has ended (deleted, idle or lifetime limit, its engine gone); the
    message says why."""

    code = "sandbox_ended"


class SandboxQuotaError(ExecutionError):
    """The API key already has as many live sandboxes as ``ASSAY_SANDBOX__MAX_PER_API_KEY``
    allows; delete one first."""

    code = "sandbox_quota"


class UserUnsupportedError(InvalidRequestError):
    """A command asks to run as a user this sandbox cannot switch to (it was not created
    with ``user: "root"``)."""

    code = "user_unsupported"


class FileOperationError(ExecutionError):
    """A file of a live sandbox could not be read or written; the message names the path."""

    code = "file_error"

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class SandboxFileNotFoundError(FileOperationError):
    code = "file_not_found"


class SandboxPermissionError(FileOperationError):
    code = "permission_denied"


class SandboxIsADirectoryError(FileOperationError):
    code = "is_a_directory"


class SandboxFileTooLargeError(FileOperationError):
    code = "file_too_large"


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


class InvalidCursorError(StorageError):
    """A page cursor that this storage did not make (or that has been altered)."""

    code = "invalid_cursor"


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


class ClientError(AssayError):
    """Base for what the Python client (``assay.client``) raises when it gets no usable
    answer from the API."""

    code = "client_error"


class ServerUnreachableError(ClientError):
    """The server could not be reached, or the connection failed before it answered in
    full (refused, timed out, reset); the message names the URL."""

    code = "server_unreachable"


class ApiError(ClientError):
    """An error response from the API that no more specific class covers; ``status`` and
    ``code`` are the response's."""

    code = "api_error"

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


#: The HTTP status each error answers with, for every class above; both HTTP services use
#: it (through :func:`http_status`). ``ClientError`` is raised by the client, never served.
HTTP_STATUS: Final[Mapping[type[AssayError], int]] = {
    AssayError: 500,
    ConfigurationError: 500,
    ExecutionError: 503,
    InvalidRequestError: 422,
    EngineUnavailableError: 503,
    SandboxImageNotFoundError: 503,
    RuntimeNotAvailableError: 503,
    ExecutorBusyError: 429,  # the remote engine tries the next executor on a 429
    SandboxError: 503,
    SandboxLostError: 503,
    SandboxNotFoundError: 404,
    SandboxEndedError: 409,
    SandboxQuotaError: 429,
    UserUnsupportedError: 422,
    FileOperationError: 400,
    SandboxFileNotFoundError: 404,
    SandboxPermissionError: 403,
    SandboxIsADirectoryError: 409,
    SandboxFileTooLargeError: 413,
    ImageBuildError: 500,
    StorageError: 503,
    NotFoundError: 404,
    IdempotencyConflictError: 409,
    InvalidCursorError: 400,
    QueueError: 500,
    QueueFullError: 429,
    AuthenticationError: 401,
    ClientError: 502,
    ServerUnreachableError: 502,
    ApiError: 502,  # an instance answers with its own ``status``
}

#: The code of a request the HTTP framework refused before it reached Assay's code (a body
#: or parameter that breaks the schema); the client reads it as an InvalidRequestError.
VALIDATION_ERROR: Final = "validation_error"

_BY_CODE: Final[Mapping[str, type[AssayError]]] = {
    **{cls.code: cls for cls in HTTP_STATUS if cls is not ApiError},
    VALIDATION_ERROR: InvalidRequestError,
}


def http_status(exc: AssayError) -> int:
    """The HTTP status ``exc`` answers with: :data:`HTTP_STATUS` of its class, or of its
    nearest base there (an ``ApiError`` answers with its own status)."""
    if isinstance(exc, ApiError):
        return exc.status
    for cls in type(exc).__mro__:
        if issubclass(cls, AssayError) and cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    raise AssertionError("unreachable: AssayError is in HTTP_STATUS")  # pragma: no cover


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The body of every error response: ``{"error": {"code": ..., "message": ...}}``."""
    return {"error": {"code": code, "message": message}}


def error_from_code(code: str, message: str, **extra: Any) -> AssayError:
    """The error an error body names: the class whose ``code`` it is (``validation_error``:
    InvalidRequestError), given those of ``extra`` its constructor takes (``retry_after``,
    ``field``); for a code no class has, an :class:`ApiError` with ``extra["status"]``
    (500 if absent) and that code."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return ApiError(message, status=int(extra.get("status", 500)), code=code)
    takes = inspect.signature(cls).parameters
    return cls(message, **{name: value for name, value in extra.items() if name in takes})
