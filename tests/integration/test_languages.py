"""Every language, on the real engine: hello, exit codes, stdin, arguments, a program that
does not compile, time and memory limits, an output flood and a program of several files,
each with its exact verdict; then hello on every path (cold, batch isolation, the executor
service, remote batch). The programs are data (``tests/data/languages.toml``): a language
with a recipe and its programs there is picked up here with no change of code."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from assay.execution_engine import (
    ExecutionInterface,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    Recipe,
    languages_of,
)
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.remote import RemoteExecutionEngine
from tests.conftest import EXECUTOR_TOKEN, leftover_containers, running_executor, started_engine
from tests.sandbox import BATCH_MODES, TEST_RUNTIME, InBatch, cold, make_settings

pytestmark = [
    pytest.mark.docker,
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
]

PROGRAMS: dict[str, dict[str, Any]] = tomllib.loads(
    (Path(__file__).parents[1] / "data" / "languages.toml").read_text()
)
RECIPES: dict[str, Recipe] = dict(languages_of(make_settings()).recipes)
LANGUAGES = list(RECIPES)


def program(language: str, case: str) -> str:
    return str(PROGRAMS[language][case])


def request(language: str, code: str, **fields: Any) -> ExecutionRequest:
    return ExecutionRequest.model_validate({"code": code, "language": language, **fields})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[DockerEngine]:
    """One pooled local engine for the module (its pool serves every language)."""
    async with started_engine(make_settings(pool={"size": 2})) as local:
        yield local


def assert_verdict(result: ExecutionResult, status: ExecutionStatus, **fields: object) -> None:
    assert result.status is status, result
    for name, value in fields.items():
        assert getattr(result, name) == value, (name, result)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_hello(engine: DockerEngine, language: str) -> None:
    result = await engine.execute(request(language, RECIPES[language].example))
    assert_verdict(result, ExecutionStatus.COMPLETED, stdout="Hello, world!\n", exit_code=0)
    if RECIPES[language].compiled:
        assert result.compile_output == "", result.compile_output
        assert result.compile_duration_seconds is not None
        assert result.compile_duration_seconds > 0
    else:
        assert (result.compile_output, result.compile_duration_seconds) == (None, None)
    assert result.duration_seconds > 0


@pytest.mark.parametrize("language", LANGUAGES)
async def test_exit_code(engine: DockerEngine, language: str) -> None:
    result = await engine.execute(request(language, program(language, "exit")))
    assert_verdict(result, ExecutionStatus.FAILED, exit_code=3, signal=None)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_stdin(engine: DockerEngine, language: str) -> None:
    code = program(language, "stdin")
    result = await engine.execute(request(language, code, stdin="abc\nnext line\n"))
    assert_verdict(result, ExecutionStatus.COMPLETED, stdout="got: abc\n")


@pytest.mark.parametrize("language", LANGUAGES)
async def test_args(engine: DockerEngine, language: str) -> None:
    code = program(language, "args")
    result = await engine.execute(request(language, code, args=["a", "b c", "-x"]))
    assert_verdict(result, ExecutionStatus.COMPLETED, stdout="a,b c,-x\n")


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_program_that_does_not_compile(engine: DockerEngine, language: str) -> None:
    result = await engine.execute(request(language, program(language, "broken")))
    if RECIPES[language].compiled:
        assert_verdict(result, ExecutionStatus.COMPILE_ERROR, exit_code=None, stdout="")
        assert result.compile_output, "the compiler says why"
        assert "[assay]" not in (result.compile_output or ""), "the compiler's own words"
        assert result.compile_duration_seconds is not None
    else:
        assert_verdict(result, ExecutionStatus.FAILED, compile_output=None)
        assert result.exit_code not in (None, 0)
        assert result.stderr, "the interpreter says why"


@pytest.mark.parametrize("language", LANGUAGES)
async def test_time_limit(engine: DockerEngine, language: str) -> None:
    code = program(language, "loop")
    result = await engine.execute(request(language, code, timeout_seconds=1.5))
    assert_verdict(result, ExecutionStatus.TIMEOUT, exit_code=None, signal=9)
    assert 1.5 <= result.duration_seconds < 5, "the run's own time, not the compiler's"


@pytest.mark.parametrize("language", LANGUAGES)
async def test_memory_limit(engine: DockerEngine, language: str) -> None:
    code = program(language, "memory")
    result = await engine.execute(request(language, code, memory_mb=256, timeout_seconds=20))
    assert_verdict(result, ExecutionStatus.OOM)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_output_flood(engine: DockerEngine, language: str) -> None:
    code = program(language, "flood")
    result = await engine.execute(request(language, code, output_limit_bytes=20_000))
    assert_verdict(result, ExecutionStatus.OUTPUT_LIMIT, stdout_truncated=True)
    assert len(result.stdout.encode()) <= 20_000


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_program_of_several_files(engine: DockerEngine, language: str) -> None:
    helper = PROGRAMS[language]["helper"]
    code = program(language, "multifile")
    result = await engine.execute(request(language, code, files={helper["path"]: helper["text"]}))
    assert_verdict(result, ExecutionStatus.COMPLETED, stdout="helped\n")


@pytest.mark.parametrize("language", [name for name, r in RECIPES.items() if r.compiled])
async def test_the_compile_time_limit_is_its_own(engine: DockerEngine, language: str) -> None:
    """A compiler stopped at its time limit is a compile error that says so; the program's
    limit is not the compiler's."""
    # 10 ms: less than any compiler here needs to start (gcc's hello takes about 50 ms).
    result = await engine.execute(
        request(language, RECIPES[language].example, compile_timeout_seconds=0.01)
    )
    assert_verdict(result, ExecutionStatus.COMPILE_ERROR, stdout="")
    assert "[assay] the compiler ran past its time limit of 0.01 s" in (result.compile_output or "")
    # 1.5 s: several times what any example program needs here, even node under gVisor on a
    # busy machine (0.3 s), and less than tsc or rustc alone take to compile it (3-6 s).
    slow_compile_fast_limit = await engine.execute(
        request(language, RECIPES[language].example, timeout_seconds=1.5)
    )
    assert slow_compile_fast_limit.status is ExecutionStatus.COMPLETED, slow_compile_fast_limit


# -- every path --------------------------------------------------------------------------

PATHS = ["cold", *(f"{where}-{mode}" for mode in BATCH_MODES for where in ("local",)), "remote"]
PATHS += [f"remote-{mode}" for mode in BATCH_MODES]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=PATHS)
async def path_engine(request: pytest.FixtureRequest) -> AsyncIterator[ExecutionInterface]:
    """An engine per path: cold (no pool), batch isolation (a program after another in one
    sandbox), the executor service (remote), and batch isolation through it."""
    settings = make_settings(pool={"size": 1})
    name = str(request.param)
    if name.startswith("remote"):
        async with running_executor(settings) as url:
            remote = RemoteExecutionEngine([url], token=EXECUTOR_TOKEN, settings=settings)
            engine: ExecutionInterface = InBatch(remote) if name.endswith("batch") else remote
            yield engine
            await engine.close()
    else:
        local = DockerEngine(cold(settings) if name == "cold" else settings)
        yield InBatch(local) if name.endswith("batch") else local
        await local.close()
    assert leftover_containers(settings.engine_id) == [], "a sandbox container was left behind"


@pytest.mark.parametrize("language", LANGUAGES)
async def test_hello_on_every_path(path_engine: ExecutionInterface, language: str) -> None:
    result = await path_engine.execute(request(language, RECIPES[language].example))
    assert_verdict(result, ExecutionStatus.COMPLETED, stdout="Hello, world!\n")


async def test_the_default_python_image_carries_numpy(engine: DockerEngine) -> None:
    code = "import numpy\nprint(int(numpy.arange(10).sum()), numpy.__version__ >= '2')"
    result = await engine.execute(request("python", code))
    assert_verdict(result, ExecutionStatus.COMPLETED, stdout="45 True\n")


async def test_the_languages_and_their_versions_come_from_the_image(
    engine: DockerEngine,
) -> None:
    languages = {info.name: info for info in await engine.languages()}
    assert list(languages) == LANGUAGES
    for name, info in languages.items():
        assert info.version and info.version[0].isdigit(), (name, info.version)
        assert info.compiled is RECIPES[name].compiled
    assert languages["rust"].version >= "1.85"  # type: ignore[operator]
    assert languages["java"].source_file == "{entry}.java"
    if TEST_RUNTIME is None:
        assert languages["python"].version.startswith("3.")  # type: ignore[union-attr]
