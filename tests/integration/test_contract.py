"""The result contract on the real engine: output, exit codes, stdin, encodings, sizes,
files, live output, cancellation, concurrency, and the engine-failure paths; and on the
fake engine (``tests/fakes.py``), so that it cannot drift, for every case not about
isolation."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from assay.config import ExecutionSettings
from assay.errors import ExecutionError, RuntimeNotAvailableError, SandboxImageNotFoundError
from assay.execution_engine import ExecutionInterface, ExecutionRequest, ExecutionStatus
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.remote import RemoteExecutionEngine
from tests.conftest import (
    EXECUTOR_TOKEN,
    container_exists,
    docker_unavailable,
    leftover_containers,
    running_executor,
)
from tests.fakes import FakeEngine, process_exists
from tests.sandbox import (
    BATCH_MODES,
    PRINT_CONTAINER_ID,
    TEST_RUNTIME,
    InBatch,
    cold,
    make_settings,
    run,
    sandbox_processes,
)

pytestmark = [pytest.mark.docker, pytest.mark.integration]

#: The real engines. Cases about isolation (limits the kernel enforces, sandboxes kept
#: apart) run on these only; every other case also runs on the fake.
REAL_ENGINES = [
    "local",
    "local-cold",
    "remote",
    *(f"{where}-{mode}" for mode in BATCH_MODES for where in ("local", "remote")),
]
real_engines_only = pytest.mark.parametrize("engine", REAL_ENGINES, indirect=True)


@pytest.fixture
def fake_engine(settings: ExecutionSettings, tmp_path: Path) -> FakeEngine:
    """The fake engine, running every program in one known working directory."""
    return FakeEngine(settings, workspace=tmp_path / "workspace")


#: The fake runs no sandbox: under another runtime (``make test``'s gVisor pass) it would
#: only repeat itself.
FAKE_ENGINES = ["fake", "fake-batch"] if TEST_RUNTIME is None else []


@pytest.fixture(params=[*REAL_ENGINES, *FAKE_ENGINES])
async def engine(
    request: pytest.FixtureRequest, settings: ExecutionSettings
) -> AsyncIterator[ExecutionInterface]:
    """The same contract on the local engine, warm (pooled) and cold, and on the remote one
    (pooled) through an executor service on a real socket; ``-batch``: in batch isolation,
    every program in a batch sandbox that has just run another program. ``fake``: the fake
    engine (local processes), which must keep the same contract."""
    batched = request.param.endswith("-batch")
    if request.param.startswith("fake"):
        fake: FakeEngine = request.getfixturevalue("fake_engine")
        engine = InBatch(fake) if batched else fake
        yield engine
        left = fake.leftover_processes()
        await engine.close()
        assert left == [], "a program's process was left behind"
        assert fake.workspace is not None and not fake.workspace.exists(), "files left behind"
        return
    if request.param.startswith("local"):
        local = DockerEngine(cold(settings) if request.param == "local-cold" else settings)
        try:
            await local.start()
        except ExecutionError as exc:
            await local.close()
            docker_unavailable(exc.message)
        yield InBatch(local) if batched else local
        await local.close()
    else:
        async with running_executor(settings) as url:
            remote = RemoteExecutionEngine([url], token=EXECUTOR_TOKEN, settings=settings)
            engine = InBatch(remote) if batched else remote
            yield engine
            await engine.close()
    assert leftover_containers(settings.engine_id) == [], "a sandbox container was left behind"


@pytest.fixture
def workspace(request: pytest.FixtureRequest) -> str:
    """The working directory programs run in: the sandbox's, or the fake engine's."""
    if str(request.node.callspec.params["engine"]).startswith("fake"):
        return str(request.getfixturevalue("fake_engine").workspace)
    return "/workspace"


@dataclass(frozen=True)
class Sandboxes:
    """How a test sees the sandboxes of the engine under test."""

    #: Python that prints the id of the sandbox it runs in (first thing, flushed).
    print_id: str
    exists: Callable[[str], bool]
    #: Processes left running by finished sandboxes.
    leftover_processes: Callable[[], list[int]]


@pytest.fixture
def sandboxes(request: pytest.FixtureRequest) -> Sandboxes:
    """Containers and the sandbox user's processes; for the fake engine, the program's
    process (its pid is the sandbox's id) and its process group."""
    if str(request.node.callspec.params["engine"]).startswith("fake"):
        fake: FakeEngine = request.getfixturevalue("fake_engine")
        return Sandboxes(
            "import os\nprint(os.getpid(), flush=True)\n",
            lambda pid: process_exists(int(pid)),
            fake.leftover_processes,
        )
    return Sandboxes(
        PRINT_CONTAINER_ID, container_exists, lambda: sandbox_processes(settle_seconds=1)
    )


async def test_stdout_stderr_and_success(engine: ExecutionInterface) -> None:
    result = await run(engine, "import sys\nprint('out')\nprint('err', file=sys.stderr)")
    assert result.status is ExecutionStatus.COMPLETED
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    assert (result.exit_code, result.signal, result.error) == (0, None, None)
    assert not result.stdout_truncated and not result.stderr_truncated
    assert 0 < result.duration_seconds < 5
    assert result.cpu_time_seconds is not None and result.cpu_time_seconds > 0
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes > 1 << 20


@pytest.mark.parametrize("code", [1, 2, 42, 255])
async def test_non_zero_exit_is_failed_with_its_code(engine: ExecutionInterface, code: int) -> None:
    result = await run(engine, f"import sys; sys.exit({code})")
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == code and result.signal is None


async def test_an_exception_is_failed_with_its_traceback(
    engine: ExecutionInterface, workspace: str
) -> None:
    result = await run(engine, "def f():\n    raise ValueError('boom')\nf()")
    assert result.status is ExecutionStatus.FAILED
    assert result.exit_code == 1
    assert f'File "{workspace}/main.py", line 2, in f' in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: boom")


async def test_syntax_errors_are_failed(engine: ExecutionInterface) -> None:
    result = await run(engine, "def broken(:\n    pass")
    assert result.status is ExecutionStatus.FAILED
    assert "SyntaxError" in result.stderr


async def test_death_by_a_signal_reports_the_signal(engine: ExecutionInterface) -> None:
    result = await run(engine, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert result.status is ExecutionStatus.FAILED
    assert (result.exit_code, result.signal) == (128 + 11, 11)


async def test_stdin_is_delivered_and_closed(engine: ExecutionInterface) -> None:
    result = await run(
        engine,
        "import sys\ndata = sys.stdin.read()\nprint(repr(data))\nprint(repr(sys.stdin.read()))",
        stdin="line one\nline two\n",
    )
    assert result.stdout == "'line one\\nline two\\n'\n''\n"


async def test_no_stdin_reads_as_immediate_eof(engine: ExecutionInterface) -> None:
    result = await run(engine, "import sys\nprint(repr(sys.stdin.read()))", timeout_seconds=5)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.stdout == "''\n"


async def test_large_stdin_arrives_intact(engine: ExecutionInterface) -> None:
    data = "".join(f"{i:08d}\n" for i in range(600_000))  # 5.4 MB
    result = await run(
        engine,
        """
        import hashlib, sys
        data = sys.stdin.buffer.read()
        print(len(data), hashlib.sha256(data).hexdigest())
        """,
        stdin=data,
        timeout_seconds=20,
    )
    assert result.stdout.split() == [str(len(data)), hashlib.sha256(data.encode()).hexdigest()]


async def test_a_program_that_writes_before_reading_large_stdin_does_not_deadlock(
    engine: ExecutionInterface,
) -> None:
    result = await run(
        engine,
        """
        import sys
        sys.stdout.write("x" * 500_000)
        sys.stdout.flush()
        print(len(sys.stdin.read()))
        """,
        stdin="y" * 2_000_000,
        timeout_seconds=20,
    )
    assert result.status is ExecutionStatus.COMPLETED
    assert result.stdout.endswith("2000000\n")


async def test_unicode_round_trips(engine: ExecutionInterface) -> None:
    text = "héllo wörld — 日本語 — 🚀"
    result = await run(engine, f"import sys\nprint({text!r})\nprint(sys.stdin.read())", stdin=text)
    assert result.stdout == f"{text}\n{text}\n"


async def test_binary_output_is_decoded_with_replacement(engine: ExecutionInterface) -> None:
    result = await run(
        engine,
        "import sys\nsys.stdout.buffer.write(b'ok\\xff\\xfe\\x00end')\n"
        "sys.stderr.buffer.write(bytes(range(256)))",
    )
    assert result.status is ExecutionStatus.COMPLETED
    assert result.stdout == "ok\ufffd\ufffd\x00end"
    assert result.stderr.startswith("".join(chr(i) for i in range(128)))
    assert "\ufffd" in result.stderr


async def test_large_output_under_the_cap_is_complete(engine: ExecutionInterface) -> None:
    result = await run(
        engine,
        "import sys\nfor i in range(100_000):\n    sys.stdout.write(f'{i:07d}\\n')",
        output_limit_bytes=2_000_000,
        timeout_seconds=20,  # gVisor's pipes are slower (5 s was not always enough)
    )
    assert result.status is ExecutionStatus.COMPLETED
    assert len(result.stdout) == 800_000
    assert result.stdout.splitlines()[-1] == "0099999"


async def test_extra_files_are_in_the_working_directory(
    engine: ExecutionInterface, workspace: str
) -> None:
    result = await run(
        engine,
        "import helper, os\nprint(helper.answer(), open('data/input.txt').read(), os.getcwd())",
        files={"helper.py": "def answer():\n    return 42\n", "data/input.txt": "payload"},
    )
    assert result.stdout == f"42 payload {workspace}\n"


@real_engines_only
async def test_cpu_limit_is_enforced(engine: ExecutionInterface) -> None:
    code = """
    import threading, time
    def spin():
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            pass
    threads = [threading.Thread(target=spin) for _ in range(2)]
    for t in threads: t.start()
    for t in threads: t.join()
    """
    result = await run(engine, code, cpus=0.25, timeout_seconds=20)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.cpu_time_seconds is not None
    # Two threads spinning 1.5 s at a quarter of a core get about 0.4 s of CPU: far less than
    # the 1.5 s one core would give (3 s with two). gVisor's own accounting reads about twice
    # what the host's quota allowed (0.9 measured), still well under one core's.
    assert result.cpu_time_seconds < 1.2, result.cpu_time_seconds


async def test_output_streams_live_while_the_program_runs(engine: ExecutionInterface) -> None:
    chunks: list[tuple[str, bytes, float]] = []
    code = "import sys, time\nprint('first')\ntime.sleep(1.5)\nprint('second', file=sys.stderr)"
    began = time.monotonic()
    result = await engine.execute(
        ExecutionRequest(code=code),
        on_output=lambda stream, data: chunks.append((stream, data, time.monotonic() - began)),
    )
    finished = time.monotonic() - began
    assert result.stdout == "first\n" and result.stderr == "second\n"
    for stream, expected in [("stdout", b"first\n"), ("stderr", b"second\n")]:
        assert b"".join(data for name, data, _ in chunks if name == stream) == expected
    first_seen = min(at for name, _, at in chunks if name == "stdout")
    assert first_seen < finished - 1.0, "the first chunk must arrive before the program ends"
    assert chunks[-1][0] == "stderr"


async def test_cancelling_kills_and_removes_the_sandbox(
    engine: ExecutionInterface, sandboxes: Sandboxes
) -> None:
    started = asyncio.Event()
    printed = bytearray()

    def on_output(_stream: str, data: bytes) -> None:
        printed.extend(data)
        started.set()

    task = asyncio.create_task(
        engine.execute(
            ExecutionRequest(code=sandboxes.print_id + "import time\ntime.sleep(60)"),
            on_output=on_output,
        )
    )
    await asyncio.wait_for(started.wait(), timeout=10)
    container_id = printed.decode().split()[0]
    assert sandboxes.exists(container_id)
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - began < 5
    assert not sandboxes.exists(container_id), "removed before the cancellation returned"
    assert sandboxes.leftover_processes() == []


@real_engines_only
async def test_concurrent_executions_are_isolated(engine: ExecutionInterface) -> None:
    results = await asyncio.gather(
        *(
            run(
                engine,
                f"import os\nopen('/tmp/me', 'w').write('{i}')\nprint(open('/tmp/me').read())",
            )
            for i in range(6)
        )
    )
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]


async def test_missing_image_says_to_build_it() -> None:
    engine = DockerEngine(make_settings(image="assay-sandbox-python:does-not-exist"))
    try:
        with pytest.raises(SandboxImageNotFoundError, match="assay image build") as caught:
            await engine.execute(ExecutionRequest(code="print(1)"))
        assert "does-not-exist" in caught.value.message
        health = await engine.check_health()
        assert not health.healthy and "assay image build" in health.detail
    finally:
        await engine.close()


async def test_missing_runtime_says_what_to_do() -> None:
    engine = DockerEngine(make_settings(runtime="runsc-not-installed"))
    try:
        with pytest.raises(RuntimeNotAvailableError, match="ASSAY_EXECUTION__RUNTIME"):
            await engine.execute(ExecutionRequest(code="print(1)"))
    finally:
        await engine.close()
