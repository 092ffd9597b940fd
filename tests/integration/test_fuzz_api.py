"""Property-based fuzzing, in-process against the real applications (real storage on SQLite
and PostgreSQL, real engine): the platform's OpenAPI schema (schemathesis), then raw request
bytes from Hypothesis for the platform and the executor service. No input may produce a 5xx."""

from __future__ import annotations

import contextlib
import json
import math
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from starlette.testclient import TestClient

from assay.app import create_app
from assay.config import Settings
from assay.execution_engine.local import LocalExecutionEngine
from assay.executor_service import create_executor_app
from tests.conftest import EXECUTOR_TOKEN, leftover_containers, postgres_database
from tests.sandbox import TEST_ENGINE_PREFIX, make_settings, platform_settings

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]


# The schema is read from the routes (nothing is started); each operation is fuzzed against
# an application built for it (``served``). /api/v1/events is a stream that never ends by
# design (tested in tests/unit/test_api.py).
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi()).exclude(
    path="/api/v1/events"
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[FastAPI]:
    """The platform's application (real engine, short limits), started by schemathesis at
    its first request and stopped when the test ends; then, no container may be left."""
    config = platform_settings(
        tmp_path,
        execution={"default_timeout_seconds": 2.0},
        queue={"concurrency": 1, "max_queued": 5},
        api={"max_wait_seconds": 1.0, "max_batch_size": 3},
    )
    yield create_app(config)
    assert leftover_containers(config.execution.engine_id) == []


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_produces_a_server_error(case: schemathesis.Case, served: FastAPI) -> None:
    # An unhandled exception surfaces here as itself; a 5xx response fails the check.
    case.call_and_validate(app=served, checks=[not_a_server_error])


# Beyond schemathesis: Hypothesis writes the request bodies itself, as raw bytes, with what
# the stdlib json module lets through (NaN, ±Infinity, lone surrogates) and what no JSON
# library should accept (invalid UTF-8, 5000-digit integers, nesting thousands deep), in
# every field of the request models. Never a 5xx; every 4xx in the one error shape; a
# refused request stores nothing.

#: Characters as Hypothesis draws them (never a surrogate), surrogates, and NUL.
CHARACTERS = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr), st.just("\x00"))
TEXTS = st.text(max_size=12) | st.text(CHARACTERS, max_size=12)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=10**400),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXTS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
    max_leaves=8,
)
#: What json.dumps cannot write: not UTF-8, too big, too deep.
RAW = st.one_of(
    st.sampled_from([b'"\xff"', b'"\xed\xa0\x80"', b'"\xc0\xaf"', b"9" * 5000, b"1e99999"]),
    st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 3000).map(lambda depth: b'{"a": ' * depth + b"1" + b"}" * depth),
)


def dumped(value: object) -> bytes:
    """``value`` as JSON the stdlib way: NaN and Infinity as such, surrogates as escapes."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


ANYTHING = st.one_of(JSON_VALUES.map(dumped), RAW)
#: Each field of ExecutionRequest (and so of EvaluationCreate): a plausible value, often valid.
EXECUTION_FIELDS: dict[str, st.SearchStrategy[object]] = {
    "code": st.sampled_from(["print(1)", "import sys; print(sys.stdin.read())"]) | TEXTS,
    "language": st.just("python") | TEXTS,
    "stdin": st.text(max_size=12) | TEXTS,
    "timeout_seconds": st.none() | st.floats(0.01, 1.5) | NUMBERS,
    "memory_mb": st.none() | st.sampled_from([64, 128]) | NUMBERS,
    "cpus": st.none() | st.floats(0.1, 1) | NUMBERS,
    "output_limit_bytes": st.none() | st.just(1000) | NUMBERS,
    "files": st.dictionaries(st.sampled_from(["a.txt", "d/b.bin"]) | TEXTS, TEXTS, max_size=3),
}
EVALUATION_FIELDS: dict[str, st.SearchStrategy[object]] = {
    **EXECUTION_FIELDS,
    "labels": st.dictionaries(st.sampled_from(["k", "model"]) | TEXTS, TEXTS, max_size=3),
    "priority": st.integers(0, 9) | NUMBERS,
}


@st.composite
def json_objects(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[object]]) -> bytes:
    """A JSON object with ``code`` and some of ``fields``, each holding a plausible value or
    anything at all, perhaps with an unknown key."""
    names = ["code", *draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=5))]
    members = [
        dumped(name)
        + b": "
        + draw(ANYTHING if draw(st.integers(0, 4)) == 0 else fields[name].map(dumped))
        for name in dict.fromkeys(names)
    ]
    if draw(st.integers(0, 9)) == 0:
        members.append(draw(TEXTS.map(dumped)) + b": " + draw(ANYTHING))
    return b"{" + b", ".join(members) + b"}"


BATCHES = st.builds(
    lambda items, isolation: b'{"evaluations": [' + b", ".join(items) + b"], " + isolation + b"}",
    st.lists(
        json_objects(EVALUATION_FIELDS) | st.just(b'{"code": "print(1)", "labels": {"k": "v"}}'),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from([b'"isolation": "batch"', b'"isolation": "evaluation"', b'"isolation": NaN']),
)
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
JSON = {"content-type": "application/json"}


def assert_answered_properly(response: httpx.Response) -> None:
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        assert all(isinstance(v, str) and v for v in body["error"].values()), body


def stored(client: TestClient) -> int:
    return sum(client.get("/api/v1/queue").json()["counts"].values())


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The platform in-process (real engine, short limits) on each database."""
    engine_id = f"{TEST_ENGINE_PREFIX}fuzz-raw-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        storage = {}
        if request.param == "postgresql":
            storage = {"url": stack.enter_context(postgres_database())}
        app = create_app(
            platform_settings(
                tmp_path_factory.mktemp("fuzz-raw"),
                execution={
                    "engine_id": engine_id,
                    "default_timeout_seconds": 1.0,
                    "max_timeout_seconds": 2.0,
                },
                queue={"concurrency": 2, "max_queued": 1000},
                api={"max_wait_seconds": 1.0, "max_batch_size": 3},
                storage=storage,
            )
        )
        with TestClient(app) as client:
            yield client
    assert leftover_containers(engine_id) == []


@given(body=json_objects(EVALUATION_FIELDS), wait=st.sampled_from(["", "?wait=0.5"]))
@FUZZ
def test_raw_evaluation_bodies_never_get_a_server_error(
    platform: TestClient, body: bytes, wait: str
) -> None:
    before = stored(platform)
    response = platform.post(f"/api/v1/evaluations{wait}", content=body, headers=JSON)
    assert_answered_properly(response)
    if response.is_error:
        assert stored(platform) == before, "a refused evaluation is not stored"


@given(body=BATCHES)
@FUZZ
def test_raw_batch_bodies_never_get_a_server_error(platform: TestClient, body: bytes) -> None:
    before = stored(platform)
    response = platform.post("/api/v1/evaluations/batch", content=body, headers=JSON)
    assert_answered_properly(response)
    if response.is_error:
        assert stored(platform) == before, "a refused batch stores none of its evaluations"
    else:
        assert stored(platform) == before + len(response.json()["evaluations"])


#: Query, path and header values as sent: any bytes, percent-encoded.
ENCODED = st.one_of(
    st.binary(max_size=8), st.sampled_from([b"\x00", b"\xed\xa0\x80", b"nan", b"inf", b"9" * 30])
).map(urllib.parse.quote_from_bytes)


@given(values=st.tuples(ENCODED, ENCODED, ENCODED, ENCODED), event_id=NUMBERS)
@FUZZ
def test_raw_queries_paths_and_headers_never_get_a_server_error(
    platform: TestClient, values: tuple[str, str, str, str], event_id: object
) -> None:
    label, cursor, limit, evaluation_id = values
    for url in (
        f"/api/v1/evaluations?label={label}&label=k:{label}",
        f"/api/v1/evaluations?cursor={cursor}&limit={limit}&status={label}",
        f"/api/v1/evaluations/{evaluation_id}?wait={limit}",
        f"/api/v1/evaluations/{evaluation_id}/events",
    ):
        assert_answered_properly(platform.get(url, headers={"Last-Event-ID": str(event_id)}))
    key = urllib.parse.unquote(label, errors="replace").encode("latin-1", errors="replace")
    submitted = platform.post(
        "/api/v1/evaluations", json={"code": "print(1)"}, headers=[(b"Idempotency-Key", key)]
    )
    assert_answered_properly(submitted)


@pytest.fixture(scope="module")
def executor() -> Iterator[TestClient]:
    """The executor service in-process on the real engine, with short limits."""
    engine_settings = make_settings(default_timeout_seconds=1.0, max_timeout_seconds=2.0)
    app = create_executor_app(
        LocalExecutionEngine(engine_settings), token=EXECUTOR_TOKEN, capacity=2
    )
    with TestClient(app, headers={"Authorization": f"Bearer {EXECUTOR_TOKEN}"}) as client:
        yield client
    assert leftover_containers(engine_settings.engine_id) == []


@given(body=json_objects(EXECUTION_FIELDS), path=st.sampled_from(["", "/stream"]))
@FUZZ
def test_raw_execution_bodies_never_get_a_server_error(
    executor: TestClient, body: bytes, path: str
) -> None:
    response = executor.post(f"/v1/executions{path}", content=body, headers=JSON)
    assert_answered_properly(response)
    if response.status_code == 200 and path:  # a stream: it ends with a result or an error
        *_, last = map(json.loads, response.text.splitlines())
        assert last["type"] in {"result", "error"}, last
        if last["type"] == "error":
            assert set(last["error"]) == {"code", "message"}, last
