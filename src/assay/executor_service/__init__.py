"""The execution engine as its own service (Phase 1): ``assay executor``.

It needs only the Docker engine: no database, no queue. Every request but ``GET /healthz``
(liveness, no details) carries the bearer token from ``ASSAY_EXECUTOR__TOKEN``; at most
``capacity`` executions run at once and the next is refused with 429 ``executor_busy``. See
``execution_engine/protocol.py`` for the wire format.
"""

from assay.executor_service.app import create_executor_app

__all__ = ["create_executor_app"]
