"""Hostile programs that attack resources: each is contained with the right verdict, and the
engine stays healthy with nothing left behind (the ``engine`` fixture checks containers)."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from assay.execution_engine import ExecutionStatus
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.isolation import GVISOR
from tests.sandbox import TEST_RUNTIME, assert_healthy, run, sandbox_processes

pytestmark = [pytest.mark.docker, pytest.mark.integration]


async def test_fork_bomb_is_capped_by_the_pids_limit(engine: DockerEngine) -> None:
    result = await run(
        engine,
        """
        import os
        children = 0
        failures = 0
        while True:
            try:
                if os.fork() == 0:
                    while True:
                        try:
                            os.fork()
                        except OSError:
                            pass
                children += 1
            except OSError:
                failures += 1
                if failures == 1:
                    print("fork refused after", children, "children", flush=True)
        """,
        timeout_seconds=3,
    )
    if TEST_RUNTIME == GVISOR:
        # gVisor (runsc 20221219) does not apply the pids limit to its own tasks: the bomb
        # grows until it ends the whole sandbox, at the memory limit (Docker logs the OOM) or
        # at the host's pids limit on the Sentry's threads (it exits, 2, from inside).
        assert result.status in {ExecutionStatus.OOM, ExecutionStatus.FAILED}, result
        assert result.exit_code in {137, 2}, result
    else:
        assert result.status is ExecutionStatus.TIMEOUT
        assert "fork refused after" in result.stdout
    assert sandbox_processes() == []
    await assert_healthy(engine)


async def test_memory_bomb_is_oom(engine: DockerEngine) -> None:
    result = await run(
        engine,
        """
        hog = []
        while True:
            hog.append(b"x" * 1_000_000)
        """,
        memory_mb=64,
        timeout_seconds=20,
    )
    assert result.status is ExecutionStatus.OOM
    assert result.signal == 9
    assert result.duration_seconds < 10
    await assert_healthy(engine)


async def test_memory_limit_has_no_swap(engine: DockerEngine) -> None:
    """Staying under the limit works; the same program over it is killed, not swapped."""
    fits = await run(engine, "x = b'x' * 40_000_000\nprint(len(x))", memory_mb=96)
    assert fits.status is ExecutionStatus.COMPLETED, fits
    assert fits.peak_memory_bytes is not None and fits.peak_memory_bytes >= 40_000_000
    over = await run(engine, "x = b'x' * 200_000_000\nprint(len(x))", memory_mb=96)
    assert over.status is ExecutionStatus.OOM


async def test_infinite_loop_times_out_within_one_second_of_the_limit(engine: DockerEngine) -> None:
    began = time.monotonic()
    result = await run(engine, "while True:\n    pass", timeout_seconds=2)
    elapsed = time.monotonic() - began
    assert result.status is ExecutionStatus.TIMEOUT
    assert result.exit_code is None and result.signal == 9
    assert 2 <= result.duration_seconds < 3
    assert elapsed < 3, f"execute() took {elapsed:.2f} s for a 2 s timeout"
    await assert_healthy(engine)


async def test_children_that_ignore_sigterm_die_at_the_timeout(engine: DockerEngine) -> None:
    began = time.monotonic()
    result = await run(
        engine,
        """
        import os, signal, subprocess, sys, time
        for _ in range(3):
            subprocess.Popen([sys.executable, "-c",
                "import signal, time\\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
                "signal.signal(signal.SIGHUP, signal.SIG_IGN)\\n"
                "time.sleep(1000)"], start_new_session=True)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("children started", flush=True)
        time.sleep(1000)
        """,
        timeout_seconds=2,
    )
    assert result.status is ExecutionStatus.TIMEOUT
    assert result.stdout == "children started\n"
    assert time.monotonic() - began < 3
    assert sandbox_processes() == []
    await assert_healthy(engine)


async def test_children_that_outlive_their_parent_are_killed_when_it_exits(
    engine: DockerEngine,
) -> None:
    result = await run(
        engine,
        """
        import os, subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"],
                         start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            import time
            time.sleep(1000)
        print("parent leaving")
        """,
        timeout_seconds=10,
    )
    assert result.status is ExecutionStatus.COMPLETED
    assert result.duration_seconds < 5
    assert sandbox_processes() == []


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_output_flood_is_cut_at_the_cap_with_bounded_memory(
    engine: DockerEngine, stream: str
) -> None:
    cap = 256 * 1024
    tracemalloc.start()
    try:
        result = await run(
            engine,
            f"""
            import sys
            line = "A" * 4095 + "\\n"
            while True:
                sys.{stream}.write(line)
            """,
            output_limit_bytes=cap,
            timeout_seconds=20,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status is ExecutionStatus.OUTPUT_LIMIT
    assert result.signal == 9
    captured = result.stdout if stream == "stdout" else result.stderr
    assert len(captured) == cap
    assert getattr(result, f"{stream}_truncated") is True
    assert result.duration_seconds < 5, "the flood must be stopped at the cap, not at the timeout"
    assert peak < 8 * cap, f"our memory grew to {peak} bytes for a {cap}-byte cap"
    await assert_healthy(engine)


async def test_output_of_exactly_the_cap_is_not_a_violation(engine: DockerEngine) -> None:
    result = await run(engine, "print('x' * 999)", output_limit_bytes=1000)
    assert result.status is ExecutionStatus.COMPLETED
    assert len(result.stdout) == 1000 and not result.stdout_truncated


@pytest.mark.parametrize("directory", ["/tmp", "/workspace", "/dev/shm"])
async def test_filling_writable_directories_fails_at_the_cap(
    engine: DockerEngine, directory: str
) -> None:
    result = await run(
        engine,
        f"""
        import errno
        written = 0
        try:
            with open("{directory}/fill", "wb") as handle:
                while True:
                    handle.write(b"x" * 1_048_576)
                    handle.flush()
                    written += 1_048_576
        except OSError as exc:
            print(written // 1_048_576, errno.errorcode[exc.errno])
        """,
        memory_mb=256,
    )
    assert result.status is ExecutionStatus.COMPLETED, result
    mebibytes, error = result.stdout.split()
    settings = engine.settings
    cap = {
        "/tmp": settings.tmp_size_mb,
        "/workspace": settings.workspace_size_mb,
        "/dev/shm": settings.shm_size_mb,
    }[directory]
    assert error in {"ENOSPC", "EFBIG"}
    assert int(mebibytes) <= cap
    await assert_healthy(engine)


async def test_root_filesystem_is_read_only(engine: DockerEngine) -> None:
    result = await run(
        engine,
        """
        import errno
        for path in ["/etc/evil", "/usr/lib/evil", "/evil", "/var/evil", "/home/evil",
                     "/usr/bin/python3"]:
            try:
                open(path, "ab").close()
                print(path, "WRITABLE")
            except OSError as exc:
                print(path, errno.errorcode[exc.errno])
        """,
    )
    assert result.status is ExecutionStatus.COMPLETED
    assert "WRITABLE" not in result.stdout
    assert len(result.stdout.splitlines()) == 6
    for line in result.stdout.splitlines():
        assert line.split()[1] in {"EROFS", "EACCES"}, line


async def test_every_run_starts_from_a_fresh_filesystem(engine: DockerEngine) -> None:
    first = await run(
        engine,
        """
        open("/workspace/left.txt", "w").write("from run one")
        open("/tmp/left.txt", "w").write("from run one")
        print("written")
        """,
    )
    assert first.stdout == "written\n"
    second = await run(
        engine,
        """
        import os
        print(os.path.exists("/workspace/left.txt"), os.path.exists("/tmp/left.txt"),
              sorted(os.listdir("/workspace")), os.listdir("/tmp"))
        """,
    )
    assert second.stdout == "False False ['main.py'] []\n"


async def test_a_few_bytes_over_the_cap_is_still_output_limit(engine: DockerEngine) -> None:
    result = await run(engine, "print('x' * 1000)", output_limit_bytes=1000)
    assert result.status is ExecutionStatus.OUTPUT_LIMIT
    assert result.exit_code == 0, "it exited by itself; only its output broke the limit"
    assert result.stdout == "x" * 1000
    assert result.stdout_truncated
