"""The executor's NDJSON answer of work that streams output (an execution, a command): its
output lines as they come, then its result or its error (``protocol.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

from assay.errors import AssayError
from assay.execution_engine import OutputCallback
from assay.execution_engine.protocol import error_line, output_line, result_line

__all__ = ["ndjson_lines"]


async def ndjson_lines(work: Callable[[OutputCallback], Awaitable[str]]) -> AsyncIterator[bytes]:
    """Runs ``work`` (given the output callback; it returns its result as JSON) and yields
    the lines. The client going away cancels it: an engine kills what it ran."""
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    def on_output(stream: Literal["stdout", "stderr"], data: bytes) -> None:
        lines.put_nowait(output_line(stream, data))

    async def run() -> None:
        try:
            lines.put_nowait(result_line(await work(on_output)))
        except AssayError as exc:
            lines.put_nowait(error_line(exc.code, exc.message))
        except asyncio.CancelledError:
            lines.put_nowait(error_line("cancelled", "the execution was cancelled"))
        finally:
            lines.put_nowait(None)

    task = asyncio.create_task(run())
    try:
        while (line := await lines.get()) is not None:
            yield line
    finally:
        if not task.done():
            task.cancel()
