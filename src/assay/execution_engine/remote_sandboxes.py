"""Live sandboxes on remote executor services: the platform's side of ``/v1/sandboxes``
(``protocol.py``). A sandbox lives on the executor that created it; which one is learnt from
that executor's answer, or (another replica created it, or this process restarted) by
asking each executor in turn, and then remembered."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from assay.config import ExecutionSettings
from assay.errors import (
    EngineUnavailableError,
    ExecutionError,
    SandboxError,
    SandboxNotFoundError,
    error_from_code,
)
from assay.execution_engine.interface import OutputCallback
from assay.execution_engine.live import (
    CommandRequest,
    CommandResult,
    FileWritten,
    SandboxInfo,
    SandboxRequest,
    resolve_sandbox,
)
from assay.execution_engine.protocol import SANDBOXES_PATH, decode_output

__all__ = ["RemoteSandboxes"]

#: Beyond a command's own time limit: the network and the executor.
_MARGIN_SECONDS = 30.0
#: A file of hundreds of MiB on a slow link; a sandbox's create from cold.
_TRANSFER_SECONDS = 600.0
_CREATE_SECONDS = 120.0


class RemoteSandboxes:
    """Live sandboxes spread over executors; ``choose`` picks the one for a new sandbox."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        urls: list[str],
        choose: Callable[[], Awaitable[str | None]],
        settings: ExecutionSettings,
    ) -> None:
        self._http = http
        self._urls = urls
        self._choose = choose
        self._settings = settings
        self._where: dict[str, str] = {}

    async def create(self, request: SandboxRequest) -> SandboxInfo:
        resolve_sandbox(request, self._settings)  # the same InvalidRequestError as local
        url = await self._choose()
        if url is None:
            raise EngineUnavailableError("no executor service can take a sandbox now")
        answer = await self._send(
            url,
            "POST",
            SANDBOXES_PATH,
            json=request.model_dump(mode="json"),
            timeout=_CREATE_SECONDS,
        )
        info = SandboxInfo.model_validate(answer.json())
        self._where[info.id] = url
        return info

    async def get(self, sandbox_id: str) -> SandboxInfo:
        url = await self._locate(sandbox_id)
        answer = await self._send(url, "GET", f"{SANDBOXES_PATH}/{sandbox_id}")
        return SandboxInfo.model_validate(answer.json())

    async def running(self) -> list[SandboxInfo]:
        async def one(url: str) -> list[SandboxInfo]:
            try:
                answer = await self._send(url, "GET", SANDBOXES_PATH)
            except ExecutionError:
                return []  # an unreachable executor's sandboxes are not usable either
            found = [SandboxInfo.model_validate(s) for s in answer.json().get("sandboxes", [])]
            for info in found:
                self._where[info.id] = url
            return found

        lists = await asyncio.gather(*(one(url) for url in self._urls))
        return sorted((s for found in lists for s in found), key=lambda s: s.created_at)

    async def delete(self, sandbox_id: str) -> SandboxInfo:
        url = await self._locate(sandbox_id)
        answer = await self._send(url, "DELETE", f"{SANDBOXES_PATH}/{sandbox_id}")
        return SandboxInfo.model_validate(answer.json())

    async def exec(
        self, sandbox_id: str, command: CommandRequest, on_output: OutputCallback | None
    ) -> CommandResult:
        timeout, _ = command.check(self._settings)
        url = await self._locate(sandbox_id)
        path = f"{SANDBOXES_PATH}/{sandbox_id}/exec"
        body = command.model_dump(mode="json")
        if on_output is None:
            answer = await self._send(
                url, "POST", path, json=body, timeout=timeout + _MARGIN_SECONDS
            )
            return CommandResult.model_validate(answer.json())
        async for message in self._lines(url, path + "/stream", body, timeout + _MARGIN_SECONDS):
            kind = message.get("type")
            if kind == "output":
                on_output(*decode_output(message))
            elif kind == "result":
                return CommandResult.model_validate(message.get("result"))
            elif kind == "error":
                error = message.get("error") or {}
                raise error_from_code(str(error.get("code")), str(error.get("message")))
        raise EngineUnavailableError(f"executor {url} ended the command's stream early")

    async def write_file(
        self, sandbox_id: str, path: str, data: bytes, user: str | None
    ) -> FileWritten:
        url = await self._locate(sandbox_id)
        answer = await self._send(
            url,
            "PUT",
            f"{SANDBOXES_PATH}/{sandbox_id}/files",
            params=_params(path=path, user=user),
            content=data,
            timeout=_TRANSFER_SECONDS,
        )
        return FileWritten.model_validate(answer.json())

    async def read_file(
        self, sandbox_id: str, path: str, max_bytes: int, user: str | None
    ) -> bytes:
        url = await self._locate(sandbox_id)
        answer = await self._send(
            url,
            "GET",
            f"{SANDBOXES_PATH}/{sandbox_id}/files",
            params=_params(path=path, user=user, max_bytes=str(max_bytes)),
            timeout=_TRANSFER_SECONDS,
        )
        return answer.content

    # -- internals -------------------------------------------------------------------------

    async def _locate(self, sandbox_id: str) -> str:
        known = self._where.get(sandbox_id)
        if known is not None:
            return known
        for url in self._urls:
            with contextlib.suppress(ExecutionError):
                await self._send(url, "GET", f"{SANDBOXES_PATH}/{sandbox_id}")
                self._where[sandbox_id] = url
                return url
        raise SandboxNotFoundError(f"no executor has a live sandbox {sandbox_id!r}")

    async def _send(
        self, url: str, method: str, path: str, *, timeout: float = 30.0, **kwargs: Any
    ) -> httpx.Response:
        try:
            answer = await self._http.request(
                method, url + path, timeout=httpx.Timeout(timeout, connect=3.0), **kwargs
            )
        except httpx.TransportError as exc:
            raise EngineUnavailableError(f"executor {url} is unreachable: {exc!r}") from exc
        if answer.is_error:
            raise _error(answer, url)
        return answer

    async def _lines(
        self, url: str, path: str, body: dict[str, Any], timeout: float
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            async with self._http.stream(
                "POST", url + path, json=body, timeout=httpx.Timeout(timeout, connect=3.0)
            ) as answer:
                if answer.is_error:
                    await answer.aread()
                    raise _error(answer, url)
                async for line in answer.aiter_lines():
                    if line.strip():
                        try:
                            message = json.loads(line)
                        except ValueError as exc:
                            raise SandboxError(f"executor {url} sent a malformed line") from exc
                        yield message
        except httpx.TransportError as exc:
            raise EngineUnavailableError(f"lost executor {url} during a command: {exc!r}") from exc


def _params(**values: str | None) -> dict[str, str]:
    return {key: value for key, value in values.items() if value is not None}


def _error(answer: httpx.Response, url: str) -> ExecutionError:
    try:
        error = answer.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return EngineUnavailableError(
            f"executor {url} answered HTTP {answer.status_code}: {answer.text[:200]}"
        )
    found = error_from_code(code, message, status=answer.status_code)
    if isinstance(found, ExecutionError):
        return found
    return SandboxError(f"executor {url}: {message}")
