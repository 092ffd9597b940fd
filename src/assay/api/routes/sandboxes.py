"""/api/v1/sandboxes: live sandboxes for agents. Create, read, list and delete them; run
commands in them (a result, or NDJSON lines as output arrives); write and read their files;
read and follow the events of every operation.

Storage keeps each sandbox's owner (the API key that created it: another key's sandbox is
404), its state and an event per operation; the engine runs it. A sandbox can end without
a request (its idle timeout or lifetime, or lost): whenever the engine is found not to have
a sandbox storage thinks running, the record is ended with the engine's reason, or ``lost``.
Each recorded event is announced on the bus under :func:`bus_key`, so a follower on any
replica hears of it (the bus carries notices between replicas; storage stays the truth).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from assay.api.body_limit import RouteLimit
from assay.api.deps import BusDep, EngineDep, MetricsDep, SettingsDep, StorageDep
from assay.api.schemas import (
    CommandIn,
    CommandOut,
    Encoding,
    ErrorBody,
    FileOut,
    SandboxCreate,
    SandboxEventList,
    SandboxEventOut,
    SandboxList,
    SandboxOut,
    StoredText,
)
from assay.api.strict_json import StrictJsonRoute
from assay.config import Settings
from assay.errors import (
    AssayError,
    ExecutionError,
    InvalidRequestError,
    NotFoundError,
    SandboxEndedError,
    SandboxError,
    SandboxLostError,
    SandboxNotFoundError,
    SandboxQuotaError,
)
from assay.execution_engine import (
    CommandRequest,
    CommandResult,
    EndReason,
    ExecutionInterface,
    OutputCallback,
    SandboxInfo,
    SandboxRequest,
    resolve_sandbox,
)
from assay.monitoring import EventBus, Metrics
from assay.storage import SandboxEvent, SandboxEventType, SandboxRecord, SandboxState, Storage

__all__ = ["body_limits", "bus_key", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/sandboxes", tags=["sandboxes"], route_class=StrictJsonRoute)

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 422, 429, 503)
}
_KEEPALIVE_SECONDS = 15.0
#: How much of a command's argv its ``exec`` event keeps.
_RECORDED_ARGV_BYTES = 4096
_MIB = 1024 * 1024
_LIST_LIMIT = 500

Stream = Literal["stdout", "stderr"]

SandboxId = Annotated[StoredText, Path()]
FilePath = Annotated[
    StoredText, Query(min_length=1, max_length=4096, description="Relative to /workspace.")
]
FileUser = Annotated[
    StoredText | None,
    Query(min_length=1, max_length=256, description="A user name or uid (root sandboxes)."),
]
#: Sequence numbers are integers of the database; a larger one could not be looked up.
After = Annotated[int, Query(ge=0, le=2**63 - 1, description="Events after this seq.")]
LastEventId = Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=2**63 - 1)]


def bus_key(sandbox_id: str) -> str:
    """What the bus's notices of a sandbox's events are published under (evaluations use
    their bare ids; these never collide with one)."""
    return f"sandbox:{sandbox_id}"


def body_limits(settings: Settings, prefix: str) -> list[RouteLimit]:
    """The body caps of the routes that take a file: a command's stdin, base64 in JSON, and
    a file's raw bytes, each up to ``execution.sandboxes.max_file_bytes``."""
    largest = settings.execution.sandboxes.max_file_bytes
    base = re.escape(f"{prefix}{router.prefix}/")
    return [
        RouteLimit(
            "POST",
            re.compile(base + r"[^/]+/exec"),
            max(settings.api.max_body_bytes, largest * 4 // 3 + 2 * _MIB),
        ),
        RouteLimit(
            "PUT", re.compile(base + r"[^/]+/files"), max(settings.api.max_body_bytes, largest)
        ),
    ]


class Sandboxes:
    """The caller's live sandboxes: its records in storage, the engine's view of them, and
    the events of what is done to them (recorded, announced, counted)."""

    def __init__(
        self,
        *,
        storage: Storage,
        engine: ExecutionInterface,
        bus: EventBus,
        metrics: Metrics,
        owner: int | None,
    ) -> None:
        self.storage = storage
        self.engine = engine
        self.bus = bus
        self.metrics = metrics
        #: The caller's API key; None on a server without keys (every sandbox is its own).
        self.owner = owner

    async def owned(self, sandbox_id: str) -> SandboxRecord:
        """The caller's stored sandbox. Raises SandboxNotFoundError (another key's too)."""
        try:
            record = await self.storage.get_sandbox_record(sandbox_id)
        except NotFoundError:
            record = None
        if record is None or (self.owner is not None and record.api_key_id != self.owner):
            raise SandboxNotFoundError(f"no sandbox with id {sandbox_id!r}")
        return record

    async def running(self, sandbox_id: str) -> SandboxRecord:
        """The caller's sandbox if it still runs. Raises SandboxEndedError naming why not."""
        record = await self.owned(sandbox_id)
        if record.state is SandboxState.ENDED:
            raise _ended(record.id, record.end_reason)
        return record

    async def record(
        self, sandbox_id: str, type_: SandboxEventType, data: dict[str, Any]
    ) -> SandboxEvent:
        event = await self.storage.add_sandbox_event(sandbox_id, type_, data)
        self.bus.publish(bus_key(sandbox_id), type_.value)
        return event

    async def end(self, sandbox_id: str, reason: str, at: datetime | None = None) -> SandboxRecord:
        """Record that it ended (once: a second end changes nothing)."""
        record, ended = await self.storage.end_sandbox_record(
            sandbox_id, reason, at or datetime.now(UTC)
        )
        if ended:
            self.bus.publish(bus_key(sandbox_id), SandboxEventType.ENDED.value)
            self.metrics.sandboxes_ended.labels(record.end_reason or reason).inc()
        return record

    async def create(self, request: SandboxRequest, max_running: int) -> SandboxInfo:
        """Start one for the caller, unless it already has ``max_running`` running.

        Raises:
            SandboxQuotaError: it has; what the engine raises.
        """
        await self.reconcile()
        running = await self.storage.count_running_sandboxes(self.owner)
        if running >= max_running:
            raise SandboxQuotaError(
                f"this API key has {running} live sandboxes, as many as it may "
                f"(ASSAY_API__MAX_SANDBOXES_PER_KEY={max_running}); delete one first"
            )
        info = await self.engine.create_sandbox(request)
        try:
            await self.storage.add_sandbox(info.model_dump(mode="json"), self.owner)
        except BaseException:
            with contextlib.suppress(ExecutionError):  # not kept: nobody could reach it
                await self.engine.delete_sandbox(info.id)
            raise
        self.bus.publish(bus_key(info.id), SandboxEventType.CREATED.value)
        self.metrics.sandboxes_created.labels("true" if info.warm else "false").inc()
        return info

    async def reconcile(self) -> dict[str, SandboxInfo]:
        """End the caller's records that storage thinks running and the engine no longer
        has running. Returns the engine's running sandboxes by id."""
        records = await self.storage.list_sandbox_records(
            api_key_id=self.owner, state=SandboxState.RUNNING, limit=10_000
        )
        live = {info.id: info for info in await self.engine.list_sandboxes()}
        for record in records:
            info = live.get(record.id)
            if (info is None or info.state != "running") and self.engine.holds(record.id):
                await self.view(record)
        return {key: info for key, info in live.items() if info.state == "running"}

    async def view(self, record: SandboxRecord) -> SandboxOut:
        """The sandbox as its engine knows it, when it does (the record ended if the engine
        says it has); else as stored (ended ``lost`` if storage thought it running)."""
        try:
            info = await self.engine.sandbox(record.id)
        except SandboxNotFoundError:
            if record.state is SandboxState.RUNNING and self.engine.holds(record.id):
                record = await self.end(record.id, EndReason.LOST)
            return _stored(record)
        if info.state == "ended" and record.state is SandboxState.RUNNING:
            await self.end(record.id, info.end_reason or EndReason.LOST, info.ended_at)
        return SandboxOut.model_validate(info.model_dump())

    async def learn_end(self, record: SandboxRecord, exc: ExecutionError) -> ExecutionError:
        """After the engine refused an operation: if that was because the sandbox has ended
        (or is gone), record why, and say so. Returns the error to raise."""
        if not isinstance(exc, SandboxEndedError | SandboxNotFoundError | SandboxLostError):
            return exc
        view = await self.view(record)
        if view.state == "ended" and not isinstance(exc, SandboxLostError):
            return _ended(record.id, view.end_reason)
        return exc


def _caller(request: Request) -> int | None:
    """The id of the API key ``require_api_key`` checked; None on a server without keys."""
    key = getattr(request.state, "api_key", None)
    return None if key is None else int(key.id)


async def _sandboxes(
    request: Request, storage: StorageDep, engine: EngineDep, bus: BusDep, metrics: MetricsDep
) -> Sandboxes:
    owner = _caller(request)
    return Sandboxes(storage=storage, engine=engine, bus=bus, metrics=metrics, owner=owner)


SandboxesDep = Annotated[Sandboxes, Depends(_sandboxes)]


def _ended(sandbox_id: str, reason: str | None) -> SandboxEndedError:
    return SandboxEndedError(f"sandbox {sandbox_id!r} has ended ({reason or EndReason.LOST})")


def _stored(record: SandboxRecord) -> SandboxOut:
    return SandboxOut.model_validate(
        {
            **record.info,
            "state": record.state.value,
            "ended_at": record.ended_at,
            "end_reason": record.end_reason,
        }
    )


# -- sandboxes -----------------------------------------------------------------------------


@router.post("", status_code=201, response_model=SandboxOut, responses=_ERRORS)
async def create(body: SandboxCreate, sandboxes: SandboxesDep, settings: SettingsDep) -> SandboxOut:
    """Start a live sandbox (from the warm pool when one is ready). At most
    ``ASSAY_API__MAX_SANDBOXES_PER_KEY`` run at once per API key (429 beyond)."""
    request = SandboxRequest.model_validate(body.model_dump())
    resolve_sandbox(request, settings.execution)  # 422 naming the field, before anything
    info = await sandboxes.create(request, settings.api.max_sandboxes_per_key)
    return SandboxOut.model_validate(info.model_dump())


@router.get("", response_model=SandboxList, responses=_ERRORS)
async def list_sandboxes(
    sandboxes: SandboxesDep, state: Annotated[SandboxState | None, Query()] = None
) -> SandboxList:
    """The caller's sandboxes, running ones first, then newest first."""
    try:
        live = await sandboxes.reconcile()
    except ExecutionError as exc:  # the stored view still answers
        logger.warning("sandboxes listed as stored: the engine did not answer: %s", exc.message)
        live = {}
    records = await sandboxes.storage.list_sandbox_records(
        api_key_id=sandboxes.owner, state=state, limit=_LIST_LIMIT
    )
    items = []
    for record in records:
        info = live.get(record.id)
        if info is not None and record.state is SandboxState.RUNNING:
            items.append(SandboxOut.model_validate(info.model_dump()))
        else:
            items.append(_stored(record))
    return SandboxList(items=items)


@router.get("/{sandbox_id}", response_model=SandboxOut, responses=_ERRORS)
async def get_sandbox(sandbox_id: SandboxId, sandboxes: SandboxesDep) -> SandboxOut:
    """One sandbox: as its engine knows it while it does, else as stored."""
    record = await sandboxes.owned(sandbox_id)
    try:
        return await sandboxes.view(record)
    except ExecutionError as exc:
        logger.warning("sandbox %s shown as stored: %s", sandbox_id, exc.message)
        return _stored(record)


@router.delete("/{sandbox_id}", response_model=SandboxOut, responses=_ERRORS)
async def delete_sandbox(sandbox_id: SandboxId, sandboxes: SandboxesDep) -> SandboxOut:
    """End the sandbox (every process in it is killed). An ended one is returned as it is."""
    record = await sandboxes.owned(sandbox_id)
    if record.state is SandboxState.ENDED:
        return _stored(record)
    try:
        info = await sandboxes.engine.delete_sandbox(sandbox_id)
    except SandboxNotFoundError:
        return _stored(await sandboxes.end(sandbox_id, EndReason.LOST))
    await sandboxes.end(sandbox_id, info.end_reason or EndReason.DELETED, info.ended_at)
    return SandboxOut.model_validate(info.model_dump())


# -- commands ------------------------------------------------------------------------------


@router.post(
    "/{sandbox_id}/exec",
    response_model=CommandOut,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "With ?stream=true."},
        **_ERRORS,
    },
)
async def exec_command(
    sandbox_id: SandboxId,
    body: CommandIn,
    *,
    sandboxes: SandboxesDep,
    settings: SettingsDep,
    stream: Annotated[bool, Query(description="NDJSON lines as output arrives.")] = False,
) -> Any:
    """Run one command (an argv list, no shell) and answer what it did; a non-zero exit or a
    timeout is data. With ?stream=true: ``{"type": "stdout"|"stderr", "data"}`` lines as it
    writes, then ``{"type": "result", ...}`` (or ``{"type": "error", "error"}``)."""
    record = await sandboxes.running(sandbox_id)
    command = _command(body)
    command.check(settings.execution)  # 422 naming the field, before any stream starts
    run = _Command(sandboxes, record, command, body.encoding)
    if not stream:
        return await run.result()
    return StreamingResponse(
        run.lines(),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _command(body: CommandIn) -> CommandRequest:
    """The engine's command for ``body``: its stdin from ``input`` (text) or
    ``input_base64``, never both."""
    if body.input is not None and body.input_base64 is not None:
        raise InvalidRequestError("give input or input_base64, not both", field="input_base64")
    stdin: bytes | None = None
    if body.input is not None:
        stdin = body.input.encode()
    elif body.input_base64 is not None:
        try:
            stdin = base64.b64decode(body.input_base64, validate=True)
        except binascii.Error as exc:
            raise InvalidRequestError(
                f"input_base64 is not base64: {exc}", field="input_base64"
            ) from exc
    fields = body.model_dump(exclude={"input", "input_base64", "encoding"})
    try:
        command = CommandRequest.model_validate(fields)
    except ValidationError as exc:  # CommandIn's own checks are the same: a safety net
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InvalidRequestError(f"{where}: {error['msg']}", field=where) from exc
    # stdin set after validation, as the bytes it is (on the wire it would be base64)
    return command.model_copy(update={"input": stdin})


def _encoded(data: bytes, encoding: Encoding) -> str:
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    return data.decode(errors="replace")


def _recorded_argv(argv: list[str]) -> tuple[list[str], bool]:
    """The argv as an event keeps it: its first :data:`_RECORDED_ARGV_BYTES`, and whether
    it was cut."""
    kept: list[str] = []
    room = _RECORDED_ARGV_BYTES
    for arg in argv:
        encoded = arg.encode()
        if len(encoded) > room:
            kept.append(encoded[:room].decode(errors="ignore"))
            return kept, True
        kept.append(arg)
        room -= len(encoded)
    return kept, False


class _Command:
    """One command in a sandbox: run by the engine, answered whole or as lines, recorded."""

    def __init__(
        self,
        sandboxes: Sandboxes,
        record: SandboxRecord,
        command: CommandRequest,
        encoding: Encoding,
    ) -> None:
        self.sandboxes = sandboxes
        self.record = record
        self.command = command
        self.encoding = encoding
        argv, cut = _recorded_argv(command.command)
        self.data: dict[str, Any] = {
            "command": argv,
            "command_truncated": cut,
            "cwd": command.cwd,
            "user": command.user,
            "input_bytes": len(command.input or b""),
        }

    async def run(self, on_output: OutputCallback | None) -> CommandResult:
        """The engine's result, recorded as an ``exec`` event (a failure too, unless the
        sandbox had ended before the command could reach it)."""
        began = time.monotonic()
        try:
            result = await self.sandboxes.engine.exec_command(
                self.record.id, self.command, on_output=on_output
            )
        except AssayError as exc:
            error = await self._failed(exc, began)
            if error is exc:
                raise
            raise error from exc
        except asyncio.CancelledError:  # the caller went away: the engine killed it
            with anyio.CancelScope(shield=True):
                await self._failed(None, began)
            raise
        metrics = self.sandboxes.metrics
        metrics.sandbox_command_time.observe(result.duration_seconds)
        outcome = "exited"
        if result.timed_out:
            outcome = "timed_out"
        elif result.exec_failure is not None:
            outcome = "exec_failure"
        metrics.sandbox_commands.labels(outcome).inc()
        await self.sandboxes.record(
            self.record.id,
            SandboxEventType.EXEC,
            {
                **self.data,
                "returncode": result.returncode,
                "timed_out": result.timed_out,
                "exec_failure": None if result.exec_failure is None else result.exec_failure.value,
                "stdout_bytes": len(result.stdout),
                "stderr_bytes": len(result.stderr),
                "stdout_truncated": result.stdout_truncated,
                "stderr_truncated": result.stderr_truncated,
                "duration_seconds": result.duration_seconds,
            },
        )
        return result

    async def _failed(self, exc: AssayError | None, began: float) -> AssayError:
        """Record a command that did not run to its end (``exc`` None: cancelled); returns
        the error to raise."""
        if isinstance(exc, SandboxEndedError | SandboxNotFoundError):
            return await self.sandboxes.learn_end(self.record, exc)  # it never got there
        self.sandboxes.metrics.sandbox_commands.labels("error").inc()
        code = "cancelled" if exc is None else exc.code
        data = {**self.data, "error": code, "duration_seconds": time.monotonic() - began}
        await self.sandboxes.record(self.record.id, SandboxEventType.EXEC, data)
        if exc is None:
            return SandboxError("the command was cancelled")
        if isinstance(exc, ExecutionError):
            return await self.sandboxes.learn_end(self.record, exc)
        return exc

    def out(self, result: CommandResult) -> CommandOut:
        return CommandOut(
            returncode=result.returncode,
            stdout=_encoded(result.stdout, self.encoding),
            stderr=_encoded(result.stderr, self.encoding),
            encoding=self.encoding,
            stdout_truncated=result.stdout_truncated,
            stderr_truncated=result.stderr_truncated,
            timed_out=result.timed_out,
            exec_failure=result.exec_failure,
            duration_seconds=result.duration_seconds,
        )

    async def result(self) -> CommandOut:
        return self.out(await self.run(None))

    async def lines(self) -> AsyncIterator[str]:
        """NDJSON: output chunks as they arrive, then the result or the error."""
        chunks: asyncio.Queue[tuple[Stream, bytes] | None] = asyncio.Queue()
        task = asyncio.ensure_future(self.run(lambda *chunk: chunks.put_nowait(chunk)))
        task.add_done_callback(lambda _: chunks.put_nowait(None))
        # UTF-8 split between chunks is decoded whole; base64 chunks concatenate to the bytes.
        decoders = {
            stream: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for stream in ("stdout", "stderr")
        }

        def line(stream: Stream, data: bytes, *, final: bool = False) -> str | None:
            if self.encoding == "base64":
                text = _encoded(data, "base64")
            else:
                text = decoders[stream].decode(data, final)
            if not text:
                return None
            return json.dumps({"type": stream, "data": text, "encoding": self.encoding}) + "\n"

        try:
            while (chunk := await chunks.get()) is not None:
                if (text := line(*chunk)) is not None:
                    yield text
            for stream in ("stdout", "stderr"):
                if self.encoding != "base64" and (text := line(stream, b"", final=True)):
                    yield text
            try:
                result = task.result()
            except AssayError as exc:
                error = {"code": exc.code, "message": exc.message}
                yield json.dumps({"type": "error", "error": error}) + "\n"
                return
            yield json.dumps({"type": "result", **self.out(result).model_dump(mode="json")}) + "\n"
        finally:
            if not task.done():  # the client went away mid-command
                task.cancel()
                with (
                    anyio.CancelScope(shield=True),
                    contextlib.suppress(Exception, asyncio.CancelledError),
                ):
                    await task


# -- files ---------------------------------------------------------------------------------


_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@router.put(
    "/{sandbox_id}/files",
    response_model=FileOut,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def write_file(
    sandbox_id: SandboxId,
    *,
    path: FilePath,
    request: Request,
    sandboxes: SandboxesDep,
    user: FileUser = None,
) -> FileOut:
    """Write the request's body, raw bytes of any content type (``application/octet-stream``),
    to ``path``, creating its parent directories."""
    record = await sandboxes.running(sandbox_id)
    data = await request.body()
    began = time.monotonic()
    try:
        written = await sandboxes.engine.write_file(sandbox_id, path, data, user=user)
    except AssayError as exc:
        error = await _file_failed(sandboxes, record, SandboxEventType.WRITE_FILE, path, exc)
        if error is exc:
            raise
        raise error from exc
    duration = time.monotonic() - began
    sandboxes.metrics.sandbox_file_operations.labels("write", "ok").inc()
    sandboxes.metrics.sandbox_file_bytes.labels("write").inc(written.size)
    await sandboxes.record(
        sandbox_id,
        SandboxEventType.WRITE_FILE,
        {"path": path, "size": written.size, "duration_seconds": duration},
    )
    return FileOut(path=written.path, size=written.size)


@router.get(
    "/{sandbox_id}/files",
    response_class=Response,
    responses={200: {"content": _BINARY}, **_ERRORS},
)
async def read_file(
    sandbox_id: SandboxId,
    *,
    path: FilePath,
    sandboxes: SandboxesDep,
    settings: SettingsDep,
    max_bytes: Annotated[int | None, Query(ge=0, description="Larger files get 413.")] = None,
    user: FileUser = None,
) -> Response:
    """The file's exact bytes (``application/octet-stream``)."""
    largest = settings.execution.sandboxes.max_file_bytes
    record = await sandboxes.running(sandbox_id)
    began = time.monotonic()
    try:
        data = await sandboxes.engine.read_file(
            sandbox_id,
            path,
            max_bytes=min(largest if max_bytes is None else max_bytes, largest),
            user=user,
        )
    except AssayError as exc:
        error = await _file_failed(sandboxes, record, SandboxEventType.READ_FILE, path, exc)
        if error is exc:
            raise
        raise error from exc
    duration = time.monotonic() - began
    sandboxes.metrics.sandbox_file_operations.labels("read", "ok").inc()
    sandboxes.metrics.sandbox_file_bytes.labels("read").inc(len(data))
    await sandboxes.record(
        sandbox_id,
        SandboxEventType.READ_FILE,
        {"path": path, "size": len(data), "duration_seconds": duration},
    )
    return Response(data, media_type="application/octet-stream")


async def _file_failed(
    sandboxes: Sandboxes,
    record: SandboxRecord,
    type_: SandboxEventType,
    path: str,
    exc: AssayError,
) -> AssayError:
    """Record a file operation the engine refused; the error to raise."""
    operation = "write" if type_ is SandboxEventType.WRITE_FILE else "read"
    sandboxes.metrics.sandbox_file_operations.labels(operation, exc.code).inc()
    await sandboxes.record(record.id, type_, {"path": path, "error": exc.code})
    if isinstance(exc, ExecutionError):
        return await sandboxes.learn_end(record, exc)
    return exc


# -- events --------------------------------------------------------------------------------


@router.get(
    "/{sandbox_id}/events",
    response_model=SandboxEventList,
    responses={200: {"content": {"text/event-stream": {}}}, **_ERRORS},
)
async def events(
    sandbox_id: SandboxId,
    *,
    sandboxes: SandboxesDep,
    after: After = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    follow: Annotated[bool, Query(description="Server-Sent Events until it ends.")] = False,
    last_event_id: LastEventId = None,
) -> Any:
    """Its recorded operations after ``after``, oldest first. With ?follow=true, Server-Sent
    Events (``event: sandbox``): the recorded ones, then live ones, until its ``ended``
    event; resumes after Last-Event-ID."""
    record = await sandboxes.owned(sandbox_id)
    if not follow:
        found = await sandboxes.storage.sandbox_events(sandbox_id, after=after, limit=limit)
        return SandboxEventList(items=[_event_out(event) for event in found])
    return StreamingResponse(
        _follow(sandboxes, record, max(after, last_event_id or 0)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event_out(event: SandboxEvent) -> SandboxEventOut:
    return SandboxEventOut(
        seq=event.seq,
        sandbox_id=event.sandbox_id,
        type=event.type.value,
        at=event.at,
        data=event.data,
    )


async def _follow(sandboxes: Sandboxes, record: SandboxRecord, after: int) -> AsyncIterator[str]:
    storage = sandboxes.storage
    with sandboxes.bus.subscribe(bus_key(record.id)) as subscription:
        while True:
            batch = await storage.sandbox_events(record.id, after=after, limit=500)
            for event in batch:
                after = event.seq
                payload = _event_out(event).model_dump_json()
                yield f"id: {event.seq}\nevent: sandbox\ndata: {payload}\n\n"
                if event.type is SandboxEventType.ENDED:
                    return
            if len(batch) == 500:
                continue
            notice = await subscription.next(timeout=_KEEPALIVE_SECONDS)
            if notice is None:
                yield f": keep-alive {json.dumps(record.id)}\n\n"
                # It may have ended by itself (idle, lifetime, lost): then the engine says so.
                with contextlib.suppress(ExecutionError):
                    await sandboxes.view(record)
