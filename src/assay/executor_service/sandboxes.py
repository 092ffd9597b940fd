"""The executor service's live sandbox routes (``/v1/sandboxes``, see ``protocol.py``): the
local engine's live sandbox methods over HTTP, for the platform's RemoteExecutionEngine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response, StreamingResponse

from assay.execution_engine import (
    CommandRequest,
    CommandResult,
    ExecutionInterface,
    FileWritten,
    OutputCallback,
    SandboxInfo,
    SandboxRequest,
)
from assay.execution_engine.protocol import SANDBOXES_PATH
from assay.executor_service.ndjson import ndjson_lines

__all__ = ["add_sandbox_routes"]

Path = Annotated[str, Query(min_length=1, max_length=4096)]
User = Annotated[str | None, Query(min_length=1, max_length=256)]


def add_sandbox_routes(app: FastAPI, engine: ExecutionInterface) -> None:
    """``engine``'s live sandboxes at ``/v1/sandboxes``."""

    @app.post(SANDBOXES_PATH, response_model=SandboxInfo, status_code=201)
    async def create(request: SandboxRequest) -> SandboxInfo:
        return await engine.create_sandbox(request)

    @app.get(SANDBOXES_PATH)
    async def running() -> dict[str, list[dict[str, Any]]]:
        return {"sandboxes": [s.model_dump(mode="json") for s in await engine.list_sandboxes()]}

    @app.get(SANDBOXES_PATH + "/{sandbox_id}", response_model=SandboxInfo)
    async def one(sandbox_id: str) -> SandboxInfo:
        return await engine.sandbox(sandbox_id)

    @app.delete(SANDBOXES_PATH + "/{sandbox_id}", response_model=SandboxInfo)
    async def delete(sandbox_id: str) -> SandboxInfo:
        return await engine.delete_sandbox(sandbox_id)

    @app.post(SANDBOXES_PATH + "/{sandbox_id}/exec", response_model=CommandResult)
    async def exec_command(sandbox_id: str, command: CommandRequest) -> CommandResult:
        return await engine.exec_command(sandbox_id, command)

    @app.post(SANDBOXES_PATH + "/{sandbox_id}/exec/stream", response_class=StreamingResponse)
    async def exec_streaming(sandbox_id: str, command: CommandRequest) -> StreamingResponse:
        return StreamingResponse(
            _stream(engine, sandbox_id, command), media_type="application/x-ndjson"
        )

    @app.put(SANDBOXES_PATH + "/{sandbox_id}/files", response_model=FileWritten)
    async def write(
        sandbox_id: str, request: Request, path: Path, user: User = None
    ) -> FileWritten:
        return await engine.write_file(sandbox_id, path, await request.body(), user=user)

    @app.get(SANDBOXES_PATH + "/{sandbox_id}/files", response_class=Response)
    async def read(
        sandbox_id: str,
        path: Path,
        max_bytes: Annotated[int, Query(ge=0)],
        user: User = None,
    ) -> Response:
        data = await engine.read_file(sandbox_id, path, max_bytes=max_bytes, user=user)
        return Response(data, media_type="application/octet-stream")


def _stream(
    engine: ExecutionInterface, sandbox_id: str, command: CommandRequest
) -> AsyncIterator[bytes]:
    async def work(on_output: OutputCallback) -> str:
        result = await engine.exec_command(sandbox_id, command, on_output=on_output)
        return result.model_dump_json()

    return ndjson_lines(work)
