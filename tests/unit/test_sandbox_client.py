"""The Python client's live sandboxes against ``httpx.MockTransport`` handlers: the exact
requests it sends, answers that validate against the API's schemas, exact bytes both ways
(base64 for commands, raw bodies for files), streaming, and each error code raised as its
own class. The client against the real routes is at the end of the file."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from assay.api.schemas import CommandOut, FileOut, SandboxEventOut, SandboxOut
from assay.app import Platform, create_app
from assay.client import AssayClient, AsyncAssayClient, CommandOutput
from assay.errors import (
    ApiError,
    AssayError,
    InvalidRequestError,
    SandboxEndedError,
    SandboxFileNotFoundError,
    SandboxFileTooLargeError,
    SandboxIsADirectoryError,
    SandboxNotFoundError,
    SandboxPermissionError,
    SandboxQuotaError,
    ServerUnreachableError,
    UserUnsupportedError,
)
from tests.fakes import FakeEngine
from tests.sandbox import platform_settings

URL = "http://assay.test"
KEY = "key-1"
#: Every byte value, NUL, and sequences that are not UTF-8.
AWKWARD = bytes(range(256)) + b"\x00\xff\xfe\xc3\x28\xed\xa0\x80 end\n"

SANDBOX_CODES: list[tuple[str, int, type[AssayError]]] = [
    ("sandbox_not_found", 404, SandboxNotFoundError),
    ("sandbox_ended", 409, SandboxEndedError),
    ("sandbox_quota", 429, SandboxQuotaError),
    ("user_unsupported", 422, UserUnsupportedError),
    ("file_not_found", 404, SandboxFileNotFoundError),
    ("permission_denied", 403, SandboxPermissionError),
    ("is_a_directory", 409, SandboxIsADirectoryError),
    ("file_too_large", 413, SandboxFileTooLargeError),
    ("validation_error", 422, InvalidRequestError),
]


# -- answers the API could give ---------------------------------------------------------


def sandbox_json(**changes: Any) -> dict[str, Any]:
    """A SandboxOut body (checked against the schema)."""
    body: dict[str, Any] = {
        "id": "sb-1",
        "state": "running",
        "created_at": "2026-03-01T12:00:00Z",
        "memory_mb": 1024,
        "cpus": 1.0,
        "pids_limit": 256,
        "idle_timeout_seconds": 900.0,
        "lifetime_seconds": 14400.0,
        "labels": {},
        "image": "assay-sandbox:test",
        "user": "sandbox",
        "runtime": "runc",
        "last_used_at": "2026-03-01T12:00:00Z",
        "expires_at": "2026-03-01T12:15:00Z",
        "warm": True,
        "commands": 0,
    }
    body.update(changes)
    SandboxOut.model_validate(body)
    return body


def command_json(
    stdout: bytes = b"", stderr: bytes = b"", returncode: int = 0, **changes: Any
) -> dict[str, Any]:
    """A CommandOut body in base64 (checked against the schema)."""
    body: dict[str, Any] = {
        "returncode": returncode,
        "stdout": base64.b64encode(stdout).decode(),
        "stderr": base64.b64encode(stderr).decode(),
        "encoding": "base64",
        "stdout_truncated": False,
        "stderr_truncated": False,
        "timed_out": False,
        "exec_failure": None,
        "duration_seconds": 0.012,
    }
    body.update(changes)
    CommandOut.model_validate(body)
    return body


def event_json(seq: int, kind: str, **data: Any) -> dict[str, Any]:
    body = {"seq": seq, "sandbox_id": "sb-1", "type": kind, "at": "2026-03-01T12:00:01Z"}
    body["data"] = data
    SandboxEventOut.model_validate(body)
    return body


def error_response(status: int, code: str, message: str = "it went wrong") -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


def ndjson(*messages: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(message).encode() + b"\n" for message in messages)


def chunk_line(stream: str, data: bytes) -> dict[str, Any]:
    return {"type": stream, "data": base64.b64encode(data).decode()}


def result_line(**fields: Any) -> dict[str, Any]:
    return {"type": "result", **command_json(**fields)}


def pieces(body: bytes, size: int = 7) -> Iterator[bytes]:
    """``body`` cut into pieces that split lines, as a network would."""
    for at in range(0, len(body), size):
        yield body[at : at + size]


async def async_pieces(body: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for piece in pieces(body, size):
        yield piece


@dataclass
class Server:
    """A MockTransport handler that records each request (its body read) and answers with
    ``answer(request)``."""

    answer: Callable[[httpx.Request], httpx.Response]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answer(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def client(self) -> AssayClient:
        return AssayClient(URL, api_key=KEY, transport=httpx.MockTransport(self))

    def async_client(self) -> AsyncAssayClient:
        return AsyncAssayClient(URL, api_key=KEY, transport=httpx.MockTransport(self))


def answering(response: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> Server:
    if isinstance(response, httpx.Response):
        fixed = response
        return Server(lambda _request: fixed)
    return Server(response)


def sent_json(request: httpx.Request) -> Any:
    assert request.headers["content-type"] == "application/json"
    return json.loads(request.content)


def read_timeout(request: httpx.Request) -> float | None:
    timeout: dict[str, float | None] = request.extensions["timeout"]
    return timeout["read"]


# -- lifecycle ---------------------------------------------------------------------------


def test_create_sends_only_what_is_given_and_returns_the_sandbox() -> None:
    server = answering(httpx.Response(201, json=sandbox_json(memory_mb=512, user="root")))
    with server.client() as client:
        created = client.create_sandbox(
            memory_mb=512, idle_timeout_seconds=30.5, labels={"task": "t1"}, user="root"
        )
        plain = client.create_sandbox()
    first, second = server.requests
    assert (first.method, first.url.path) == ("POST", "/api/v1/sandboxes")
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert sent_json(first) == {
        "memory_mb": 512,
        "idle_timeout_seconds": 30.5,
        "labels": {"task": "t1"},
        "user": "root",
    }
    assert sent_json(second) == {}
    assert isinstance(created, SandboxOut)
    assert (created.id, created.memory_mb, created.user) == ("sb-1", 512, "root")
    assert plain == created


def test_create_sends_every_limit_by_its_api_name() -> None:
    server = answering(httpx.Response(201, json=sandbox_json()))
    with server.client() as client:
        client.create_sandbox(
            memory_mb=256,
            cpus=0.5,
            pids_limit=64,
            idle_timeout_seconds=10,
            lifetime_seconds=60,
            labels={"a": "b"},
            language="python",
            image="assay-sandbox:test",
            user="sandbox",
        )
    assert sent_json(server.last) == {
        "memory_mb": 256,
        "cpus": 0.5,
        "pids_limit": 64,
        "idle_timeout_seconds": 10,
        "lifetime_seconds": 60,
        "labels": {"a": "b"},
        "language": "python",
        "image": "assay-sandbox:test",
        "user": "sandbox",
    }


def test_get_list_and_delete_use_their_paths() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/sandboxes":
            state = request.url.params.get("state")
            items = [sandbox_json(id="sb-1"), sandbox_json(id="sb-2", state="ended")]
            return httpx.Response(
                200, json={"items": [i for i in items if state in (None, i["state"])]}
            )
        if request.method == "DELETE":
            return httpx.Response(200, json=sandbox_json(state="ended", end_reason="deleted"))
        return httpx.Response(200, json=sandbox_json())

    server = answering(answer)
    with server.client() as client:
        assert client.get_sandbox("sb-1").state == "running"
        assert [s.id for s in client.list_sandboxes()] == ["sb-1", "sb-2"]
        assert [s.id for s in client.list_sandboxes(state="ended")] == ["sb-2"]
        deleted = client.delete_sandbox("sb-1")
    assert (deleted.state, deleted.end_reason) == ("ended", "deleted")
    assert [(r.method, str(r.url)) for r in server.requests] == [
        ("GET", f"{URL}/api/v1/sandboxes/sb-1"),
        ("GET", f"{URL}/api/v1/sandboxes"),
        ("GET", f"{URL}/api/v1/sandboxes?state=ended"),
        ("DELETE", f"{URL}/api/v1/sandboxes/sb-1"),
    ]


def test_an_id_stays_one_path_segment() -> None:
    server = answering(error_response(404, "sandbox_not_found", "no such sandbox"))
    with server.client() as client, pytest.raises(SandboxNotFoundError):
        client.delete_sandbox("../evaluations/x")
    assert server.last.url.raw_path == b"/api/v1/sandboxes/..%2Fevaluations%2Fx"


# -- exec --------------------------------------------------------------------------------


def test_exec_asks_for_base64_and_returns_exact_bytes() -> None:
    server = answering(
        httpx.Response(200, json=command_json(stdout=AWKWARD, stderr=AWKWARD[::-1], returncode=3))
    )
    with server.client() as client:
        output = client.exec("sb-1", ["sh", "-c", "printf x"])
    assert (server.last.method, server.last.url.path) == ("POST", "/api/v1/sandboxes/sb-1/exec")
    assert sent_json(server.last) == {"command": ["sh", "-c", "printf x"], "encoding": "base64"}
    assert output == CommandOutput(
        returncode=3,
        stdout=AWKWARD,
        stderr=AWKWARD[::-1],
        stdout_truncated=False,
        stderr_truncated=False,
        timed_out=False,
        exec_failure=None,
        duration_seconds=0.012,
    )


def test_exec_sends_every_option_by_its_api_name() -> None:
    server = answering(httpx.Response(200, json=command_json()))
    with server.client() as client:
        client.exec(
            "sb-1",
            ("env",),
            input="héllo\n",
            cwd="sub",
            env={"A": "1"},
            user="root",
            timeout=5.5,
            output_limit_bytes=4096,
        )
    assert sent_json(server.last) == {
        "command": ["env"],
        "input": "héllo\n",
        "cwd": "sub",
        "env": {"A": "1"},
        "user": "root",
        "timeout_seconds": 5.5,
        "output_limit_bytes": 4096,
        "encoding": "base64",
    }


def test_str_input_is_text_and_bytes_input_is_base64() -> None:
    server = answering(httpx.Response(200, json=command_json()))
    with server.client() as client:
        client.exec("sb-1", ["cat"], input="text ü")
        client.exec("sb-1", ["cat"], input=AWKWARD)
        client.exec("sb-1", ["cat"], input=b"")
    text, raw, empty = (sent_json(r) for r in server.requests)
    assert (text["input"], "input_base64" in text) == ("text ü", False)
    assert ("input" in raw, base64.b64decode(raw["input_base64"])) == (False, AWKWARD)
    assert (empty["input_base64"], "input" in empty) == ("", False)


def test_a_command_string_is_refused_before_anything_is_sent() -> None:
    server = answering(httpx.Response(200, json=command_json()))
    with server.client() as client, pytest.raises(TypeError, match="argv list"):
        client.exec("sb-1", "ls -l")
    assert server.requests == []


def test_a_failed_or_timed_out_command_is_data() -> None:
    answers = iter(
        [
            command_json(returncode=137, timed_out=True, stdout=b"partial", stdout_truncated=True),
            command_json(returncode=127, exec_failure="not_found", stderr=b"no such program"),
        ]
    )
    server = answering(lambda _request: httpx.Response(200, json=next(answers)))
    with server.client() as client:
        timed_out = client.exec("sb-1", ["sleep", "9"], timeout=1)
        missing = client.exec("sb-1", ["nope"])
    assert (timed_out.timed_out, timed_out.returncode, timed_out.stdout) == (True, 137, b"partial")
    assert timed_out.stdout_truncated and not timed_out.stderr_truncated
    assert (missing.returncode, missing.exec_failure, missing.stderr) == (
        127,
        "not_found",
        b"no such program",
    )
    assert type(missing.exec_failure) is str


def test_an_answer_in_utf8_is_read_as_text() -> None:
    body = command_json() | {"encoding": "utf-8", "stdout": "ünïcode", "stderr": ""}
    server = answering(httpx.Response(200, json=body))
    with server.client() as client:
        assert client.exec("sb-1", ["x"]).stdout == "ünïcode".encode()


def test_the_http_call_waits_longer_than_the_command_may_run() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("stream") == "true":
            return httpx.Response(200, content=ndjson(result_line()))
        return httpx.Response(200, json=command_json())

    server = answering(answer)
    with server.client() as client:
        client.exec("sb-1", ["true"])
        client.exec("sb-1", ["true"], timeout=1500)
        client.exec("sb-1", ["true"], timeout=0.5)
        list(client.exec_stream("sb-1", ["true"], timeout=1200))
    default, long, short, streamed = (read_timeout(r) for r in server.requests)
    assert default is not None and default > 600 + 10
    assert long is not None and long > 1500 + 10
    assert short is not None and short >= 30, "a short command still gets the usual margin"
    assert streamed is not None and streamed > 1200 + 10


@pytest.mark.parametrize(("code", "status", "cls"), SANDBOX_CODES)
def test_each_error_code_is_raised_as_its_class(
    code: str, status: int, cls: type[AssayError]
) -> None:
    server = answering(error_response(status, code, f"{code} says so"))
    with server.client() as client:
        calls: list[Callable[[], object]] = [
            client.create_sandbox,
            lambda: client.get_sandbox("sb-1"),
            lambda: client.delete_sandbox("sb-1"),
            client.list_sandboxes,
            lambda: client.exec("sb-1", ["true"]),
            lambda: list(client.exec_stream("sb-1", ["true"])),
            lambda: client.write_file("sb-1", "f", b"x"),
            lambda: client.read_file("sb-1", "f"),
            lambda: list(client.sandbox_events("sb-1")),
            lambda: list(client.sandbox_events("sb-1", follow=True)),
        ]
        for call in calls:
            with pytest.raises(cls) as caught:
                call()
            assert type(caught.value) is cls
            assert caught.value.message == f"{code} says so"


async def test_the_async_client_raises_the_same_classes() -> None:
    for code, status, cls in SANDBOX_CODES:
        server = answering(error_response(status, code))
        async with server.async_client() as client:
            with pytest.raises(cls):
                await client.exec("sb-1", ["true"])
            with pytest.raises(cls):
                await client.read_file("sb-1", "f")
            with pytest.raises(cls):
                [item async for item in client.exec_stream("sb-1", ["true"])]
            with pytest.raises(cls):
                [event async for event in client.sandbox_events("sb-1", follow=True)]


def test_an_unreachable_server_is_server_unreachable() -> None:
    def refuse(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with AssayClient(URL, transport=httpx.MockTransport(refuse)) as client:
        calls: list[Callable[[], object]] = [
            client.create_sandbox,
            lambda: client.exec("sb-1", ["true"]),
            lambda: list(client.exec_stream("sb-1", ["true"])),
            lambda: client.write_file("sb-1", "f", b"x"),
            lambda: client.read_file("sb-1", "f"),
            lambda: list(client.sandbox_events("sb-1", follow=True)),
        ]
        for call in calls:
            with pytest.raises(ServerUnreachableError, match="cannot reach the server at"):
                call()


# -- streaming ---------------------------------------------------------------------------


def test_exec_stream_yields_chunks_as_bytes_then_the_output() -> None:
    body = ndjson(
        chunk_line("stdout", b"line 1\n"),
        chunk_line("stderr", AWKWARD),
        chunk_line("stdout", b"\x00\xff"),
        result_line(stdout=b"line 1\n\x00\xff", stderr=AWKWARD, returncode=1),
    )
    server = answering(lambda _request: httpx.Response(200, content=pieces(body)))
    with server.client() as client:
        items = list(client.exec_stream("sb-1", ["prog"], input=b"\x00in", cwd="/tmp"))
    assert server.last.url.params["stream"] == "true"
    assert sent_json(server.last) == {
        "command": ["prog"],
        "input_base64": base64.b64encode(b"\x00in").decode(),
        "cwd": "/tmp",
        "encoding": "base64",
    }
    *chunks, output = items
    assert chunks == [("stdout", b"line 1\n"), ("stderr", AWKWARD), ("stdout", b"\x00\xff")]
    assert isinstance(output, CommandOutput)
    assert (output.returncode, output.stdout, output.stderr) == (1, b"line 1\n\x00\xff", AWKWARD)


def test_an_error_in_the_stream_is_raised_as_its_class() -> None:
    body = ndjson(
        chunk_line("stdout", b"before\n"),
        {"type": "error", "error": {"code": "sandbox_ended", "message": "idle for 900 s"}},
    )
    server = answering(lambda _request: httpx.Response(200, content=pieces(body)))
    with server.client() as client:
        items = client.exec_stream("sb-1", ["sleep", "1000"])
        assert next(items) == ("stdout", b"before\n")
        with pytest.raises(SandboxEndedError, match="idle for 900 s"):
            next(items)


def test_a_stream_that_ends_without_a_result_is_a_lost_connection() -> None:
    body = ndjson(chunk_line("stdout", b"partial"))
    server = answering(lambda _request: httpx.Response(200, content=body))
    with (
        server.client() as client,
        pytest.raises(ServerUnreachableError, match="before the command's result"),
    ):
        list(client.exec_stream("sb-1", ["x"]))


def test_a_stream_that_is_not_json_is_an_api_error() -> None:
    server = answering(lambda _request: httpx.Response(200, content=b"<html>proxy</html>\n"))
    with server.client() as client, pytest.raises(ApiError, match="not JSON"):
        list(client.exec_stream("sb-1", ["x"]))


async def test_async_exec_and_exec_stream() -> None:
    body = ndjson(chunk_line("stderr", b"warn\n"), result_line(stderr=b"warn\n", returncode=2))

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("stream") == "true":
            return httpx.Response(200, content=async_pieces(body, 5))
        return httpx.Response(200, json=command_json(stdout=AWKWARD))

    server = answering(answer)
    async with server.async_client() as client:
        output = await client.exec("sb-1", ["cat"], input="text", timeout=2)
        items = [item async for item in client.exec_stream("sb-1", ["x"], input=AWKWARD)]
    assert output.stdout == AWKWARD
    plain, streamed = (sent_json(r) for r in server.requests)
    assert plain == {
        "command": ["cat"],
        "input": "text",
        "timeout_seconds": 2,
        "encoding": "base64",
    }
    assert base64.b64decode(streamed["input_base64"]) == AWKWARD
    assert items[0] == ("stderr", b"warn\n")
    assert isinstance(items[1], CommandOutput) and items[1].returncode == 2
    assert len(items) == 2


# -- files -------------------------------------------------------------------------------


def test_write_file_sends_the_raw_bytes() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"path": "/workspace/a b.bin", "size": len(request.content)}
        )

    server = answering(answer)
    with server.client() as client:
        written = client.write_file("sb-1", "a b.bin", AWKWARD, user="root")
        text = client.write_file("sb-1", "t.txt", "ünï\x00code")
    raw, encoded = server.requests
    assert (raw.method, raw.url.path) == ("PUT", "/api/v1/sandboxes/sb-1/files")
    assert dict(raw.url.params) == {"path": "a b.bin", "user": "root"}
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.content == AWKWARD
    assert written == FileOut(path="/workspace/a b.bin", size=len(AWKWARD))
    assert dict(encoded.url.params) == {"path": "t.txt"}
    assert encoded.content == "ünï\x00code".encode()
    assert text.size == len("ünï\x00code".encode())


def test_read_file_returns_the_raw_bytes() -> None:
    server = answering(
        httpx.Response(200, content=AWKWARD, headers={"content-type": "application/octet-stream"})
    )
    with server.client() as client:
        assert client.read_file("sb-1", "/etc/x", max_bytes=1000, user="root") == AWKWARD
        assert client.read_file("sb-1", "y") == AWKWARD
    first, second = server.requests
    assert (first.method, first.url.path) == ("GET", "/api/v1/sandboxes/sb-1/files")
    assert dict(first.url.params) == {"path": "/etc/x", "max_bytes": "1000", "user": "root"}
    assert dict(second.url.params) == {"path": "y"}


def test_a_20_mib_file_goes_up_and_comes_back_exactly() -> None:
    data = os.urandom(20 * 2**20)
    stored: dict[str, bytes] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.params["path"]
        if request.method == "PUT":
            stored[path] = request.content
            return httpx.Response(200, json={"path": f"/workspace/{path}", "size": len(data)})
        return httpx.Response(200, content=pieces(stored[path], 65536))

    server = answering(answer)
    with server.client() as client:
        assert client.write_file("sb-1", "big", data).size == len(data)
        assert client.read_file("sb-1", "big") == data
    assert stored["big"] == data
    for request in server.requests:
        timeout = read_timeout(request)
        assert timeout is not None and timeout >= 300, "the server may copy for a while"


def file_server() -> tuple[dict[str, bytes], Callable[[httpx.Request], httpx.Response]]:
    """A sandbox's files by path, and the handler that writes and reads them."""
    files: dict[str, bytes] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.params["path"]
        if request.method == "PUT":
            files[path] = request.content
            return httpx.Response(200, json={"path": path, "size": len(request.content)})
        if path not in files:
            return error_response(404, "file_not_found", f"no such file: {path}")
        return httpx.Response(200, content=files[path])

    return files, answer


async def test_async_files_both_ways() -> None:
    _, answer = file_server()
    server = answering(answer)
    async with server.async_client() as client:
        assert (await client.write_file("sb-1", "/w/x", AWKWARD)).size == len(AWKWARD)
        assert (await client.write_file("sb-1", "/w/t", "ü")).size == 2
        assert await client.read_file("sb-1", "/w/x") == AWKWARD
        assert await client.read_file("sb-1", "/w/t", max_bytes=5) == "ü".encode()
        with pytest.raises(SandboxFileNotFoundError, match="no such file: /w/none"):
            await client.read_file("sb-1", "/w/none")
    assert server.requests[-2].url.params["max_bytes"] == "5"


# -- events ------------------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(
        f"event: sandbox\nid: {event['seq']}\ndata: {json.dumps(event)}\n\n".encode()
        for event in events
    )


EVENTS = [
    event_json(1, "created"),
    event_json(2, "exec", command=["true"], returncode=0, duration_seconds=0.01),
    event_json(3, "ended", reason="deleted"),
]


def test_events_without_follow_are_one_page_when_few() -> None:
    server = answering(httpx.Response(200, json={"items": EVENTS[1:]}))
    with server.client() as client:
        events = list(client.sandbox_events("sb-1", after=1))
        assert [e.seq for e in client.sandbox_events("sb-1")] == [2, 3]
    assert [(e.seq, e.type) for e in events] == [(2, "exec"), (3, "ended")]
    assert events[0].data["command"] == ["true"]
    first, second = server.requests
    assert first.url.path == "/api/v1/sandboxes/sb-1/events"
    assert dict(first.url.params) == {"after": "1", "limit": "1000"}
    assert dict(second.url.params) == {"limit": "1000"}


async def test_events_without_follow_come_page_by_page() -> None:
    recorded = [event_json(seq, "exec", command=["true"]) for seq in range(1, 2051)]

    def answer(request: httpx.Request) -> httpx.Response:
        after, limit = int(request.url.params.get("after", 0)), int(request.url.params["limit"])
        return httpx.Response(200, json={"items": recorded[after : after + limit]})

    server = answering(answer)
    with server.client() as client:
        assert [e.seq for e in client.sandbox_events("sb-1")] == list(range(1, 2051))
    async with server.async_client() as async_client:
        seen = [e.seq async for e in async_client.sandbox_events("sb-1", after=1000)]
    assert seen == list(range(1001, 2051))
    afters = [r.url.params.get("after") for r in server.requests]
    assert afters == [None, "1000", "2000", "1000", "2000"]


def test_followed_events_stream_until_the_ended_one() -> None:
    after_the_end = event_json(4, "exec", command=["never"])
    body = sse(*EVENTS, after_the_end)
    server = answering(lambda _request: httpx.Response(200, content=pieces(body, 11)))
    with server.client() as client:
        events = list(client.sandbox_events("sb-1", after=0, follow=True))
    assert [e.type for e in events] == ["created", "exec", "ended"]
    assert dict(server.last.url.params) == {"after": "0", "follow": "true"}
    assert read_timeout(server.last) is None, "a quiet sandbox may send nothing for long"


async def test_async_events_both_ways() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("follow") == "true":
            return httpx.Response(200, content=async_pieces(sse(*EVENTS), 13))
        return httpx.Response(200, json={"items": EVENTS})

    server = answering(answer)
    async with server.async_client() as client:
        page = [event async for event in client.sandbox_events("sb-1")]
        followed = [event async for event in client.sandbox_events("sb-1", follow=True)]
    assert [e.seq for e in page] == [e.seq for e in followed] == [1, 2, 3]


async def test_async_lifecycle() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(201, json=sandbox_json(labels=sent_json(request)["labels"]))
        if request.method == "DELETE":
            return httpx.Response(200, json=sandbox_json(state="ended"))
        if request.url.path == "/api/v1/sandboxes":
            return httpx.Response(200, json={"items": [sandbox_json()]})
        return httpx.Response(200, json=sandbox_json(commands=4))

    server = answering(answer)
    async with server.async_client() as client:
        created = await client.create_sandbox(labels={"k": "v"}, lifetime_seconds=60)
        assert created.labels == {"k": "v"}
        assert (await client.get_sandbox("sb-1")).commands == 4
        assert [s.id for s in await client.list_sandboxes(state="running")] == ["sb-1"]
        assert (await client.delete_sandbox("sb-1")).state == "ended"
    assert sent_json(server.requests[0]) == {"labels": {"k": "v"}, "lifetime_seconds": 60}
    assert [(r.method, str(r.url)) for r in server.requests[1:]] == [
        ("GET", f"{URL}/api/v1/sandboxes/sb-1"),
        ("GET", f"{URL}/api/v1/sandboxes?state=running"),
        ("DELETE", f"{URL}/api/v1/sandboxes/sb-1"),
    ]


# -- against the real routes -------------------------------------------------------------


class PortalTransport(httpx.BaseTransport):
    """A sync transport into an ASGI app: ``httpx.ASGITransport`` run on an anyio blocking
    portal (the app's event loop, in its own thread). Whole answers, as ASGITransport's."""

    def __init__(self, portal: BlockingPortal, app: Any) -> None:
        self._portal = portal
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def answer() -> tuple[int, httpx.Headers, bytes]:
            response = await self._asgi.handle_async_request(request)
            return response.status_code, response.headers, await response.aread()

        status, headers, body = self._portal.call(answer)
        return httpx.Response(status, headers=headers, content=body)


@pytest.fixture
def real_api(tmp_path: Path) -> Iterator[tuple[AssayClient, FakeEngine]]:
    """The sync client against ``create_app`` on the fake engine, in-process."""
    settings = platform_settings(tmp_path / "data")
    engine = FakeEngine(settings.execution)

    async def build() -> Any:
        return create_app(settings, platform=Platform(settings, engine=engine))

    with start_blocking_portal() as portal:
        app = portal.call(build)
        with (
            portal.wrap_async_context_manager(app.router.lifespan_context(app)),
            AssayClient(URL, transport=PortalTransport(portal, app)) as client,
        ):
            yield client, engine
    assert engine.leftover_processes() == [], "a command's process was left behind"


def test_the_sync_client_against_the_real_routes(
    real_api: tuple[AssayClient, FakeEngine],
) -> None:
    client, _engine = real_api
    created = client.create_sandbox(labels={"task": "t1"}, idle_timeout_seconds=60)
    assert (created.state, created.labels, created.idle_timeout_seconds) == (
        "running",
        {"task": "t1"},
        60,
    )
    sid = created.id
    assert client.get_sandbox(sid).id == sid
    assert [s.id for s in client.list_sandboxes(state="running")] == [sid]

    script = "printf 'a\\000\\377'; printf 'err' >&2; exit 3"
    ran = client.exec(sid, ["sh", "-c", script])
    assert (ran.returncode, ran.stdout, ran.stderr) == (3, b"a\x00\xff", b"err")
    assert client.exec(sid, ["cat"], input=AWKWARD).stdout == AWKWARD
    assert client.exec(sid, ["cat"], input="text ü\n").stdout == "text ü\n".encode()
    assert client.exec(sid, ["sh", "-c", "echo $X"], env={"X": "y"}).stdout == b"y\n"
    slow = client.exec(sid, ["sleep", "30"], timeout=0.5)
    assert slow.timed_out and slow.duration_seconds < 10
    missing = client.exec(sid, ["no-such-program-here"])
    assert (missing.returncode, missing.exec_failure) == (127, "not_found")

    *chunks, result = client.exec_stream(sid, ["sh", "-c", "printf out; printf err >&2"])
    assert sorted(chunks) == [("stderr", b"err"), ("stdout", b"out")]
    assert isinstance(result, CommandOutput)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"out", b"err")

    data = os.urandom(20 * 2**20)
    assert client.write_file(sid, "sub/big.bin", data).size == len(data)
    assert client.read_file(sid, "sub/big.bin") == data
    client.write_file(sid, "t.txt", "ünï\n")
    assert client.exec(sid, ["cat", "t.txt"]).stdout == "ünï\n".encode()
    with pytest.raises(SandboxFileNotFoundError):
        client.read_file(sid, "absent")
    with pytest.raises(SandboxIsADirectoryError):
        client.read_file(sid, "sub")
    with pytest.raises(SandboxFileTooLargeError):
        client.read_file(sid, "sub/big.bin", max_bytes=1000)
    with pytest.raises(UserUnsupportedError):
        client.exec(sid, ["true"], user="root")
    with pytest.raises(InvalidRequestError):
        client.exec(sid, ["true"], timeout=10**9)

    types = [event.type for event in client.sandbox_events(sid)]
    assert types[0] == "created" and "exec" in types and "write_file" in types
    assert client.delete_sandbox(sid).state == "ended"
    followed = list(client.sandbox_events(sid, after=1, follow=True))
    assert followed[0].seq == 2 and followed[-1].type == "ended"
    with pytest.raises(SandboxEndedError):
        client.exec(sid, ["true"])
    with pytest.raises(SandboxEndedError):
        list(client.exec_stream(sid, ["true"]))
    with pytest.raises(SandboxNotFoundError):
        client.get_sandbox("sbx-none")
    assert [s.id for s in client.list_sandboxes(state="ended")] == [sid]
