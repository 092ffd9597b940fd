"""The error table (``errors.py``): every error has one HTTP status and one code, a code turns
back into its class, both HTTP services (the platform's API and the executor service) answer
an error alike, and the Python client raises what the server did (or
``ServerUnreachableError``, never an httpx error)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial

import httpx
import pytest
from fastapi import FastAPI

import assay.errors
from assay.api.app import create_api
from assay.client import AssayClient, AsyncAssayClient
from assay.config import Settings
from assay.errors import (
    HTTP_STATUS,
    ApiError,
    AssayError,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
    ServerUnreachableError,
    error_body,
    error_from_code,
    http_status,
)
from assay.execution_engine import ExecutionRequest
from assay.executor_service import create_executor_app
from tests.unit.test_executor_service import FakeEngine

ERRORS = [
    cls
    for name in assay.errors.__all__
    if isinstance(cls := getattr(assay.errors, name), type) and issubclass(cls, AssayError)
]
TOKEN = "unit-test-token"


def example(cls: type[AssayError]) -> AssayError:
    if cls is ApiError:
        return ApiError("I'm a teapot", status=418, code="teapot")
    if cls is QueueFullError:
        return QueueFullError("the queue is full", retry_after=7)
    return cls(f"a {cls.__name__}")


def test_every_error_class_has_one_status_and_one_code() -> None:
    assert len(ERRORS) >= 20
    assert set(HTTP_STATUS) == set(ERRORS), "HTTP_STATUS lists every class, nothing else"
    for cls in ERRORS:
        assert 400 <= HTTP_STATUS[cls] <= 599, cls
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", cls.code), cls
    codes = [cls.code for cls in ERRORS]
    assert len(set(codes)) == len(codes), "no two classes share a code"


def test_the_docstring_draws_the_tree_as_it_is() -> None:
    drawn: dict[str, str] = {}  # each class drawn, with the class it is drawn under
    chain: list[str] = []  # the classes from the root down to the line before
    assert assay.errors.__doc__ is not None
    for line in assay.errors.__doc__.splitlines():
        match = re.fullmatch(r" {4}(?:[│ ]   |[├└]── )*(\w+Error)\b.*", line)
        if match is None:
            continue
        del chain[(match.start(1) - 4) // 4 :]
        drawn[match.group(1)] = chain[-1] if chain else "Exception"
        chain.append(match.group(1))
    assert drawn == {cls.__name__: cls.__bases__[0].__name__ for cls in ERRORS}


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_a_code_turns_back_into_its_class(cls: type[AssayError]) -> None:
    error = error_from_code(cls.code, "the message", status=HTTP_STATUS[cls])
    assert type(error) is cls
    assert (error.code, error.message, http_status(error)) == (
        cls.code,
        "the message",
        HTTP_STATUS[cls],
    )


def test_codes_without_a_class_and_the_extras_each_class_takes() -> None:
    assert type(error_from_code("validation_error", "body.code: missing")) is InvalidRequestError
    full = error_from_code("queue_full", "full", retry_after=9, status=429)
    assert isinstance(full, QueueFullError) and full.retry_after == 9
    invalid = error_from_code("invalid_request", "too long", field="code")
    assert isinstance(invalid, InvalidRequestError) and invalid.field == "code"
    other = error_from_code("payload_too_large", "too big", status=413, retry_after=3)
    assert isinstance(other, ApiError)
    assert (other.status, other.code, other.message) == (413, "payload_too_large", "too big")
    assert http_status(other) == 413
    unknown = error_from_code("nobody_knows", "?")
    assert isinstance(unknown, ApiError) and unknown.status == 500


def test_a_subclass_defined_elsewhere_answers_as_its_base() -> None:
    class NoSuchWidgetError(NotFoundError):
        code = "no_such_widget"

    assert http_status(NoSuchWidgetError("no")) == 404


def test_the_error_body() -> None:
    assert error_body("not_found", "no such evaluation") == {
        "error": {"code": "not_found", "message": "no such evaluation"}
    }


def test_importing_the_error_handlers_loads_no_database_code() -> None:
    """The executor service imports them, and it needs no database."""
    script = (
        "import sys, assay.api.errors, assay.executor_service\n"
        "print([m for m in ('sqlalchemy', 'alembic') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


# Both HTTP services, in-process, each with routes that raise what a test asks for.

RAISED: dict[str, Callable[[], Exception]] = {cls.__name__: partial(example, cls) for cls in ERRORS}
RAISED["RuntimeError"] = lambda: RuntimeError("a bug")


def with_test_routes(app: FastAPI) -> FastAPI:
    async def raising(name: str) -> None:
        raise RAISED[name]()

    async def validating(request: ExecutionRequest) -> None:
        raise AssertionError("not reached")

    app.add_api_route("/test/raise/{name}", raising)
    app.add_api_route("/test/validate", validating, methods=["POST"])
    # In front of the API's web page, mounted at / for every path no route claims.
    app.router.routes[:0] = app.router.routes[-2:]
    del app.router.routes[-2:]
    return app


@asynccontextmanager
async def nothing(_app: FastAPI) -> AsyncIterator[None]:
    yield


@asynccontextmanager
async def both_services() -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    apps = {
        "api": create_api(Settings(), lifespan=nothing),
        "executor": create_executor_app(FakeEngine(), token=TOKEN, capacity=1),
    }
    clients = {
        name: httpx.AsyncClient(
            transport=httpx.ASGITransport(app=with_test_routes(app), raise_app_exceptions=False),
            base_url="http://127.0.0.1",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        for name, app in apps.items()
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


def answer(response: httpx.Response) -> tuple[int, str, str | None, str | None]:
    return (
        response.status_code,
        response.json()["error"]["code"],
        response.headers.get("WWW-Authenticate"),
        response.headers.get("Retry-After"),
    )


async def test_both_services_answer_every_error_alike() -> None:
    async with both_services() as services:
        for name, raised in RAISED.items():
            api, executor = [
                answer(await http.get(f"/test/raise/{name}")) for http in services.values()
            ]
            assert api == executor, name
            if name != "RuntimeError":
                error = raised()
                assert isinstance(error, AssayError)
                assert api[:2] == (http_status(error), error.code), name
        expected = {
            "RuntimeError": (500, "internal_error", None, None),
            "QueueFullError": (429, "queue_full", None, "7"),
            "AuthenticationError": (401, "unauthorized", "Bearer", None),
            "ExecutorBusyError": (429, "executor_busy", None, None),
            "SandboxError": (503, "sandbox_error", None, None),
            "ApiError": (418, "teapot", None, None),
        }
        for name, wanted in expected.items():
            assert answer(await services["api"].get(f"/test/raise/{name}")) == wanted


async def test_both_services_refuse_a_request_alike() -> None:
    async with both_services() as services:
        requests = [
            ("POST", "/test/validate", b'{"stdin": 1}'),
            ("POST", "/test/validate", b'{"code": "x", "memory_mb": "lots"}'),
            ("GET", "/test/no/such/route", b""),
            ("DELETE", "/test/validate", b""),
        ]
        statuses = []
        for method, path, body in requests:
            api, executor = [
                await http.request(
                    method, path, content=body, headers={"content-type": "application/json"}
                )
                for http in services.values()
            ]
            assert (api.status_code, api.json()) == (executor.status_code, executor.json())
            statuses.append(api.status_code)
            if api.status_code == 422:
                assert api.json()["error"]["code"] == "validation_error"
                assert "body." in api.json()["error"]["message"]
        assert statuses == [422, 422, 404, 405]


# The Python client: the same class back from the API, and no httpx error out of it.


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
async def test_the_client_raises_the_class_the_api_answered_with(cls: type[AssayError]) -> None:
    app = create_api(Settings(), lifespan=nothing)

    async def raising() -> None:
        raise example(cls)

    app.add_api_route("/api/v1/queue", raising)
    app.router.routes.insert(0, app.router.routes.pop())
    transport = httpx.ASGITransport(app=app)
    async with AsyncAssayClient("http://127.0.0.1", transport=transport) as client:
        with pytest.raises(cls) as caught:
            await client.queue()
    sent = example(cls)
    assert (type(caught.value), caught.value.code, caught.value.message) == (
        cls,
        sent.code,
        sent.message,
    )
    if isinstance(sent, QueueFullError):
        assert isinstance(caught.value, QueueFullError) and caught.value.retry_after == 7
    if isinstance(sent, ApiError):
        assert isinstance(caught.value, ApiError) and caught.value.status == 418


def test_an_answer_that_is_not_an_error_body_is_an_api_error() -> None:
    def proxy(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    with (
        AssayClient("http://assay.test", transport=httpx.MockTransport(proxy)) as client,
        pytest.raises(ApiError) as caught,
    ):
        client.queue()
    assert (caught.value.status, caught.value.code) == (502, "http_error")
    assert "Bad Gateway" in caught.value.message


@pytest.mark.parametrize(
    ("failure", "says"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "cannot reach the server at"),
        (httpx.ConnectTimeout(""), "cannot reach the server at"),
        (httpx.ReadTimeout(""), "lost the connection to the server at"),
        (httpx.RemoteProtocolError("peer closed connection"), "lost the connection to the"),
    ],
)
async def test_a_server_that_cannot_be_reached_is_server_unreachable(
    failure: httpx.TransportError, says: str
) -> None:
    def fail(_request: httpx.Request) -> httpx.Response:
        raise failure

    url = "http://assay.test:8000"
    with AssayClient(url, transport=httpx.MockTransport(fail)) as client:
        calls: list[Callable[[], object]] = [
            client.queue,
            client.ready,
            lambda: client.get("x", wait=1),
            lambda: client.submit("print(1)"),
            lambda: list(client.events("x")),
        ]
        for call in calls:
            with pytest.raises(ServerUnreachableError) as caught:
                call()
            assert says in caught.value.message and url in caught.value.message
            assert caught.value.__cause__ is failure
    async with AsyncAssayClient(url, transport=httpx.MockTransport(fail)) as async_client:
        with pytest.raises(ServerUnreachableError, match=re.escape(url)):
            await async_client.list()
        with pytest.raises(ServerUnreachableError, match=re.escape(url)):
            [event async for event in async_client.events("x")]


async def test_a_stream_cut_midway_is_server_unreachable() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield b'data: {"id": 1, "evaluation_id": "x", "type": "queued", '
        yield b'"at": "2026-12-01T00:00:00Z", "data": {}}\n\n'
        raise httpx.ReadError("connection reset by peer")

    def stream(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=events())

    transport = httpx.MockTransport(stream)
    async with AsyncAssayClient("http://assay.test", transport=transport) as client:
        events_seen = client.events("x")
        assert (await anext(events_seen)).type == "queued"
        with pytest.raises(ServerUnreachableError, match="connection reset by peer"):
            await anext(events_seen)
