"""Batch isolation on Docker: one container reused for one batch's programs.

Between two programs the sandbox's PID 1 resets the container (``sandbox_init.c``'s batch
mode) and reports in the trailer whatever the program did that a reset cannot undo. Then, or
when a program ends other than by exiting, or the next one needs other memory or CPU limits,
the container is retired and the next program gets another. The engine does the rest (limits,
the warm pool, cancellation, verdicts) through :class:`BatchEngine`, the internal API that
:class:`DockerEngine` implements.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from assay.errors import SandboxError
from assay.execution_engine.attach import Conversation, Run, close_attach
from assay.execution_engine.interface import BatchSandbox, OutputCallback
from assay.execution_engine.models import ExecutionRequest, ExecutionResult
from assay.execution_engine.sandbox_spec import Profile

__all__ = ["BatchEngine", "DockerBatchSandbox"]

logger = logging.getLogger(__name__)


class BatchEngine(Protocol):
    """What a batch sandbox needs of its engine; see :class:`DockerEngine`'s methods of the
    same names. ``open_sandbox``, ``converse``, ``judge`` and ``dispose`` run on a worker
    thread."""

    async def prepare(
        self, request: ExecutionRequest, on_output: OutputCallback | None, *, batch: bool = False
    ) -> Run: ...

    async def acquire(self, profile: Profile) -> str | None: ...

    async def guarded(
        self, run: Run, work: Callable[[Run], ExecutionResult]
    ) -> ExecutionResult: ...

    def open_sandbox(self, run: Run) -> tuple[str, socket.socket]: ...

    def converse(self, run: Run, sock: socket.socket, *, batch: bool) -> Conversation: ...

    def judge(self, run: Run, talk: Conversation) -> ExecutionResult: ...

    def dispose(self, container_id: str, *, now: bool = False) -> None: ...


@dataclass(slots=True)
class _BatchContainer:
    """A started container in batch mode, with its attach socket kept open."""

    id: str
    sock: socket.socket
    profile: Profile


class DockerBatchSandbox(BatchSandbox):
    """One batch's container (see :meth:`DockerEngine.batch_sandbox`)."""

    def __init__(
        self, engine: BatchEngine, *, on_close: Callable[[DockerBatchSandbox], None]
    ) -> None:
        self._engine = engine
        self._on_close = on_close
        self._lock = asyncio.Lock()
        self._closed = False
        #: The open container; only touched by the thread running a program, or under the lock.
        self.container: _BatchContainer | None = None

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        async with self._lock:
            if self._closed:
                raise SandboxError("batch sandbox is closed")
            run = await self._engine.prepare(request, on_output, batch=True)
            if self.container is not None and self.container.profile != run.profile:
                # Other limits than the container was made with: a container with those.
                self._retire(self.container)
                self.container = None
            if self.container is None:
                run.warm_id = await self._engine.acquire(run.profile)
            return await self._engine.guarded(run, self._run)

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            self._on_close(self)
            if self.container is not None:
                container, self.container = self.container, None
                self._retire(container)

    # -- on a worker thread -----------------------------------------------------------------

    def _run(self, run: Run) -> ExecutionResult:
        """Run one program in the batch's container, opening one first if it has none."""
        container = self.container
        if container is None:
            container_id, sock = self._engine.open_sandbox(run)
            container = self.container = _BatchContainer(container_id, sock, run.profile)
        run.container_id = container.id
        keep = False
        try:
            result, keep = self._supervise(run, container)
            return result
        finally:
            if not keep:
                self.container = None
                self._retire(container, now=run.cancelled.is_set())

    def _supervise(self, run: Run, container: _BatchContainer) -> tuple[ExecutionResult, bool]:
        """One program in a batch container; returns its verdict and whether the container
        is clean for the next program."""
        talk = self._engine.converse(run, container.sock, batch=True)
        writer = talk.writer
        if writer is not None:
            writer.join(timeout=0 if talk.outcome != "exited" else 5)
        if talk.outcome != "exited":
            close_attach(container.sock)  # before the kill (see close_attach)
        result = self._engine.judge(run, talk)
        trailer = talk.collector.finish().trailer
        clean = (
            talk.outcome == "exited"
            and talk.collector.ended
            and trailer is not None
            and trailer.setup_error is None
            and trailer.damage is None
            and (writer is None or not writer.is_alive())
        )
        if trailer is not None and trailer.damage is not None:
            logger.info(
                "batch sandbox %s replaced: the program %s", container.id[:12], trailer.damage
            )
        return result, clean

    def _retire(self, container: _BatchContainer, *, now: bool = False) -> None:
        """End a batch container: closing its stdin ends its PID 1, then it is removed.
        Without ``now`` nothing here blocks: ``dispose`` only schedules the removal."""
        close_attach(container.sock)
        self._engine.dispose(container.id, now=now)
