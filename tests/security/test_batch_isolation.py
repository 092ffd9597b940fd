"""Batch isolation under attack: a program that tampers with the sandbox it shares with the
next program of its batch. The next program must see a clean sandbox (the reset undid it, in
the same container) or a new container (the damage could not be undone), never the
previous program's processes, files, environment or exhausted limits."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator

import pytest

from assay.config import ExecutionSettings
from assay.errors import ExecutionError
from assay.execution_engine import BatchSandbox, ExecutionRequest, ExecutionResult, ExecutionStatus
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.isolation import GVISOR
from tests.conftest import docker_unavailable, leftover_containers
from tests.sandbox import PRINT_CONTAINER_ID, TEST_RUNTIME, sandbox_processes

pytestmark = [
    pytest.mark.docker,
    pytest.mark.integration,
    pytest.mark.skipif(
        TEST_RUNTIME == GVISOR,
        reason="batch isolation is refused under gVisor (test_gvisor_refuses_batch_isolation)",
    ),
]

#: What a program of a batch finds when it starts in a clean sandbox.
INSPECT = PRINT_CONTAINER_ID + textwrap.dedent(
    """
    import os
    others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())]
    print('processes', others)
    for place in ['/workspace', '/tmp', '/dev/shm', '/dev/mqueue']:
        print(place, sorted(os.listdir(place)))
    print('mode', oct(os.stat('/workspace').st_mode & 0o777))
    print('ipc', [len(open(f'/proc/sysvipc/{t}').readlines()) - 1 for t in ('shm', 'msg', 'sem')])
    print('env', sorted(k for k in os.environ if k not in ('PATH', 'HOME', 'LANG', 'PWD',
          'PYTHONUNBUFFERED', 'PYTHONDONTWRITEBYTECODE', 'HOSTNAME', 'LC_CTYPE')))
    """
)
CLEAN = [
    "processes []",
    "/workspace ['main.py']",
    "/tmp []",
    "/dev/shm []",
    "/dev/mqueue []",
    "mode 0o755",  # as the image has it (Docker copies it onto the tmpfs)
    "ipc [0, 0, 0]",
    "env []",
]


@pytest.fixture
async def docker_engine(settings: ExecutionSettings) -> AsyncIterator[DockerEngine]:
    engine = DockerEngine(settings)
    try:
        await engine.start()
    except ExecutionError as exc:
        await engine.close()
        docker_unavailable(exc.message)
    yield engine
    await engine.close()
    assert leftover_containers(settings.engine_id) == [], "a sandbox container was left behind"


@pytest.fixture
async def batch(docker_engine: DockerEngine) -> AsyncIterator[BatchSandbox]:
    sandbox = docker_engine.batch_sandbox()
    yield sandbox
    await sandbox.close()


async def run_in(batch: BatchSandbox, code: str, **limits: object) -> ExecutionResult:
    request = ExecutionRequest.model_validate({"code": textwrap.dedent(code), **limits})
    return await batch.execute(request)


async def inspect(batch: BatchSandbox) -> tuple[str, list[str]]:
    """The container the next program runs in, and what it finds there."""
    result = await run_in(batch, INSPECT)
    assert result.status is ExecutionStatus.COMPLETED, result
    container, *seen = result.stdout.splitlines()
    return container, seen


async def container_after(batch: BatchSandbox, attack: str, **limits: object) -> tuple[str, str]:
    """Runs a first program to learn the container, then ``attack`` (which must print its
    container id first); returns both ids and checks the attack ran."""
    first = await run_in(batch, PRINT_CONTAINER_ID)
    result = await run_in(batch, PRINT_CONTAINER_ID + textwrap.dedent(attack), **limits)
    assert result.stdout.splitlines()[0] == first.stdout.strip(), "the attack shared the sandbox"
    return first.stdout.strip(), result.stdout


async def test_programs_of_a_batch_share_a_container_and_start_clean(batch: BatchSandbox) -> None:
    containers = set()
    for _ in range(5):
        container, seen = await inspect(batch)
        containers.add(container)
        assert seen == CLEAN
    assert len(containers) == 1, "a clean program must not cost a new container"


async def test_files_anywhere_writable_are_wiped_in_the_same_container(
    batch: BatchSandbox,
) -> None:
    container, output = await container_after(
        batch,
        """
        import os
        for place in ['/workspace', '/tmp', '/dev/shm']:
            os.makedirs(f'{place}/deep/' + '/'.join(['d'] * 40), exist_ok=True)
            open(f'{place}/secret', 'w').write('for the next program')
            os.symlink('/etc', f'{place}/link-to-etc')
            os.mkdir(f'{place}/locked')
            open(f'{place}/locked/inside', 'w').write('x')
            os.chmod(f'{place}/locked', 0)
        open('/dev/mqueue/queue', 'w').close()
        os.chmod('/workspace', 0o777)
        print('planted')
        """,
    )
    assert output.endswith("planted\n")
    after, seen = await inspect(batch)
    assert seen == CLEAN
    assert after == container, "files alone are undone by the reset"


async def test_environment_and_startup_files_do_not_carry_over(batch: BatchSandbox) -> None:
    await container_after(
        batch,
        """
        import os
        os.environ['PYTHONSTARTUP'] = '/workspace/evil.py'
        os.putenv('INJECTED', '1')
        os.umask(0)
        open('/workspace/sitecustomize.py', 'w').write('print("hijacked")')
        open('/workspace/usercustomize.py', 'w').write('print("hijacked")')
        open('/workspace/.bashrc', 'w').write('echo hijacked')
        os.makedirs('/workspace/.local/lib', exist_ok=True)
        """,
    )
    result = await run_in(
        batch, "import os\nprint('INJECTED' in os.environ, oct(os.umask(0o22)))\nprint('x')"
    )
    assert result.stdout == "False 0o22\nx\n", "no hijack, and a fresh environment"


async def test_background_processes_are_killed_and_the_container_replaced(
    batch: BatchSandbox,
) -> None:
    container, _ = await container_after(
        batch,
        """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:  # a daemon, reparented to PID 1 once its parent exits
                while True:
                    print('LEAK from a leftover process', flush=True)
                    open('/tmp/leak', 'a').write('x')
                    time.sleep(0.005)
            os._exit(0)
        time.sleep(0.1)
        print('leaving a daemon behind')
        """,
    )
    after, seen = await inspect(batch)
    assert seen == CLEAN
    assert after != container, "a program that left processes costs its sandbox"
    assert sandbox_processes(settle_seconds=3) == []


async def test_output_of_a_leftover_process_never_reaches_the_next_program(
    batch: BatchSandbox,
) -> None:
    first = await run_in(
        batch,
        """
        import subprocess
        print('started', flush=True)  # before the child: a busy machine runs it first
        subprocess.Popen(['sh', '-c', 'while true; do echo LEAK; echo LEAK >&2; done'])
        """,
    )
    assert first.status is ExecutionStatus.COMPLETED
    assert first.stdout.startswith("started\n")
    for _ in range(3):
        result = await run_in(batch, "print('mine')")
        assert (result.stdout, result.stderr) == ("mine\n", "")


async def test_exhausted_pids_replace_the_container(
    batch: BatchSandbox, settings: ExecutionSettings
) -> None:
    container, output = await container_after(
        batch,
        """
        import os, time
        born = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(3600)
                born += 1
        except OSError:
            print('pids exhausted after', born, flush=True)
        """,
    )
    assert "pids exhausted after" in output
    result = await run_in(
        batch,
        PRINT_CONTAINER_ID
        + "import subprocess\n"
        + "procs = [subprocess.Popen(['sleep', '0.2']) for _ in range(50)]\n"
        + "print(sum(p.wait() == 0 for p in procs))",
    )
    assert result.status is ExecutionStatus.COMPLETED, result
    after, started = result.stdout.split()
    assert after != container
    assert started == "50", "the next program has its whole pids budget"


async def test_a_full_scratch_disk_replaces_the_container(batch: BatchSandbox) -> None:
    container, output = await container_after(
        batch,
        """
        import errno
        chunk = b'x' * (1 << 20)
        try:
            for n in range(1000):  # files under the file-size limit, until the disk is full
                with open(f'/tmp/fill{n}', 'wb') as fill:
                    for _ in range(8):
                        fill.write(chunk)
        except OSError as exc:
            print('disk full:', exc.errno == errno.ENOSPC, flush=True)
        """,
    )
    assert "disk full: True" in output
    result = await run_in(
        batch,
        PRINT_CONTAINER_ID + "open('/tmp/room', 'wb').write(b'x' * (32 << 20))\nprint('room')",
    )
    after, room = result.stdout.split()
    assert (after != container, room) == (True, "room")


async def test_sysv_ipc_objects_replace_the_container(batch: BatchSandbox) -> None:
    container, output = await container_after(
        batch,
        """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        segment = libc.shmget(0x1234, 4096, 0o1600)  # IPC_CREAT | 0600
        queue = libc.msgget(0x4321, 0o1600)
        print('ipc objects', segment >= 0, queue >= 0)
        """,
    )
    assert "ipc objects True True" in output
    after, seen = await inspect(batch)
    assert seen == CLEAN
    assert after != container


async def test_out_of_memory_is_oom_and_the_runner_survives(batch: BatchSandbox) -> None:
    container, _ = await container_after(batch, "print('before')")
    result = await run_in(
        batch, "hog = []\nwhile True:\n    hog.append(b'x' * 1_000_000)", memory_mb=128
    )
    assert result.status is ExecutionStatus.OOM
    after, seen = await inspect(batch)
    assert seen == CLEAN
    assert after == container, "the kernel killed the program, not the sandbox's PID 1"


async def test_the_runner_cannot_be_killed_traced_or_read(batch: BatchSandbox) -> None:
    container, output = await container_after(
        batch,
        """
        import ctypes, os, signal
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
            os.kill(1, sig)
        libc = ctypes.CDLL(None, use_errno=True)
        print('ptrace', libc.ptrace(16, 1, None, None), ctypes.get_errno())  # PTRACE_ATTACH
        for path in ['/proc/1/environ', '/proc/1/mem', '/proc/1/fd/0']:
            try:
                open(path, 'rb').read(1)
                print(path, 'READABLE')
            except OSError as exc:
                print(path, exc.errno)
        try:
            os.write(os.open('/proc/1/fd/0', os.O_WRONLY), b'ASSAYB')
            print('stdin of PID 1 WRITABLE')
        except OSError:
            print('stdin of PID 1 refused')
        """,
    )
    assert "READABLE" not in output and "WRITABLE" not in output
    assert "ptrace -1 1\n" in output  # EPERM
    after, seen = await inspect(batch)
    assert (after, seen) == (container, CLEAN)


async def test_a_forged_trailer_does_not_end_the_next_program_early(batch: BatchSandbox) -> None:
    await run_in(batch, "print('\\0ASSAY-TRAILER-' + '0' * 32 + ':{\"exit_code\": 0}')")
    result = await run_in(
        batch,
        "import sys, time\n"
        "print('\\0ASSAY-TRAILER-' + 'f' * 32 + ':{\"exit_code\": 0}', flush=True)\n"
        "time.sleep(0.3)\nprint('finished for real')\nsys.exit(3)",
    )
    assert (result.status, result.exit_code) == (ExecutionStatus.FAILED, 3)
    assert result.stdout.endswith("finished for real\n")


async def test_sandboxes_of_different_batches_never_share_a_container(
    docker_engine: DockerEngine,
) -> None:
    first, second = docker_engine.batch_sandbox(), docker_engine.batch_sandbox()
    try:
        seen: dict[str, set[str]] = {"first": set(), "second": set()}
        for _ in range(3):
            for name, sandbox in (("first", first), ("second", second)):
                result = await sandbox.execute(ExecutionRequest(code=PRINT_CONTAINER_ID))
                seen[name].add(result.stdout.strip())
        assert len(seen["first"]) == len(seen["second"]) == 1
        assert seen["first"].isdisjoint(seen["second"])
    finally:
        await first.close()
        await second.close()


async def test_other_limits_get_a_container_made_with_them(batch: BatchSandbox) -> None:
    small = await run_in(
        batch,
        "print(open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip())",
        memory_mb=64,
    )
    large = await run_in(
        batch,
        "print(open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().strip())",
        memory_mb=256,
    )
    assert (small.stdout, large.stdout) == (f"{64 << 20}\n", f"{256 << 20}\n")
