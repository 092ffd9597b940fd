"""The REST API (FastAPI): /api/v1, health, metrics; OpenAPI at /docs and /openapi.json; the
web page at /. The application is built by :func:`assay.api.app.create_api`; this package
imports nothing heavy, so clients can use :mod:`assay.api.schemas` alone."""
