"""Execution on remote executor services (``assay executor``) over HTTP: the platform's
engine when ``EXECUTION_MODE=remote``. Callers cannot tell it from the local engine: same
results, same exceptions, output streamed while the program runs, cancellation kills the
remote sandbox.

Failure policy:

* an executor that cannot be reached, or has no free slot, is skipped and the next one tried,
  with backoff; nothing ran, so this is always safe;
* an executor that fails *during* an execution (killed, connection lost) raises
  ``EngineUnavailableError``: the program may have partly run, so the queue puts the
  evaluation back and runs it again in a fresh sandbox (its events show the ``requeued``);
* executors marked unhealthy are probed again after ``recheck_seconds`` and used again once
  they answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass

import httpx

from assay.config import ExecutionSettings
from assay.errors import (
    ConfigurationError,
    EngineUnavailableError,
    ExecutionError,
    SandboxError,
    error_from_code,
)
from assay.execution_engine.interface import (
    BatchSandbox,
    EngineHealth,
    ExecutionInterface,
    LanguageInfo,
    OutputCallback,
    PoolStats,
    describe_languages,
)
from assay.execution_engine.live import (
    CommandRequest,
    CommandResult,
    FileWritten,
    SandboxInfo,
    SandboxRequest,
)
from assay.execution_engine.models import (
    ExecutionRequest,
    ExecutionResult,
    languages_of,
    resolve_request,
)
from assay.execution_engine.pool import merge_pool_stats
from assay.execution_engine.protocol import (
    BATCH_SANDBOX_HEADER,
    BATCH_SANDBOXES_PATH,
    EXECUTION_ID_HEADER,
    EXECUTIONS_PATH,
    LANGUAGES_PATH,
    POOL_PATH,
    STREAM_PATH,
    decode_output,
)
from assay.execution_engine.remote_sandboxes import RemoteSandboxes

__all__ = ["RemoteExecutionEngine"]

logger = logging.getLogger(__name__)

#: Beyond the program's own timeout: container create/start/remove and the network.
_LIFECYCLE_MARGIN_SECONDS = 30.0
_BACKOFF_SECONDS = (0.1, 0.3, 1.0, 2.0)


@dataclass
class _Executor:
    url: str
    healthy: bool = True
    free: int = 1
    checked_at: float = float("-inf")
    detail: str = "not checked yet"


class RemoteExecutionEngine(ExecutionInterface):
    """Spreads executions over executor services by their free capacity."""

    def __init__(
        self,
        urls: list[str],
        *,
        token: str | None,
        settings: ExecutionSettings,
        transport: httpx.AsyncBaseTransport | None = None,
        recheck_seconds: float = 5.0,
        capacity_ttl_seconds: float = 1.0,
    ) -> None:
        if not urls:
            raise ConfigurationError(
                "EXECUTION_MODE=remote needs EXECUTION_SERVICE_URL (one or more executor URLs)"
            )
        self._settings = settings
        self._executors = [_Executor(url.rstrip("/")) for url in urls]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(10.0, connect=3.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._recheck = recheck_seconds
        self._capacity_ttl = capacity_ttl_seconds
        self._next = 0
        self._sandboxes = RemoteSandboxes(
            self._http, [e.url for e in self._executors], self._choose_url, settings
        )

    async def start(self) -> None:
        await self._refresh(force=True)

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        return await self._execute(request, on_output, None)

    def batch_sandbox(self) -> BatchSandbox:
        """A batch sandbox on one executor, chosen by the first program (and changed only
        when that executor cannot take the next)."""
        return _RemoteBatchSandbox(self)

    async def _execute(
        self,
        request: ExecutionRequest,
        on_output: OutputCallback | None,
        sandbox: _RemoteBatchSandbox | None,
    ) -> ExecutionResult:
        resolved = resolve_request(request, self._settings)  # the same InvalidRequestError
        body = request.model_dump(mode="json")
        timeout = httpx.Timeout(
            10.0, connect=3.0, read=resolved.timeout_seconds + _LIFECYCLE_MARGIN_SECONDS
        )
        headers = {} if sandbox is None else {BATCH_SANDBOX_HEADER: sandbox.id}
        problems: list[str] = []
        for attempt in range(len(self._executors) + len(_BACKOFF_SECONDS)):
            pinned = sandbox.executor if sandbox is not None else None
            executor = pinned if pinned is not None and pinned.healthy else await self._choose()
            if executor is None:
                down = "; ".join(f"{e.url}: {e.detail}" for e in self._executors)
                problems.append(f"no executor is healthy ({down})")
            else:
                outcome = await self._try(executor, body, timeout, on_output, headers)
                if isinstance(outcome, ExecutionResult):
                    if sandbox is not None:
                        await sandbox.moved_to(executor)
                    return outcome
                problems.append(f"{executor.url}: {outcome}")
            if attempt < len(_BACKOFF_SECONDS):
                await asyncio.sleep(_BACKOFF_SECONDS[attempt])
        last = list(dict.fromkeys(problems))[-3:]  # each problem once, however often met
        raise EngineUnavailableError(
            "no executor could run this execution (" + "; ".join(last) + ")"
        )

    async def _try(  # noqa: PLR0912 - the one place that maps every transport outcome
        self,
        executor: _Executor,
        body: dict[str, object],
        timeout: httpx.Timeout,
        on_output: OutputCallback | None,
        headers: dict[str, str],
    ) -> ExecutionResult | str:
        """The result, or why this executor could not start it (safe to try elsewhere).
        Raises once the execution has started and then fails."""
        execution_id = secrets.token_hex(12)
        started = False
        executor.free -= 1  # until the next capacity report
        try:
            async with self._http.stream(
                "POST",
                executor.url + STREAM_PATH,
                json=body,
                headers={EXECUTION_ID_HEADER: execution_id, **headers},
                timeout=timeout,
            ) as response:
                if response.status_code == 429:
                    executor.free = 0
                    return "busy"
                if response.status_code == 401:
                    raise EngineUnavailableError(
                        f"executor {executor.url} refused our token; give the platform the "
                        "executor's ASSAY_EXECUTOR__TOKEN"
                    )
                if response.is_error:
                    raise _error_from(await response.aread(), response.status_code)
                started = True
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    message = json.loads(line)
                    kind = message.get("type")
                    if kind == "output" and on_output is not None:
                        on_output(*decode_output(message))
                    elif kind == "result":
                        return ExecutionResult.model_validate(message["result"])
                    elif kind == "error":
                        error = message.get("error") or {}
                        raise _execution_error(str(error.get("code")), str(error.get("message")))
            raise httpx.RemoteProtocolError("the stream ended without a result")
        except asyncio.CancelledError:
            if started:
                await asyncio.shield(self._cancel_remote(executor, execution_id))
            raise
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self._mark_down(executor, f"unreachable: {exc}")
            return "unreachable"
        except (httpx.TransportError, ValueError, KeyError) as exc:
            problem = f"failed {'during an execution' if started else 'before starting'}: {exc!r}"
            self._mark_down(executor, problem)
            if not started:
                return problem
            raise EngineUnavailableError(
                f"executor {executor.url} failed during the execution ({exc!r}); it will be "
                "run again"
            ) from exc

    async def _close_remote_sandbox(self, executor: _Executor, sandbox_id: str) -> None:
        """Best effort: an executor that does not answer destroys idle sandboxes itself."""
        with contextlib.suppress(httpx.HTTPError):
            await self._http.delete(f"{executor.url}{BATCH_SANDBOXES_PATH}/{sandbox_id}")

    async def _cancel_remote(self, executor: _Executor, execution_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self._http.delete(f"{executor.url}{EXECUTIONS_PATH}/{execution_id}", timeout=10)

    def _mark_down(self, executor: _Executor, detail: str) -> None:
        if executor.healthy:
            logger.warning("executor %s is down: %s", executor.url, detail)
        executor.healthy = False
        executor.detail = detail
        executor.checked_at = time.monotonic()

    # -- live sandboxes (remote_sandboxes.py) -----------------------------------------------

    async def create_sandbox(self, request: SandboxRequest) -> SandboxInfo:
        return await self._sandboxes.create(request)

    async def sandbox(self, sandbox_id: str) -> SandboxInfo:
        return await self._sandboxes.get(sandbox_id)

    async def list_sandboxes(self) -> list[SandboxInfo]:
        return await self._sandboxes.running()

    async def exec_command(
        self, sandbox_id: str, command: CommandRequest, *, on_output: OutputCallback | None = None
    ) -> CommandResult:
        return await self._sandboxes.exec(sandbox_id, command, on_output)

    async def write_file(
        self, sandbox_id: str, path: str, data: bytes, *, user: str | None = None
    ) -> FileWritten:
        return await self._sandboxes.write_file(sandbox_id, path, data, user)

    async def read_file(
        self, sandbox_id: str, path: str, *, max_bytes: int, user: str | None = None
    ) -> bytes:
        return await self._sandboxes.read_file(sandbox_id, path, max_bytes, user)

    async def delete_sandbox(self, sandbox_id: str) -> SandboxInfo:
        return await self._sandboxes.delete(sandbox_id)

    async def _choose_url(self) -> str | None:
        """The executor for a new live sandbox: a healthy one, the least busy."""
        executor = await self._choose()
        return executor.url if executor is not None else None

    async def _choose(self) -> _Executor | None:
        if len(self._executors) == 1 and self._executors[0].healthy:
            return self._executors[0]  # nothing to choose between: no capacity probe
        await self._refresh()
        healthy = [e for e in self._executors if e.healthy]
        if not healthy:
            return None
        best = max(e.free for e in healthy)
        candidates = [e for e in healthy if e.free == best]
        self._next += 1
        return candidates[self._next % len(candidates)]

    async def _refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        stale = [
            e
            for e in self._executors
            if force
            or (e.healthy and now - e.checked_at > self._capacity_ttl)
            or (not e.healthy and now - e.checked_at > self._recheck)
        ]
        if stale:
            await asyncio.gather(*(self._probe(e) for e in stale))

    async def _probe(self, executor: _Executor) -> None:
        try:
            response = await self._http.get(executor.url + "/v1/capacity", timeout=3.0)
            if response.status_code == 401:
                raise EngineUnavailableError("executor refused our token")
            response.raise_for_status()
            executor.free = int(response.json()["free"])
            if not executor.healthy:
                logger.warning("executor %s is back", executor.url)
            executor.healthy = True
            executor.detail = "ok"
        except (httpx.HTTPError, ValueError, KeyError, ExecutionError) as exc:
            executor.healthy = False
            executor.detail = f"not answering: {exc}"
        executor.checked_at = time.monotonic()

    async def check_health(self) -> EngineHealth:
        """Every executor's own engine health, from its (authenticated) capacity report,
        with what its latest sandbox proved (runtime, seccomp)."""
        await self._refresh(force=True)
        proven: dict[str, str] = {}
        for executor in self._executors:
            if not executor.healthy:
                continue
            try:
                response = await self._http.get(executor.url + "/v1/capacity", timeout=60.0)
                response.raise_for_status()
                engine = response.json().get("engine") or {}
                if not engine.get("healthy", False):
                    executor.healthy = False
                    executor.detail = str(engine.get("detail", "unhealthy"))
                for fact in ("runtime", "seccomp"):
                    if fact in engine:
                        proven[f"{executor.url} {fact}"] = str(engine[fact])
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                executor.healthy = False
                executor.detail = f"health check failed: {exc}"
        facts = {e.url: ("ok" if e.healthy else e.detail) for e in self._executors}
        healthy = [e for e in self._executors if e.healthy]
        detail = "ok" if healthy else "no executor is healthy: " + "; ".join(facts.values())
        return EngineHealth(
            healthy=bool(healthy), detail=detail, facts={"mode": "remote", **facts, **proven}
        )

    async def pool_stats(self) -> list[PoolStats]:
        reports = await asyncio.gather(*(self._pool_of(e) for e in self._executors if e.healthy))
        return merge_pool_stats(list(reports))

    async def _pool_of(self, executor: _Executor) -> list[PoolStats]:
        try:
            response = await self._http.get(executor.url + POOL_PATH, timeout=3.0)
            response.raise_for_status()
            return [PoolStats(**pool) for pool in response.json()["pools"]]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            logger.debug("no pool report from %s: %s", executor.url, exc)
            return []

    async def languages(self) -> list[LanguageInfo]:
        """The languages as the first healthy executor measured them in its image; without
        one, the recipes with unknown versions."""
        for executor in self._executors:
            if not executor.healthy:
                continue
            try:
                response = await self._http.get(executor.url + LANGUAGES_PATH, timeout=3.0)
                response.raise_for_status()
                return [
                    LanguageInfo(**{**item, "extensions": tuple(item["extensions"])})
                    for item in response.json()["languages"]
                ]
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                logger.debug("no languages from %s: %s", executor.url, exc)
        return describe_languages(languages_of(self._settings), {})

    async def close(self) -> None:
        await self._http.aclose()


class _RemoteBatchSandbox(BatchSandbox):
    """A batch sandbox held by one executor under an id of ours."""

    def __init__(self, engine: RemoteExecutionEngine) -> None:
        self._engine = engine
        self._lock = asyncio.Lock()
        self._closed = False
        self.id = secrets.token_hex(16)
        #: Where the sandbox lives; None until the first program ran.
        self.executor: _Executor | None = None

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        async with self._lock:
            if self._closed:
                raise SandboxError("batch sandbox is closed")
            return await self._engine._execute(request, on_output, self)

    async def moved_to(self, executor: _Executor) -> None:
        """The last program ran on ``executor``: the sandbox lives there from now on (one
        left on another executor, which could not take the program, is destroyed)."""
        previous, self.executor = self.executor, executor
        if previous is not None and previous is not executor:
            await self._engine._close_remote_sandbox(previous, self.id)

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            if self.executor is not None:
                await self._engine._close_remote_sandbox(self.executor, self.id)
                self.executor = None


def _error_from(body: bytes, status: int) -> ExecutionError:
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return SandboxError(f"executor answered HTTP {status}")
    return _execution_error(code, message)


def _execution_error(code: str, message: str) -> ExecutionError:
    """The ExecutionError an executor named by ``code``, so that a remote engine raises exactly
    what a local one would; SandboxError for a code that names none (``cancelled``, an HTTP
    error)."""
    error = error_from_code(code, message)
    return error if isinstance(error, ExecutionError) else SandboxError(f"{code}: {message}")
