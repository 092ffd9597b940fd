"""/healthz, /readyz and /metrics for a process without the REST API (``assay worker
--port``): Prometheus scrapes what the worker runs, an orchestrator probes it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from assay import __version__
from assay.api.deps import Services, bind
from assay.api.errors import install_error_handlers
from assay.api.routes import health

__all__ = ["StatusServer"]


class StatusServer:
    """Serves the health routes over ``services`` on a listening socket (bound by the caller,
    so that a taken port is reported before anything starts), on the running event loop.
    ``/metrics`` needs an API key once one exists, as on ``assay serve``."""

    def __init__(self, services: Services, listening: socket.socket) -> None:
        self._socket = listening
        app = FastAPI(title="Assay worker", version=__version__, docs_url=None, redoc_url=None)
        install_error_handlers(app)
        app.include_router(health.router)
        bind(app, services)
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name="assay-status"
        )

    async def stop(self) -> None:
        """Stop serving (requests in flight get two seconds); never raises."""
        self._server.should_exit = True
        try:
            if self._task is not None:
                await asyncio.gather(self._task, return_exceptions=True)
        finally:
            self._socket.close()


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the worker handles SIGTERM and SIGINT itself
