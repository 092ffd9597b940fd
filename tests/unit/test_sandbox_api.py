"""The live sandboxes' REST API in-process, on the fake engine and SQLite: every route, the
4xx errors in the one error shape, streamed commands, files up to hundreds of MiB and the
body caps, recorded and followed events, API keys' ownership and quota, and the records of
sandboxes the engine ended or lost by itself. The app is ``test_api``'s ``api`` fixture
(hence F811 off: every test names the imported fixture as its argument)."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from assay.api.routes import sandboxes as sandboxes_routes
from assay.execution_engine import EndReason
from tests.unit.test_api import (
    Api,
    api,  # noqa: F401 - the fixture: the app on the fake engine
    assert_error,
    raw,
)

URL = "/api/v1/sandboxes"
MIB = 1024 * 1024


async def create(api: Api, *, key: str | None = None, **body: Any) -> dict[str, Any]:
    response = await raw(api, "POST", URL, json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def run(api: Api, sandbox_id: str, *argv: str, **body: Any) -> dict[str, Any]:
    response = await raw(api, "POST", f"{URL}/{sandbox_id}/exec", json={"command": argv, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def events(api: Api, sandbox_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await raw(api, "GET", f"{URL}/{sandbox_id}/events", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def auth(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


def files(sandbox_id: str) -> str:
    return f"{URL}/{sandbox_id}/files"


async def lines_of(
    app: Any, method: str, path: str, body: bytes = b""
) -> AsyncIterator[tuple[int, str]]:
    """``method path`` on ``app`` in-process, yielding (status, line) as each line is sent
    (httpx's ASGITransport answers only once the response has ended); the client
    disconnects when the caller stops."""
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    disconnect = asyncio.Event()
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await sent.put(message)

    target, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"assay.test"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("assay.test", 80),
    }
    task = asyncio.create_task(app(scope, receive, send))
    try:
        start = await asyncio.wait_for(sent.get(), 10)
        pending = ""
        while True:
            message = await asyncio.wait_for(sent.get(), 10)
            pending += message.get("body", b"").decode()
            *lines, pending = pending.split("\n")
            for line in lines:
                yield start["status"], line
            if not message.get("more_body", False):
                return
    finally:
        disconnect.set()
        await asyncio.wait_for(task, 10)


# -- sandboxes -----------------------------------------------------------------------------


async def test_a_sandbox_is_created_read_listed_and_deleted(api: Api) -> None:
    created = await create(api, memory_mb=256, labels={"task": "t1"})
    assert created["state"] == "running" and created["memory_mb"] == 256
    assert created["labels"] == {"task": "t1"} and created["id"] in api.engine.live
    sandbox_id = created["id"]
    got = await raw(api, "GET", f"{URL}/{sandbox_id}")
    assert got.status_code == 200 and got.json()["id"] == sandbox_id
    other = await create(api)
    listed = (await raw(api, "GET", URL)).json()["items"]
    assert [s["id"] for s in listed] == [other["id"], sandbox_id]
    deleted = await raw(api, "DELETE", f"{URL}/{sandbox_id}")
    assert deleted.status_code == 200
    assert (deleted.json()["state"], deleted.json()["end_reason"]) == ("ended", "deleted")
    again = await raw(api, "DELETE", f"{URL}/{sandbox_id}")
    assert again.status_code == 200 and again.json()["end_reason"] == "deleted"
    assert (await raw(api, "GET", f"{URL}/{sandbox_id}")).json()["state"] == "ended"
    everything = (await raw(api, "GET", URL)).json()["items"]
    assert [s["id"] for s in everything] == [other["id"], sandbox_id], "running first"
    running = (await raw(api, "GET", URL, params={"state": "running"})).json()["items"]
    ended = (await raw(api, "GET", URL, params={"state": "ended"})).json()["items"]
    assert [s["id"] for s in running] == [other["id"]]
    assert [s["id"] for s in ended] == [sandbox_id]
    assert_error(await raw(api, "GET", URL, params={"state": "asleep"}), 422, "validation_error")


BAD_SANDBOXES: dict[str, tuple[object, str]] = {
    "unknown-field": ({"colour": "red"}, "validation_error"),
    "not-an-object": (["no"], "validation_error"),
    "memory-over-max": ({"memory_mb": 10**7}, "invalid_request"),
    "pids-too-few": ({"pids_limit": 1}, "invalid_request"),
    "other-image": ({"image": "ubuntu:latest"}, "invalid_request"),
    "unknown-language": ({"language": "cobol"}, "invalid_request"),
    "bad-label": ({"labels": {"no spaces": "x"}}, "validation_error"),
    "nan-lifetime": ({"lifetime_seconds": float("nan")}, "validation_error"),
    "bad-user": ({"user": "admin"}, "validation_error"),
}


@pytest.mark.parametrize(("body", "code"), BAD_SANDBOXES.values(), ids=BAD_SANDBOXES)
async def test_a_bad_sandbox_request_gets_422(api: Api, body: object, code: str) -> None:
    content = json.dumps(body).encode()
    response = await raw(
        api, "POST", URL, content=content, headers={"content-type": "application/json"}
    )
    assert_error(response, 422, code)
    assert api.engine.live == {}, "nothing was started"


MISSING = {
    "get": ("GET", ""),
    "delete": ("DELETE", ""),
    "exec": ("POST", "/exec"),
    "write": ("PUT", "/files?path=a"),
    "read": ("GET", "/files?path=a"),
    "events": ("GET", "/events"),
    "follow": ("GET", "/events?follow=true"),
}


@pytest.mark.parametrize(("method", "what"), MISSING.values(), ids=MISSING)
async def test_a_sandbox_that_does_not_exist_is_404(api: Api, method: str, what: str) -> None:
    body = {"command": ["true"]} if what == "/exec" else None
    response = await raw(api, method, f"{URL}/sbx-nope{what}", json=body)
    assert "sbx-nope" in assert_error(response, 404, "sandbox_not_found")


async def test_metrics_count_sandboxes_commands_and_files(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    await run(api, sandbox_id, "true")
    await raw(api, "PUT", files(sandbox_id), params={"path": "f"}, content=b"abc")
    await raw(api, "DELETE", f"{URL}/{sandbox_id}")
    text = (await raw(api, "GET", "/metrics")).text
    assert 'assay_sandboxes_created_total{warm="false"} 1.0' in text
    assert 'assay_sandboxes_ended_total{reason="deleted"} 1.0' in text
    assert 'assay_sandbox_commands_total{outcome="exited"} 1.0' in text
    assert "assay_sandbox_command_seconds_count 1.0" in text
    assert 'assay_sandbox_file_operations_total{operation="write",outcome="ok"} 1.0' in text
    assert 'assay_sandbox_file_bytes_total{operation="write"} 3.0' in text


# -- commands ------------------------------------------------------------------------------


async def test_a_command_answers_its_exit_and_output_in_either_encoding(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    script = r"printf 'a\377\000b'; printf 'caf\303\251' >&2; exit 3"
    text = await run(api, sandbox_id, "sh", "-c", script)
    assert (text["returncode"], text["encoding"]) == (3, "utf-8")
    assert (text["stdout"], text["stderr"]) == ("a\ufffd\x00b", "café")
    assert not text["timed_out"] and text["exec_failure"] is None
    assert text["duration_seconds"] >= 0
    exact = await run(api, sandbox_id, "sh", "-c", script, encoding="base64")
    assert base64.b64decode(exact["stdout"]) == b"a\xff\x00b"
    assert base64.b64decode(exact["stderr"]) == "café".encode()


async def test_stdin_as_text_or_bytes_env_and_cwd(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    said = await run(api, sandbox_id, "cat", input="héllo")
    assert said["stdout"] == "héllo"
    payload = bytes(range(256)) * 1000
    counted = await run(
        api, sandbox_id, "wc", "-c", input_base64=base64.b64encode(payload).decode()
    )
    assert counted["stdout"].strip() == str(len(payload))
    assert (await run(api, sandbox_id, "sh", "-c", "echo $X", env={"X": "y"}))["stdout"] == "y\n"
    await run(api, sandbox_id, "mkdir", "-p", "sub/dir")
    here = await run(api, sandbox_id, "pwd", cwd="sub/dir")
    assert here["stdout"].strip().endswith("/sub/dir")


async def test_timeouts_output_caps_and_commands_that_cannot_start_are_data(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    slow = await run(api, sandbox_id, "sleep", "30", timeout_seconds=0.5)
    assert slow["timed_out"] and slow["returncode"] == 137
    capped = await run(
        api, sandbox_id, "sh", "-c", "head -c 5000 /dev/zero", output_limit_bytes=1000
    )
    assert len(capped["stdout"]) == 1000 and capped["stdout_truncated"]
    assert not capped["stderr_truncated"]
    missing = await run(api, sandbox_id, "no-such-program")
    assert (missing["returncode"], missing["exec_failure"]) == (127, "not_found")
    nowhere = await run(api, sandbox_id, "true", cwd="no/such/dir")
    assert (nowhere["returncode"], nowhere["exec_failure"]) == (126, "bad_cwd")


BAD_COMMANDS: dict[str, tuple[dict[str, Any], str, str]] = {
    "no-command": ({}, "validation_error", "command"),
    "empty-command": ({"command": []}, "validation_error", "command"),
    "empty-program": ({"command": [""]}, "invalid_request", "first"),
    "nul-in-argument": ({"command": ["echo", "a\x00b"]}, "invalid_request", "NUL"),
    "both-inputs": (
        {"command": ["cat"], "input": "a", "input_base64": "YQ=="},
        "invalid_request",
        "not both",
    ),
    "not-base64": (
        {"command": ["cat"], "input_base64": "not base64!"},
        "invalid_request",
        "base64",
    ),
    "timeout-over-max": (
        {"command": ["true"], "timeout_seconds": 10**6},
        "invalid_request",
        "timeout",
    ),
    "negative-timeout": (
        {"command": ["true"], "timeout_seconds": -1},
        "validation_error",
        "timeout",
    ),
    "output-over-max": (
        {"command": ["true"], "output_limit_bytes": 10**12},
        "invalid_request",
        "output_limit_bytes",
    ),
    "bad-env": ({"command": ["true"], "env": {"A=B": "c"}}, "invalid_request", "env"),
    "bad-encoding": ({"command": ["true"], "encoding": "latin-1"}, "validation_error", "encoding"),
    "unknown-field": ({"command": ["true"], "shell": True}, "validation_error", "shell"),
}


@pytest.mark.parametrize(("body", "code", "says"), BAD_COMMANDS.values(), ids=BAD_COMMANDS)
async def test_a_bad_command_gets_422_and_runs_nothing(
    api: Api, body: dict[str, Any], code: str, says: str
) -> None:
    sandbox_id = (await create(api))["id"]
    response = await raw(api, "POST", f"{URL}/{sandbox_id}/exec", json=body)
    assert says in assert_error(response, 422, code)
    assert api.engine.live[sandbox_id].info.commands == 0


async def test_a_user_the_sandbox_cannot_be_gets_422(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    body = {"command": ["id"], "user": "root"}
    response = await raw(api, "POST", f"{URL}/{sandbox_id}/exec", json=body)
    assert_error(response, 422, "user_unsupported")
    [*_, refused] = await events(api, sandbox_id)
    assert refused["type"] == "exec" and refused["data"]["error"] == "user_unsupported"


async def test_a_command_in_an_ended_sandbox_gets_409_naming_why(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    await raw(api, "DELETE", f"{URL}/{sandbox_id}")
    response = await raw(api, "POST", f"{URL}/{sandbox_id}/exec", json={"command": ["true"]})
    assert "deleted" in assert_error(response, 409, "sandbox_ended")
    write = await raw(api, "PUT", files(sandbox_id), params={"path": "a"}, content=b"x")
    assert_error(write, 409, "sandbox_ended")
    read = await raw(api, "GET", files(sandbox_id), params={"path": "a"})
    assert_error(read, 409, "sandbox_ended")


async def test_a_streamed_command_sends_its_output_as_it_comes(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    script = (
        r"printf 'one\n'; printf '\303'; until [ -e go ]; do sleep 0.02; done; "
        r"printf '\251' >&2; printf '\251'"
    )
    body = json.dumps({"command": ["sh", "-c", script]}).encode()
    lines = lines_of(api.app, "POST", f"{URL}/{sandbox_id}/exec?stream=true", body)
    status, first = await anext(lines)
    assert status == 200
    assert json.loads(first) == {"type": "stdout", "data": "one\n", "encoding": "utf-8"}
    # Only now may it end: what came so far was sent while it ran.
    go = await raw(api, "PUT", files(sandbox_id), params={"path": "go"}, content=b"")
    assert go.status_code == 200
    messages = [json.loads(line) async for _, line in lines if line]
    *chunks, result = messages
    stdout = "".join(c["data"] for c in [json.loads(first), *chunks] if c["type"] == "stdout")
    stderr = "".join(c["data"] for c in chunks if c["type"] == "stderr")
    assert stdout == "one\né", "a character split between chunks arrives whole"
    assert stderr == "\ufffd", "a lone continuation byte is not a character"
    assert result["type"] == "result" and result["returncode"] == 0
    assert (result["stdout"], result["encoding"]) == ("one\né", "utf-8")
    [*_, recorded] = [e for e in await events(api, sandbox_id) if e["type"] == "exec"]
    assert recorded["data"]["returncode"] == 0


async def test_a_streamed_command_in_base64_and_an_error_after_the_stream_began(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    body = {"command": ["sh", "-c", r"printf '\377'"], "encoding": "base64"}
    response = await raw(api, "POST", f"{URL}/{sandbox_id}/exec?stream=true", json=body)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    chunk, result = [json.loads(line) for line in response.text.splitlines()]
    assert chunk == {"type": "stdout", "data": "/w==", "encoding": "base64"}
    assert result["stdout"] == "/w==" and result["encoding"] == "base64"
    api.engine.end_sandbox(sandbox_id, EndReason.IDLE)  # storage does not know yet
    response = await raw(api, "POST", f"{URL}/{sandbox_id}/exec?stream=true", json=body)
    assert response.status_code == 200
    [error] = [json.loads(line) for line in response.text.splitlines()]
    assert error["type"] == "error" and error["error"]["code"] == "sandbox_ended"
    assert "idle" in error["error"]["message"]
    stored = (await raw(api, "GET", f"{URL}/{sandbox_id}")).json()
    assert (stored["state"], stored["end_reason"]) == ("ended", "idle")


# -- files ---------------------------------------------------------------------------------


async def test_files_round_trip_binary_safe(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    data = bytes(range(256)) * 64
    written = await raw(api, "PUT", files(sandbox_id), params={"path": "d/e/f.bin"}, content=data)
    assert written.status_code == 200
    assert written.json()["size"] == len(data) and written.json()["path"].endswith("d/e/f.bin")
    read = await raw(api, "GET", files(sandbox_id), params={"path": "d/e/f.bin"})
    assert read.headers["content-type"] == "application/octet-stream"
    assert read.content == data
    seen = await run(api, sandbox_id, "sha256sum", "d/e/f.bin")
    assert seen["stdout"].startswith(__import__("hashlib").sha256(data).hexdigest())
    empty = await raw(api, "PUT", files(sandbox_id), params={"path": "empty"}, content=b"")
    assert empty.json()["size"] == 0
    assert (await raw(api, "GET", files(sandbox_id), params={"path": "empty"})).content == b""


async def test_file_errors_are_distinct(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    await raw(api, "PUT", files(sandbox_id), params={"path": "dir/f"}, content=b"0123456789")
    await raw(api, "PUT", files(sandbox_id), params={"path": "locked"}, content=b"secret")
    await run(api, sandbox_id, "chmod", "000", "locked")

    async def read(path: str, **params: Any) -> httpx.Response:
        return await raw(api, "GET", files(sandbox_id), params={"path": path, **params})

    assert "nope" in assert_error(await read("nope"), 404, "file_not_found")
    assert_error(await read("dir"), 409, "is_a_directory")
    assert_error(await read("locked"), 403, "permission_denied")
    assert "limit of 5" in assert_error(await read("dir/f", max_bytes=5), 413, "file_too_large")
    assert (await read("dir/f", max_bytes=10)).content == b"0123456789"
    assert_error(await read("dir/f", user="root"), 422, "user_unsupported")
    assert_error(await read("dir/f", max_bytes=-1), 422, "validation_error")
    assert_error(await read(""), 422, "validation_error")
    assert_error(await read("a\x00b"), 422, "validation_error")
    into_dir = await raw(api, "PUT", files(sandbox_id), params={"path": "dir"}, content=b"x")
    assert_error(into_dir, 409, "is_a_directory")
    locked = await raw(api, "PUT", files(sandbox_id), params={"path": "locked"}, content=b"x")
    assert_error(locked, 403, "permission_denied")
    no_path = await raw(api, "PUT", files(sandbox_id), content=b"x")
    assert_error(no_path, 422, "validation_error")
    recorded = [e["data"] for e in await events(api, sandbox_id) if e["type"] == "read_file"]
    assert {"path": "nope", "error": "file_not_found"} in recorded
    assert {"path": "locked", "error": "permission_denied"} in recorded


async def test_a_file_of_100_mib_goes_in_and_out(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    data = bytes(range(256)) * (100 * MIB // 256) + b"end"
    assert len(data) > api.settings.api.max_body_bytes
    written = await raw(api, "PUT", files(sandbox_id), params={"path": "big"}, content=data)
    assert written.status_code == 200 and written.json()["size"] == len(data)
    assert (await raw(api, "GET", files(sandbox_id), params={"path": "big"})).content == data


@pytest.mark.parametrize(
    "api",
    [{"api": {"max_body_bytes": 64 * 1024}, "execution": {"sandboxes": {"max_file_bytes": MIB}}}],
    indirect=True,
)
async def test_bodies_over_the_sandbox_routes_caps_get_413_and_other_routes_keep_theirs(
    api: Api,
) -> None:
    sandbox_id = (await create(api))["id"]
    fits = await raw(api, "PUT", files(sandbox_id), params={"path": "f"}, content=b"x" * MIB)
    assert fits.status_code == 200
    over = await raw(api, "PUT", files(sandbox_id), params={"path": "f"}, content=b"x" * (MIB + 1))
    assert_error(over, 413, "payload_too_large")
    stdin = base64.b64encode(b"x" * MIB).decode()
    counted = await run(api, sandbox_id, "wc", "-c", input_base64=stdin)
    assert counted["stdout"].strip() == str(MIB)
    huge = {"command": ["wc", "-c"], "input_base64": "A" * (4 * MIB)}
    response = await raw(api, "POST", f"{URL}/{sandbox_id}/exec", json=huge)
    assert_error(response, 413, "payload_too_large")
    too_much = {
        "command": ["wc", "-c"],
        "input_base64": base64.b64encode(b"x" * (MIB + 3)).decode(),
    }
    response = await raw(api, "POST", f"{URL}/{sandbox_id}/exec", json=too_much)
    assert "input" in assert_error(response, 422, "invalid_request")
    evaluation = await raw(api, "POST", "/api/v1/evaluations", json={"code": "#" * 100_000})
    assert_error(evaluation, 413, "payload_too_large")
    create_big = await raw(api, "POST", URL, json={"labels": {"k": "v" * 100_000}})
    assert_error(create_big, 413, "payload_too_large")


# -- events --------------------------------------------------------------------------------


async def test_every_operation_is_recorded_as_an_event(api: Api) -> None:
    sandbox_id = (await create(api, memory_mb=256))["id"]
    await run(api, sandbox_id, "sh", "-c", "echo out; echo error >&2; exit 2", input="in")
    await run(api, sandbox_id, "echo", "x" * 5000)
    await raw(api, "PUT", files(sandbox_id), params={"path": "f"}, content=b"12345")
    await raw(api, "GET", files(sandbox_id), params={"path": "f"})
    await raw(api, "DELETE", f"{URL}/{sandbox_id}")
    recorded = await events(api, sandbox_id)
    assert [e["type"] for e in recorded] == [
        "created",
        "exec",
        "exec",
        "write_file",
        "read_file",
        "ended",
    ]
    assert [e["seq"] for e in recorded] == sorted(e["seq"] for e in recorded)
    assert all(e["sandbox_id"] == sandbox_id for e in recorded)
    created, ran, long, wrote, read, ended = (e["data"] for e in recorded)
    assert created["limits"]["memory_mb"] == 256
    assert ran["command"] == ["sh", "-c", "echo out; echo error >&2; exit 2"]
    assert not ran["command_truncated"]
    assert (ran["returncode"], ran["stdout_bytes"], ran["stderr_bytes"]) == (2, 4, 6)
    assert (ran["input_bytes"], ran["timed_out"], ran["exec_failure"]) == (2, False, None)
    assert ran["cwd"] is None and ran["user"] is None and ran["duration_seconds"] >= 0
    assert long["command_truncated"] and len("".join(long["command"])) == 4096
    assert wrote["path"] == "f" and wrote["size"] == 5 and wrote["duration_seconds"] >= 0
    assert read["size"] == 5
    assert ended == {"reason": "deleted"}
    page = await events(api, sandbox_id, after=recorded[1]["seq"], limit=2)
    assert [e["type"] for e in page] == ["exec", "write_file"]
    assert_error(
        await raw(api, "GET", f"{URL}/{sandbox_id}/events?after=-1"), 422, "validation_error"
    )


async def test_following_the_events_ends_after_the_sandbox_does(api: Api) -> None:
    sandbox_id = (await create(api))["id"]
    lines = lines_of(api.app, "GET", f"{URL}/{sandbox_id}/events?follow=true")
    seen: list[dict[str, Any]] = []

    async def follow() -> None:
        async for status, line in lines:
            assert status == 200
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
                if len(seen) == 1:
                    ready.set()

    ready = asyncio.Event()
    following = asyncio.create_task(follow())
    await asyncio.wait_for(ready.wait(), 10)
    await run(api, sandbox_id, "true")
    await raw(api, "DELETE", f"{URL}/{sandbox_id}")
    await asyncio.wait_for(following, 10)
    assert [e["type"] for e in seen] == ["created", "exec", "ended"]
    resumed = lines_of(
        api.app, "GET", f"{URL}/{sandbox_id}/events?follow=true&after={seen[1]['seq']}"
    )
    data = [json.loads(line[6:]) async for _, line in resumed if line.startswith("data: ")]
    assert [e["type"] for e in data] == ["ended"], "an ended sandbox's stream ends at once"


async def test_a_follower_learns_of_an_end_the_engine_alone_saw(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandboxes_routes, "_KEEPALIVE_SECONDS", 0.05)
    sandbox_id = (await create(api))["id"]
    lines = lines_of(api.app, "GET", f"{URL}/{sandbox_id}/events?follow=true")
    status, first = await anext(lines)  # the stream has begun
    assert status == 200 and first.startswith("id: ")
    api.engine.end_sandbox(sandbox_id, EndReason.LIFETIME)
    data = [json.loads(line[6:]) async for _, line in lines if line.startswith("data: ")]
    assert [e["type"] for e in data] == ["created", "ended"]
    assert data[-1]["data"] == {"reason": "lifetime"}


# -- ownership, quota, reconciliation ------------------------------------------------------


async def test_another_keys_sandbox_is_not_found(api: Api) -> None:
    _, mine = await api.platform.storage.create_api_key("mine")
    _, theirs = await api.platform.storage.create_api_key("theirs")
    sandbox_id = (await create(api, key=mine))["id"]
    for method, what in MISSING.values():
        body = {"command": ["true"]} if what == "/exec" else None
        response = await raw(
            api, method, f"{URL}/{sandbox_id}{what}", json=body, headers=auth(theirs)
        )
        assert_error(response, 404, "sandbox_not_found")
    assert (await raw(api, "GET", URL, headers=auth(theirs))).json()["items"] == []
    own = (await raw(api, "GET", URL, headers=auth(mine))).json()["items"]
    assert [s["id"] for s in own] == [sandbox_id]
    assert_error(await raw(api, "GET", URL), 401, "unauthorized")
    assert api.engine.live[sandbox_id].info.state == "running", "their delete did nothing"


@pytest.mark.parametrize("api", [{"api": {"max_sandboxes_per_key": 2}}], indirect=True)
async def test_each_key_may_hold_only_so_many_sandboxes(api: Api) -> None:
    _, mine = await api.platform.storage.create_api_key("mine")
    _, theirs = await api.platform.storage.create_api_key("theirs")
    first = await create(api, key=mine)
    await create(api, key=mine)
    full = await raw(api, "POST", URL, json={}, headers=auth(mine))
    assert "delete one" in assert_error(full, 429, "sandbox_quota")
    await create(api, key=theirs)  # another key's count is its own
    await raw(api, "DELETE", f"{URL}/{first['id']}", headers=auth(mine))
    await create(api, key=mine)
    assert len(api.engine.live) == 4


@pytest.mark.parametrize("api", [{"api": {"max_sandboxes_per_key": 2}}], indirect=True)
async def test_sandboxes_the_engine_lost_or_ended_are_ended_in_storage(api: Api) -> None:
    lost = await create(api)
    idle = await create(api)
    assert_error(await raw(api, "POST", URL, json={}), 429, "sandbox_quota")
    api.engine.lose_sandbox(lost["id"])  # a restarted engine knows nothing of it
    api.engine.end_sandbox(idle["id"], EndReason.IDLE)
    replacement = await create(api)  # both were counted, then found ended
    assert replacement["state"] == "running"
    gone = (await raw(api, "GET", f"{URL}/{lost['id']}")).json()
    assert (gone["state"], gone["end_reason"], gone["id"]) == ("ended", "lost", lost["id"])
    ended = (await raw(api, "GET", f"{URL}/{idle['id']}")).json()
    assert (ended["state"], ended["end_reason"]) == ("ended", "idle")
    assert (await events(api, lost["id"]))[-1]["data"] == {"reason": "lost"}
    assert (await events(api, idle["id"]))[-1]["data"] == {"reason": "idle"}
    response = await raw(api, "POST", f"{URL}/{lost['id']}/exec", json={"command": ["true"]})
    assert "lost" in assert_error(response, 409, "sandbox_ended")
    deleted = await raw(api, "DELETE", f"{URL}/{lost['id']}")
    assert deleted.json()["end_reason"] == "lost", "an ended sandbox is returned as it ended"


async def test_a_sandbox_the_engine_lost_is_ended_when_read_or_used(api: Api) -> None:
    read = await create(api)
    used = await create(api)
    listed = await create(api)
    for sandbox in (read, used, listed):
        api.engine.lose_sandbox(sandbox["id"])
    assert (await raw(api, "GET", f"{URL}/{read['id']}")).json()["end_reason"] == "lost"
    response = await raw(api, "POST", f"{URL}/{used['id']}/exec", json={"command": ["true"]})
    assert "lost" in assert_error(response, 409, "sandbox_ended")
    items = (await raw(api, "GET", URL)).json()["items"]
    assert {s["state"] for s in items} == {"ended"}
    assert [e["type"] for e in await events(api, used["id"])] == ["created", "ended"]
