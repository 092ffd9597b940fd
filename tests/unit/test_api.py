"""The REST API in-process (``httpx.ASGITransport``) on a platform with the fake engine and
SQLite: validation and the one error shape, 404/405/413, authentication, ``?wait=``,
idempotency, batches, listing errors, the queue's bound and the stream of state changes.
What depends on the real engine or on the database runs in ``tests/integration/test_api.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from assay.app import Platform, create_app
from assay.client import AsyncAssayClient
from assay.config import Settings
from assay.errors import (
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
)
from tests.fakes import FakeEngine
from tests.sandbox import platform_settings

BASE_URL = "http://assay.test"
SLOW = "import time\nprint('started', flush=True)\ntime.sleep(25)"
JSON = {"content-type": "application/json"}


@dataclass
class Api:
    """The application, its platform and fake engine, and clients talking to it in-process."""

    app: Any
    platform: Platform
    engine: FakeEngine
    settings: Settings
    http: httpx.AsyncClient

    def client(self, api_key: str | None = None) -> AsyncAssayClient:
        return AsyncAssayClient(
            BASE_URL, api_key=api_key, transport=httpx.ASGITransport(app=self.app)
        )


@pytest.fixture
async def api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Api]:
    """``create_app`` on the fake engine, its lifespan run here; settings overridable with
    ``@pytest.mark.parametrize("api", [{"queue": {...}}], indirect=True)``. API keys are
    re-read at every request (``api.key_cache_seconds=0``) unless overridden."""
    overrides: dict[str, Any] = dict(getattr(request, "param", {}))
    overrides["api"] = {"key_cache_seconds": 0, **overrides.get("api", {})}
    settings = platform_settings(tmp_path / "data", **overrides)
    engine = FakeEngine(settings.execution)
    platform = Platform(settings, engine=engine)
    app = create_app(settings, platform=platform)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL, timeout=30
        ) as http,
    ):
        yield Api(app, platform, engine, settings, http)
    assert engine.leftover_processes() == [], "a program's process was left behind"


async def raw(api: Api, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return await api.http.request(method, path, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return str(body["error"]["message"])


async def until_running(api: Api, evaluation_id: str) -> None:
    deadline = time.monotonic() + 10
    async with api.client() as client:
        while (await client.get(evaluation_id)).status != "running":
            assert time.monotonic() < deadline, "it never started"
            await asyncio.sleep(0.01)


URL = "/api/v1/evaluations"
#: Bodies of a submission, each refused with 422 and this code.
BAD_BODIES: dict[str, tuple[object, str]] = {
    "unknown-field": ({"code": "x", "colour": "red"}, "validation_error"),
    "no-code": ({"stdin": "no code"}, "validation_error"),
    "negative-memory": ({"code": "x", "memory_mb": -1}, "invalid_request"),
    "timeout-over-max": ({"code": "x", "timeout_seconds": 10**9}, "invalid_request"),
    "unknown-language": ({"code": "x", "language": "cobol"}, "invalid_request"),
    "language-not-a-string": ({"code": "x", "language": 3}, "validation_error"),
    "options-for-python": ({"code": "x", "compiler_options": ["-O2"]}, "invalid_request"),
    "option-not-a-string": (
        {"code": "x", "language": "c", "compiler_options": [1]},
        "validation_error",
    ),
    "arg-with-nul": ({"code": "x", "args": ["a\u0000b"]}, "validation_error"),
    "too-many-args": ({"code": "x", "args": ["a"] * 257}, "invalid_request"),
    "compile-limit-for-python": ({"code": "x", "compile_timeout_seconds": 5}, "invalid_request"),
    "compile-timeout-over-max": (
        {"code": "x", "language": "c", "compile_timeout_seconds": 10**6},
        "invalid_request",
    ),
    "file-outside": ({"code": "x", "files": {"../etc/passwd": "x"}}, "invalid_request"),
    "code-too-big": ({"code": "#" * (1024 * 1024 + 1)}, "invalid_request"),
    "priority-over-max": ({"code": "x", "priority": 99}, "validation_error"),
    "not-an-object": (["not", "an", "object"], "validation_error"),
}


@pytest.mark.parametrize(("body", "code"), BAD_BODIES.values(), ids=BAD_BODIES)
async def test_a_bad_submission_gets_422_in_the_one_error_shape(
    api: Api, body: object, code: str
) -> None:
    assert_error(await raw(api, "POST", URL, json=body), 422, code)


async def test_a_body_that_is_not_json_gets_422(api: Api) -> None:
    response = await raw(api, "POST", URL, content=b'{"code": ', headers=JSON)
    assert_error(response, 422, "validation_error")


WRONG_ROUTES = {
    "method": ("PUT", URL, 405, "method_not_allowed"),
    "path": ("GET", "/api/v1/nothing-here", 404, "not_found"),
}


@pytest.mark.parametrize(
    ("method", "path", "status", "code"), WRONG_ROUTES.values(), ids=WRONG_ROUTES
)
async def test_no_such_route_gets_the_one_error_shape(
    api: Api, method: str, path: str, status: int, code: str
) -> None:
    body = {"code": "x"} if method != "GET" else None
    assert_error(await raw(api, method, path, json=body), status, code)


async def test_a_body_over_the_size_cap_gets_413(api: Api) -> None:
    huge = await raw(api, "POST", URL, content=b"x" * (api.settings.api.max_body_bytes + 1))
    assert_error(huge, 413, "payload_too_large")


async def test_the_client_raises_what_the_api_answered(api: Api) -> None:
    async with api.client() as client:
        with pytest.raises(InvalidRequestError, match="memory_mb"):
            await client.submit("x", memory_mb=-1)
        with pytest.raises(NotFoundError):
            await client.get("no-such-id")


MISSING = {
    "get": ("GET", "/api/v1/evaluations/nope"),
    "cancel": ("POST", "/api/v1/evaluations/nope/cancel"),
    "events": ("GET", "/api/v1/evaluations/nope/events"),
}


@pytest.mark.parametrize(("method", "path"), MISSING.values(), ids=MISSING)
async def test_an_evaluation_that_does_not_exist_is_404(api: Api, method: str, path: str) -> None:
    assert_error(await raw(api, method, path), 404, "not_found")


#: Bodies the stdlib json module reads, or that are not JSON at all, and where each is wrong.
NOT_UNICODE_OR_NOT_FINITE = [
    (b'{"code": "\\ud800"}', "body.code: a string holds a lone surrogate (\\ud800"),
    (b'{"code": "print(1)", "stdin": "ok \\udfff"}', "body.stdin: a string holds a lone"),
    (b'{"code": "print(1)", "files": {"a.txt": "\\ud800"}}', "body.files.a.txt: a string"),
    (b'{"code": "print(1)", "files": {"\\ud800": "x"}}', "body.files: a key holds a lone"),
    (b'{"code": "print(1)", "labels": {"k": "\\udbff"}}', "body.labels.k: a string holds"),
    (b'{"code": "print(1)", "timeout_seconds": NaN}', "body.timeout_seconds: NaN is not"),
    (b'{"code": "print(1)", "cpus": -Infinity}', "body.cpus: -Infinity is not"),
    (b'{"code": "print(1)", "timeout_seconds": 1e400}', "body.timeout_seconds: number out"),
    (b'{"code": "print(1)", "memory_mb": 1' + b"0" * 400 + b"}", "body.memory_mb: integer"),
    (b'{"code": "print(1)", "priority": ' + b"9" * 5000 + b"}", "body.priority: integer"),
    (b'{"code": "print(1)", "files": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested deeper"),
    (b'{"code": "print(\'\xed\xa0\x80\')"}', "body: not UTF-8"),  # an encoded surrogate
    (b'{"code": "print(1)\xff"}', "body: not UTF-8"),
    (b'{"code": "print(1)\\u0000"}', "body.code: holds NUL (\\u0000, at character 8)"),
    (b'{"code": "print(1)", "stdin": "a\\u0000"}', "body.stdin: holds NUL"),
    (b'{"code": "print(1)", "labels": {"k": "\\u0000"}}', "body.labels.k: holds NUL"),
]


@pytest.mark.parametrize(
    ("body", "where"), NOT_UNICODE_OR_NOT_FINITE, ids=[w for _, w in NOT_UNICODE_OR_NOT_FINITE]
)
async def test_bodies_that_are_not_unicode_text_or_finite_numbers_get_422(
    api: Api, body: bytes, where: str
) -> None:
    response = await raw(api, "POST", URL, content=body, headers=JSON)
    assert where in assert_error(response, 422, "validation_error"), body[:80]
    async with api.client() as client:
        assert (await client.list()).items == [], "nothing was stored"
        done = await client.submit("print('still serving')", wait=30)
    assert done.stdout == "still serving\n"


BAD_ITEMS = [
    (b'"code": "\\ud800"', "body.evaluations.1.code: a string holds a lone surrogate"),
    (b'"code": "x", "timeout_seconds": NaN', "body.evaluations.1.timeout_seconds: NaN"),
    (b'"code": "x", "stdin": "\\u0000"', "body.evaluations.1.stdin: holds NUL"),
]


@pytest.mark.parametrize(("bad", "where"), BAD_ITEMS, ids=[w for _, w in BAD_ITEMS])
async def test_a_batch_with_one_bad_item_stores_none_of_it(
    api: Api, bad: bytes, where: str
) -> None:
    good = b'{"code": "print(1)", "labels": {"batch": "b"}}'
    body = b'{"evaluations": [' + good + b", {" + bad + b', "labels": {"batch": "b"}}]}'
    response = await raw(api, "POST", "/api/v1/evaluations/batch", content=body, headers=JSON)
    assert where in assert_error(response, 422, "validation_error")
    async with api.client() as client:
        assert (await client.list(labels={"batch": "b"})).items == [], "a refused batch stores none"


NUL_OR_TOO_BIG = {
    "path": (
        "/api/v1/evaluations/%00",
        {},
        "path.evaluation_id: holds NUL",
    ),
    "label": ("/api/v1/evaluations?label=k:%00", {}, "query.label.0: holds NUL"),
    "last-event-id": (
        "/api/v1/evaluations/x/events",
        {"Last-Event-ID": "9" * 30},
        "header.Last-Event-ID",
    ),
}


@pytest.mark.parametrize(("path", "headers", "where"), NUL_OR_TOO_BIG.values(), ids=NUL_OR_TOO_BIG)
async def test_nul_in_paths_and_queries_and_ids_beyond_bigint_get_422(
    api: Api, path: str, headers: dict[str, str], where: str
) -> None:
    response = await raw(api, "GET", path, headers=headers)
    assert where in assert_error(response, 422, "validation_error")


LIST_ERRORS = {
    "cursor": ("cursor=bm9wZQ", 400, "invalid_cursor"),
    "label": ("label=nocolon", 422, "invalid_request"),
    "status": ("status=sleeping", 422, "validation_error"),
}


@pytest.mark.parametrize(("query", "status", "code"), LIST_ERRORS.values(), ids=LIST_ERRORS)
async def test_listing_refuses_a_bad_cursor_label_or_status(
    api: Api, query: str, status: int, code: str
) -> None:
    assert_error(await raw(api, "GET", f"/api/v1/evaluations?{query}"), status, code)


async def test_idempotency_key_deduplicates_retries(api: Api) -> None:
    body = {"code": "print('once')"}
    headers = {"Idempotency-Key": "retry-123"}
    first = await raw(api, "POST", URL, json=body, headers=headers)
    second = await raw(api, "POST", URL, json=body, headers=headers)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == second.json()["id"]
    conflict = await raw(api, "POST", URL, json={"code": "print('other')"}, headers=headers)
    assert "retry-123" in assert_error(conflict, 409, "idempotency_conflict")
    async with api.client() as client:
        with pytest.raises(IdempotencyConflictError):
            await client.submit("print('again other')", idempotency_key="retry-123")
        page = await client.list(limit=100)
    assert [e.id for e in page.items].count(first.json()["id"]) == 1


async def test_submit_with_wait_answers_202_while_it_runs_and_200_once_it_ended(
    api: Api,
) -> None:
    still = await raw(api, "POST", f"{URL}?wait=0.2", json={"code": SLOW})
    assert still.status_code == 202 and still.json()["status"] in {"queued", "running"}
    done = await raw(api, "POST", f"{URL}?wait=30", json={"code": "print('quick')"})
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["stdout"]) == ("completed", "quick\n")
    async with api.client() as client:
        await client.cancel(still.json()["id"])


async def test_get_with_wait_answers_when_it_ends(api: Api) -> None:
    async with api.client() as client:
        queued = await client.submit("import time\ntime.sleep(1)\nprint('late')")
        began = time.monotonic()
        done = await client.get(queued.id, wait=30)
    assert done.status == "completed" and done.stdout == "late\n"
    assert time.monotonic() - began < 15


@pytest.mark.parametrize("api", [{"api": {"max_wait_seconds": 1.0}}], indirect=True)
async def test_a_small_wait_cap_returns_early(api: Api) -> None:
    async with api.client() as client:
        running = await client.submit(SLOW)
        began = time.monotonic()
        same = await client.get(running.id, wait=20)
        assert time.monotonic() - began < 3
        assert same.status in {"queued", "running"}
        await client.cancel(running.id)


async def test_batch_submits_all_or_none(api: Api) -> None:
    async with api.client() as client:
        created = await client.submit_batch(
            [{"code": f"print({i})", "labels": {"batch": "b1"}} for i in range(3)]
        )
        assert len({e.id for e in created}) == 3
        results = [await client.wait(e.id, timeout=60) for e in created]
        assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]
        bad = await raw(
            api,
            "POST",
            "/api/v1/evaluations/batch",
            json={
                "evaluations": [
                    {"code": "print(1)", "labels": {"batch": "b2"}},
                    {"code": "print(2)", "timeout_seconds": 10**6},
                ]
            },
        )
        assert "evaluations[1]" in assert_error(bad, 422, "invalid_request")
        page = await client.list(labels={"batch": "b2"})
        assert page.items == [], "a refused batch stores nothing"


async def test_isolation_is_checked(api: Api) -> None:
    body = {"evaluations": [{"code": "print(1)"}], "isolation": "shared"}
    response = await raw(api, "POST", "/api/v1/evaluations/batch", json=body)
    assert "isolation" in assert_error(response, 422, "validation_error")
    default = await raw(
        api, "POST", "/api/v1/evaluations/batch", json={**body, "isolation": "evaluation"}
    )
    assert default.status_code == 202 and default.json()["isolation"] == "evaluation"


@pytest.mark.parametrize("api", [{"api": {"max_batch_size": 2}}], indirect=True)
async def test_batch_size_is_capped(api: Api) -> None:
    response = await raw(
        api, "POST", "/api/v1/evaluations/batch", json={"evaluations": [{"code": "print(1)"}] * 3}
    )
    assert "limit is 2" in assert_error(response, 422, "invalid_request")
    empty = await raw(api, "POST", "/api/v1/evaluations/batch", json={"evaluations": []})
    assert_error(empty, 422, "validation_error")


@pytest.mark.parametrize(
    "api",
    [{"queue": {"concurrency": 1, "max_queued": 2, "retry_after_seconds": 7}}],
    indirect=True,
)
async def test_a_full_queue_answers_429_with_retry_after(api: Api) -> None:
    async with api.client() as client:
        running = await client.submit(SLOW)
        await until_running(api, running.id)
        waiting = [await client.submit(SLOW) for _ in range(2)]
        response = await raw(api, "POST", URL, json={"code": "print(1)"})
        assert_error(response, 429, "queue_full")
        assert response.headers["Retry-After"] == "7"
        with pytest.raises(QueueFullError) as caught:
            await client.submit("print(1)")
        assert caught.value.retry_after == 7
        for evaluation in [running, *waiting]:
            await client.cancel(evaluation.id)


async def test_api_keys_protect_the_api_once_one_exists(api: Api) -> None:
    key, secret = await api.platform.storage.create_api_key("tests")
    open_ = await raw(api, "GET", "/api/v1/queue")
    assert_error(open_, 401, "unauthorized")
    assert open_.headers["WWW-Authenticate"] == "Bearer"
    wrong = await raw(api, "GET", "/api/v1/queue", headers={"Authorization": "Bearer ak_wrong"})
    assert_error(wrong, 401, "unauthorized")
    assert_error(await raw(api, "GET", "/metrics"), 401, "unauthorized")
    assert (await raw(api, "GET", "/healthz")).status_code == 200
    async with api.client(api_key=secret) as client:
        done = await client.submit("print('authorised')", wait=30)
        assert done.stdout == "authorised\n"
    _, other = await api.platform.storage.create_api_key("still active")
    await api.platform.storage.revoke_api_key(key.id)
    revoked = await raw(api, "GET", "/api/v1/queue", headers={"Authorization": f"Bearer {secret}"})
    assert_error(revoked, 401, "unauthorized")
    kept = await raw(api, "GET", "/api/v1/queue", headers={"Authorization": f"Bearer {other}"})
    assert kept.status_code == 200


async def test_revoking_every_key_never_opens_the_api_again(api: Api) -> None:
    """A server that needed keys may listen beyond loopback: with every key revoked it
    refuses everyone (until it restarts, when the loopback rule is checked again)."""
    key, secret = await api.platform.storage.create_api_key("the only one")
    assert_error(await raw(api, "GET", "/api/v1/queue"), 401, "unauthorized")
    await api.platform.storage.revoke_api_key(key.id)
    assert not await api.platform.storage.has_active_api_keys()
    assert_error(await raw(api, "GET", "/api/v1/queue"), 401, "unauthorized")
    revoked = await raw(api, "GET", "/api/v1/queue", headers={"Authorization": f"Bearer {secret}"})
    assert "assay keys create" in assert_error(revoked, 401, "unauthorized")


@pytest.mark.parametrize("api", [{"api": {"key_cache_seconds": 300}}], indirect=True)
async def test_whether_keys_exist_is_read_again_only_after_the_cache_time(api: Api) -> None:
    assert (await raw(api, "GET", "/api/v1/queue")).status_code == 200
    await api.platform.storage.create_api_key("made by the CLI, in another process")
    assert (await raw(api, "GET", "/api/v1/queue")).status_code == 200, "still cached as open"


async def test_readiness_follows_the_engine(api: Api) -> None:
    ready = await raw(api, "GET", "/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["engine"]["ok"] is True
    api.engine.healthy = False
    unready = await raw(api, "GET", "/readyz")
    assert unready.status_code == 503
    assert unready.json()["status"] == "not_ready"
    assert unready.json()["checks"]["engine"]["ok"] is False
    assert unready.json()["checks"]["storage"]["ok"] is True


async def stream_lines(app: Any, path: str) -> AsyncIterator[tuple[dict[str, Any], str]]:
    """GET ``path`` on ``app`` in-process, yielding (response start, line) as each line is
    sent; the client disconnects when the caller stops. (httpx's ASGITransport answers only
    once the response has ended, and this one never ends.)"""
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    disconnect = asyncio.Event()
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await sent.put(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"assay.test")],
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
                yield start, line
            if not message.get("more_body", False):
                return
    finally:
        disconnect.set()
        await asyncio.wait_for(task, 10)


async def test_the_all_evaluations_stream_announces_state_changes(api: Api) -> None:
    seen: list[tuple[str, str]] = []
    lines = stream_lines(api.app, "/api/v1/events")
    start, first = await anext(lines)
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert headers["content-type"].startswith("text/event-stream")
    assert first == ": connected"
    async with api.client() as client:
        evaluation = await client.submit("print('watched')")
    async for _, line in lines:
        if line.startswith("data:"):
            data = json.loads(line[5:])
            seen.append((data["evaluation_id"], data["type"]))
            if data["type"] == "finished":
                break
    await lines.aclose()
    assert [t for i, t in seen if i == evaluation.id] == ["queued", "started", "finished"]
