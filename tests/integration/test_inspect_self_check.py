"""Inspect's own conformance suite (``inspect_ai/util/_sandbox/self_check.py``, 44 checks)
against the ``assay`` sandbox provider, on two real deployments started as a user starts
them: ``assay serve`` in local mode, and ``assay executor`` + ``assay serve`` in remote mode.
Then what the suite does not cover: labels, several environments, a config file,
``connection()``, cleanup (``cleanup=False`` and ``inspect sandbox cleanup``) and the errors
of a sandbox that has gone.

Every connection this process makes is checked to stay on the machine."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from inspect_ai._util.error import PrerequisiteError
from inspect_ai.util import (
    OutputLimitExceededError,
    SandboxEnvironment,
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
)
from inspect_ai.util._sandbox.limits import override_max_exec_output_size
from inspect_ai.util._sandbox.self_check import *  # noqa: F403 - the checks, for collection

from assay.client import AsyncAssayClient
from assay.execution_engine.docker_engine import DockerEngine
from assay.inspect_sandbox import (
    LABEL_PROVIDER,
    PROVIDER,
    AssayConfig,
    AssaySandboxEnvironment,
)
from tests.conftest import docker_unavailable, leftover_containers
from tests.data.inspect import loopback_only
from tests.e2e.test_crash_recovery import free_port, wait_ready
from tests.e2e.test_shared_engine import TOKEN, wait_for_executor
from tests.sandbox import SESSION_ENGINE_IDS, TEST_ENGINE_PREFIX, TEST_RUNTIME, make_settings

pytestmark = [
    pytest.mark.docker,
    pytest.mark.integration,
    pytest.mark.slow,
    # One sandbox serves every check of a deployment, so they share its event loop.
    pytest.mark.asyncio(loop_scope="module"),
]

#: The checks Assay's sandboxes cannot pass by design (at most three), and why.
XFAILS = {
    "test_exec_as_user": (
        "it adds a user with `adduser` run as root: an Assay sandbox runs as uid 10001 and "
        "refuses user='root' (SandboxUserUnsupportedError) unless created as root, and even "
        "a root sandbox cannot add one: its root filesystem, /etc included, is read-only by "
        "design (only /workspace, /tmp and /var/tmp are writable), and the image has no adduser"
    ),
}

#: Inspect settings for this process: no model API but the mock one.
INSPECT_ENV = {"INSPECT_DISABLE_MODEL_API": "1"}
#: Would make Inspect send its logs or load hooks that may send them elsewhere.
INSPECT_UNSET = ("INSPECT_TELEMETRY", "INSPECT_API_KEY_OVERRIDE", "INSPECT_REQUIRED_HOOKS")


@pytest.fixture(scope="module", autouse=True)
def _loopback_only() -> Iterator[None]:
    """Nothing in this process connects anywhere but this machine."""
    saved = {name: os.environ.get(name) for name in (*INSPECT_ENV, *INSPECT_UNSET)}
    os.environ.update(INSPECT_ENV)
    for name in INSPECT_UNSET:
        os.environ.pop(name, None)
    loopback_only.install()
    before = len(loopback_only.ATTEMPTS)
    try:
        yield
    finally:
        loopback_only.uninstall()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert loopback_only.ATTEMPTS[before:] == [], "something tried to leave the machine"


def _server_env(data_dir: Path, engine_id: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ASSAY_", "EXECUTION_", "INSPECT_"))
    }
    env.update(ASSAY_DATA_DIR=str(data_dir), ASSAY_EXECUTION__ENGINE_ID=engine_id)
    if TEST_RUNTIME:
        env["ASSAY_EXECUTION__RUNTIME"] = TEST_RUNTIME
    return env


@contextmanager
def _process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def _docker_or_skip() -> None:
    engine = DockerEngine(make_settings())
    health = await engine.check_health()
    await engine.close()
    if not health.healthy:
        docker_unavailable(health.detail)


@asynccontextmanager
async def running_assay(
    mode: str, tmp: Path, settings: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """A running Assay (``assay serve``, local or in front of ``assay executor``), as
    subprocesses, with ``settings`` in their environment; yields its URL. Afterwards none
    of its containers is left."""
    await _docker_or_skip()
    engine_id = f"{TEST_ENGINE_PREFIX}inspect-{mode}-{uuid.uuid4().hex[:8]}"
    SESSION_ENGINE_IDS.add(engine_id)
    env = {**_server_env(tmp / "data", engine_id), **(settings or {})}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    assay = [sys.executable, "-m", "assay"]
    with ExitStack() as stack:
        if mode == "remote":
            executor_port = free_port()
            executor_env = {**env, "ASSAY_EXECUTOR__TOKEN": TOKEN}
            executor = stack.enter_context(
                _process(
                    [*assay, "executor", "--port", str(executor_port)],
                    executor_env,
                    tmp / "executor.log",
                )
            )
            await wait_for_executor(f"http://127.0.0.1:{executor_port}", executor)
            env = {
                **executor_env,
                "EXECUTION_MODE": "remote",
                "EXECUTION_SERVICE_URL": f"http://127.0.0.1:{executor_port}",
            }
        log = tmp / "server.log"
        server = stack.enter_context(_process([*assay, "serve", "--port", str(port)], env, log))
        await wait_ready(url, server, log)
        yield url
    assert leftover_containers(engine_id) == [], "a sandbox outlived its deployment"


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["local", "remote"])
async def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """Each deployment, for every test of this module that takes it."""
    async with running_assay(request.param, tmp_path_factory.mktemp(request.param)) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_sandbox(deployment: str) -> AsyncIterator[SandboxEnvironment]:
    """One sandbox for every check of a deployment, through the provider's lifecycle."""
    config = AssayConfig(url=deployment)
    await AssaySandboxEnvironment.task_init("self_check", config)
    environments = await AssaySandboxEnvironment.sample_init("self_check", config, {})
    try:
        yield environments["default"]
    finally:
        await AssaySandboxEnvironment.sample_cleanup("self_check", config, environments, False)
        await AssaySandboxEnvironment.task_cleanup("self_check", config, True)


@pytest.fixture
def sandbox_env(
    module_sandbox: SandboxEnvironment, request: pytest.FixtureRequest
) -> SandboxEnvironment:
    """The fixture Inspect's checks take, with this provider's known failures marked."""
    reason = XFAILS.get(request.node.originalname)
    if reason is not None:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    return module_sandbox


# -- beyond the suite ---------------------------------------------------------------------


async def test_inspect_finds_the_provider_through_its_entry_point() -> None:
    script = (
        "import sys\n"
        "from inspect_ai.util._sandbox.registry import registry_find_sandboxenv\n"
        "from inspect_ai._util.entrypoints import ensure_entry_points\n"
        "assert 'assay.inspect_sandbox' not in sys.modules\n"
        "ensure_entry_points()\n"
        "found = registry_find_sandboxenv('assay')\n"
        "print(found.__module__, found.__name__)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "assay.inspect_sandbox AssaySandboxEnvironment"


async def test_a_config_file_two_environments_labels_and_connection(
    deployment: str, tmp_path: Path
) -> None:
    config_file = tmp_path / "assay.yaml"
    config_file.write_text(
        f"url: {deployment}\nenvironments: [default, helper]\nmemory_mb: 256\n"
        "labels: {team: evals}\n"
    )
    config = str(config_file)
    await AssaySandboxEnvironment.task_init("labelled", config)
    environments = await AssaySandboxEnvironment.sample_init(
        "labelled", config, {"__sample_id__": "s-1"}
    )
    try:
        assert list(environments) == ["default", "helper"]
        default, helper = (e.as_type(AssaySandboxEnvironment) for e in environments.values())
        assert default.sandbox.id != helper.sandbox.id
        assert default.sandbox.memory_mb == 256
        assert (
            default.sandbox.labels.items()
            >= {
                LABEL_PROVIDER: PROVIDER,
                "inspect.task": "labelled",
                "inspect.sample": "s-1",
                "inspect.environment": "default",
                "team": "evals",
            }.items()
        )
        assert helper.sandbox.labels["inspect.environment"] == "helper"
        await helper.write_file("only-here", "x")
        assert not (await default.exec(["test", "-e", "only-here"])).success, "two sandboxes"
        connection = await default.connection()
        assert connection.type == PROVIDER
        assert connection.command == (
            f"assay sandbox exec {default.sandbox.id} --url {deployment} --stdin-file - -- bash"
        )
        shell = subprocess.run(
            [sys.executable, "-m", *shlex.split(connection.command)],
            input="cat only-here 2>&1; echo $HOME",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shell.stdout.endswith("No such file or directory\n/workspace\n"), shell.stderr
        async with AsyncAssayClient(deployment) as client:
            await client.delete_sandbox(helper.sandbox.id)  # ended from outside
        with pytest.raises(SandboxUnavailableError, match="ended"):
            await helper.exec(["true"])
        with pytest.raises(SandboxUnavailableError):
            await helper.read_file("only-here")
        with pytest.raises(ConnectionError):
            await helper.connection()
    finally:
        await AssaySandboxEnvironment.sample_cleanup("labelled", config, environments, False)
    async with AsyncAssayClient(deployment) as client:
        assert (await client.get_sandbox(default.sandbox.id)).state == "ended"
    with pytest.raises(SandboxUnavailableError, match="cleaned up"):
        await default.exec(["true"])
    with pytest.raises(ConnectionError):
        await default.connection()


async def test_the_output_limit_and_a_user_it_cannot_be(deployment: str) -> None:
    config = AssayConfig(url=deployment)
    environments = await AssaySandboxEnvironment.sample_init("limits", config, {})
    sandbox = environments["default"]
    try:
        with override_max_exec_output_size(1024), pytest.raises(OutputLimitExceededError) as info:
            await sandbox.exec(["head", "-c", "5000", "/dev/zero"])
        assert "limit of 1 KiB was exceeded" in str(info.value)
        assert (await sandbox.exec(["head", "-c", "1024", "/dev/zero"])).success
        with pytest.raises(SandboxUserUnsupportedError):
            await sandbox.exec(["whoami"], user="root")
        missing = await sandbox.exec(["no-such-program"])
        assert missing.returncode == 127, "a missing program is a result, not an error"
    finally:
        await AssaySandboxEnvironment.sample_cleanup("limits", config, environments, False)


async def test_no_cleanup_leaves_them_and_says_how_then_cli_cleanup_removes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deployment of its own: `inspect sandbox cleanup assay` removes every sandbox of ours.
    async with running_assay("local", tmp_path) as url:
        await _no_cleanup_then_cli_cleanup(url, capsys, monkeypatch)


async def _no_cleanup_then_cli_cleanup(
    deployment: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = AssayConfig(url=deployment)
    first = await AssaySandboxEnvironment.sample_init("kept", config, {})
    second = await AssaySandboxEnvironment.sample_init("kept", config, {})
    ids = [e["default"].as_type(AssaySandboxEnvironment).sandbox.id for e in (first, second)]
    # --no-sandbox-cleanup: Inspect skips sample_cleanup, then tells task_cleanup not to clean.
    await AssaySandboxEnvironment.task_cleanup("shutdown", config, False)
    printed = capsys.readouterr().out
    assert all(sandbox_id in printed for sandbox_id in ids)
    assert "inspect sandbox cleanup assay" in printed
    async with AsyncAssayClient(deployment) as client:
        assert {s.id for s in await client.list_sandboxes(state="running")} >= set(ids)
        unrelated = await client.create_sandbox(labels={"made-by": "someone else"})
        monkeypatch.setenv("ASSAY_URL", deployment)
        await AssaySandboxEnvironment.cli_cleanup(ids[0])
        assert (await client.get_sandbox(ids[0])).state == "ended"
        await AssaySandboxEnvironment.cli_cleanup(None)
        assert (await client.get_sandbox(ids[1])).state == "ended"
        assert (await client.get_sandbox(unrelated.id)).state == "running", "not ours"
        await client.delete_sandbox(unrelated.id)
    assert "removed 1 Assay sandbox(es)" in capsys.readouterr().out


async def test_a_sample_whose_second_sandbox_is_refused_leaves_none(tmp_path: Path) -> None:
    async with running_assay("local", tmp_path, {"ASSAY_API__MAX_SANDBOXES_PER_KEY": "1"}) as url:
        config = AssayConfig(url=url, environments=["default", "second"])
        with pytest.raises(RuntimeError, match="live sandboxes"):
            await AssaySandboxEnvironment.sample_init("refused", config, {})
        async with AsyncAssayClient(url) as client:
            assert await client.list_sandboxes(state="running") == []
            [first] = await client.list_sandboxes(state="ended")
        assert first.labels["inspect.environment"] == "default"


async def test_task_init_says_when_the_server_cannot_be_reached() -> None:
    config = AssayConfig(url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(PrerequisiteError, match="cannot reach the server"):
        await AssaySandboxEnvironment.task_init("unreachable", config)
