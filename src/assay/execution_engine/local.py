"""In-process execution: the monolith's engine (``EXECUTION_MODE=local``)."""

from __future__ import annotations

from assay.execution_engine.docker_engine import DockerEngine

__all__ = ["LocalExecutionEngine"]

#: The seed's name for :class:`DockerEngine`: programs run on this host's Docker engine, in
#: this process.
LocalExecutionEngine = DockerEngine
