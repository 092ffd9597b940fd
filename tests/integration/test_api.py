"""Every endpoint of the REST API and its error paths, on a live server with the real engine."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from assay.client import AsyncAssayClient
from assay.errors import (
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
    QueueFullError,
)
from tests.conftest import RunningServer, container_exists
from tests.sandbox import PRINT_CONTAINER_ID, sandbox_processes

pytestmark = [pytest.mark.docker, pytest.mark.integration]


@pytest.fixture(params=["local", "remote"], autouse=True)
def execution_mode(request: pytest.FixtureRequest) -> str:
    """Every API test runs on the monolith and with the engine behind an executor service."""
    return str(request.param)


@pytest.fixture(params=["sqlite", "postgresql"], autouse=True)
def storage_backend(request: pytest.FixtureRequest) -> str:
    """Every API test runs on SQLite and on PostgreSQL."""
    return str(request.param)


SLOW = "import time\nprint('started', flush=True)\ntime.sleep(25)"


def long_timeouts() -> dict[str, object]:
    return {"execution": {"default_timeout_seconds": 30.0}}


async def raw(server: RunningServer, method: str, path: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.request(method, path, **kwargs)  # type: ignore[arg-type]


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return str(body["error"]["message"])


async def test_submit_then_wait_for_the_verdict(server: RunningServer) -> None:
    response = await raw(
        server,
        "POST",
        "/api/v1/evaluations",
        json={"code": "import sys\nprint(sys.stdin.read())", "stdin": "hi"},
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["request"]["stdin"] == "hi"
    async with server.client() as client:
        done = await client.wait(body["id"], timeout=30)
    assert done.status == "completed"
    assert done.stdout == "hi\n"
    assert done.exit_code == 0
    assert done.attempts == 1
    assert done.executor == server.settings.execution.engine_id
    assert done.started_at is not None and done.finished_at is not None
    assert done.created_at <= done.started_at <= done.finished_at


async def test_submit_with_wait_returns_the_finished_evaluation(server: RunningServer) -> None:
    response = await raw(
        server,
        "POST",
        "/api/v1/evaluations?wait=30",
        json={
            "code": "import sys\nprint('oops', file=sys.stderr)\nsys.exit(3)",
            "labels": {"k": "v"},
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "failed"
    assert body["exit_code"] == 3
    assert body["stderr"] == "oops\n"
    assert body["labels"] == {"k": "v"}
    assert body["duration_seconds"] > 0 and body["peak_memory_bytes"] > 0


async def test_verdicts_reach_the_api(server: RunningServer) -> None:
    async with server.client() as client:
        timeout = await client.submit("while True:\n    pass", timeout_seconds=1, wait=30)
        oom = await client.submit("x = b'x' * 10**9", memory_mb=64, wait=30)
        flood = await client.submit(
            "while True:\n    print('x' * 100)", output_limit_bytes=1000, wait=30
        )
    assert (timeout.status, timeout.signal) == ("timeout", 9)
    assert oom.status == "oom"
    assert flood.status == "output_limit"
    assert flood.stdout is not None and len(flood.stdout) == 1000 and flood.stdout_truncated


async def test_get_with_wait_answers_when_it_ends(server: RunningServer) -> None:
    async with server.client() as client:
        queued = await client.submit("import time\ntime.sleep(1)\nprint('late')")
        began = time.monotonic()
        done = await client.get(queued.id, wait=30)
    assert done.status == "completed" and done.stdout == "late\n"
    assert time.monotonic() - began < 15


@pytest.mark.parametrize("server", [{"api": {"max_wait_seconds": 1.0}}], indirect=True)
async def test_a_small_wait_cap_returns_early(server: RunningServer) -> None:
    async with server.client() as client:
        running = await client.submit(SLOW)
        began = time.monotonic()
        same = await client.get(running.id, wait=20)
        assert time.monotonic() - began < 3
        assert same.status in {"queued", "running"}
        await client.cancel(running.id)


async def test_idempotency_key_deduplicates_retries(server: RunningServer) -> None:
    body = {"code": "print('once')"}
    headers = {"Idempotency-Key": "retry-123"}
    first = await raw(server, "POST", "/api/v1/evaluations", json=body, headers=headers)
    second = await raw(server, "POST", "/api/v1/evaluations", json=body, headers=headers)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == second.json()["id"]
    conflict = await raw(
        server, "POST", "/api/v1/evaluations", json={"code": "print('other')"}, headers=headers
    )
    assert "retry-123" in assert_error(conflict, 409, "idempotency_conflict")
    async with server.client() as client:
        with pytest.raises(IdempotencyConflictError):
            await client.submit("print('again other')", idempotency_key="retry-123")
        page = await client.list(limit=100)
    assert [e.id for e in page.items].count(first.json()["id"]) == 1


async def test_batch_submits_all_or_none(server: RunningServer) -> None:
    async with server.client() as client:
        created = await client.submit_batch(
            [{"code": f"print({i})", "labels": {"batch": "b1"}} for i in range(3)]
        )
        assert len({e.id for e in created}) == 3
        results = [await client.wait(e.id, timeout=60) for e in created]
        assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]
        bad = await raw(
            server,
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


async def test_batch_isolation_shares_containers_within_a_batch_only(
    server: RunningServer,
) -> None:
    tail = {3: "import sys; sys.exit(3)", 5: "hog = []\nwhile True: hog.append(b'x' * 10**6)"}
    programs = [
        {"code": PRINT_CONTAINER_ID + tail.get(i, f"print('program {i}')"), "labels": {"i": str(i)}}
        for i in range(10)
    ]
    async with server.client() as client:
        first = await client.submit_batch(programs, isolation="batch")
        other = await client.submit_batch(programs[:4], isolation="batch")
        results = [await client.wait(e.id, timeout=60) for e in first]
        others = [await client.wait(e.id, timeout=60) for e in other]
        events = [[e.type async for e in client.events(r.id)] for r in results]
    statuses = [r.status for r in results]
    assert statuses[3] == "failed" and results[3].exit_code == 3
    assert statuses[5] == "oom"
    assert statuses.count("completed") == 8
    for i, result in enumerate(results):
        if i not in tail:
            assert result.stdout is not None and result.stdout.endswith(f"program {i}\n")
    assert len({r.batch_id for r in results}) == 1 and results[0].batch_id is not None
    assert {r.isolation for r in results} == {"batch"}
    assert all(e[0] == "queued" and "started" in e and e[-1] == "finished" for e in events)
    containers = {str(r.stdout).split()[0] for r in results}
    # One sandbox per worker (concurrency 2); an out-of-memory program does not cost one.
    assert len(containers) <= 2, containers
    assert containers.isdisjoint({str(r.stdout).split()[0] for r in others}), (
        "two batches never share a container"
    )
    metrics = (await raw(server, "GET", "/metrics")).text
    assert "assay_batch_programs_total 14.0" in metrics
    assert "assay_batch_sandboxes_open " in metrics


async def test_isolation_is_checked(server: RunningServer) -> None:
    body = {"evaluations": [{"code": "print(1)"}], "isolation": "shared"}
    response = await raw(server, "POST", "/api/v1/evaluations/batch", json=body)
    assert "isolation" in assert_error(response, 422, "validation_error")
    default = await raw(
        server, "POST", "/api/v1/evaluations/batch", json={**body, "isolation": "evaluation"}
    )
    assert default.status_code == 202 and default.json()["isolation"] == "evaluation"


@pytest.mark.parametrize("server", [{"api": {"max_batch_size": 2}}], indirect=True)
async def test_batch_size_is_capped(server: RunningServer) -> None:
    response = await raw(
        server,
        "POST",
        "/api/v1/evaluations/batch",
        json={"evaluations": [{"code": "print(1)"}] * 3},
    )
    assert "limit is 2" in assert_error(response, 422, "invalid_request")
    empty = await raw(server, "POST", "/api/v1/evaluations/batch", json={"evaluations": []})
    assert_error(empty, 422, "validation_error")


async def test_list_filters_and_paginates_newest_first(server: RunningServer) -> None:
    async with server.client() as client:
        created = await client.submit_batch(
            [
                {"code": f"print({i})", "labels": {"run": "pages", "parity": str(i % 2)}}
                for i in range(7)
            ]
        )
        for evaluation in created:
            await client.wait(evaluation.id, timeout=60)
        failing = await client.submit("raise SystemExit(1)", labels={"run": "pages"}, wait=30)
        seen: list[str] = []
        cursor = None
        while True:
            page = await client.list(labels={"run": "pages"}, limit=3, cursor=cursor)
            seen += [e.id for e in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [failing.id] + [e.id for e in reversed(created)]
        odd = await client.list(labels={"run": "pages", "parity": "1"})
        assert {e.id for e in odd.items} == {created[i].id for i in (1, 3, 5)}
        failed = await client.list(status=["failed"], labels={"run": "pages"})
        assert [e.id for e in failed.items] == [failing.id]
        assert all(e.request is None for e in odd.items), "lists leave out the request"
    bad_cursor = await raw(server, "GET", "/api/v1/evaluations?cursor=bm9wZQ")
    assert_error(bad_cursor, 400, "invalid_cursor")
    bad_label = await raw(server, "GET", "/api/v1/evaluations?label=nocolon")
    assert_error(bad_label, 422, "invalid_request")
    bad_status = await raw(server, "GET", "/api/v1/evaluations?status=sleeping")
    assert_error(bad_status, 422, "validation_error")


@pytest.mark.parametrize("server", [{"queue": {"concurrency": 1}}], indirect=True)
async def test_cancel_queued_and_running(server: RunningServer) -> None:
    async with server.client() as client:
        running = await client.submit(PRINT_CONTAINER_ID + SLOW)
        queued = await client.submit("print('never')")
        async for event in client.events(running.id):
            if event.type == "output":
                container_id = str(event.data["text"]).split()[0]
                break
        assert container_exists(container_id)
        cancelled_queued = await client.cancel(queued.id)
        assert cancelled_queued.status == "cancelled"
        assert cancelled_queued.started_at is None
        began = time.monotonic()
        cancelled_running = await client.cancel(running.id)
        assert time.monotonic() - began < 5
        assert cancelled_running.status == "cancelled"
        assert not container_exists(container_id), "removed before the cancel answered"
        assert sandbox_processes(settle_seconds=1) == []
        again = await client.cancel(running.id)
        assert again.status == "cancelled"
        done = await client.submit("print('after')", wait=30)
        assert done.status == "completed"
        assert (await client.cancel(done.id)).status == "completed", (
            "finished ones stay as they are"
        )
        events = [e.type async for e in client.events(running.id)]
    assert events[-1] == "cancelled"
    missing = await raw(server, "POST", "/api/v1/evaluations/nope/cancel")
    assert_error(missing, 404, "not_found")


async def test_sse_delivers_output_live_and_resumes(server: RunningServer) -> None:
    code = "import time\nfor i in range(4):\n    print('tick', i, flush=True)\n    time.sleep(1)"
    async with server.client() as client:
        evaluation = await client.submit(code)
        received: list[tuple[str, float, dict[str, object]]] = []
        ids: list[int] = []
        async for event in client.events(evaluation.id):
            received.append((event.type, time.monotonic(), event.data))
            ids.append(event.id)
        finished_at = received[-1][1]
        types = [t for t, _, _ in received]
        assert types[0] == "queued" and "started" in types and types[-1] == "finished"
        output = "".join(str(d["text"]) for t, _, d in received if t == "output")
        assert output == "".join(f"tick {i}\n" for i in range(4))
        first_output = next(at for t, at, _ in received if t == "output")
        assert finished_at - first_output > 2, "output must arrive while the program runs"
        assert ids == sorted(ids)
        resumed = [e.id async for e in client.events(evaluation.id, after=ids[2])]
        assert resumed == ids[3:]
    missing = await raw(server, "GET", "/api/v1/evaluations/nope/events")
    assert_error(missing, 404, "not_found")


async def test_queue_health_readiness_and_metrics(server: RunningServer) -> None:
    async with server.client() as client:
        await client.submit("print(1)", wait=30)
        queue = await client.queue()
    assert queue.capacity == 2 and queue.max_queued == server.settings.queue.max_queued
    assert queue.counts["completed"] >= 1 and queue.depth == 0
    (pool,) = queue.pool  # the test engine's one warm sandbox, in either execution mode
    assert (pool.profile, pool.target) == ("128m-1cpu", 1)
    assert pool.hits + pool.misses >= 1 and pool.created >= 1
    assert (await raw(server, "GET", "/healthz")).json() == {"status": "ok"}
    ready = await raw(server, "GET", "/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["engine"]["ok"] is True
    metrics = (await raw(server, "GET", "/metrics")).text
    for name in (
        "assay_queue_depth",
        "assay_evaluations_running",
        'assay_evaluations_total{status="completed"}',
        "assay_queue_wait_seconds_bucket",
        "assay_execution_seconds_bucket",
        "assay_end_to_end_seconds_bucket",
        "assay_engine_errors",
        'assay_pool_target{profile="128m-1cpu"} 1.0',
        'assay_pool_ready{profile="128m-1cpu"}',
        'assay_pool_hits_total{profile="128m-1cpu"}',
        'assay_pool_misses_total{profile="128m-1cpu"}',
        'assay_pool_refill_seconds{profile="128m-1cpu"}',
    ):
        assert name in metrics, name
    openapi = (await raw(server, "GET", "/openapi.json")).json()
    assert "/api/v1/evaluations/{evaluation_id}/events" in openapi["paths"]
    assert (await raw(server, "GET", "/docs")).status_code == 200


@pytest.mark.parametrize(
    "server",
    [{"queue": {"concurrency": 1, "max_queued": 2, "retry_after_seconds": 7}}],
    indirect=True,
)
async def test_a_full_queue_answers_429_with_retry_after(server: RunningServer) -> None:
    async with server.client() as client:
        running = await client.submit(SLOW)
        async for event in client.events(running.id):
            if event.type == "started":
                break
        waiting = [await client.submit(SLOW) for _ in range(2)]
        response = await raw(server, "POST", "/api/v1/evaluations", json={"code": "print(1)"})
        assert_error(response, 429, "queue_full")
        assert response.headers["Retry-After"] == "7"
        with pytest.raises(QueueFullError) as caught:
            await client.submit("print(1)")
        assert caught.value.retry_after == 7
        for evaluation in [running, *waiting]:
            await client.cancel(evaluation.id)


async def test_bad_input_gets_one_json_error_shape(server: RunningServer) -> None:
    url = "/api/v1/evaluations"
    cases = [
        (
            await raw(
                server,
                "POST",
                url,
                content=b'{"code": ',
                headers={"content-type": "application/json"},
            ),
            422,
            "validation_error",
        ),
        (
            await raw(server, "POST", url, json={"code": "x", "colour": "red"}),
            422,
            "validation_error",
        ),
        (await raw(server, "POST", url, json={"stdin": "no code"}), 422, "validation_error"),
        (
            await raw(server, "POST", url, json={"code": "x", "memory_mb": -1}),
            422,
            "invalid_request",
        ),
        (
            await raw(server, "POST", url, json={"code": "x", "timeout_seconds": 10**9}),
            422,
            "invalid_request",
        ),
        (
            await raw(server, "POST", url, json={"code": "x", "language": "cobol"}),
            422,
            "validation_error",
        ),
        (
            await raw(server, "POST", url, json={"code": "x", "files": {"../etc/passwd": "x"}}),
            422,
            "invalid_request",
        ),
        (
            await raw(server, "POST", url, json={"code": "#" * (1024 * 1024 + 1)}),
            422,
            "invalid_request",
        ),
        (
            await raw(server, "POST", url, json={"code": "x", "priority": 99}),
            422,
            "validation_error",
        ),
        (await raw(server, "POST", url, json=["not", "an", "object"]), 422, "validation_error"),
        (await raw(server, "PUT", url, json={"code": "x"}), 405, "method_not_allowed"),
        (await raw(server, "GET", "/api/v1/nothing-here"), 404, "not_found"),
    ]
    for response, status, code in cases:
        assert_error(response, status, code)
    huge = await raw(server, "POST", url, content=b"x" * (server.settings.api.max_body_bytes + 1))
    assert_error(huge, 413, "payload_too_large")
    async with server.client() as client:
        with pytest.raises(InvalidRequestError, match="memory_mb"):
            await client.submit("x", memory_mb=-1)
        with pytest.raises(NotFoundError):
            await client.get("no-such-id")


JSON = {"content-type": "application/json"}
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


async def test_bodies_that_are_not_unicode_text_or_finite_numbers_get_422(
    server: RunningServer,
) -> None:
    for body, where in NOT_UNICODE_OR_NOT_FINITE:
        response = await raw(server, "POST", "/api/v1/evaluations", content=body, headers=JSON)
        assert where in assert_error(response, 422, "validation_error"), body[:80]
    async with server.client() as client:
        assert (await client.list()).items == [], "nothing was stored"
        done = await client.submit("print('still serving')", wait=30)
    assert done.stdout == "still serving\n"


async def test_a_batch_with_one_bad_item_stores_none_of_it(server: RunningServer) -> None:
    good = b'{"code": "print(1)", "labels": {"batch": "b"}}'
    for bad, where in [
        (b'"code": "\\ud800"', "body.evaluations.1.code: a string holds a lone surrogate"),
        (b'"code": "x", "timeout_seconds": NaN', "body.evaluations.1.timeout_seconds: NaN"),
        (b'"code": "x", "stdin": "\\u0000"', "body.evaluations.1.stdin: holds NUL"),
    ]:
        body = b'{"evaluations": [' + good + b", {" + bad + b', "labels": {"batch": "b"}}]}'
        response = await raw(
            server, "POST", "/api/v1/evaluations/batch", content=body, headers=JSON
        )
        assert where in assert_error(response, 422, "validation_error")
    async with server.client() as client:
        assert (await client.list(labels={"batch": "b"})).items == [], "a refused batch stores none"


async def test_nul_is_program_input_only_where_storage_can_hold_it(server: RunningServer) -> None:
    # PostgreSQL text cannot hold NUL: code, stdin and labels refuse it (above); files are
    # stored as JSON, which can, and the sandbox protocol is length-prefixed.
    reader = "print(repr(open('data.bin').read()))"
    response = await raw(
        server,
        "POST",
        "/api/v1/evaluations?wait=30",
        json={"code": reader, "files": {"data.bin": "a\x00b"}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == "'a\\x00b'\n"
    assert response.json()["request"]["files"] == {"data.bin": "a\x00b"}
    missing = await raw(server, "GET", "/api/v1/evaluations/%00")
    assert "path.evaluation_id: holds NUL" in assert_error(missing, 422, "validation_error")
    label = await raw(server, "GET", "/api/v1/evaluations?label=k:%00")
    assert "query.label.0: holds NUL" in assert_error(label, 422, "validation_error")
    events = await raw(
        server, "GET", "/api/v1/evaluations/x/events", headers={"Last-Event-ID": "9" * 30}
    )
    assert "header.Last-Event-ID" in assert_error(events, 422, "validation_error")


async def test_api_keys_protect_the_api_once_one_exists(server: RunningServer) -> None:
    key, secret = await server.platform.storage.create_api_key("tests")
    await asyncio.sleep(2.1)  # the platform re-reads whether keys exist every 2 s
    open_ = await raw(server, "GET", "/api/v1/queue")
    assert_error(open_, 401, "unauthorized")
    assert open_.headers["WWW-Authenticate"] == "Bearer"
    wrong = await raw(server, "GET", "/api/v1/queue", headers={"Authorization": "Bearer ak_wrong"})
    assert_error(wrong, 401, "unauthorized")
    assert_error(await raw(server, "GET", "/metrics"), 401, "unauthorized")
    assert (await raw(server, "GET", "/healthz")).status_code == 200
    async with server.client(api_key=secret) as client:
        done = await client.submit("print('authorised')", wait=30)
        assert done.stdout == "authorised\n"
    await server.platform.storage.revoke_api_key(key.id)
    revoked = await raw(
        server, "GET", "/api/v1/queue", headers={"Authorization": f"Bearer {secret}"}
    )
    assert_error(revoked, 401, "unauthorized")


@pytest.mark.parametrize(
    "server", [{"execution": {"docker_host": "unix:///nonexistent/docker.sock"}}], indirect=True
)
async def test_without_a_docker_engine_nothing_is_lost(server: RunningServer) -> None:
    ready = await raw(server, "GET", "/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["engine"]["ok"] is False
    async with AsyncAssayClient(server.url) as client:
        evaluation = await client.submit("print(1)")
        await asyncio.sleep(1.5)
        later = await client.get(evaluation.id)
        assert later.status in {"queued", "running"}, "it waits for the engine, it does not fail"
        events = []
        async for event in client.events(evaluation.id):
            events.append(event.type)
            if event.type == "requeued":
                break
        assert "requeued" in events
        await client.cancel(evaluation.id)


async def test_the_all_evaluations_stream_announces_state_changes(server: RunningServer) -> None:
    seen: list[tuple[str, str]] = []
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        http.stream("GET", "/api/v1/events") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        assert await anext(lines) == ": connected"
        async with server.client() as client:
            evaluation = await client.submit("print('watched')")
        async for line in lines:
            if line.startswith("data:"):
                data = json.loads(line[5:])
                seen.append((data["evaluation_id"], data["type"]))
                if data["type"] == "finished":
                    break
    assert [t for i, t in seen if i == evaluation.id] == ["queued", "started", "finished"]
