"""The REST API (FastAPI): /api/v1, health, metrics; OpenAPI at /docs and /openapi.json; the
web page at /."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import Lifespan

from assay import __version__
from assay.api.body_limit import BodyLimitMiddleware
from assay.api.deps import require_api_key
from assay.api.errors import install_error_handlers
from assay.api.routes import evaluations, health, languages, queue, sandboxes, stream
from assay.config import Settings
from assay.web_frontend import STATIC_DIR

__all__ = ["create_api"]

_PREFIX = "/api/v1"


def create_api(settings: Settings, *, lifespan: Lifespan[FastAPI]) -> FastAPI:
    """The FastAPI application; ``lifespan`` must give it its services (``deps.bind``)."""
    app = FastAPI(
        title="Assay",
        version=__version__,
        description="Run untrusted code in locked-down sandboxes and keep every result.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    api = APIRouter(prefix=_PREFIX, dependencies=[Depends(require_api_key)])
    api.include_router(evaluations.router)
    api.include_router(languages.router)
    api.include_router(queue.router)
    api.include_router(sandboxes.router)
    api.include_router(stream.router)
    app.include_router(api)
    app.include_router(health.router)
    # Last: the web page, at /, for every path no route above claims.
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="web")
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.api.max_body_bytes,
        routes=sandboxes.body_limits(settings, _PREFIX),
    )
    return app
