"""Python clients for the Assay REST API: :class:`AssayClient` (sync) and
:class:`AsyncAssayClient`. Both cover the whole API, evaluations and live sandboxes, and
raise Assay's own exceptions: for an error response the class its code names
(``QueueFullError`` carries ``retry_after``, ``SandboxFileNotFoundError`` and the other file
errors their own classes, ``ApiError`` covers the rest), and ``ServerUnreachableError`` when
the server cannot be reached or the connection fails.

A live sandbox's command comes back as a :class:`CommandOutput`, its output as exact bytes;
a non-zero exit or a timeout is data in it, never an exception."""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from urllib.parse import quote

import httpx

from assay.api.schemas import (
    BatchOut,
    CommandOut,
    EvaluationList,
    EvaluationOut,
    EventOut,
    FileOut,
    Isolation,
    LanguageList,
    LanguageOut,
    QueueOut,
    SandboxEventList,
    SandboxEventOut,
    SandboxList,
    SandboxOut,
)
from assay.errors import ApiError, AssayError, ServerUnreachableError, error_from_code

__all__ = [
    "DEFAULT_URL",
    "AssayClient",
    "AsyncAssayClient",
    "CommandOutput",
    "OutputChunk",
    "StreamItem",
]

DEFAULT_URL = "http://127.0.0.1:8000"
_PREFIX = "/api/v1"
_MAX_WAIT_PER_CALL = 30.0
#: The server's time limit of a command that names none, and how much longer than a
#: command's limit its HTTP call waits for the answer (the kill, the result, the network).
_DEFAULT_COMMAND_TIMEOUT = 600.0
_COMMAND_MARGIN = 60.0
#: How long a file call waits for the answer once its body is sent: the server copies up to
#: hundreds of MiB into or out of the sandbox first. (httpx's timeouts are per read or
#: write, so the transfer itself never hits them while bytes flow.)
_FILE_READ_TIMEOUT = 300.0
#: Events asked for per page (the API's largest); a shorter page is the last.
_EVENTS_PAGE = 1000


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
    """Server-Sent Events, one line at a time: ``feed`` returns an event's data when it ends."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line.startswith("data:"):
            self._data.append(line[5:].lstrip())
        elif line == "" and self._data:
            data, self._data = self._data, []
            return "\n".join(data)
        return None


# -- live sandboxes: what the two clients share -------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandOutput:
    """What one command in a live sandbox did, its output as exact bytes. A non-zero
    ``returncode`` or ``timed_out`` is the command's doing, not an error; ``exec_failure``
    (``not_found``, ``permission_denied``, ``unknown_user``, ``bad_cwd``) says why it could
    not start (``returncode`` 127 or 126)."""

    returncode: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    exec_failure: str | None
    duration_seconds: float

    @classmethod
    def of(cls, out: CommandOut) -> CommandOutput:
        return cls(
            returncode=out.returncode,
            stdout=_decoded(out.stdout, out.encoding),
            stderr=_decoded(out.stderr, out.encoding),
            stdout_truncated=out.stdout_truncated,
            stderr_truncated=out.stderr_truncated,
            timed_out=out.timed_out,
            exec_failure=None if out.exec_failure is None else out.exec_failure.value,
            duration_seconds=out.duration_seconds,
        )


#: A piece of a streamed command's output: which stream, and its bytes.
OutputChunk: TypeAlias = tuple[Literal["stdout", "stderr"], bytes]
#: What ``exec_stream`` yields: output chunks as they come, then the :class:`CommandOutput`.
StreamItem: TypeAlias = OutputChunk | CommandOutput


def _decoded(text: str, encoding: str) -> bytes:
    if encoding != "base64":
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise _bad_answer(f"invalid base64: {exc}") from exc


def _bad_answer(what: str) -> ApiError:
    """An answer that is not the API's (a proxy's, or cut short)."""
    return ApiError(f"the server sent {what}", status=502, code="http_error")


def _fields(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def _command_body(
    command: Sequence[str],
    *,
    input: str | bytes | None,
    cwd: str | None,
    env: dict[str, str] | None,
    user: str | None,
    timeout: float | None,
    output_limit_bytes: int | None,
) -> dict[str, Any]:
    """A CommandIn asking for exact bytes back: str input as text, bytes as base64."""
    if isinstance(command, str):
        raise TypeError("command is an argv list, not a string: ['sh', '-c', '...'] for a shell")
    body = _fields(
        cwd=cwd,
        env=env,
        user=user,
        timeout_seconds=timeout,
        output_limit_bytes=output_limit_bytes,
    )
    body.update(command=list(command), encoding="base64")
    if isinstance(input, bytes):
        body["input_base64"] = base64.b64encode(input).decode("ascii")
    elif input is not None:
        body["input"] = input
    return body


def _command_timeout(base: float, timeout: float | None) -> httpx.Timeout:
    """The client's ``base`` timeout, but waiting for the answer longer than the command
    may run."""
    limit = _DEFAULT_COMMAND_TIMEOUT if timeout is None else timeout
    return httpx.Timeout(base, read=limit + _COMMAND_MARGIN)


def _file_timeout(base: float) -> httpx.Timeout:
    return httpx.Timeout(base, read=max(base, _FILE_READ_TIMEOUT))


def _stream_item(line: str) -> StreamItem | None:
    """One line of ``exec?stream=true``: a chunk, the result, or (raised) the error."""
    if not line.strip():
        return None
    try:
        message = json.loads(line)
    except ValueError as exc:
        raise _bad_answer(f"a stream line that is not JSON: {line[:200]!r}") from exc
    kind = message.get("type")
    if kind in ("stdout", "stderr"):
        encoding = "base64" if "encoding" not in message else str(message["encoding"])
        return (kind, _decoded(str(message["data"]), encoding))
    if kind == "result":
        fields = {key: value for key, value in message.items() if key != "type"}
        fields.setdefault("encoding", "base64")
        return CommandOutput.of(CommandOut.model_validate(fields))
    if kind == "error":
        error = message.get("error", {})
        raise error_from_code(str(error.get("code")), str(error.get("message")))
    return None


def _lost_result(url: str) -> ServerUnreachableError:
    return ServerUnreachableError(
        f"lost the connection to the server at {url}: the stream ended before the command's result"
    )


def _events_params(after: int | None, follow: bool) -> dict[str, str | int]:
    params: dict[str, str | int] = {"follow": "true"} if follow else {"limit": _EVENTS_PAGE}
    if after is not None:
        params["after"] = after
    return params


def _next_page(events: list[SandboxEventOut]) -> int | None:
    """The ``after`` of the page that follows ``events``; None when that was the last."""
    if len(events) < _EVENTS_PAGE or events[-1].type == "ended":
        return None
    return events[-1].seq


def _sandbox_path(sandbox_id: str, what: str = "") -> str:
    return f"{_PREFIX}/sandboxes/{quote(sandbox_id, safe='')}{what}"


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
        self._timeout = timeout
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
                if (data := parser.feed(line)) is not None:
                    yield EventOut.model_validate_json(data)

    def queue(self) -> QueueOut:
        return QueueOut.model_validate(_check(self._send("GET", f"{_PREFIX}/queue")).json())

    def ready(self) -> dict[str, Any]:
        """The /readyz report (does not raise when not ready)."""
        body: dict[str, Any] = self._send("GET", "/readyz").json()
        return body

    # -- live sandboxes -------------------------------------------------------------------

    def create_sandbox(
        self,
        *,
        memory_mb: int | None = None,
        cpus: float | None = None,
        pids_limit: int | None = None,
        idle_timeout_seconds: float | None = None,
        lifetime_seconds: float | None = None,
        labels: dict[str, str] | None = None,
        language: str | None = None,
        image: str | None = None,
        user: Literal["sandbox", "root"] | None = None,
    ) -> SandboxOut:
        """Start a live sandbox; limits left as None take the server's defaults.

        Raises:
            SandboxQuotaError: the API key has as many live sandboxes as it may.
            InvalidRequestError: a limit out of range, an unknown language, another image.
        """
        body = _fields(
            memory_mb=memory_mb,
            cpus=cpus,
            pids_limit=pids_limit,
            idle_timeout_seconds=idle_timeout_seconds,
            lifetime_seconds=lifetime_seconds,
            labels=labels,
            language=language,
            image=image,
            user=user,
        )
        response = self._send("POST", f"{_PREFIX}/sandboxes", json=body)
        return SandboxOut.model_validate(_check(response).json())

    def get_sandbox(self, sandbox_id: str) -> SandboxOut:
        """One live sandbox, running or recently ended (SandboxNotFoundError: none)."""
        response = self._send("GET", _sandbox_path(sandbox_id))
        return SandboxOut.model_validate(_check(response).json())

    def list_sandboxes(
        self, *, state: Literal["running", "ended"] | None = None
    ) -> builtins.list[SandboxOut]:
        """The API key's live sandboxes, of one state or (None) both."""
        params = {"state": state} if state else {}
        response = self._send("GET", f"{_PREFIX}/sandboxes", params=params)
        return SandboxList.model_validate(_check(response).json()).items

    def delete_sandbox(self, sandbox_id: str) -> SandboxOut:
        """End a live sandbox (every process in it is killed); an ended one is returned
        unchanged (SandboxNotFoundError: none)."""
        response = self._send("DELETE", _sandbox_path(sandbox_id))
        return SandboxOut.model_validate(_check(response).json())

    def exec(
        self,
        sandbox_id: str,
        command: Sequence[str],
        *,
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        output_limit_bytes: int | None = None,
    ) -> CommandOutput:
        """Run ``command`` (an argv list, no shell) in the sandbox and wait for it.

        ``input`` is its stdin (str: sent as UTF-8 text; bytes: exactly); ``timeout`` its
        time limit in seconds (None: the server's default), at which its whole process tree
        is killed; ``output_limit_bytes`` caps each of stdout and stderr.

        Raises:
            SandboxNotFoundError, SandboxEndedError: no such running sandbox.
            UserUnsupportedError: ``user`` in a sandbox that was not created as root.
            InvalidRequestError: the command breaks a limit.
        """
        body = _command_body(
            command,
            input=input,
            cwd=cwd,
            env=env,
            user=user,
            timeout=timeout,
            output_limit_bytes=output_limit_bytes,
        )
        response = self._send(
            "POST",
            _sandbox_path(sandbox_id, "/exec"),
            json=body,
            timeout=_command_timeout(self._timeout, timeout),
        )
        return CommandOutput.of(CommandOut.model_validate(_check(response).json()))

    def exec_stream(
        self,
        sandbox_id: str,
        command: Sequence[str],
        *,
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        output_limit_bytes: int | None = None,
    ) -> Iterator[StreamItem]:
        """:meth:`exec` with live output: yields ``("stdout" | "stderr", bytes)`` as the
        command writes, then its :class:`CommandOutput` (whose stdout and stderr hold the
        same output again). Raises as :meth:`exec` does, when iterated."""
        body = _command_body(
            command,
            input=input,
            cwd=cwd,
            env=env,
            user=user,
            timeout=timeout,
            output_limit_bytes=output_limit_bytes,
        )
        with (
            _reaching(self._url),
            self._http.stream(
                "POST",
                _sandbox_path(sandbox_id, "/exec"),
                params={"stream": "true"},
                json=body,
                timeout=_command_timeout(self._timeout, timeout),
            ) as response,
        ):
            if response.is_error:
                response.read()
                raise _error(response)
            for line in response.iter_lines():
                if (item := _stream_item(line)) is not None:
                    yield item
                    if isinstance(item, CommandOutput):
                        return
        raise _lost_result(self._url)

    def write_file(
        self, sandbox_id: str, path: str, data: str | bytes, *, user: str | None = None
    ) -> FileOut:
        """Write ``data`` (str: as UTF-8) to ``path`` in the sandbox (relative to
        /workspace unless absolute), creating its parent directories.

        Raises:
            SandboxPermissionError, SandboxIsADirectoryError, SandboxFileTooLargeError,
            SandboxFileNotFoundError; SandboxNotFoundError, SandboxEndedError.
        """
        content = data.encode() if isinstance(data, str) else data
        response = self._send(
            "PUT",
            _sandbox_path(sandbox_id, "/files"),
            params=_fields(path=path, user=user),
            content=content,
            headers={"Content-Type": "application/octet-stream"},
            timeout=_file_timeout(self._timeout),
        )
        return FileOut.model_validate(_check(response).json())

    def read_file(
        self,
        sandbox_id: str,
        path: str,
        *,
        max_bytes: int | None = None,
        user: str | None = None,
    ) -> bytes:
        """The exact content of ``path`` in the sandbox; SandboxFileTooLargeError when it is
        over ``max_bytes`` (None: the server's limit).

        Raises:
            SandboxFileNotFoundError, SandboxPermissionError, SandboxIsADirectoryError,
            SandboxFileTooLargeError; SandboxNotFoundError, SandboxEndedError.
        """
        response = self._send(
            "GET",
            _sandbox_path(sandbox_id, "/files"),
            params=_fields(path=path, max_bytes=max_bytes, user=user),
            timeout=_file_timeout(self._timeout),
        )
        return _check(response).content

    def sandbox_events(
        self, sandbox_id: str, *, after: int | None = None, follow: bool = False
    ) -> Iterator[SandboxEventOut]:
        """The sandbox's recorded operations after sequence number ``after``, every page of
        them; with ``follow``, then live ones too, until its ``ended`` event. Raises when
        iterated."""
        path = _sandbox_path(sandbox_id, "/events")
        if not follow:
            while True:
                response = self._send("GET", path, params=_events_params(after, follow=False))
                page = SandboxEventList.model_validate(_check(response).json()).items
                yield from page
                if (after := _next_page(page)) is None:
                    return
        with (
            _reaching(self._url),
            self._http.stream(
                "GET",
                path,
                params=_events_params(after, follow=True),
                timeout=httpx.Timeout(self._timeout, read=None),
            ) as response,
        ):
            if response.is_error:
                response.read()
                raise _error(response)
            parser = _SseParser()
            for line in response.iter_lines():
                if (data := parser.feed(line)) is not None:
                    event = SandboxEventOut.model_validate_json(data)
                    yield event
                    if event.type == "ended":
                        return


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
        self._timeout = timeout
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
                    if (data := parser.feed(line)) is not None:
                        yield EventOut.model_validate_json(data)

    async def queue(self) -> QueueOut:
        response = await self._send("GET", f"{_PREFIX}/queue")
        return QueueOut.model_validate(_check(response).json())

    async def ready(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self._send("GET", "/readyz")).json()
        return body

    # -- live sandboxes -------------------------------------------------------------------

    async def create_sandbox(
        self,
        *,
        memory_mb: int | None = None,
        cpus: float | None = None,
        pids_limit: int | None = None,
        idle_timeout_seconds: float | None = None,
        lifetime_seconds: float | None = None,
        labels: dict[str, str] | None = None,
        language: str | None = None,
        image: str | None = None,
        user: Literal["sandbox", "root"] | None = None,
    ) -> SandboxOut:
        """:meth:`AssayClient.create_sandbox`."""
        body = _fields(
            memory_mb=memory_mb,
            cpus=cpus,
            pids_limit=pids_limit,
            idle_timeout_seconds=idle_timeout_seconds,
            lifetime_seconds=lifetime_seconds,
            labels=labels,
            language=language,
            image=image,
            user=user,
        )
        response = await self._send("POST", f"{_PREFIX}/sandboxes", json=body)
        return SandboxOut.model_validate(_check(response).json())

    async def get_sandbox(self, sandbox_id: str) -> SandboxOut:
        response = await self._send("GET", _sandbox_path(sandbox_id))
        return SandboxOut.model_validate(_check(response).json())

    async def list_sandboxes(
        self, *, state: Literal["running", "ended"] | None = None
    ) -> builtins.list[SandboxOut]:
        params = {"state": state} if state else {}
        response = await self._send("GET", f"{_PREFIX}/sandboxes", params=params)
        return SandboxList.model_validate(_check(response).json()).items

    async def delete_sandbox(self, sandbox_id: str) -> SandboxOut:
        response = await self._send("DELETE", _sandbox_path(sandbox_id))
        return SandboxOut.model_validate(_check(response).json())

    async def exec(
        self,
        sandbox_id: str,
        command: Sequence[str],
        *,
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        output_limit_bytes: int | None = None,
    ) -> CommandOutput:
        """:meth:`AssayClient.exec`."""
        body = _command_body(
            command,
            input=input,
            cwd=cwd,
            env=env,
            user=user,
            timeout=timeout,
            output_limit_bytes=output_limit_bytes,
        )
        response = await self._send(
            "POST",
            _sandbox_path(sandbox_id, "/exec"),
            json=body,
            timeout=_command_timeout(self._timeout, timeout),
        )
        return CommandOutput.of(CommandOut.model_validate(_check(response).json()))

    async def exec_stream(
        self,
        sandbox_id: str,
        command: Sequence[str],
        *,
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: float | None = None,
        output_limit_bytes: int | None = None,
    ) -> AsyncIterator[StreamItem]:
        """:meth:`AssayClient.exec_stream`."""
        body = _command_body(
            command,
            input=input,
            cwd=cwd,
            env=env,
            user=user,
            timeout=timeout,
            output_limit_bytes=output_limit_bytes,
        )
        with _reaching(self._url):
            async with self._http.stream(
                "POST",
                _sandbox_path(sandbox_id, "/exec"),
                params={"stream": "true"},
                json=body,
                timeout=_command_timeout(self._timeout, timeout),
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise _error(response)
                async for line in response.aiter_lines():
                    if (item := _stream_item(line)) is not None:
                        yield item
                        if isinstance(item, CommandOutput):
                            return
        raise _lost_result(self._url)

    async def write_file(
        self, sandbox_id: str, path: str, data: str | bytes, *, user: str | None = None
    ) -> FileOut:
        """:meth:`AssayClient.write_file`."""
        content = data.encode() if isinstance(data, str) else data
        response = await self._send(
            "PUT",
            _sandbox_path(sandbox_id, "/files"),
            params=_fields(path=path, user=user),
            content=content,
            headers={"Content-Type": "application/octet-stream"},
            timeout=_file_timeout(self._timeout),
        )
        return FileOut.model_validate(_check(response).json())

    async def read_file(
        self,
        sandbox_id: str,
        path: str,
        *,
        max_bytes: int | None = None,
        user: str | None = None,
    ) -> bytes:
        """:meth:`AssayClient.read_file`."""
        response = await self._send(
            "GET",
            _sandbox_path(sandbox_id, "/files"),
            params=_fields(path=path, max_bytes=max_bytes, user=user),
            timeout=_file_timeout(self._timeout),
        )
        return _check(response).content

    async def sandbox_events(
        self, sandbox_id: str, *, after: int | None = None, follow: bool = False
    ) -> AsyncIterator[SandboxEventOut]:
        """:meth:`AssayClient.sandbox_events`."""
        path = _sandbox_path(sandbox_id, "/events")
        if not follow:
            while True:
                response = await self._send("GET", path, params=_events_params(after, follow=False))
                page = SandboxEventList.model_validate(_check(response).json()).items
                for event in page:
                    yield event
                if (after := _next_page(page)) is None:
                    return
        with _reaching(self._url):
            async with self._http.stream(
                "GET",
                path,
                params=_events_params(after, follow=True),
                timeout=httpx.Timeout(self._timeout, read=None),
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise _error(response)
                parser = _SseParser()
                async for line in response.aiter_lines():
                    if (data := parser.feed(line)) is not None:
                        event = SandboxEventOut.model_validate_json(data)
                        yield event
                        if event.type == "ended":
                            return
