"""Shared fixtures. Tests marked ``docker`` use the real Docker engine and sandbox image: when
either is missing they fail under CI (``CI`` set) and skip, with the reason, elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from assay.app import Platform, create_app
from assay.client import AsyncAssayClient
from assay.config import ExecutionSettings, Settings
from assay.errors import ExecutionError
from assay.execution_engine.docker_daemon import DockerDaemon
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.local import LocalExecutionEngine
from assay.execution_engine.sandbox_spec import LABEL_ENGINE, LABEL_MANAGED
from assay.executor_service import create_executor_app
from tests.sandbox import (
    BATCH_MODES,
    SESSION_ENGINE_IDS,
    BatchedEngine,
    cold,
    idle_sandbox_containers,
    make_settings,
    platform_settings,
)

#: The test PostgreSQL server (``scripts/test-services``); each test gets its own database.
POSTGRES_ADMIN_URL = os.environ.get(
    "ASSAY_TEST_POSTGRES_URL", "postgresql://assay:assay@127.0.0.1:55432/assay"
)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database on the test PostgreSQL server, dropped afterwards; yields its
    SQLAlchemy URL. Fails under CI (skips elsewhere) when the server does not answer."""
    import psycopg  # noqa: PLC0415 - only these tests need it

    name = f"assay_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL", f"{POSTGRES_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def unavailable(what: str, reason: str) -> NoReturn:
    message = f"needs {what} (run `make test`, as root, to set it up): {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)  # not CI: a developer machine without it


def docker_unavailable(reason: str) -> NoReturn:
    unavailable("Docker and the sandbox image", reason)


def leftover_containers(
    engine_id: str, *, pooled_ok: bool = False, settle_seconds: float = 5.0
) -> list[str]:
    """Containers of ``engine_id`` (with ``pooled_ok``, other than warm-pool sandboxes still
    waiting for a program), polled for ``settle_seconds``: used sandboxes are removed in the
    background just after their verdict."""
    daemon = DockerDaemon(None, timeout=30)
    deadline = time.monotonic() + settle_seconds
    try:
        while True:
            found = daemon.container_ids({LABEL_ENGINE: engine_id})
            idle = idle_sandbox_containers() if pooled_ok else set()
            left = [cid for cid in found if cid not in idle]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)
    finally:
        daemon.close()


def remove_containers(engine_id: str) -> None:
    """Remove ``engine_id``'s containers: what a SIGKILLed process could not remove itself."""
    daemon = DockerDaemon(None, timeout=30)
    try:
        for container_id in daemon.container_ids({LABEL_ENGINE: engine_id}):
            daemon.remove(container_id)
    finally:
        daemon.close()


def container_exists(container: str) -> bool:
    """Whether a sandbox container with this id or name exists."""
    daemon = DockerDaemon(None, timeout=30)
    try:
        return any(container in (c.id, c.name) for c in daemon.containers_labelled(LABEL_MANAGED))
    finally:
        daemon.close()


@pytest.fixture
def settings() -> ExecutionSettings:
    return make_settings()


@pytest.fixture(params=["pooled", "cold", *BATCH_MODES])
async def engine(
    settings: ExecutionSettings, request: pytest.FixtureRequest
) -> AsyncIterator[DockerEngine]:
    """A started DockerEngine, taking sandboxes from its warm pool, creating each one, or
    (batch) running every program in a batch sandbox after another program; afterwards,
    checks that none of its containers is left."""
    engines = {"pooled": DockerEngine, "cold": DockerEngine, "batch": BatchedEngine}
    docker_engine = engines[request.param](cold(settings) if request.param == "cold" else settings)
    try:
        await docker_engine.start()
    except ExecutionError as exc:
        await docker_engine.close()
        docker_unavailable(exc.message)
    try:
        yield docker_engine
    finally:
        await docker_engine.close()
    assert leftover_containers(settings.engine_id) == [], "a sandbox container was left behind"


@asynccontextmanager
async def started_engine(settings: ExecutionSettings) -> AsyncIterator[DockerEngine]:
    """A started DockerEngine with ``settings``; afterwards, checks that none of its
    containers is left."""
    local = DockerEngine(settings)
    try:
        await local.start()
    except ExecutionError as exc:
        await local.close()
        docker_unavailable(exc.message)
    try:
        yield local
    finally:
        await local.close()
    assert leftover_containers(settings.engine_id) == [], "a sandbox container was left behind"


@pytest.fixture(scope="session", autouse=True)
def _remove_test_containers() -> Iterator[None]:
    """Whatever happens in a test, no container of this session's engines outlives it (those
    of other test sessions on the same Docker engine are theirs)."""
    yield
    try:
        daemon = DockerDaemon(None, timeout=30)
    except ExecutionError:
        return
    try:
        for container in daemon.containers_labelled(LABEL_MANAGED):
            if container.labels.get(LABEL_ENGINE, "") in SESSION_ENGINE_IDS:
                daemon.remove(container.id)
    finally:
        daemon.close()


@dataclass
class RunningServer:
    url: str
    platform: Platform
    settings: Settings

    def client(self, api_key: str | None = None) -> AsyncAssayClient:
        return AsyncAssayClient(self.url, api_key=api_key)


@asynccontextmanager
async def serving(app: ASGIApp, port: int = 0) -> AsyncIterator[str]:
    """``app`` on a real socket (loopback; a free port unless given) in this event loop;
    yields its URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped while starting")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


EXECUTOR_TOKEN = "test-executor-token-0123456789"


@asynccontextmanager
async def running_executor(
    settings: ExecutionSettings, capacity: int = 4, port: int = 0
) -> AsyncIterator[str]:
    """``assay executor``'s application on a real socket; yields its URL."""
    app = create_executor_app(
        LocalExecutionEngine(settings), token=EXECUTOR_TOKEN, capacity=capacity
    )
    async with serving(app, port) as url:
        yield url


@asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """``assay serve``'s application on a real socket (loopback, a free port), in this loop."""
    platform = Platform(settings)
    async with serving(create_app(settings, platform=platform)) as url:
        yield RunningServer(url, platform, settings)


@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    """A live platform with the real Docker engine; settings overridable with
    ``@pytest.mark.parametrize("server", [{"queue": {...}}], indirect=True)``."""
    overrides = getattr(request, "param", {})
    backend = "sqlite"
    if "storage_backend" in request.fixturenames:
        backend = request.getfixturevalue("storage_backend")
    with contextlib.ExitStack() as stack:
        if backend == "postgresql":
            overrides = {**overrides, "storage": {"url": stack.enter_context(postgres_database())}}
        settings = platform_settings(tmp_path / "data", **overrides)
        async with _serve(settings, request) as running:
            yield running


@asynccontextmanager
async def _serve(
    settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[RunningServer]:
    """``settings``' platform on the engine ``execution_mode`` asks for (local by default)."""
    engine = DockerEngine(make_settings())  # the machine's engine, whatever the test overrides
    health = await engine.check_health()
    await engine.close()
    if not health.healthy:
        docker_unavailable(health.detail)
    mode = "local"
    if "execution_mode" in request.fixturenames:
        mode = request.getfixturevalue("execution_mode")
    if mode == "local":
        async with running_server(settings) as running:
            yield running
    else:
        async with running_executor(settings.execution) as executor_url:
            remote = settings.model_copy(
                update={
                    "execution_mode": "remote",
                    "execution_service_url": executor_url,
                    "executor": settings.executor.model_copy(
                        update={"token": SecretStr(EXECUTOR_TOKEN)}
                    ),
                }
            )
            async with running_server(remote) as running:
                yield running
    assert leftover_containers(settings.execution.engine_id) == [], "a container was left behind"
