"""The hostile cases in every language's own terms (``tests/data/languages.toml``): no
network (a listener on the host's own address is out of reach), a read-only root, a program
killing itself, and the pids limit against a process flood; after each, the sandbox engine
still runs programs. Compilers run under the same hardening: a compiler told to reach the
network or write outside the working directory cannot either."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from assay.execution_engine import ExecutionStatus
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.isolation import GVISOR
from tests.conftest import started_engine
from tests.integration.test_languages import (
    LANGUAGES,
    PROGRAMS,
    RECIPES,
    assert_verdict,
    request,
)
from tests.sandbox import TEST_RUNTIME, assert_healthy, make_settings, sandbox_processes

pytestmark = [
    pytest.mark.docker,
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
]


def applicable(case: str) -> list[str]:
    return [name for name in LANGUAGES if case in PROGRAMS[name]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[DockerEngine]:
    async with started_engine(make_settings(pool={"size": 2})) as local:
        yield local


def _host_address() -> str:
    """An address of this host's own that a sandbox with a network could reach: the one
    its outward interface has (a UDP socket's connect picks it, sending nothing), else
    loopback."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet: connect(2) on UDP only picks a route
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[str, int, list[object]]]:
    """A TCP listener on every host address; yields (address, port, connections seen)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("0.0.0.0", 0))  # noqa: S104 - the point: reachable on the host's addresses
    server.listen()
    server.settimeout(0.2)
    seen: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, peer = server.accept()
            except OSError:
                continue
            seen.append(peer)
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield _host_address(), server.getsockname()[1], seen
    stop.set()
    thread.join(timeout=2)
    server.close()


@pytest.mark.parametrize("language", applicable("network"))
async def test_no_network_in_any_language(
    engine: DockerEngine, listener: tuple[str, int, list[object]], language: str
) -> None:
    address, port, seen = listener
    code = str(PROGRAMS[language]["network"])
    result = await engine.execute(request(language, code, args=[address, str(port)]))
    assert_verdict(result, ExecutionStatus.COMPLETED, stdout="blocked\n")
    assert seen == [], "a sandbox reached the host's listener"


@pytest.mark.parametrize("language", applicable("filesystem"))
async def test_the_root_is_read_only_in_any_language(engine: DockerEngine, language: str) -> None:
    code = str(PROGRAMS[language]["filesystem"])
    result = await engine.execute(request(language, code))
    assert_verdict(result, ExecutionStatus.COMPLETED, stdout="blocked\n")


@pytest.mark.parametrize("language", applicable("signal"))
async def test_a_program_killing_itself_is_its_own_verdict(
    engine: DockerEngine, language: str
) -> None:
    result = await engine.execute(request(language, str(PROGRAMS[language]["signal"])))
    assert_verdict(result, ExecutionStatus.FAILED, exit_code=128 + 9, signal=9)


@pytest.mark.parametrize("language", applicable("processes"))
async def test_a_process_flood_meets_the_pids_limit(engine: DockerEngine, language: str) -> None:
    code = str(PROGRAMS[language]["processes"])
    result = await engine.execute(request(language, code, timeout_seconds=20))
    if TEST_RUNTIME == GVISOR and result.status is not ExecutionStatus.COMPLETED:
        # gVisor does not apply the pids limit to its own tasks (test_resource_limits.py):
        # the flood ends the whole sandbox from inside at the host's pids limit on the
        # Sentry's threads (exit 2), or at the memory limit.
        assert result.status in {ExecutionStatus.OOM, ExecutionStatus.FAILED}, result
        assert result.exit_code in {137, 2}, result
    else:
        assert_verdict(result, ExecutionStatus.COMPLETED, stdout="limited\n")
    assert sandbox_processes() == []
    await assert_healthy(engine)


COMPILER_OPTIONS_REACHING_OUT = {
    # A compiler asked to write its output outside the working directory.
    "c": ["-o", "/usr/local/bin/planted"],
    "cpp": ["-o", "/usr/local/bin/planted"],
    "rust": ["-o", "/usr/local/bin/planted"],
    "go": ["-o", "/usr/local/bin/planted"],
    "java": ["-d", "/usr/local/lib"],
    "typescript": ["--outDir", "/usr/local/lib"],
}


@pytest.mark.parametrize("language", [name for name, r in RECIPES.items() if r.compiled])
async def test_a_compiler_cannot_write_outside_the_working_directory(
    engine: DockerEngine, language: str
) -> None:
    options = COMPILER_OPTIONS_REACHING_OUT[language]
    result = await engine.execute(
        request(language, RECIPES[language].example, compiler_options=options)
    )
    assert result.status in (ExecutionStatus.COMPILE_ERROR, ExecutionStatus.FAILED), result
    assert result.stdout == "", "nothing ran from where the compiler could not write"
    check = await engine.execute(
        request(
            "bash",
            "for f in /usr/local/bin/planted /usr/local/lib/Main.class; do "
            "[ -e $f ] && echo present || echo absent; done",
        )
    )
    assert check.stdout == "absent\nabsent\n"


async def test_a_compiler_that_never_ends_is_stopped_at_its_limit(engine: DockerEngine) -> None:
    """Constant evaluation the compiler would spend hours on: its own time limit stops it,
    and the engine goes on."""
    endless = """
constexpr long spin() { long s = 0; for (long i = 0; i < (1L << 40); i++) s += i; return s; }
static_assert(spin() > 0);
int main() {}
"""
    options = ["-fconstexpr-ops-limit=4000000000000", "-fconstexpr-loop-limit=2000000000"]
    result = await engine.execute(
        request("cpp", endless, compiler_options=options, compile_timeout_seconds=2)
    )
    assert_verdict(result, ExecutionStatus.COMPILE_ERROR, stdout="")
    stopped = (result.compile_output or "").splitlines()[-1]
    # The time limit, or (gVisor: the compiler has the program's 128 MiB) the memory one.
    assert stopped in {
        "[assay] the compiler ran past its time limit of 2 s",
        "[assay] the compiler ran out of memory",
        "[assay] the compiler ran out of memory (limit 128 MiB)",
    }, stopped
    assert result.compile_duration_seconds is not None
    assert result.compile_duration_seconds < 4
    await assert_healthy(engine)


@pytest.mark.skipif(
    TEST_RUNTIME == GVISOR, reason="no batch isolation (and no resize) under gVisor"
)
async def test_a_compilers_memory_never_carries_over_to_the_next_program_of_a_batch(
    engine: DockerEngine,
) -> None:
    """The compiler of a batch's program had more memory than the programs; it failed; the
    next program in the same sandbox still meets its own, smaller limit."""
    batch = engine.batch_sandbox()
    try:
        failed = await batch.execute(
            request("c", "int main(void) { return nope; }", memory_mb=128, compile_memory_mb=768)
        )
        assert failed.status is ExecutionStatus.COMPILE_ERROR, failed
        hog = await batch.execute(
            request("python", str(PROGRAMS["python"]["memory"]), memory_mb=128)
        )
        assert_verdict(hog, ExecutionStatus.OOM)
        assert hog.peak_memory_bytes is None or hog.peak_memory_bytes < 140 * 2**20
    finally:
        await batch.close()
