"""The executor service's FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import hmac
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from assay import __version__
from assay.api import StrictJsonRoute, assay_error_response, install_error_handlers
from assay.errors import (
    AuthenticationError,
    ConfigurationError,
    ExecutionError,
    ExecutorBusyError,
)
from assay.execution_engine import (
    BatchSandbox,
    EngineHealth,
    ExecutionInterface,
    ExecutionRequest,
    ExecutionResult,
    OutputCallback,
)
from assay.execution_engine.protocol import (
    BATCH_SANDBOX_HEADER,
    BATCH_SANDBOXES_PATH,
    CAPACITY_PATH,
    EXECUTION_ID_HEADER,
    EXECUTIONS_PATH,
    HEALTH_PATH,
    LANGUAGES_PATH,
    POOL_PATH,
    STREAM_PATH,
)
from assay.executor_service.ndjson import ndjson_lines
from assay.executor_service.sandboxes import add_sandbox_routes
from assay.monitoring import PoolCollector

__all__ = ["create_executor_app"]

logger = logging.getLogger(__name__)

ExecutionId = Annotated[str | None, Header(alias=EXECUTION_ID_HEADER, max_length=64)]
BatchSandboxId = Annotated[
    str | None, Header(alias=BATCH_SANDBOX_HEADER, pattern=r"^[0-9a-f]{32}$")
]
#: A batch sandbox no request has used for this long is destroyed (its platform went away).
_BATCH_IDLE_SECONDS = 60.0
#: How long one health check of the engine answers for (/healthz needs no token).
_HEALTH_TTL_SECONDS = 2.0


class _BatchSandboxes:
    """The batch sandboxes this executor holds for its platforms, by the client's id."""

    def __init__(self, engine: ExecutionInterface, limit: int) -> None:
        self._engine = engine
        self._limit = limit
        self._sandboxes: dict[str, tuple[BatchSandbox, float]] = {}
        self._busy: dict[str, int] = {}
        self._janitor: asyncio.Task[None] | None = None

    def take(self, sandbox_id: str) -> BatchSandbox:
        """The sandbox with this id, made on first use (an old idle one makes room)."""
        entry = self._sandboxes.get(sandbox_id)
        if entry is None:
            idle = [i for i in self._sandboxes if not self._busy.get(i)]
            if len(self._sandboxes) >= self._limit and idle:
                oldest = min(idle, key=lambda i: self._sandboxes[i][1])
                self._discard(oldest)
            entry = (self._engine.batch_sandbox(), time.monotonic())
            if self._janitor is None:
                self._janitor = asyncio.create_task(self._expire())
        self._sandboxes[sandbox_id] = (entry[0], time.monotonic())
        self._busy[sandbox_id] = self._busy.get(sandbox_id, 0) + 1
        return entry[0]

    def runner(self, sandbox_id: str | None) -> Runner:
        """Where a request runs: a fresh sandbox, or the batch sandbox it names."""
        if sandbox_id is None:
            return self._engine.execute

        async def in_batch(
            request: ExecutionRequest, *, on_output: OutputCallback | None = None
        ) -> ExecutionResult:
            sandbox = self.take(sandbox_id)
            try:
                return await sandbox.execute(request, on_output=on_output)
            finally:
                self.give_back(sandbox_id)

        return in_batch

    def give_back(self, sandbox_id: str) -> None:
        self._busy[sandbox_id] -= 1
        if sandbox_id in self._sandboxes:
            self._sandboxes[sandbox_id] = (self._sandboxes[sandbox_id][0], time.monotonic())

    async def close(self, sandbox_id: str) -> bool:
        entry = self._sandboxes.pop(sandbox_id, None)
        if entry is not None:
            await entry[0].close()
        return entry is not None

    async def close_all(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
        for sandbox_id in list(self._sandboxes):
            await self.close(sandbox_id)

    def _discard(self, sandbox_id: str) -> None:
        sandbox, _ = self._sandboxes.pop(sandbox_id)
        task = asyncio.create_task(sandbox.close())
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(_BATCH_IDLE_SECONDS / 4)
            cutoff = time.monotonic() - _BATCH_IDLE_SECONDS
            for sandbox_id, (_, used) in list(self._sandboxes.items()):
                if used < cutoff and not self._busy.get(sandbox_id):
                    self._discard(sandbox_id)


class _RequireToken:
    """Refuses every request without the token (401) before it is routed or its body read,
    except on ``open_paths``."""

    def __init__(self, app: ASGIApp, *, token: str, open_paths: set[str]) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                exc = AuthenticationError("missing or wrong executor token (ASSAY_EXECUTOR__TOKEN)")
                await assay_error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Health:
    """The engine's health, checked at most once per ``ttl`` however often it is asked:
    ``/healthz`` is open to anyone, and a check can cost the engine a Docker round trip."""

    def __init__(self, engine: ExecutionInterface, ttl: float = _HEALTH_TTL_SECONDS) -> None:
        self._engine = engine
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._last: tuple[EngineHealth, float] | None = None

    async def current(self) -> EngineHealth:
        async with self._lock:
            if self._last is None or time.monotonic() - self._last[1] > self._ttl:
                self._last = (await self._engine.check_health(), time.monotonic())
            return self._last[0]


class Runner(Protocol):
    def __call__(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> Coroutine[Any, Any, ExecutionResult]: ...


class _Slots:
    """Bounded concurrency, refusing rather than queueing (the platform has the queue)."""

    def __init__(self, engine: ExecutionInterface, capacity: int) -> None:
        self.engine = engine
        self.capacity = capacity
        self.running: dict[str, asyncio.Task[ExecutionResult]] = {}
        self.busy = 0
        registry = self.registry = CollectorRegistry()
        self.finished = Counter(
            "assay_executor_executions",
            "Executions that ended, by verdict",
            ["status"],
            registry=registry,
        )
        self.refused = Counter(
            "assay_executor_refused", "Executions refused for lack of a slot", registry=registry
        )
        self.errors = Counter(
            "assay_executor_engine_errors", "Engine failures, by code", ["code"], registry=registry
        )
        self.pool = PoolCollector(registry)
        Gauge("assay_executor_capacity", "Slots", registry=registry).set(capacity)
        Gauge("assay_executor_running", "Slots in use", registry=registry).set_function(
            lambda: self.busy
        )

    def acquire(self) -> None:
        if self.busy >= self.capacity:
            self.refused.inc()
            raise ExecutorBusyError(f"all {self.capacity} slots are in use; retry later")
        self.busy += 1

    def release(self) -> None:
        self.busy -= 1


def create_executor_app(engine: ExecutionInterface, *, token: str, capacity: int) -> FastAPI:
    """The service around ``engine``; ``token`` is required on every request but
    ``GET /healthz`` (liveness: 200 or 503, no details)."""
    if not token:
        raise ConfigurationError("the executor service needs a token")
    slots = _Slots(engine, capacity)
    health = _Health(engine)
    batches = _BatchSandboxes(engine, limit=2 * capacity)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            await engine.start()
        except ExecutionError as exc:
            logger.error("execution engine not ready: %s", exc.message)
        try:
            yield
        finally:
            for task in list(slots.running.values()):
                task.cancel()
            await batches.close_all()
            await engine.close()

    # /openapi.json is behind the token like the rest; pages that cannot send it are left out.
    app = FastAPI(
        title="Assay executor",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.router.route_class = StrictJsonRoute
    app.add_middleware(_RequireToken, token=token, open_paths={HEALTH_PATH})
    install_error_handlers(app)  # the platform's, so both answer an error alike
    _add_status_routes(app, slots, health)
    add_sandbox_routes(app, engine)

    @app.post(EXECUTIONS_PATH, response_model=ExecutionResult)
    async def execute(
        request: ExecutionRequest,
        execution_id: ExecutionId = None,
        batch_sandbox: BatchSandboxId = None,
    ) -> ExecutionResult:
        """Run one program; answer with its result when it ends."""
        slots.acquire()
        return await _run(slots, batches.runner(batch_sandbox), request, execution_id, None)

    @app.post(STREAM_PATH, response_class=StreamingResponse)
    async def execute_streaming(
        request: ExecutionRequest,
        execution_id: ExecutionId = None,
        batch_sandbox: BatchSandboxId = None,
    ) -> StreamingResponse:
        """Run one program; stream its output as NDJSON, then its result (or error)."""
        slots.acquire()
        return StreamingResponse(
            _stream(slots, batches.runner(batch_sandbox), request, execution_id),
            media_type="application/x-ndjson",
        )

    @app.delete(BATCH_SANDBOXES_PATH + "/{sandbox_id}")
    async def close_batch_sandbox(sandbox_id: str) -> dict[str, bool]:
        """Destroy a batch sandbox (its container is removed); unknown ids are no error."""
        return {"closed": await batches.close(sandbox_id)}

    @app.delete(EXECUTIONS_PATH + "/{execution_id}")
    async def cancel(execution_id: str) -> dict[str, bool]:
        """Cancel a running execution (its sandbox is killed and removed)."""
        task = slots.running.get(execution_id)
        if task is None:
            return {"cancelled": False}
        if not task.cancelling():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ExecutionError):
            await asyncio.shield(task)
        return {"cancelled": True}

    return app


def _add_status_routes(app: FastAPI, slots: _Slots, health: _Health) -> None:
    """Capacity, warm pools, health and metrics."""
    engine = slots.engine

    @app.get(CAPACITY_PATH)
    async def capacity_now() -> dict[str, Any]:
        """Slots, and the engine's health with every fact it reports."""
        engine_health = await health.current()
        return {
            "total": slots.capacity,
            "free": slots.capacity - slots.busy,
            "running": slots.busy,
            "engine": {
                **engine_health.facts,
                "healthy": engine_health.healthy,
                "detail": engine_health.detail,
            },
        }

    @app.get(POOL_PATH)
    async def pool() -> dict[str, list[dict[str, Any]]]:
        return {"pools": [dataclasses.asdict(stats) for stats in await engine.pool_stats()]}

    @app.get(LANGUAGES_PATH)
    async def languages() -> dict[str, list[dict[str, Any]]]:
        return {"languages": [dataclasses.asdict(info) for info in await engine.languages()]}

    @app.get(HEALTH_PATH)
    async def healthz() -> JSONResponse:
        """Liveness for anyone, without the token: 200 ``ok`` or 503 ``unhealthy``, nothing
        more (the details are in ``/v1/capacity``)."""
        if (await health.current()).healthy:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unhealthy"}, 503)

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        slots.pool.update(await engine.pool_stats())
        return Response(generate_latest(slots.registry), media_type=CONTENT_TYPE_LATEST)


async def _run(
    slots: _Slots,
    runner: Runner,
    request: ExecutionRequest,
    execution_id: str | None,
    on_output: OutputCallback | None,
) -> ExecutionResult:
    """Run on the engine, holding a slot until the sandbox is gone (not merely until the
    caller stops waiting: a cancelled caller leaves the removal running, slot held)."""
    task = await _detached(runner(request, on_output=on_output))
    task.add_done_callback(lambda _done: slots.release())
    if execution_id:
        slots.running[execution_id] = task
        task.add_done_callback(lambda _done: slots.running.pop(execution_id, None))
    try:
        result = await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()  # not awaited here: our own cancel scope may strike again
        raise
    except ExecutionError as exc:
        slots.errors.labels(exc.code).inc()
        raise
    slots.finished.labels(result.status.value).inc()
    return result


async def _detached(
    coroutine: Coroutine[Any, Any, ExecutionResult],
) -> asyncio.Task[ExecutionResult]:
    """A task no request's cancel scope can reach: Starlette cancels a streaming request's
    scope when its client goes away, and an execution must outlive that long enough to
    remove its sandbox. Created from a plain loop callback, in a fresh context."""
    loop = asyncio.get_running_loop()
    created: asyncio.Future[asyncio.Task[ExecutionResult]] = loop.create_future()
    loop.call_soon(
        lambda: created.set_result(loop.create_task(coroutine)), context=contextvars.Context()
    )
    return await created


def _stream(
    slots: _Slots, runner: Runner, request: ExecutionRequest, execution_id: str | None
) -> AsyncIterator[bytes]:
    # The client going away cancels the run: never a sandbox running for nobody (the slot
    # is released by _run when the sandbox is gone).
    async def work(on_output: OutputCallback) -> str:
        result = await _run(slots, runner, request, execution_id, on_output)
        return result.model_dump_json()

    return ndjson_lines(work)
