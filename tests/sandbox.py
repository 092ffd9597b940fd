"""Helpers for tests that run programs in real sandboxes."""

from __future__ import annotations

import os
import re
import textwrap
import time
import uuid
from pathlib import Path

from assay.config import ExecutionSettings, Settings
from assay.execution_engine import (
    EngineHealth,
    ExecutionInterface,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    LanguageInfo,
)
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.interface import BatchSandbox, OutputCallback
from assay.execution_engine.sandbox_spec import INIT_PATH, SANDBOX_UID

TEST_ENGINE_PREFIX = "test-"
#: The OCI runtime every test sandbox runs under (``make test`` runs the contract and
#: security suites again with ``runsc``); unset: Docker's default, runc.
TEST_RUNTIME = os.environ.get("ASSAY_TEST_RUNTIME") or None
#: Batch isolation is refused under gVisor (its reset cannot be verified there): the suites
#: run in batch mode only under runc, and test the refusal under gVisor.
BATCH_MODES: list[str] = [] if TEST_RUNTIME == "runsc" else ["batch"]


#: Python that prints the name of the container it runs in (first thing, flushed): its
#: hostname, which Docker's API takes wherever it takes an id (under gVisor too).
PRINT_CONTAINER_ID = "import socket\nprint(socket.gethostname(), flush=True)\n"


#: Engine ids made by this test session: only their containers are its to clean up (other
#: sessions may share the Docker engine).
SESSION_ENGINE_IDS: set[str] = set()


def make_settings(**overrides: object) -> ExecutionSettings:
    """Settings for one test's engine: a unique engine id and short default limits."""
    engine_id = f"{TEST_ENGINE_PREFIX}{uuid.uuid4().hex[:12]}"
    SESSION_ENGINE_IDS.add(engine_id)
    values: dict[str, object] = {
        "engine_id": engine_id,
        "default_timeout_seconds": 5.0,
        "max_timeout_seconds": 30.0,
        "default_memory_mb": 128,
        # One warm sandbox: every test runs pooled unless it asks otherwise (cold: size 0).
        "pool": {"size": 1},
        "runtime": TEST_RUNTIME,
    }
    values.update(overrides)
    return ExecutionSettings.model_validate(values)


def cold(settings: ExecutionSettings) -> ExecutionSettings:
    """The same settings without a warm pool: every execution creates its sandbox."""
    return ExecutionSettings.model_validate({**settings.model_dump(), "pool": {"size": 0}})


#: What BatchedEngine runs before each program, in the same batch sandbox.
PRIMER = "import os\nopen('/tmp/primer', 'w').write('x')\nprint('primed')"


async def run_primed(
    batch: BatchSandbox, request: ExecutionRequest, on_output: OutputCallback | None
) -> ExecutionResult:
    """``request`` in ``batch`` right after a primer program with the same limits, so that it
    runs in a sandbox that has already run another program."""
    limits = {"memory_mb": request.memory_mb, "cpus": request.cpus}
    primer = await batch.execute(ExecutionRequest(code=PRIMER, **limits))
    assert (primer.status, primer.stdout) == (ExecutionStatus.COMPLETED, "primed\n"), primer
    return await batch.execute(request, on_output=on_output)


class BatchedEngine(DockerEngine):
    """A DockerEngine whose ``execute`` goes through one batch sandbox, each program after a
    primer (the security suite in batch isolation)."""

    _batch: BatchSandbox | None = None

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        if self._batch is None:
            self._batch = self.batch_sandbox()
        return await run_primed(self._batch, request, on_output)


class InBatch(ExecutionInterface):
    """Any engine with ``execute`` going through one of its batch sandboxes, each program
    after a primer (the contract suite in batch isolation, local and remote)."""

    def __init__(self, engine: ExecutionInterface) -> None:
        self.engine = engine
        self._batch = engine.batch_sandbox()

    async def execute(
        self, request: ExecutionRequest, *, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        return await run_primed(self._batch, request, on_output)

    async def start(self) -> None:
        await self.engine.start()

    async def check_health(self) -> EngineHealth:
        return await self.engine.check_health()

    async def languages(self) -> list[LanguageInfo]:
        return await self.engine.languages()

    async def close(self) -> None:
        await self._batch.close()
        await self.engine.close()


async def run(engine: ExecutionInterface, code: str, **limits: object) -> ExecutionResult:
    """Run dedented ``code`` with the given request fields."""
    request = ExecutionRequest.model_validate({"code": textwrap.dedent(code), **limits})
    return await engine.execute(request)


async def assert_healthy(engine: ExecutionInterface) -> None:
    """The engine still runs a trivial program correctly."""
    result = await run(engine, "print('still fine')")
    assert result.status is ExecutionStatus.COMPLETED, result
    assert result.stdout == "still fine\n"


def sandbox_processes(settle_seconds: float = 2.0) -> list[int]:
    """Host pids of processes running as the sandbox user, other than warm-pool sandboxes
    still waiting for a program; polled for ``settle_seconds`` (a finished sandbox's leftover
    processes die with its PID 1 just after the verdict is reported)."""
    deadline = time.monotonic() + settle_seconds
    while True:
        processes = _sandbox_user_processes()
        busy = [pid for pid in processes if pid not in _idle_supervisors(processes)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.05)


def idle_sandbox_containers() -> set[str]:
    """Ids of containers whose only process is a supervisor waiting for its program: the
    warm pool's ready sandboxes."""
    processes = _sandbox_user_processes()
    ids = set()
    for pid in _idle_supervisors(processes):
        try:
            cgroups = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        found = re.search(r"([0-9a-f]{64})", cgroups)
        if found:
            ids.add(found.group(1))
    return ids


def _sandbox_user_processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, argv) of every process running as the sandbox user."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        zombie = fields.get("State", "").strip().startswith("Z")  # dead, not yet reaped
        if int(fields["Uid"].split()[0]) == SANDBOX_UID and not zombie:
            found[int(entry.name)] = (
                int(fields["PPid"]),
                [arg.decode(errors="replace") for arg in argv],
            )
    return found


def _idle_supervisors(processes: dict[int, tuple[int, list[str]]]) -> set[int]:
    parents = {parent for parent, _ in processes.values()}
    return {
        pid for pid, (_, argv) in processes.items() if argv[0] == INIT_PATH and pid not in parents
    }


def platform_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a test platform: its own SQLite file and engine id."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "execution": make_settings().model_dump(),
        "queue": {"concurrency": 2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}  # type: ignore[dict-item]
        else:
            values[key] = value
    return Settings.model_validate(values)
