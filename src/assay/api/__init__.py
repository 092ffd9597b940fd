"""The REST API (FastAPI): /api/v1, health, metrics; OpenAPI at /docs and /openapi.json; the
web page at /. The application is built by :func:`create_api` over the :class:`Services`
given with :func:`bind`. Importing this package loads nothing heavy (the names below load
on first use), so clients can use :mod:`assay.api.schemas` alone."""

from typing import TYPE_CHECKING

from assay.lazy import lazy_names

__all__ = [
    "ApiKeys",
    "Services",
    "StatusServer",
    "StrictJsonRoute",
    "assay_error_response",
    "bind",
    "create_api",
    "install_error_handlers",
]

if TYPE_CHECKING:
    from assay.api.app import create_api
    from assay.api.auth import ApiKeys
    from assay.api.deps import Services, bind
    from assay.api.errors import assay_error_response, install_error_handlers
    from assay.api.status_server import StatusServer
    from assay.api.strict_json import StrictJsonRoute

_HOMES = {
    "ApiKeys": "assay.api.auth",
    "Services": "assay.api.deps",
    "StatusServer": "assay.api.status_server",
    "StrictJsonRoute": "assay.api.strict_json",
    "assay_error_response": "assay.api.errors",
    "bind": "assay.api.deps",
    "create_api": "assay.api.app",
    "install_error_handlers": "assay.api.errors",
}


__getattr__ = lazy_names(_HOMES)
