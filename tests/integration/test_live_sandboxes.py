"""Live sandboxes on the real Docker engine: commands, files, users, limits, the kill of a
timed-out command's whole tree, idle and lifetime ends, and no sandbox outliving its owner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from assay.errors import (
    SandboxEndedError,
    SandboxFileNotFoundError,
    SandboxFileTooLargeError,
    SandboxIsADirectoryError,
    SandboxLostError,
    SandboxNotFoundError,
    SandboxPermissionError,
    UserUnsupportedError,
)
from assay.execution_engine import (
    CommandRequest,
    EndReason,
    ExecFailure,
    ExecutionInterface,
    SandboxRequest,
)
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.remote import RemoteExecutionEngine
from tests.conftest import EXECUTOR_TOKEN, leftover_containers, running_executor, started_engine
from tests.sandbox import TEST_RUNTIME, make_settings

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

_MIB = 1024 * 1024


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["local", "remote"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[ExecutionInterface]:
    """The Docker engine itself, or the platform's remote engine in front of an executor
    service that runs one (Phase 1: the platform never touches Docker)."""
    settings = make_settings(pool={"size": 0}, sandboxes={"pool_size": 1})
    if request.param == "local":
        async with started_engine(settings) as local:
            yield local
        return
    async with running_executor(settings) as url:
        remote = RemoteExecutionEngine([url], token=EXECUTOR_TOKEN, settings=settings)
        try:
            yield remote
        finally:
            await remote.close()
    assert leftover_containers(settings.engine_id) == [], "a sandbox container was left behind"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sandbox(engine: ExecutionInterface) -> str:
    return (await engine.create_sandbox(SandboxRequest())).id


def run(*argv: str, **fields: object) -> CommandRequest:
    return CommandRequest.model_validate({"command": list(argv), **fields})


async def test_a_command_runs_and_its_output_comes_back_byte_for_byte(
    engine: ExecutionInterface, sandbox: str
) -> None:
    result = await engine.exec_command(
        sandbox, run("sh", "-c", r"printf 'a\377\000b'; printf err >&2; exit 3")
    )
    assert (result.returncode, result.stdout, result.stderr) == (3, b"a\xff\x00b", b"err")
    assert not result.timed_out and result.exec_failure is None


async def test_stdin_env_and_cwd(engine: ExecutionInterface, sandbox: str) -> None:
    payload = bytes(range(256)) * 4096
    counted = await engine.exec_command(sandbox, run("wc", "-c", input=payload))
    assert counted.stdout.strip() == str(len(payload)).encode()
    said = await engine.exec_command(sandbox, run("sh", "-c", "echo $X $HOME", env={"X": "y"}))
    assert said.stdout == b"y /workspace\n"
    await engine.exec_command(sandbox, run("mkdir", "-p", "sub/dir"))
    here = await engine.exec_command(sandbox, run("pwd", cwd="sub/dir"))
    assert here.stdout == b"/workspace/sub/dir\n"
    there = await engine.exec_command(sandbox, run("pwd", cwd="/usr/bin"))
    assert there.stdout == b"/usr/bin\n"


async def test_commands_that_cannot_start_say_why(engine: ExecutionInterface, sandbox: str) -> None:
    missing = await engine.exec_command(sandbox, run("no-such-program"))
    assert (missing.returncode, missing.exec_failure) == (127, ExecFailure.NOT_FOUND)
    assert b"no-such-program" in missing.stderr
    denied = await engine.exec_command(sandbox, run("/etc/passwd"))
    assert (denied.returncode, denied.exec_failure) == (126, ExecFailure.PERMISSION_DENIED)
    nowhere = await engine.exec_command(sandbox, run("true", cwd="/no/such/dir"))
    assert (nowhere.returncode, nowhere.exec_failure) == (126, ExecFailure.BAD_CWD)


async def test_a_timed_out_command_has_its_whole_tree_killed(
    engine: ExecutionInterface, sandbox: str
) -> None:
    began = time.monotonic()
    result = await engine.exec_command(
        sandbox,
        run("sh", "-c", "sleep 300 & (sleep 301 &) ; sleep 302; :", timeout_seconds=1),
    )
    assert result.timed_out and result.returncode == 137
    assert time.monotonic() - began < 5
    await asyncio.sleep(0.3)
    left = await engine.exec_command(sandbox, run("ps", "-eo", "args"))
    assert b"sleep 30" not in left.stdout, left.stdout.decode()


async def test_background_processes_outlive_a_command_that_ends(
    engine: ExecutionInterface, sandbox: str
) -> None:
    """A server an agent starts in the background keeps running; the command that started
    it returns at once though the server holds its output."""
    began = time.monotonic()
    started = await engine.exec_command(sandbox, run("sh", "-c", "sleep 60 & echo started"))
    assert started.stdout == b"started\n" and time.monotonic() - began < 2
    alive = await engine.exec_command(sandbox, run("pgrep", "-f", "sleep 60"))
    assert alive.returncode == 0
    await engine.exec_command(sandbox, run("pkill", "-f", "sleep 60"))


async def test_commands_run_at_once(engine: ExecutionInterface, sandbox: str) -> None:
    began = time.monotonic()
    results = await asyncio.gather(
        *(engine.exec_command(sandbox, run("sleep", "1")) for _ in range(4))
    )
    assert [r.returncode for r in results] == [0, 0, 0, 0]
    assert time.monotonic() - began < 3


async def test_output_streams_while_the_command_runs(
    engine: ExecutionInterface, sandbox: str
) -> None:
    seen: list[tuple[str, bytes, float]] = []
    began = time.monotonic()
    result = await engine.exec_command(
        sandbox,
        run("sh", "-c", "echo one; sleep 1; echo two >&2"),
        on_output=lambda stream, data: seen.append((stream, data, time.monotonic() - began)),
    )
    assert result.stdout == b"one\n" and result.stderr == b"two\n"
    assert seen[0][:2] == ("stdout", b"one\n") and seen[0][2] < 0.9


async def test_output_is_capped_per_stream(engine: ExecutionInterface, sandbox: str) -> None:
    result = await engine.exec_command(
        sandbox, run("sh", "-c", "head -c 100000 /dev/zero", output_limit_bytes=1000)
    )
    assert len(result.stdout) == 1000 and result.stdout_truncated
    assert not result.stderr_truncated and result.returncode == 0


async def test_files_round_trip_and_fail_distinctly(
    engine: ExecutionInterface, sandbox: str
) -> None:
    data = bytes(range(256)) * (50 * _MIB // 256)
    written = await engine.write_file(sandbox, "deep/dir/blob.bin", data)
    assert (written.path, written.size) == ("/workspace/deep/dir/blob.bin", len(data))
    assert await engine.read_file(sandbox, "deep/dir/blob.bin", max_bytes=60 * _MIB) == data
    await engine.write_file(sandbox, "/tmp/t.txt", b"")
    assert await engine.read_file(sandbox, "/tmp/t.txt", max_bytes=10) == b""
    with pytest.raises(SandboxFileNotFoundError, match="nope"):
        await engine.read_file(sandbox, "nope", max_bytes=10)
    with pytest.raises(SandboxIsADirectoryError, match="directory"):
        await engine.read_file(sandbox, "/etc", max_bytes=10)
    with pytest.raises(SandboxIsADirectoryError):
        await engine.write_file(sandbox, "deep", b"x")
    with pytest.raises(SandboxFileTooLargeError, match="limit of 1000"):
        await engine.read_file(sandbox, "deep/dir/blob.bin", max_bytes=1000)
    with pytest.raises(SandboxPermissionError, match="/etc/hostname"):
        await engine.write_file(sandbox, "/etc/hostname", b"x")  # the root is read-only
    await engine.write_file(sandbox, "locked", b"secret")
    await engine.exec_command(sandbox, run("chmod", "000", "locked"))
    with pytest.raises(SandboxPermissionError, match="locked"):
        await engine.read_file(sandbox, "locked", max_bytes=10)
    await engine.exec_command(sandbox, run("rm", "-rf", "deep", "locked", "/tmp/t.txt"))


async def test_an_unprivileged_sandbox_refuses_other_users(
    engine: ExecutionInterface, sandbox: str
) -> None:
    same = await engine.exec_command(sandbox, run("id", "-u", user="sandbox"))
    assert same.stdout == b"10001\n"
    with pytest.raises(UserUnsupportedError, match="root"):
        await engine.exec_command(sandbox, run("id", user="root"))


async def test_a_root_sandbox_runs_commands_as_any_user(engine: ExecutionInterface) -> None:
    info = await engine.create_sandbox(SandboxRequest(user="root"))
    try:
        root = await engine.exec_command(info.id, run("id", "-u"))
        assert root.stdout == b"0\n"
        nobody = await engine.exec_command(info.id, run("id", "-un", user="nobody"))
        assert nobody.stdout == b"nobody\n"
        sandbox_user = await engine.exec_command(info.id, run("id", "-u", user="10001"))
        assert sandbox_user.stdout == b"10001\n"
        ghost = await engine.exec_command(info.id, run("id", user="ghost"))
        assert (ghost.returncode, ghost.exec_failure) == (126, ExecFailure.UNKNOWN_USER)
        assert b"ghost" in ghost.stderr
        # Root, without the capabilities to get round file permissions or the read-only root.
        caps = await engine.exec_command(info.id, run("grep", "CapEff", "/proc/self/status"))
        assert int(caps.stdout.split()[1], 16) & ~((1 << 6) | (1 << 7)) == 0, caps.stdout
        etc = await engine.exec_command(info.id, run("touch", "/etc/x"))
        assert etc.returncode != 0
    finally:
        await engine.delete_sandbox(info.id)


async def test_hardening_holds_in_a_live_sandbox(engine: ExecutionInterface, sandbox: str) -> None:
    caps = await engine.exec_command(sandbox, run("grep", "Cap[EP][fr][fm]", "/proc/self/status"))
    assert all(line.endswith(b"0000000000000000") for line in caps.stdout.splitlines()), caps
    net = await engine.exec_command(sandbox, run("cat", "/proc/net/dev"))
    assert [line.split(b":")[0].strip() for line in net.stdout.splitlines()[2:]] in (
        [b"lo"],
        [],
    ), net.stdout
    seccomp = await engine.exec_command(sandbox, run("grep", "Seccomp:", "/proc/self/status"))
    if TEST_RUNTIME != "runsc":
        assert seccomp.stdout.split()[1] == b"2"
    rootfs = await engine.exec_command(sandbox, run("touch", "/usr/x"))
    assert rootfs.returncode != 0


async def test_a_process_flood_meets_the_pids_limit(engine: ExecutionInterface) -> None:
    """Under runc the kernel refuses the forks and the sandbox lives on; under gVisor the
    pids limit ends the whole sandbox from inside (as for evaluations): its command is lost
    and the sandbox ends, lost; other sandboxes are untouched either way."""
    info = await engine.create_sandbox(SandboxRequest(pids_limit=64))
    bystander = await engine.create_sandbox(SandboxRequest())
    try:
        flood = run("sh", "-c", "for i in $(seq 400); do sleep 5 & done; wait", timeout_seconds=3)
        if TEST_RUNTIME == "runsc":
            with pytest.raises(SandboxLostError):
                await engine.exec_command(info.id, flood)
            await _until_ended(engine, info.id, EndReason.LOST)
        else:
            forks = await engine.exec_command(info.id, flood)
            said = forks.stderr.lower()
            assert b"fork" in said or b"resource" in said, forks
            after = await engine.exec_command(info.id, run("echo", "alive"))
            assert after.stdout == b"alive\n"
        assert (await engine.exec_command(bystander.id, run("true"))).returncode == 0
    finally:
        await engine.delete_sandbox(info.id)
        await engine.delete_sandbox(bystander.id)


async def _until_ended(engine: ExecutionInterface, sandbox_id: str, reason: EndReason) -> None:
    deadline = time.monotonic() + 10
    while (info := await engine.sandbox(sandbox_id)).state != "ended":
        assert time.monotonic() < deadline, "the sandbox never ended"
        await asyncio.sleep(0.1)
    assert info.end_reason == reason


async def test_memory_is_bounded(engine: ExecutionInterface) -> None:
    """Under runc the kernel kills the command (the biggest process) and the sandbox lives
    on; under gVisor an OOM kill ends the whole sandbox (lost)."""
    info = await engine.create_sandbox(SandboxRequest(memory_mb=128))
    try:
        hog = run("python3", "-c", "x = bytearray(512 * 2**20)", timeout_seconds=20)
        if TEST_RUNTIME == "runsc":
            with pytest.raises(SandboxLostError):
                await engine.exec_command(info.id, hog)
            await _until_ended(engine, info.id, EndReason.LOST)
            return
        assert (await engine.exec_command(info.id, hog)).returncode == 137
        assert (await engine.exec_command(info.id, run("true"))).returncode == 0
    finally:
        await engine.delete_sandbox(info.id)


async def test_disk_is_bounded(engine: ExecutionInterface, sandbox: str) -> None:
    """Its tmpfs mounts have a size: writing past it fails (and counts in its memory)."""
    fill = run("sh", "-c", "head -c 2000M /dev/zero > /tmp/fill", timeout_seconds=30)
    disk = await engine.exec_command(sandbox, fill)
    assert disk.returncode != 0 and b"space" in disk.stderr.lower(), disk
    await engine.exec_command(sandbox, run("rm", "-f", "/tmp/fill"))
    assert (await engine.exec_command(sandbox, run("true"))).returncode == 0


async def test_a_deleted_sandbox_is_gone(engine: ExecutionInterface) -> None:
    info = await engine.create_sandbox(SandboxRequest(labels={"k": "v"}))
    assert info.state == "running" and info.labels == {"k": "v"}
    assert info.id in [s.id for s in await engine.list_sandboxes()]
    ended = await engine.delete_sandbox(info.id)
    assert (ended.state, ended.end_reason) == ("ended", EndReason.DELETED)
    with pytest.raises(SandboxEndedError, match="deleted"):
        await engine.exec_command(info.id, run("true"))
    assert info.id not in [s.id for s in await engine.list_sandboxes()]
    with pytest.raises(SandboxNotFoundError):
        await engine.sandbox("sbx-0000000000000000")


async def test_the_second_sandbox_comes_warm(engine: ExecutionInterface) -> None:
    first = await engine.create_sandbox(SandboxRequest())
    await engine.delete_sandbox(first.id)
    deadline = time.monotonic() + 30
    while not any(s.profile.startswith("live-") and s.ready for s in await engine.pool_stats()):
        assert time.monotonic() < deadline, "the live pool never filled"
        await asyncio.sleep(0.1)
    second = await engine.create_sandbox(SandboxRequest())
    try:
        assert second.warm
    finally:
        await engine.delete_sandbox(second.id)


async def test_idle_and_lifetime_limits_end_a_sandbox(engine: ExecutionInterface) -> None:
    idle = await engine.create_sandbox(SandboxRequest(idle_timeout_seconds=2))
    old = await engine.create_sandbox(SandboxRequest(lifetime_seconds=3))
    for _ in range(3):  # kept busy, within its lifetime: never idle, but not younger
        await engine.exec_command(old.id, run("true"))
        await asyncio.sleep(0.8)
    await _until_ended(engine, idle.id, EndReason.IDLE)
    await _until_ended(engine, old.id, EndReason.LIFETIME)
    with pytest.raises(SandboxEndedError, match="lifetime"):
        await engine.exec_command(old.id, run("true"))


async def test_another_process_engine_knows_its_sandboxes_are_not_its_own(
    engine: ExecutionInterface, sandbox: str
) -> None:
    """Several `assay serve` on one database: each tells the others' sandboxes from lost
    ones (the API then leaves their records alone)."""
    other = DockerEngine(make_settings())
    try:
        assert not other.holds(sandbox)
        with pytest.raises(SandboxNotFoundError, match="another Assay process"):
            await other.sandbox(sandbox)
    finally:
        await other.close()
    assert engine.holds(sandbox)
