"""The executor service's HTTP surface on a fake engine, in-process: /healthz is open and says
nothing more than ok or unhealthy, every other route needs the token, /v1/capacity carries the
engine's health facts, and bodies that are not strict JSON never reach the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from assay.execution_engine import (
    EngineHealth,
    ExecutionInterface,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    LanguageInfo,
    OutputCallback,
)
from assay.executor_service import create_executor_app

TOKEN = "unit-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeEngine(ExecutionInterface):
    """Healthy unless told otherwise; echoes stdin; counts health checks and executions."""

    def __init__(self, health: EngineHealth | None = None) -> None:
        self.health = health or EngineHealth(
            healthy=True, detail="ok", facts={"engine": "fake", "runtime": "runc"}
        )
        self.checks = 0
        self.executed: list[ExecutionRequest] = []

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        self.executed.append(request)
        return ExecutionResult(
            status=ExecutionStatus.COMPLETED, exit_code=0, stdout=request.stdin, duration_seconds=0
        )

    async def languages(self) -> list[LanguageInfo]:
        return [
            LanguageInfo(
                name="python",
                title="Python",
                version="3.0-fake",
                source_file="main.py",
                compiled=False,
                extensions=(".py",),
                example="print(1)",
            )
        ]

    async def check_health(self) -> EngineHealth:
        self.checks += 1
        return self.health

    async def close(self) -> None:
        pass


@asynccontextmanager
async def client(engine: ExecutionInterface) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = create_executor_app(engine, token=TOKEN, capacity=2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http, app


async def test_healthz_needs_no_token_and_gives_no_details() -> None:
    async with client(FakeEngine()) as (http, _):
        response = await http.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_an_unhealthy_engine_is_503_without_details() -> None:
    sick = FakeEngine(EngineHealth(healthy=False, detail="daemon down: /var/run/docker.sock"))
    async with client(sick) as (http, _):
        response = await http.get("/healthz")
        capacity = (await http.get("/v1/capacity", headers=AUTH)).json()
    assert (response.status_code, response.json()) == (503, {"status": "unhealthy"})
    assert capacity["engine"] == {"healthy": False, "detail": "daemon down: /var/run/docker.sock"}


async def test_capacity_reports_slots_and_every_health_fact() -> None:
    async with client(FakeEngine()) as (http, _):
        response = await http.get("/v1/capacity", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "total": 2,
        "free": 2,
        "running": 0,
        "engine": {"healthy": True, "detail": "ok", "engine": "fake", "runtime": "runc"},
    }


async def test_every_other_route_needs_the_token() -> None:
    engine = FakeEngine()
    async with client(engine) as (http, app):
        routes = [
            (method, route.path.replace("{sandbox_id}", "x").replace("{execution_id}", "x"))
            for route in app.routes
            if isinstance(route, APIRoute) and route.path != "/healthz"
            for method in sorted(route.methods)
        ]
        routes += [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/no-such-route")]
        assert ("POST", "/v1/executions") in routes and ("GET", "/v1/capacity") in routes
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for method, path in routes:
                response = await http.request(
                    method, path, json={"code": "print(1)"}, headers=headers
                )
                assert response.status_code == 401, (method, path, headers)
                assert response.json()["error"]["code"] == "unauthorized"
                assert response.headers["WWW-Authenticate"] == "Bearer"
        assert (await http.get("/openapi.json", headers=AUTH)).status_code == 200
    assert engine.executed == [], "nothing ran"


async def test_health_checks_are_shared_not_repeated_per_request() -> None:
    engine = FakeEngine()
    async with client(engine) as (http, _):
        for _ in range(20):
            assert (await http.get("/healthz")).status_code == 200
        await http.get("/v1/capacity", headers=AUTH)
    assert engine.checks == 1, "anyone may ask; the engine is asked once per two seconds"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"code": "\\ud800"}', "body.code"),
        (b'{"code": "x", "stdin": "\\udfff"}', "body.stdin"),
        (b'{"code": "x", "files": {"a.txt": "\\ud800"}}', "body.files.a.txt"),
        (b'{"code": "x", "files": {"\\ud800": "x"}}', "body.files"),
        (b'{"code": "x", "timeout_seconds": NaN}', "body.timeout_seconds"),
        (b'{"code": "x", "cpus": 1e400}', "body.cpus"),
        (b'{"code": "x", "memory_mb": ' + b"9" * 400 + b"}", "body.memory_mb"),
        (b'{"code": "x\xff"}', "body: not UTF-8"),
        (b'{"code": "x", "files": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested deeper"),
    ],
)
async def test_bodies_that_are_not_strict_json_never_reach_the_engine(
    body: bytes, where: str
) -> None:
    engine = FakeEngine()
    async with client(engine) as (http, _):
        for path in ("/v1/executions", "/v1/executions/stream"):
            response = await http.post(
                path, content=body, headers={**AUTH, "content-type": "application/json"}
            )
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] == "validation_error"
            assert where in error["message"]
        assert (await http.get("/healthz")).status_code == 200, "still serving"
    assert engine.executed == []


async def test_nul_is_program_input_the_engine_can_carry() -> None:
    engine = FakeEngine()
    async with client(engine) as (http, _):
        response = await http.post(
            "/v1/executions",
            json={"code": "x", "stdin": "a\x00b", "files": {"data.bin": "\x00"}},
            headers=AUTH,
        )
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == "a\x00b"
    assert engine.executed[0].files == {"data.bin": "\x00"}
