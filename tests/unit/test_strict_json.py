"""Request bodies are strict JSON (``api/strict_json.py``): what Python's json module reads
beyond JSON is refused, located where in the body it is."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from assay.api.app import create_api
from assay.api.strict_json import MAX_DEPTH, InvalidJsonError, parse_json
from assay.config import Settings
from assay.executor_service import create_executor_app
from tests.unit.test_executor_service import FakeEngine


def test_json_is_read_as_json() -> None:
    body = '{"code": "print(\'é 😀\')", "n": [1, -2, 2.5, 9223372036854775807], "x": null}'
    assert parse_json(body.encode()) == json.loads(body)
    assert parse_json(b'"\\ud83d\\ude00 \\u0000"') == "😀 \x00", "a surrogate pair is one character"


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        (b'{"code": "\\ud800"}', ("code",), "lone surrogate (\\ud800 at character 0)"),
        (b'{"a": ["x", "ok\\udfff"]}', ("a", 1), "lone surrogate (\\udfff at character 2)"),
        (b'{"files": {"\\ud800": "x"}}', ("files",), "a key holds a lone surrogate"),
        (b'{"t": NaN}', ("t",), "NaN is not a JSON number"),
        (b"[1, Infinity]", (1,), "Infinity is not a JSON number"),
        (b'{"t": -Infinity}', ("t",), "-Infinity is not a JSON number"),
        (b'{"t": 1e400}', ("t",), "number out of range"),
        (b'{"m": ' + b"9" * 400 + b"}", ("m",), "integer out of range"),
        (b'{"m": ' + b"9" * 5000 + b"}", ("m",), "integer out of range"),
        (b'{"m": 9223372036854775808}', ("m",), "integer out of range"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), (0,) * MAX_DEPTH, "nested deeper"),
        (b"[" * 100_000 + b"]" * 100_000, (), "nested deeper"),
        (b'{"code": "\xff"}', (), "not UTF-8"),
        (b'{"code": "\xed\xa0\x80"}', (), "not UTF-8"),  # a surrogate, encoded
        ('{"code": "x"}'.encode("utf-16"), (), "not UTF-8"),
        (b'{"code": ', (), "invalid JSON"),
        (b"", (), "invalid JSON"),
    ],
)
def test_what_is_not_json_is_refused_where_it_is(
    body: bytes, path: tuple[object, ...], reason: str
) -> None:
    with pytest.raises(InvalidJsonError) as caught:
        parse_json(body)
    assert caught.value.path == path
    assert reason in caught.value.reason
    caught.value.reason.encode()  # never a surrogate in it: the reason can always be sent


@asynccontextmanager
async def nothing(_app: FastAPI) -> AsyncIterator[None]:
    yield


@pytest.mark.parametrize("api", ["platform", "executor"])
async def test_every_route_that_takes_a_body_parses_it_strictly(api: str) -> None:
    # The body is refused before any dependency runs: no platform or engine is needed.
    app = (
        create_api(Settings(), lifespan=nothing)
        if api == "platform"
        else create_executor_app(FakeEngine(), token="t", capacity=1)
    )
    with_body = [
        (method, path)
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert len(with_body) >= 2
    headers = {"Authorization": "Bearer t", "content-type": "application/json"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        for method, path in with_body:
            response = await http.request(method, path, content=b'{"x": NaN}', headers=headers)
            assert response.status_code == 422, (method, path, response.text)
            assert "body.x: NaN is not a JSON number" in response.json()["error"]["message"]
