"""The REST API where its subject is the engine or the database, on a live server with the
real engine: locally and through an executor service, on SQLite and on PostgreSQL. The
API's own behaviour (validation, errors, auth, waiting, idempotency, batches, the stream of
state changes) is tested in-process with the fake engine, in ``tests/unit/test_api.py``."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from assay.client import AsyncAssayClient
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


async def raw(server: RunningServer, method: str, path: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.request(method, path, **kwargs)  # type: ignore[arg-type]


async def test_languages_and_a_compiled_program_through_the_api(server: RunningServer) -> None:
    """GET /api/v1/languages lists what the image has; a C program with options and
    arguments runs, a broken one is compile_error with the compiler's words, both kept."""
    async with server.client() as client:
        languages = {language.name: language for language in await client.languages()}
        assert {"python", "c", "java", "rust", "go"} <= set(languages)
        assert languages["c"].compiled and not languages["python"].compiled
        assert languages["c"].version and languages["c"].version[0].isdigit()
        code = '#include <stdio.h>\nint main(int c, char **v) { printf("%s %d\\n", v[1], N); }'
        ran = await client.submit(
            code, language="c", compiler_options=["-DN=42"], args=["answer"], wait=60
        )
        assert (ran.status, ran.stdout) == ("completed", "answer 42\n")
        assert ran.compile_duration_seconds and ran.compile_output == ""
        broken = await client.submit("int main(void) { return x; }", language="c", wait=60)
        assert broken.status == "compile_error"
        assert "error:" in (broken.compile_output or "")
        assert "undeclared" in (broken.compile_output or "")
        again = await client.get(broken.id)
    assert again.compile_output == broken.compile_output, "kept in storage"
    assert again.request is not None and again.request.language == "c"
    kept = await client_request(server, ran.id)
    assert (kept["compiler_options"], kept["args"]) == (["-DN=42"], ["answer"])
    refused = await raw(
        server, "POST", "/api/v1/evaluations", json={"code": "x", "language": "cobol"}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_request"
    assert "cobol" in refused.json()["error"]["message"]


async def client_request(server: RunningServer, evaluation_id: str) -> dict[str, object]:
    response = await raw(server, "GET", f"/api/v1/evaluations/{evaluation_id}")
    return dict(response.json()["request"])


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
        'assay_language_evaluations_total{language="python",status="completed"}',
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


async def test_nul_is_program_input_only_where_storage_can_hold_it(server: RunningServer) -> None:
    # PostgreSQL text cannot hold NUL: code, stdin and labels refuse it (tests/unit/test_api.py);
    # files are stored as JSON, which can, and the sandbox protocol is length-prefixed.
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
