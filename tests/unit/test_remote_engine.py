"""RemoteExecutionEngine when executors fail, through ``httpx.MockTransport`` (no sockets, no
Docker): unreachable and busy executors are skipped, an error body or error line becomes the
exception a local engine would raise, and an executor that fails once the program started
(timeout, truncated or garbled stream) is ``EngineUnavailableError``, for the queue to run
the evaluation again. ``tests/integration/test_remote_failures.py`` covers the same over real
sockets, with real executors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Literal

import httpx
import pytest

import assay.errors
from assay.config import ExecutionSettings
from assay.errors import (
    EngineUnavailableError,
    ExecutionError,
    InvalidRequestError,
    SandboxError,
    SandboxImageNotFoundError,
    SandboxLostError,
)
from assay.execution_engine import (
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    OutputCallback,
)
from assay.execution_engine import remote as remote_module
from assay.execution_engine.protocol import (
    EXECUTION_ID_HEADER,
    STREAM_PATH,
    error_line,
    output_line,
    result_line,
)
from assay.execution_engine.remote import RemoteExecutionEngine
from assay.executor_service import create_executor_app
from tests.unit.test_executor_service import FakeEngine

A, B = "http://executor-a.test", "http://executor-b.test"
TOKEN = "unit-test-token"
REQUEST = ExecutionRequest(code="print('hi')")
RESULT = ExecutionResult(
    status=ExecutionStatus.COMPLETED, exit_code=0, stdout="hi\n", duration_seconds=0.1
)
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_module, "_BACKOFF_SECONDS", (0.0, 0.0, 0.0, 0.0))


class Executors:
    """Executors behind one MockTransport, by URL: ``streams[url]`` answers that executor's
    stream route; its capacity report is healthy with ``free[url]`` slots (1 unless given).
    Every request is recorded."""

    def __init__(self, streams: dict[str, Handler], free: dict[str, int] | None = None) -> None:
        self.streams = streams
        self.free = free or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = f"{request.url.scheme}://{request.url.host}"
        if request.url.path == STREAM_PATH:
            return self.streams[url](request)
        if request.url.path == "/v1/capacity":
            free = self.free.get(url, 1)
            body = {"total": 2, "free": free, "running": 2 - free, "engine": {"healthy": True}}
            return httpx.Response(200, json=body)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    def posts(self, url: str) -> int:
        return sum(1 for r in self.requests if r.method == "POST" and str(r.url).startswith(url))


def engine(executors: Executors) -> RemoteExecutionEngine:
    """The remote engine on ``executors``: it tries the one with most free slots first, and
    does not probe one marked down again within a test."""
    return RemoteExecutionEngine(
        list(executors.streams),
        token=TOKEN,
        settings=ExecutionSettings(),
        transport=httpx.MockTransport(executors),
        recheck_seconds=60.0,
    )


def streamed(*lines: bytes) -> Handler:
    return lambda _request: httpx.Response(200, content=b"".join(lines))


def cut(*lines: bytes, failure: Exception) -> Handler:
    """A stream that sends ``lines``, then fails with ``failure``."""

    async def body() -> AsyncIterator[bytes]:
        for line in lines:
            yield line
        raise failure

    return lambda _request: httpx.Response(200, content=body())


def failing(failure: Exception) -> Handler:
    def fail(_request: httpx.Request) -> httpx.Response:
        raise failure

    return fail


def answering(status: int, code: str, message: str) -> Handler:
    return lambda _request: httpx.Response(
        status, json={"error": {"code": code, "message": message}}
    )


HELLO = output_line("stdout", b"hi\n")


async def run(remote: RemoteExecutionEngine) -> tuple[ExecutionResult | Exception, list[bytes]]:
    """What ``execute`` returned or raised, and the output it reported on the way."""
    output: list[bytes] = []

    def on_output(_stream: Literal["stdout", "stderr"], data: bytes) -> None:
        output.append(data)

    async with remote:
        try:
            return await remote.execute(REQUEST, on_output=on_output), output
        except ExecutionError as exc:
            return exc, output


async def test_the_output_streams_then_the_result_returns() -> None:
    executors = Executors({A: streamed(HELLO, result_line(RESULT.model_dump_json()))})
    outcome, output = await run(engine(executors))
    assert outcome == RESULT
    assert output == [b"hi\n"]
    (post,) = executors.requests
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert len(post.headers[EXECUTION_ID_HEADER]) == 24


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),  # before any answer: nothing started
    ],
    ids=lambda failure: type(failure).__name__,
)
async def test_an_executor_that_cannot_be_reached_is_skipped(failure: Exception) -> None:
    done = streamed(result_line(RESULT.model_dump_json()))
    executors = Executors({A: failing(failure), B: done}, free={A: 2})
    outcome, _ = await run(engine(executors))
    assert outcome == RESULT
    assert executors.posts(A) == 1, "tried once, then marked down"


@pytest.mark.parametrize(
    ("failure", "why", "detail"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "unreachable", "Errno 111"),
        (httpx.ConnectTimeout("timed out"), "unreachable", "timed out"),
        (httpx.ReadTimeout("timed out"), "failed before starting: ReadTimeout", "ReadTimeout"),
    ],
)
async def test_no_executor_reachable_is_engine_unavailable_saying_why(
    failure: Exception, why: str, detail: str
) -> None:
    executors = Executors({A: failing(failure)})
    outcome, _ = await run(engine(executors))
    assert isinstance(outcome, EngineUnavailableError)
    assert outcome.message.startswith(f"no executor could run this execution ({A}: {why}")
    assert f"; no executor is healthy ({A}: " in outcome.message
    assert detail in outcome.message
    assert executors.posts(A) == 1


async def test_busy_executors_are_skipped_and_all_busy_is_engine_unavailable() -> None:
    busy = answering(429, "executor_busy", "all 1 slots are in use; retry later")
    executors = Executors(
        {A: busy, B: streamed(result_line(RESULT.model_dump_json()))}, free={A: 2}
    )
    outcome, _ = await run(engine(executors))
    assert outcome == RESULT
    assert executors.posts(A) == 1
    executors = Executors({A: busy})
    outcome, _ = await run(engine(executors))
    assert isinstance(outcome, EngineUnavailableError)
    assert f"{A}: busy" in outcome.message


async def test_a_refused_token_is_engine_unavailable_naming_the_setting() -> None:
    refused = answering(401, "unauthorized", "missing or wrong executor token")
    executors = Executors({A: refused, B: refused}, free={A: 2})
    outcome, _ = await run(engine(executors))
    assert isinstance(outcome, EngineUnavailableError)
    assert "refused our token" in outcome.message and "ASSAY_EXECUTOR__TOKEN" in outcome.message
    assert len([r for r in executors.requests if r.method == "POST"]) == 1, "not retried"


@pytest.mark.parametrize(
    ("status", "code", "raised"),
    [
        (503, "engine_unavailable", EngineUnavailableError),
        (503, "image_not_found", SandboxImageNotFoundError),
        (503, "sandbox_lost", SandboxLostError),
        (503, "sandbox_error", SandboxError),
        (422, "invalid_request", InvalidRequestError),
        (422, "validation_error", InvalidRequestError),
        (500, "internal_error", SandboxError),  # a code no ExecutionError has
        (404, "not_found", SandboxError),
    ],
)
async def test_an_error_answer_is_the_exception_it_names(
    status: int, code: str, raised: type[ExecutionError]
) -> None:
    other = streamed(result_line(RESULT.model_dump_json()))
    executors = Executors({A: answering(status, code, "what went wrong"), B: other}, free={A: 2})
    outcome, _ = await run(engine(executors))
    assert type(outcome) is raised
    assert "what went wrong" in outcome.message
    assert executors.posts(B) == 0, "an answer is final: not tried elsewhere"


async def test_an_error_answer_that_is_not_json_is_a_sandbox_error() -> None:
    proxy = Executors({A: lambda _request: httpx.Response(502, text="<html>Bad Gateway</html>")})
    outcome, _ = await run(engine(proxy))
    assert type(outcome) is SandboxError
    assert outcome.message == "executor answered HTTP 502"


@pytest.mark.parametrize(
    ("line", "raised"),
    [
        (error_line("sandbox_lost", "the sandbox was removed"), SandboxLostError),
        (error_line("image_not_found", "no image"), SandboxImageNotFoundError),
        (error_line("cancelled", "the execution was cancelled"), SandboxError),
    ],
)
async def test_an_error_line_is_the_exception_it_names(
    line: bytes, raised: type[ExecutionError]
) -> None:
    outcome, output = await run(engine(Executors({A: streamed(HELLO, line)})))
    assert type(outcome) is raised
    assert output == [b"hi\n"]


@pytest.mark.parametrize(
    ("handler", "why"),
    [
        (streamed(HELLO), "the stream ended without a result"),
        (streamed(HELLO, b'{"type": "res'), "JSONDecodeError"),
        (streamed(HELLO, b"<html>oops</html>\n"), "JSONDecodeError"),
        (streamed(HELLO, b'{"type": "result", "result": {"status": "?"}}\n'), "validation errors"),
        (cut(HELLO, failure=httpx.ReadError("connection reset")), "connection reset"),
        (cut(HELLO, failure=httpx.ReadTimeout("timed out")), "ReadTimeout"),
        (cut(HELLO, failure=httpx.RemoteProtocolError("peer closed")), "peer closed"),
    ],
    ids=["ended", "cut-mid-line", "not-json", "not-a-result", "reset", "timeout", "closed"],
)
async def test_an_executor_failing_mid_execution_means_a_rerun(handler: Handler, why: str) -> None:
    """Policy (remote.py): the program may have partly run, so it is not tried elsewhere at
    once; EngineUnavailableError makes the queue run it again in a fresh sandbox."""
    executors = Executors(
        {A: handler, B: streamed(result_line(RESULT.model_dump_json()))}, free={A: 2}
    )
    remote = engine(executors)
    outcome, output = await run(remote)
    assert isinstance(outcome, EngineUnavailableError)
    assert f"executor {A} failed during the execution" in outcome.message
    assert why in outcome.message and "it will be run again" in outcome.message
    assert output == [b"hi\n"], "what it printed before was reported"
    assert executors.posts(B) == 0


# Against the real executor application, in-process: every ExecutionError an engine raises
# there comes out of the remote engine as the same class, with the same message.

ENGINE_ERRORS = [
    cls
    for name in assay.errors.__all__
    if isinstance(cls := getattr(assay.errors, name), type) and issubclass(cls, ExecutionError)
]


class FailingEngine(FakeEngine):
    def __init__(self, error: ExecutionError) -> None:
        super().__init__()
        self.error = error

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        if on_output is not None:
            on_output("stdout", b"started\n")
        raise self.error


@pytest.mark.parametrize("cls", ENGINE_ERRORS, ids=lambda cls: cls.__name__)
async def test_the_remote_engine_raises_what_the_executors_engine_raised(
    cls: type[ExecutionError],
) -> None:
    app = create_executor_app(FailingEngine(cls(f"a {cls.__name__}")), token=TOKEN, capacity=1)
    remote = RemoteExecutionEngine(
        [A], token=TOKEN, settings=ExecutionSettings(), transport=httpx.ASGITransport(app=app)
    )
    outcome, output = await run(remote)
    assert type(outcome) is cls
    assert outcome.message == f"a {cls.__name__}"
    assert output == [b"started\n"]
