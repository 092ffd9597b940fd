"""The executor service's wire format, shared by the service and RemoteExecutionEngine.

``POST /v1/executions/stream`` answers with newline-delimited JSON, one message a line:

* ``{"type": "output", "stream": "stdout"|"stderr", "data": <base64>}`` while the program
  runs (bytes exactly as written);
* then exactly one of ``{"type": "result", "result": <ExecutionResult>}`` or
  ``{"type": "error", "error": {"code", "message"}}``.

With the header ``X-Assay-Batch-Sandbox: <id>`` the program runs in that batch sandbox of the
executor (created on first use; ids are chosen by the client, 32 hex digits), after the
previous programs sent with the same id; ``DELETE /v1/batch-sandboxes/<id>`` destroys it, and
the executor destroys one left idle for a minute.

A request that fails before it starts (bad token, bad request, no free slot) gets a plain
JSON error body ``{"error": {"code", "message"}}`` with an HTTP status instead. Request bodies
must be strict JSON (no NaN or Infinity, no lone surrogates; ``assay.api.strict_json``).

Live sandboxes (``/v1/sandboxes``): ``POST`` a SandboxRequest → SandboxInfo; ``GET`` →
``{"sandboxes": [SandboxInfo, ...]}``; ``GET``/``DELETE /v1/sandboxes/{id}`` → SandboxInfo;
``POST /v1/sandboxes/{id}/exec`` a CommandRequest → CommandResult (bytes as base64), and
``.../exec/stream`` the same as NDJSON: output messages, then ``{"type": "result", "result":
<CommandResult>}`` or an error message; ``PUT``/``GET /v1/sandboxes/{id}/files?path=P``
(``&user=U``, ``&max_bytes=N``) with the file's raw bytes as the body → FileWritten / the
bytes. They take no slot: a live sandbox is not an execution.

``GET /v1/capacity``: ``{"total", "free", "running", "engine": {"healthy", "detail", ...}}``,
the slots and the engine's health with every fact its ``check_health`` reports.
``GET /healthz`` is the one route without the token: 200 ``{"status": "ok"}`` or 503
``{"status": "unhealthy"}``, nothing more.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from assay.errors import error_body

__all__ = [
    "BATCH_SANDBOXES_PATH",
    "BATCH_SANDBOX_HEADER",
    "CAPACITY_PATH",
    "EXECUTIONS_PATH",
    "EXECUTION_ID_HEADER",
    "HEALTH_PATH",
    "LANGUAGES_PATH",
    "POOL_PATH",
    "SANDBOXES_PATH",
    "STREAM_PATH",
    "decode_output",
    "error_line",
    "output_line",
    "result_line",
]

EXECUTIONS_PATH = "/v1/executions"
STREAM_PATH = "/v1/executions/stream"
#: ``GET``: ``{"pools": [PoolStats fields, ...]}``, the executor's warm pools.
POOL_PATH = "/v1/pool"
CAPACITY_PATH = "/v1/capacity"
#: ``GET``: ``{"languages": [LanguageInfo fields, ...]}``, as measured in its image.
LANGUAGES_PATH = "/v1/languages"
HEALTH_PATH = "/healthz"
SANDBOXES_PATH = "/v1/sandboxes"
BATCH_SANDBOXES_PATH = "/v1/batch-sandboxes"
BATCH_SANDBOX_HEADER = "X-Assay-Batch-Sandbox"
#: Chosen by the client, so it can cancel (``DELETE /v1/executions/{id}``) what it started.
EXECUTION_ID_HEADER = "X-Assay-Execution-Id"


def output_line(stream: Literal["stdout", "stderr"], data: bytes) -> bytes:
    message = {"type": "output", "stream": stream, "data": base64.b64encode(data).decode()}
    return json.dumps(message).encode() + b"\n"


def result_line(result_json: str) -> bytes:
    return b'{"type": "result", "result": ' + result_json.encode() + b"}\n"


def error_line(code: str, message: str) -> bytes:
    return json.dumps({"type": "error", **error_body(code, message)}).encode() + b"\n"


def decode_output(message: dict[str, Any]) -> tuple[Literal["stdout", "stderr"], bytes]:
    stream: Literal["stdout", "stderr"] = (
        "stderr" if message.get("stream") == "stderr" else "stdout"
    )
    return stream, base64.b64decode(message.get("data", ""))
