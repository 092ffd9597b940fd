"""No privilege: no root, no capabilities, no mounts, no ptrace of PID 1, no kernel knobs."""

from __future__ import annotations

import pytest

from assay.execution_engine import ExecutionStatus
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.isolation import GVISOR
from assay.execution_engine.sandbox_spec import SANDBOX_UID
from tests.sandbox import TEST_RUNTIME, assert_healthy, run

pytestmark = [pytest.mark.docker, pytest.mark.integration]

PROBES = r"""
import ctypes, errno, os

libc = ctypes.CDLL(None, use_errno=True)

def probe(name, action):
    try:
        result = action()
    except OSError as exc:
        print(name, errno.errorcode.get(exc.errno, exc.errno))
        return
    print(name, "ALLOWED", result)

def syscall(number, *args):
    def call():
        if libc.syscall(number, *args) == -1:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return 0
    return call

def libc_call(function, *args):
    def call():
        if function(*args) == -1:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return 0
    return call

def write(path):
    def call():
        with open(path, "w") as handle:
            handle.write("1")
    return call

probe("setuid", lambda: os.setuid(0))
probe("setgid", lambda: os.setgid(0))
probe("mount", libc_call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None))
probe("chroot", lambda: os.chroot("/tmp"))
probe("ptrace_pid1", libc_call(libc.ptrace, 16, 1, None, None))  # PTRACE_ATTACH
probe("init_module", syscall(175, None, 0, b""))
probe("finit_module", syscall(313, 0, b"", 0))
probe("unshare_user", libc_call(libc.unshare, 0x10000000))  # CLONE_NEWUSER
probe("proc_sys", write("/proc/sys/kernel/hostname"))
probe("sysrq", write("/proc/sysrq-trigger"))
probe("sys", write("/sys/kernel/mm/transparent_hugepage/enabled"))
probe("mknod", lambda: os.mknod("/tmp/dev", 0o600 | 0o020000, os.makedev(1, 1)))
probe("open_dev", lambda: os.open("/tmp/dev", os.O_RDONLY) if os.path.exists("/tmp/dev") else 0)
status = open("/proc/self/status").read()
for key in ("Uid", "CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp"):
    print(key, ([l.split()[1] for l in status.splitlines() if l.startswith(key + ":")] + ["-"])[0])
"""


async def test_privileged_operations_all_fail(engine: DockerEngine) -> None:
    result = await run(engine, PROBES)
    assert result.status is ExecutionStatus.COMPLETED, result
    seen = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    for name in (
        "setuid",
        "setgid",
        "mount",
        "chroot",
        "ptrace_pid1",
        "init_module",
        "finit_module",
        "unshare_user",
    ):
        assert seen[name] == "EPERM", (name, seen[name])
    if TEST_RUNTIME == GVISOR:
        # gVisor creates the node (its devices are its own, not the host's), but /tmp is
        # nodev: it cannot be opened.
        assert seen["mknod"] in {"EPERM", "ALLOWED None"}, seen["mknod"]
        assert seen["open_dev"] in {"EACCES", "EPERM", "ENXIO", "ENODEV", "ALLOWED 0"}, seen[
            "open_dev"
        ]
    else:
        assert seen["mknod"] == "EPERM", seen["mknod"]
    for name in ("proc_sys", "sysrq", "sys"):
        assert seen[name] in {"EROFS", "EACCES", "EPERM", "ENOENT"}, (name, seen[name])
    assert seen["Uid"] == str(SANDBOX_UID)
    assert seen["CapEff"] == seen["CapPrm"] == seen["CapBnd"] == "0000000000000000"
    if TEST_RUNTIME != GVISOR:  # gVisor's /proc/self/status has neither line
        assert seen["NoNewPrivs"] == "1"
        assert seen["Seccomp"] == "2", "a seccomp filter (Assay's profile) must be in force"
    assert result.exit_code == 0 and result.cpu_time_seconds is not None
    await assert_healthy(engine)


async def test_no_setuid_binaries_in_the_image(engine: DockerEngine) -> None:
    result = await run(
        engine,
        """
        import os, stat
        found = []
        for top in ["/usr", "/bin", "/sbin", "/lib"]:
            for directory, _, files in os.walk(top):
                for name in files:
                    path = os.path.join(directory, name)
                    try:
                        mode = os.lstat(path).st_mode
                    except OSError:
                        continue
                    if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                        found.append(path)
        print(found)
        """,
        # Every toolchain's files: tens of thousands of stat calls (slow under gVisor).
        timeout_seconds=30,
    )
    assert result.status is ExecutionStatus.COMPLETED, result
    assert result.stdout == "[]\n"


async def test_killing_pid_1_ends_nothing_quietly(engine: DockerEngine) -> None:
    """Under runc, PID 1 ignores signals from inside its namespace: the program cannot end its
    own sandbox early to hide anything, and the verdict still comes from the supervisor.
    gVisor does not protect PID 1: the sandbox ends, and the verdict is the program's doing
    (killed, exit 137), never a completion and never a lost sandbox run again."""
    result = await run(
        engine, "import os\nos.kill(1, 9)\nimport time\ntime.sleep(1)\nprint('after')"
    )
    if TEST_RUNTIME == GVISOR:
        assert (result.status, result.exit_code, result.signal) == (
            ExecutionStatus.FAILED,
            137,
            9,
        ), result
    else:
        assert (result.status, result.stdout) == (ExecutionStatus.COMPLETED, "after\n"), result
    await assert_healthy(engine)
