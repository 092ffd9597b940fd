"""Python clients for the Assay REST API: :class:`AssayClient` (sync) and
:class:`AsyncAssayClient`. Both cover the whole API and raise Assay's own exceptions: for
an error response the class its code names (``QueueFullError`` carries ``retry_after``,
``ApiError`` covers the rest), and ``ServerUnreachableError`` when the server cannot be
reached or the connection fails."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from assay.api.schemas import (
    BatchOut,
    EvaluationList,
    EvaluationOut,
    EventOut,
    Isolation,
    LanguageList,
    LanguageOut,
    QueueOut,
)
from assay.errors import AssayError, ServerUnreachableError, error_from_code

__all__ = ["DEFAULT_URL", "AssayClient", "AsyncAssayClient"]

DEFAULT_URL = "http://127.0.0.1:8000"
_PREFIX = "/api/v1"
_MAX_WAIT_PER_CALL = 30.0


def _error(response: httpx.Response) -> AssayError:
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", f"HTTP {response.status_code}: {response.text[:200]}"
    retry_after = response.headers.get("Retry-After", "5")
    return error_from_code(
        code,
        message,
        status=response.status_code,
        retry_after=int(retry_after) if retry_after.isdigit() else 5,
    )


@contextlib.contextmanager
def _reaching(url: str) -> Iterator[None]:
    """httpx's transport errors (refused, timed out, reset) raised as ServerUnreachableError."""
    try:
        yield
    except httpx.TransportError as exc:
        connecting = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        what = "cannot reach the server" if connecting else "lost the connection to the server"
        reason = str(exc) or type(exc).__name__
        raise ServerUnreachableError(f"{what} at {url}: {reason}") from exc


def _check(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise _error(response)
    return response


def _submission(code: str, **fields: Any) -> dict[str, Any]:
    body = {"code": code}
    body.update({key: value for key, value in fields.items() if value is not None})
    return body


Params = list[tuple[str, str | int | float | bool | None]]


def _list_params(
    status: list[str] | None, labels: dict[str, str] | None, cursor: str | None, limit: int | None
) -> Params:
    params: Params = [("status", s) for s in status or []]
    params += [("label", f"{k}:{v}") for k, v in (labels or {}).items()]
    if cursor:
        params.append(("cursor", cursor))
    if limit:
        params.append(("limit", str(limit)))
    return params


class _SseParser:
    """Server-Sent Events, one line at a time: ``feed`` returns an event when one ends."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> EventOut | None:
        if line.startswith("data:"):
            self._data.append(line[5:].lstrip())
        elif line == "" and self._data:
            data, self._data = self._data, []
            return EventOut.model_validate(json.loads("\n".join(data)))
        return None


class AssayClient:
    """Synchronous client. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._url = url
        self._http = httpx.Client(
            base_url=url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> AssayClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with _reaching(self._url):
            return self._http.request(method, path, **kwargs)

    def submit(
        self,
        code: str,
        *,
        idempotency_key: str | None = None,
        wait: float | None = None,
        **fields: Any,
    ) -> EvaluationOut:
        """Queue one evaluation; ``fields``: language, compiler_options, args, stdin,
        timeout_seconds, memory_mb, cpus, output_limit_bytes, compile_timeout_seconds,
        compile_memory_mb, files, labels, priority."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        params = {"wait": wait} if wait else {}
        response = self._send(
            "POST",
            f"{_PREFIX}/evaluations",
            json=_submission(code, **fields),
            headers=headers,
            params=params,
            timeout=(wait or 0) + 60,
        )
        return EvaluationOut.model_validate(_check(response).json())

    def submit_batch(
        self,
        evaluations: list[dict[str, Any]],
        *,
        idempotency_key: str | None = None,
        isolation: Isolation = "evaluation",
    ) -> list[EvaluationOut]:
        """Submit evaluations as one batch; ``isolation="batch"`` lets them share sandboxes
        of this batch alone (reset between programs)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"evaluations": evaluations, "isolation": isolation}
        response = self._send("POST", f"{_PREFIX}/evaluations/batch", json=body, headers=headers)
        return BatchOut.model_validate(_check(response).json()).evaluations

    def languages(self) -> list[LanguageOut]:
        """The languages the server runs, with their versions (``GET /api/v1/languages``)."""
        response = self._send("GET", f"{_PREFIX}/languages")
        return LanguageList.model_validate(_check(response).json()).languages

    def get(self, evaluation_id: str, *, wait: float | None = None) -> EvaluationOut:
        params = {"wait": wait} if wait else {}
        response = self._send(
            "GET", f"{_PREFIX}/evaluations/{evaluation_id}", params=params, timeout=(wait or 0) + 60
        )
        return EvaluationOut.model_validate(_check(response).json())

    def wait(self, evaluation_id: str, timeout: float | None = None) -> EvaluationOut:
        """Block until the evaluation ends (or ``timeout`` passes); returns its state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = _MAX_WAIT_PER_CALL if deadline is None else deadline - time.monotonic()
            evaluation = self.get(evaluation_id, wait=max(0.0, min(remaining, _MAX_WAIT_PER_CALL)))
            if evaluation.status.terminal or (deadline and time.monotonic() >= deadline):
                return evaluation

    def list(
        self,
        *,
        status: list[str] | None = None,
        labels: dict[str, str] | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> EvaluationList:
        response = self._send(
            "GET", f"{_PREFIX}/evaluations", params=_list_params(status, labels, cursor, limit)
        )
        return EvaluationList.model_validate(_check(response).json())

    def cancel(self, evaluation_id: str) -> EvaluationOut:
        response = self._send("POST", f"{_PREFIX}/evaluations/{evaluation_id}/cancel")
        return EvaluationOut.model_validate(_check(response).json())

    def events(self, evaluation_id: str, *, after: int | None = None) -> Iterator[EventOut]:
        """Past then live events until the terminal one (Server-Sent Events)."""
        headers = {"Last-Event-ID": str(after)} if after else {}
        with (
            _reaching(self._url),
            self._http.stream(
                "GET",
                f"{_PREFIX}/evaluations/{evaluation_id}/events",
                headers=headers,
                timeout=httpx.Timeout(60.0, read=None),
            ) as response,
        ):
            if response.is_error:
                response.read()
                raise _error(response)
            parser = _SseParser()
            for line in response.iter_lines():
                if (event := parser.feed(line)) is not None:
                    yield event

    def queue(self) -> QueueOut:
        return QueueOut.model_validate(_check(self._send("GET", f"{_PREFIX}/queue")).json())

    def ready(self) -> dict[str, Any]:
        """The /readyz report (does not raise when not ready)."""
        body: dict[str, Any] = self._send("GET", "/readyz").json()
        return body


class AsyncAssayClient:
    """Asynchronous client, the same API as :class:`AssayClient` with ``await``."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._url = url
        self._http = httpx.AsyncClient(
            base_url=url, headers=headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncAssayClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with _reaching(self._url):
            return await self._http.request(method, path, **kwargs)

    async def submit(
        self,
        code: str,
        *,
        idempotency_key: str | None = None,
        wait: float | None = None,
        **fields: Any,
    ) -> EvaluationOut:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        params = {"wait": wait} if wait else {}
        response = await self._send(
            "POST",
            f"{_PREFIX}/evaluations",
            json=_submission(code, **fields),
            headers=headers,
            params=params,
            timeout=(wait or 0) + 60,
        )
        return EvaluationOut.model_validate(_check(response).json())

    async def submit_batch(
        self,
        evaluations: list[dict[str, Any]],
        *,
        idempotency_key: str | None = None,
        isolation: Isolation = "evaluation",
    ) -> list[EvaluationOut]:
        """Submit evaluations as one batch; ``isolation="batch"`` lets them share sandboxes
        of this batch alone (reset between programs)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"evaluations": evaluations, "isolation": isolation}
        response = await self._send(
            "POST", f"{_PREFIX}/evaluations/batch", json=body, headers=headers
        )
        return BatchOut.model_validate(_check(response).json()).evaluations

    async def languages(self) -> list[LanguageOut]:
        """The languages the server runs, with their versions (``GET /api/v1/languages``)."""
        response = await self._send("GET", f"{_PREFIX}/languages")
        return LanguageList.model_validate(_check(response).json()).languages

    async def get(self, evaluation_id: str, *, wait: float | None = None) -> EvaluationOut:
        params = {"wait": wait} if wait else {}
        response = await self._send(
            "GET", f"{_PREFIX}/evaluations/{evaluation_id}", params=params, timeout=(wait or 0) + 60
        )
        return EvaluationOut.model_validate(_check(response).json())

    async def wait(self, evaluation_id: str, timeout: float | None = None) -> EvaluationOut:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = _MAX_WAIT_PER_CALL if deadline is None else deadline - time.monotonic()
            evaluation = await self.get(
                evaluation_id, wait=max(0.0, min(remaining, _MAX_WAIT_PER_CALL))
            )
            if evaluation.status.terminal or (deadline and time.monotonic() >= deadline):
                return evaluation

    async def list(
        self,
        *,
        status: list[str] | None = None,
        labels: dict[str, str] | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> EvaluationList:
        response = await self._send(
            "GET", f"{_PREFIX}/evaluations", params=_list_params(status, labels, cursor, limit)
        )
        return EvaluationList.model_validate(_check(response).json())

    async def cancel(self, evaluation_id: str) -> EvaluationOut:
        response = await self._send("POST", f"{_PREFIX}/evaluations/{evaluation_id}/cancel")
        return EvaluationOut.model_validate(_check(response).json())

    async def events(
        self, evaluation_id: str, *, after: int | None = None
    ) -> AsyncIterator[EventOut]:
        headers = {"Last-Event-ID": str(after)} if after else {}
        with _reaching(self._url):
            async with self._http.stream(
                "GET",
                f"{_PREFIX}/evaluations/{evaluation_id}/events",
                headers=headers,
                timeout=httpx.Timeout(60.0, read=None),
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise _error(response)
                parser = _SseParser()
                async for line in response.aiter_lines():
                    if (event := parser.feed(line)) is not None:
                        yield event

    async def queue(self) -> QueueOut:
        response = await self._send("GET", f"{_PREFIX}/queue")
        return QueueOut.model_validate(_check(response).json())

    async def ready(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self._send("GET", "/readyz")).json()
        return body
