"""Choosing the execution engine from settings (EXECUTION_MODE, as the design names it)."""

from __future__ import annotations

from typing import assert_never

from assay.config import Settings
from assay.execution_engine.interface import ExecutionInterface

__all__ = ["create_engine"]


def create_engine(settings: Settings) -> ExecutionInterface:
    """``local``: Docker in this process. ``remote``: executor services at
    EXECUTION_SERVICE_URL, authenticated with ASSAY_EXECUTOR__TOKEN."""
    match settings.execution_mode:
        case "local":
            from assay.execution_engine.docker_engine import DockerEngine  # noqa: PLC0415

            return DockerEngine(settings.execution)
        case "remote":
            from assay.execution_engine.remote import RemoteExecutionEngine  # noqa: PLC0415

            token = settings.executor.token
            return RemoteExecutionEngine(
                settings.executor_urls(),
                token=token.get_secret_value() if token else None,
                settings=settings.execution,
            )
        case _:
            assert_never(settings.execution_mode)
