"""Runs each program in a fresh, locked-down Docker container.

One execution, start to end (all blocking Docker calls run on a worker thread):

1. take a started container from the warm pool (``pool.py``) or, cold, create one as
   ``sandbox_spec.py`` describes it (no network, no capabilities, Assay's seccomp profile,
   resource caps, AutoRemove, labelled with this engine's id and owner);
2. attach to its stdin/stdout/stderr before starting it, and send the program in through
   stdin (no host path is ever mounted) to the sandbox's own PID 1 (``sandbox_init.c``),
   which has been waiting for it. The attach stays open until the sandbox is done: it is the
   sandbox's lifeline (this process dies, Docker closes the sandbox's stdin, its PID 1 kills
   everything and exits, Docker removes it);
3. read output as it comes, enforcing the output cap and the wall-clock deadline; on either,
   SIGKILL the container, which ends every process in it;
4. the verdict comes from the supervisor's trailer (exit status, resource use, OOM kills) as
   soon as it has arrived on both streams, once the isolation it reports (kernel, seccomp) is
   the configured one (``isolation.py``). Without a trailer only an OOM kill that Docker
   recorded is a verdict; any other end (``docker kill``, ``docker rm -f``, a daemon
   restart) raises :class:`SandboxLostError`: the program said nothing. The container is
   removed by Docker when it stops; a cancelled execution's is killed before the
   cancellation propagates.

A container, pooled or not, serves exactly one execution (or one batch: ``docker_batch.py``,
which runs its programs through this engine's internal API, :class:`BatchEngine`).

Processes sharing one Docker engine never touch each other's sandboxes: each labels its
containers with an owner id of its own, and at start removes only containers that no live
owner can still be using (never started, or stopped, for longer than four API timeouts). Its
reaper (``reaper.py``) removes what the lifeline cannot end once the process is gone: a
container it created but never attached to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from assay.config import ExecutionSettings
from assay.errors import (
    EngineUnavailableError,
    ExecutionError,
    InvalidRequestError,
    RuntimeNotAvailableError,
    SandboxError,
    SandboxImageNotFoundError,
    SandboxLostError,
)
from assay.execution_engine.attach import (
    GO,
    SIGKILL,
    Cancelled,
    Compiled,
    Conversation,
    Run,
    close_attach,
    compile_failure,
    encode_payload,
    pump,
    verdict,
    write_stdin,
)
from assay.execution_engine.docker_batch import DockerBatchSandbox
from assay.execution_engine.docker_daemon import DockerDaemon, epoch
from assay.execution_engine.docker_live import LiveSandboxes
from assay.execution_engine.image import image_languages
from assay.execution_engine.interface import (
    BatchSandbox,
    EngineHealth,
    ExecutionInterface,
    LanguageInfo,
    OutputCallback,
    PoolStats,
    describe_languages,
)
from assay.execution_engine.isolation import GVISOR, Isolation, load_seccomp_profile
from assay.execution_engine.live import (
    CommandRequest,
    CommandResult,
    FileWritten,
    ResolvedSandbox,
    SandboxInfo,
    SandboxRequest,
)
from assay.execution_engine.models import (
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    languages_of,
    resolve_request,
)
from assay.execution_engine.output import CollectedOutput, OutputCollector
from assay.execution_engine.pool import WarmPool
from assay.execution_engine.reaper import CLEAN_CLOSE, start_reaper
from assay.execution_engine.sandbox_spec import (
    LABEL_MANAGED,
    LABEL_OWNER,
    Profile,
    SandboxSpec,
    live_sandbox_spec,
    sandbox_spec,
)

__all__ = ["DockerEngine"]

logger = logging.getLogger(__name__)

#: How long a finished sandbox may take to stop (and be removed) by itself before it is
#: removed by force.
_EXIT_GRACE_SECONDS = 2.0
#: Exit status of a container Docker killed for memory (SIGKILL), for a verdict with no trailer.
_KILLED = 128 + 9
#: How many times Docker's event log is read, 0.2 s apart, for an OOM kill of a sandbox that
#: ended without a trailer (or, under gVisor, whose program was SIGKILLed) before it is called
#: lost (or killed from inside): up to 3 s, as a busy machine's runsc shim logs the OOM late.
_EVENT_CHECKS = 15
_NO_BATCH_UNDER_GVISOR = (
    "batch isolation is not available under gVisor (runtime runsc): the reset between "
    "programs cannot be verified there; submit with isolation 'evaluation'"
)

_T = TypeVar("_T")
_MIB = 1024 * 1024


class DockerEngine(ExecutionInterface):
    """A fresh container per execution on a local (or ``DOCKER_HOST``) Docker engine.

    ``prepare``, ``acquire``, ``guarded``, ``open_sandbox``, ``judge`` and ``dispose`` are
    the steps of one execution, and its batch sandboxes' internal API (:class:`BatchEngine`).
    """

    def __init__(self, settings: ExecutionSettings, *, max_parallel: int = 64) -> None:
        self._settings = settings
        self._threads = ThreadPoolExecutor(max_parallel, thread_name_prefix="assay-docker")
        self._daemon: DockerDaemon | None = None
        self._isolation: Isolation | None = None
        #: What the latest sandbox proved about its isolation (``Isolation.check``).
        self._proven: dict[str, str] | None = None
        #: Attach sockets of started warm-pool sandboxes, by container id: their lifelines.
        self._lifelines: dict[str, socket.socket] = {}
        self._lifelines_lock = threading.Lock()
        self.owner = f"{settings.engine_id}.{secrets.token_hex(8)}"
        self._reaper: subprocess.Popen[bytes] | None = None
        self._pool: WarmPool | None = None
        self._start_lock = asyncio.Lock()
        self._active: dict[str, Run] = {}
        self._batches: set[DockerBatchSandbox] = set()
        self._removing = 0  # background removals not finished yet
        self._removing_lock = threading.Lock()
        self._closed = False
        #: Each language's version, from the image's labels (read when it starts).
        self._versions: dict[str, str] | None = None
        self._live = LiveSandboxes(self)

    @property
    def settings(self) -> ExecutionSettings:
        return self._settings

    async def start(self) -> None:
        """Connect, check the image (and runtime), remove abandoned sandboxes, and begin
        filling the warm pool.

        Idempotent; ``execute`` calls it on first use.

        Raises:
            EngineUnavailableError, SandboxImageNotFoundError, RuntimeNotAvailableError.
        """
        async with self._start_lock:
            if self._daemon is not None:
                return
            self._daemon = await self._in_thread(self._connect)
            self._reaper = start_reaper(self.owner, self._settings.docker_host)
            self._pool = self._make_pool()
            self._pool.start()

    def _make_pool(self) -> WarmPool:
        settings = self._settings
        pool = settings.pool
        targets = {Profile(settings.default_memory_mb, settings.default_cpus): pool.size}
        for extra in pool.profiles:
            profile = Profile(extra.memory_mb, extra.cpus)
            targets[profile] = targets.get(profile, 0) + extra.size
        return WarmPool(
            targets,
            create=lambda profile: self._in_thread(self._create_started, profile),
            destroy=lambda sandbox_id: self._in_thread(self._destroy_pooled, sandbox_id),
            alive=lambda: self._in_thread(self._running_ids),
            max_age_seconds=pool.max_age_seconds,
            parallelism=pool.refill_parallelism,
        )

    async def wait_until_warm(self, timeout: float = 60.0) -> bool:
        """Start, and wait until every warm pool is full and every used sandbox removed
        (benchmarks and tests start from that state); False on timeout."""
        began = time.monotonic()
        await self.start()
        if self._pool is None or not await self._pool.wait_ready(timeout):
            return False
        while self._removing:
            if time.monotonic() - began > timeout:
                return False
            await asyncio.sleep(0.01)
        return True

    async def pool_stats(self) -> list[PoolStats]:
        evaluations = self._pool.stats() if self._pool is not None else []
        return evaluations + self._live.pool_stats()

    # -- live sandboxes (docker_live.py) ---------------------------------------------------

    async def create_sandbox(self, request: SandboxRequest) -> SandboxInfo:
        return await self._live.create(request)

    async def sandbox(self, sandbox_id: str) -> SandboxInfo:
        return await self._live.get(sandbox_id)

    def holds(self, sandbox_id: str) -> bool:
        return sandbox_id.startswith(self._live.prefix)

    async def list_sandboxes(self) -> list[SandboxInfo]:
        return await self._live.running()

    async def exec_command(
        self, sandbox_id: str, command: CommandRequest, *, on_output: OutputCallback | None = None
    ) -> CommandResult:
        return await self._live.exec(sandbox_id, command, on_output)

    async def write_file(
        self, sandbox_id: str, path: str, data: bytes, *, user: str | None = None
    ) -> FileWritten:
        return await self._live.write_file(sandbox_id, path, data, user)

    async def read_file(
        self, sandbox_id: str, path: str, *, max_bytes: int, user: str | None = None
    ) -> bytes:
        return await self._live.read_file(sandbox_id, path, max_bytes, user)

    async def delete_sandbox(self, sandbox_id: str) -> SandboxInfo:
        return await self._live.delete(sandbox_id)

    # What live sandboxes use of this engine (docker_live.LiveEngine); on worker threads.

    def isolation(self) -> Isolation:
        return self._require_isolation()

    def create_live(self, sandbox: ResolvedSandbox) -> tuple[str, socket.socket]:
        """A live sandbox's container, created, attached and started."""
        daemon = self._require_daemon()
        spec = live_sandbox_spec(
            self._settings,
            sandbox,
            isolation=self._require_isolation(),
            owner=self.owner,
            token=secrets.token_hex(8),
        )
        container_id = daemon.create_from_config(spec.config, name=spec.name)
        return container_id, self._attach_and_start(daemon, container_id)

    def take_lifeline(self, container_id: str) -> socket.socket | None:
        return self._take_lifeline(container_id)

    def give_lifeline(self, container_id: str, sock: socket.socket) -> None:
        with self._lifelines_lock:
            self._lifelines[container_id] = sock

    def destroy_pooled(self, container_id: str) -> None:
        self._destroy_pooled(container_id)

    def running_ids(self) -> set[str]:
        return self._running_ids()

    def remove(self, container_id: str) -> None:
        self._require_daemon().remove(container_id)

    async def languages(self) -> list[LanguageInfo]:
        """Every enabled language, with the versions measured when the image was built."""
        try:
            await self.start()  # reads them from the image's labels
        except ExecutionError as exc:
            logger.warning("cannot read the image's language versions: %s", exc)
        return describe_languages(languages_of(self._settings), self._versions or {})

    def _connect(self) -> DockerDaemon:
        settings = self._settings
        daemon = DockerDaemon(settings.docker_host, timeout=settings.docker_api_timeout_seconds)
        try:
            labels = daemon.image_labels(settings.image)
            if labels is None:
                raise SandboxImageNotFoundError(
                    f"sandbox image {settings.image!r} not found; build it with `assay image build`"
                )
            self._versions = image_languages(labels)
            enabled = languages_of(settings).recipes
            missing = [name for name in enabled if name not in self._versions]
            if missing:
                raise SandboxImageNotFoundError(
                    f"sandbox image {settings.image!r} has no {', '.join(missing)}; rebuild it "
                    "with `assay image build`, or set ASSAY_EXECUTION__LANGUAGES to the "
                    f"languages it has ({', '.join(self._versions) or 'none'})"
                )
            info = daemon.info()
            runtimes = sorted(info.get("Runtimes") or {})
            if settings.runtime and settings.runtime not in runtimes:
                raise RuntimeNotAvailableError(
                    f"OCI runtime {settings.runtime!r} is not registered with Docker "
                    f"(have: {', '.join(runtimes)}); `scripts/bootstrap --runsc` installs and "
                    "registers gVisor's runsc, or unset ASSAY_EXECUTION__RUNTIME"
                )
            runtime = settings.runtime or str(info.get("DefaultRuntime") or "runc")
            registered = (info.get("Runtimes") or {}).get(runtime) or {}
            gvisor = runtime == GVISOR or str(registered.get("path", "")).endswith("runsc")
            self._isolation = Isolation(
                runtime=runtime,
                host_kernel=str(info.get("KernelVersion") or ""),
                seccomp=load_seccomp_profile(settings.seccomp_profile, GVISOR if gvisor else None),
                gvisor=gvisor,
            )
            self._sweep(daemon, epoch(str(info.get("SystemTime") or "")) or time.time())
        except BaseException:
            daemon.close()
            raise
        return daemon

    def _sweep(self, daemon: DockerDaemon, now: float) -> None:
        """Remove the sandboxes no live owner can be using, whoever made them: an owner
        creates, attaches and starts within three API timeouts, and stops using what has
        stopped within one. Running ones are never touched: a sandbox whose owner died ends
        itself (its stdin closes). ``now``: the daemon's clock, which stamped them."""
        abandoned_after = 4 * self._settings.docker_api_timeout_seconds
        removed = 0
        for container in daemon.containers_labelled(LABEL_MANAGED):
            if container.state == "created":
                since: float | None = container.created
            elif container.state in ("exited", "dead"):
                since = daemon.finished_at(container.id)
            else:
                continue
            if since is not None and now - since > abandoned_after:
                daemon.remove(container.id)
                removed += 1
        if removed:
            logger.warning("removed %d abandoned sandbox container(s)", removed)

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        run = await self.prepare(request, on_output)
        run.warm_id = await self.acquire(run.profile)
        return await self.guarded(run, self._run)

    def batch_sandbox(self) -> BatchSandbox:
        """A container reused for one batch's programs, reset between them (see
        ``sandbox_init.c``'s batch mode); replaced when a program damages it."""
        if self._closed:
            raise SandboxError("engine is closed")
        if self._settings.runtime == GVISOR:
            # The reset between programs proves the sandbox clean with the kernel's own
            # counters (pids refusals, SysV IPC objects), which gVisor does not show.
            raise InvalidRequestError(_NO_BATCH_UNDER_GVISOR)
        sandbox = DockerBatchSandbox(self, on_close=self._batches.discard)
        self._batches.add(sandbox)
        return sandbox

    # -- the steps of one execution (and the batch sandboxes' API) ------------------------

    async def prepare(
        self, request: ExecutionRequest, on_output: OutputCallback | None, *, batch: bool = False
    ) -> Run:
        """A run of ``request`` with its limits resolved, once the engine has started.

        Raises:
            As ``execute``; InvalidRequestError for a ``batch`` run under gVisor.
        """
        if self._closed:
            raise SandboxError("engine is closed")
        resolved = resolve_request(request, self._settings)
        await self.start()
        if batch and self._require_isolation().gvisor:
            raise InvalidRequestError(_NO_BATCH_UNDER_GVISOR)
        emit = None
        if on_output is not None:
            loop = asyncio.get_running_loop()
            callback = on_output

            def emit(stream: Literal["stdout", "stderr"], data: bytes) -> None:
                loop.call_soon_threadsafe(callback, stream, data)

        return Run(resolved, emit)

    async def acquire(self, profile: Profile) -> str | None:
        """A started sandbox of ``profile`` from the warm pool, or None: create one."""
        return await self._pool.acquire(profile) if self._pool is not None else None

    async def guarded(self, run: Run, work: Callable[[Run], ExecutionResult]) -> ExecutionResult:
        """``work(run)`` on a worker thread; cancelling the caller kills ``run``'s container
        and waits for ``work`` to end before the cancellation propagates."""
        self._active[run.run_id] = run
        future = asyncio.get_running_loop().run_in_executor(self._threads, work, run)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cleanup = asyncio.ensure_future(self._kill_and_wait(run, future))
            while not cleanup.done():
                # Cancelled again meanwhile: the sandbox still goes before we return.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(cleanup)
            raise
        finally:
            self._active.pop(run.run_id, None)

    def _ensure_reaper(self) -> None:
        """A reaper that died (it never should) is replaced: without it a container created
        but not yet attached when this process dies would be left behind."""
        if self._reaper is not None and self._reaper.poll() is not None and not self._closed:
            logger.warning("the sandbox reaper exited (%s); starting another", self._reaper.poll())
            self._reaper = start_reaper(self.owner, self._settings.docker_host)

    async def check_health(self) -> EngineHealth:
        """Healthy once the daemon answers and a sandbox has proven its isolation (the
        runtime and seccomp profile in force, seen from inside it): the latest sandbox's
        proof, or a probe sandbox's when none has run yet."""
        if self._closed:
            return EngineHealth(healthy=False, detail="engine is closed")
        try:
            await self.start()
            self._ensure_reaper()
            daemon = self._require_daemon()
            version = await self._in_thread(daemon.version)
            proven = self._proven or await self.probe()
        except ExecutionError as exc:
            return EngineHealth(healthy=False, detail=exc.message)
        return EngineHealth(
            healthy=True,
            detail="ok",
            facts={
                "engine": "docker",
                "docker_version": str(version.get("Version", "?")),
                "api_version": str(version.get("ApiVersion", "?")),
                "image": self._settings.image,
                **proven,
            },
        )

    async def probe(self) -> dict[str, str]:
        """Run a probe sandbox (default limits) and return what it proved about its
        isolation (``runtime``, ``sandbox_kernel``, ``seccomp``).

        Raises:
            RuntimeNotAvailableError: the configured runtime or seccomp profile is not in force.
            ExecutionError: the probe could not run.
        """
        result = await self.execute(ExecutionRequest(code="pass"))
        if self._proven is None:
            raise SandboxError(f"the probe sandbox proved nothing ({result.status.value})")
        return self._proven

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._live.close()
        for run in list(self._active.values()):
            await self._in_thread(self._cancel, run)
        for sandbox in list(self._batches):
            await sandbox.close()
        if self._pool is not None:
            await self._pool.close()
        # Waits, too, for the removals still running in the background.
        self._threads.shutdown(wait=True)
        with self._lifelines_lock:
            left, self._lifelines = list(self._lifelines.values()), {}
        for sock in left:
            close_attach(sock)
        if self._daemon is not None:
            self._daemon.close()
        if self._reaper is not None and self._reaper.stdin is not None:
            with contextlib.suppress(OSError):
                self._reaper.stdin.write(CLEAN_CLOSE)
            with contextlib.suppress(OSError):
                self._reaper.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):  # reaped, not left a zombie
                await asyncio.to_thread(self._reaper.wait, 10)

    # -- the blocking part, on a worker thread --------------------------------------------

    async def _in_thread(self, func: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, func, *args)

    def _require_daemon(self) -> DockerDaemon:
        if self._daemon is None:
            raise EngineUnavailableError("engine not started")
        return self._daemon

    async def _kill_and_wait(self, run: Run, future: asyncio.Future[ExecutionResult]) -> None:
        await self._in_thread(self._cancel, run)
        with contextlib.suppress(ExecutionError, Cancelled):
            await future

    def _cancel(self, run: Run) -> None:
        run.cancelled.set()
        if run.container_id is not None:
            try:
                self._require_daemon().kill(run.container_id)
            except ExecutionError as exc:
                logger.warning("could not kill sandbox %s: %s", run.container_id[:12], exc)

    def open_sandbox(self, run: Run) -> tuple[str, socket.socket]:
        """A started sandbox for ``run`` (on a worker thread): the warm one in ``run.warm_id``
        if it is still alive, else a new one. Returns its id (also ``run.container_id``) and
        its attach socket, which the caller closes and then ``dispose``s of the sandbox."""
        daemon = self._require_daemon()
        if run.warm_id is not None:
            run.container_id, run.warm_id = run.warm_id, None
            try:
                return run.container_id, self._attach(daemon, run, warm=True)
            except _StaleSandbox:
                logger.warning("pooled sandbox %s had died; opening one", run.container_id[:12])
                self.dispose(run.container_id)
        run.container_id = self._create(daemon, run.profile)
        try:
            return run.container_id, self._attach(daemon, run, warm=False)
        except BaseException:
            self.dispose(run.container_id, now=True)
            raise

    def converse(self, run: Run, sock: socket.socket, *, batch: bool) -> Conversation:
        """Send ``run``'s program into its started sandbox and read back what comes, until
        the program ends (or its compilation fails); on a worker thread. A compiled program
        compiles under its compile limits (memory raised for it where the runtime can
        change a running sandbox's limits: runc, not gVisor), then runs under its own."""
        if run.cancelled.is_set():
            raise Cancelled
        request = run.request
        container_id = run.container_id or ""
        nonce = secrets.token_hex(16)
        payload = encode_payload(request, nonce, batch=batch)
        compiling = request.plan.compile is not None
        resize = (
            compiling
            and request.compile_memory_mb != request.memory_mb
            and not self._require_isolation().gvisor
        )
        if resize:
            self._require_daemon().set_memory(container_id, request.compile_memory_mb * _MIB)
        run.began = time.time()
        started = time.monotonic()
        # PID 1 reads the whole frame before it starts anything: the write cannot block on
        # the program, only on a dead sandbox (then pump sees the end of the stream).
        writer = write_stdin(sock, payload, close=False)
        compiled = None
        if compiling:
            collector = OutputCollector(limit=request.output_limit_bytes, nonce=nonce)
            deadline = started + request.compile_timeout_seconds
            outcome = pump(sock, collector, deadline, run.cancelled, None)
            duration = time.monotonic() - started
            output = collector.finish()
            compiled = Compiled(
                output=(output.stderr + output.stdout).decode(errors="replace"),
                truncated=output.over_limit,
                duration=duration,
            )
            trailer = output.trailer
            succeeded = (
                outcome == "exited"
                and trailer is not None
                and trailer.phase == "compile"
                and trailer.exit_code == 0
                and not trailer.oom_kills
                and not output.over_limit
            )
            if not succeeded:
                if resize and batch and outcome == "exited":
                    # The batch's next program gets this sandbox: with its own limit.
                    self._require_daemon().set_memory(container_id, request.memory_mb * _MIB)
                return Conversation("compile", outcome, collector, duration, writer, compiled)
            if resize:
                self._require_daemon().set_memory(container_id, request.memory_mb * _MIB)
            with contextlib.suppress(OSError):  # gone: pump sees the end of its stream
                sock.sendall(GO)
            started = time.monotonic()
        collector = OutputCollector(limit=request.output_limit_bytes, nonce=nonce)
        deadline = started + request.timeout_seconds
        outcome = pump(sock, collector, deadline, run.cancelled, run.emit)
        duration = time.monotonic() - started
        return Conversation("run", outcome, collector, duration, writer, compiled)

    def judge(self, run: Run, talk: Conversation) -> ExecutionResult:
        """The verdict once the conversation with the sandbox is over: from the supervisor's
        trailer (its isolation checked first), from the deadline or the output cap that we
        enforced, from an OOM kill Docker recorded, or (no kill through Docker either) from
        the program having killed PID 1 itself. A failed compilation is ``compile_error``.
        Anything else is no verdict. On a worker thread.

        Raises:
            SandboxLostError: the sandbox ended without a word from its PID 1, killed or
                removed from outside.
            RuntimeNotAvailableError: the sandbox did not have the configured isolation.
        """
        daemon = self._require_daemon()
        if run.container_id is None:
            raise SandboxError("no container to judge")
        outcome = talk.outcome
        if outcome != "exited":
            daemon.kill(run.container_id)
        if outcome == "cancelled":
            raise Cancelled
        output = talk.collector.finish()
        trailer = output.trailer
        if trailer is not None:
            self._proven = None  # until this sandbox has proven its isolation
            self._proven = self._require_isolation().check(trailer)
        if talk.phase == "compile" and talk.compiled is not None:
            if outcome == "exited" and trailer is None:
                # Ended with no word from PID 1 while compiling (under gVisor an OOM kill
                # ends the whole sandbox): whatever Docker can prove, the compiler failed.
                ended = self._without_trailer(daemon, run, output, talk.duration)
                why = "ran out of memory" if ended.status is ExecutionStatus.OOM else "was killed"
                return ExecutionResult(
                    status=ExecutionStatus.COMPILE_ERROR,
                    duration_seconds=0.0,
                    **{
                        **talk.compiled.fields(),
                        "compile_output": f"{talk.compiled.output}\n[assay] the compiler {why}\n",
                    },
                )
            failed = compile_failure(outcome, output, talk.compiled, run.request)
            if failed is not None:
                return failed
        if outcome != "exited":
            return verdict(outcome, None, False, output, talk.duration, compiled=talk.compiled)
        if trailer is not None and (trailer.exit_code is not None or trailer.setup_error):
            oom = bool(trailer.oom_kills)
            if trailer.signal == SIGKILL and trailer.oom_kills is None and self._gvisor():
                # gVisor shows no OOM counter inside; its kill of the program for memory is
                # in Docker's event log (the sandbox itself may survive it, or not).
                oom = self._oom_logged(daemon, run)
            return verdict(outcome, None, oom, output, talk.duration, compiled=talk.compiled)
        return self._without_trailer(daemon, run, output, talk.duration, compiled=talk.compiled)

    def dispose(self, container_id: str, *, now: bool = False) -> None:
        """Make sure a used container goes: it removes itself once stopped (AutoRemove); in
        the background unless ``now`` (``close`` waits for background removals)."""
        with self._removing_lock:
            self._removing += 1
        if not now:
            try:
                self._threads.submit(self._remove, container_id, _EXIT_GRACE_SECONDS)
                return
            except RuntimeError:  # the engine is closing: no new background work
                pass
        self._remove(container_id, 0)

    def spec(self, profile: Profile) -> SandboxSpec:
        """A new sandbox of this engine with ``profile``'s limits (once it has started)."""
        return sandbox_spec(
            self._settings,
            profile,
            isolation=self._require_isolation(),
            owner=self.owner,
            token=secrets.token_hex(8),
        )

    def _create(self, daemon: DockerDaemon, profile: Profile) -> str:
        spec = self.spec(profile)
        return daemon.create_from_config(spec.config, name=spec.name)

    def _run(self, run: Run) -> ExecutionResult:
        daemon = self._require_daemon()
        if run.warm_id is not None:
            run.container_id = run.warm_id
            try:
                return self._supervise(daemon, run, warm=True)
            except _StaleSandbox:
                logger.warning("pooled sandbox %s had died; running cold", run.warm_id[:12])
            finally:
                self.dispose(run.warm_id, now=run.cancelled.is_set())
        run.container_id = self._create(daemon, run.profile)
        try:
            return self._supervise(daemon, run, warm=False)
        finally:
            self.dispose(run.container_id, now=run.cancelled.is_set())

    def _create_started(self, profile: Profile) -> str:
        """A container for the warm pool: created, attached (its lifeline, kept in
        ``_lifelines``) and started, its PID 1 waiting for a program."""
        daemon = self._require_daemon()
        container_id = self._create(daemon, profile)
        sock = self._attach_and_start(daemon, container_id)
        with self._lifelines_lock:
            self._lifelines[container_id] = sock
        return container_id

    @staticmethod
    def _attach_and_start(daemon: DockerDaemon, container_id: str) -> socket.socket:
        """Attach to a created container, then start it; removed if either fails."""
        try:
            sock = daemon.attach(container_id)
            try:
                daemon.start(container_id)
            except BaseException:
                close_attach(sock)
                raise
        except BaseException:
            daemon.remove(container_id)
            raise
        return sock

    def _take_lifeline(self, container_id: str) -> socket.socket | None:
        with self._lifelines_lock:
            return self._lifelines.pop(container_id, None)

    def _destroy_pooled(self, container_id: str) -> None:
        """Destroy an unused warm sandbox: closing its lifeline ends it; removed to be sure."""
        sock = self._take_lifeline(container_id)
        if sock is not None:
            close_attach(sock)
        self._require_daemon().remove(container_id)

    def _running_ids(self) -> set[str]:
        daemon = self._require_daemon()
        return set(daemon.container_ids({LABEL_OWNER: self.owner}, running=True))

    def _remove(self, container_id: str, grace: float) -> None:
        daemon = self._require_daemon()
        lifeline = self._take_lifeline(container_id)  # a warm sandbox that never ran
        if lifeline is not None:
            close_attach(lifeline)
        try:
            # Its PID 1 exits by itself just after the trailer, and Docker removes it then:
            # cheaper than killing it (about 15 ms of CPU here).
            if not grace or not daemon.wait_removed(container_id, grace):
                daemon.remove(container_id)
        except ExecutionError as exc:
            logger.warning("could not remove sandbox %s: %s", container_id[:12], exc)
        finally:
            with self._removing_lock:
                self._removing -= 1

    def _supervise(self, daemon: DockerDaemon, run: Run, *, warm: bool) -> ExecutionResult:
        if run.cancelled.is_set():
            raise Cancelled
        sock = self._attach(daemon, run, warm=warm)
        talk = None
        try:
            talk = self.converse(run, sock, batch=False)
        finally:
            close_attach(sock)
            if talk is not None and talk.writer is not None:
                talk.writer.join(timeout=5)
        return self.judge(run, talk)

    def _attach(self, daemon: DockerDaemon, run: Run, *, warm: bool) -> socket.socket:
        """The attach socket of ``run``'s container: a warm one's lifeline, or (cold) a new
        attach, then the start.

        Raises:
            _StaleSandbox: a pooled container is gone or stopped (nothing ran in it).
        """
        if run.container_id is None:
            raise SandboxError("no container to attach to")
        if warm:
            sock = self._take_lifeline(run.container_id)
            # PID 1 writes nothing before it has a program: anything readable is its end.
            if sock is None or _readable(sock):
                if sock is not None:
                    close_attach(sock)
                raise _StaleSandbox
            return sock
        sock = daemon.attach(run.container_id)
        try:
            daemon.start(run.container_id)
        except BaseException:
            close_attach(sock)
            raise
        return sock

    def _without_trailer(
        self,
        daemon: DockerDaemon,
        run: Run,
        output: CollectedOutput,
        duration: float,
        compiled: Compiled | None = None,
    ) -> ExecutionResult:
        """The sandbox ended without a word from its PID 1. Under gVisor an OOM kill ends the
        whole sandbox, PID 1 included, and a program can kill PID 1 itself; Docker's event
        log tells these from a kill from outside. Whatever it cannot prove is lost."""
        container_id = run.container_id or ""
        if not daemon.wait_removed(container_id, self._settings.docker_api_timeout_seconds):
            daemon.kill(container_id)  # its attach ended, yet it still runs: not ours to judge
            daemon.remove(container_id)
            raise SandboxLostError("the sandbox's attach ended while it still ran: no verdict")
        since = run.began - 1
        actions: list[str] = []
        died: list[dict[str, str]] = []
        for attempt in range(_EVENT_CHECKS):  # the OOM may be logged just after the exit
            events = daemon.events_of(container_id, ("oom", "kill", "die"), since)
            actions = [action for action, _ in events]
            if "oom" in actions:
                return verdict("exited", _KILLED, True, output, duration, compiled=compiled)
            died = [attributes for action, attributes in events if action == "die"]
            if attempt + 1 < _EVENT_CHECKS:
                time.sleep(0.2)
        codes = [d.get("exitCode", "") for d in died]
        if self._require_isolation().gvisor and "kill" not in actions and len(codes) == 1:
            # Docker logged its end but no kill: it ended from inside, the program's doing.
            # gVisor does not protect PID 1 from the program (runc's kernel does: 137), and a
            # program can exhaust its Sentry (a fork bomb at the host's pids limit: 2).
            logger.info("sandbox %s ended from inside (exit %s)", container_id[:12], codes[0])
            code = int(codes[0]) if codes[0].isdigit() else _KILLED
            return verdict("exited", code, False, output, duration, compiled=compiled)
        logger.warning("sandbox %s lost: it ended without a trailer", container_id[:12])
        raise SandboxLostError(
            "the sandbox was lost while the program ran (killed or removed from outside, or "
            "the Docker daemon restarted): no verdict"
        )

    def _gvisor(self) -> bool:
        return self._require_isolation().gvisor

    def _oom_logged(self, daemon: DockerDaemon, run: Run) -> bool:
        """Whether Docker logged an OOM of ``run``'s container since it began (the event
        may be logged just after the program's end)."""
        for attempt in range(_EVENT_CHECKS):
            events = daemon.events_of(run.container_id or "", ("oom",), run.began - 1)
            if events:
                return True
            if attempt + 1 < _EVENT_CHECKS:
                time.sleep(0.2)
        logger.info("sandbox %s: its program was SIGKILLed, no OOM logged", run.container_id)
        return False

    def _require_isolation(self) -> Isolation:
        if self._isolation is None:
            raise EngineUnavailableError("engine not started")
        return self._isolation


class _StaleSandbox(Exception):
    """A pooled container stopped or vanished while it waited (a Docker restart, an
    operator): nothing of the program ran in it."""


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has data or its end waiting (without blocking)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
