"""Assay's seccomp profile is in force (docs/seccomp.md): io_uring, userfaultfd, bpf,
perf_event_open, the key calls and new namespaces fail with EPERM, clone3 with ENOSYS, while
ordinary programs (threads, fork, subprocesses) still run.

Each call gets arguments that succeed for root on the host (io_uring_setup with one entry and
zeroed parameters, a small BPF array map, a task-clock perf event on the caller...), so that a
failure is the filter's and not EINVAL or EFAULT. Several of them (bpf, unshare(CLONE_NEWNS),
setns, clone with most namespace flags) would also fail for want of capabilities; io_uring,
userfaultfd, the key calls, unshare(CLONE_NEWUSER), clone(CLONE_NEWUSER) and clone3 would
succeed in the sandbox without the profile. The numbers are x86_64's."""

from __future__ import annotations

import pytest

from assay.execution_engine import ExecutionStatus
from assay.execution_engine.docker_engine import DockerEngine
from tests.sandbox import assert_healthy, run

pytestmark = [pytest.mark.docker, pytest.mark.integration]

PRELUDE = r"""
import ctypes, errno, os, signal, struct

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def raw(number, *args):
    args = [ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args]
    ctypes.set_errno(0)
    result = libc.syscall(number, *args)
    return result, ctypes.get_errno() if result == -1 else 0

def forking(number, *args):
    # A child that a clone-like call creates exits at once, and is reaped.
    result, err = raw(number, *args)
    if result == 0:
        os._exit(0)
    if result > 0:
        os.waitpid(result, 0)
    return result, err

def report(outcome):
    value, err = outcome
    print("ok" if value >= 0 else f"{value} {errno.errorcode.get(err, err)}")

zeroed = ctypes.create_string_buffer

def ring():
    return raw(425, 1, zeroed(120))[0]  # io_uring_setup; -1 when denied

def bpf_array_map():
    attr = zeroed(128)
    struct.pack_into("IIII", attr, 0, 2, 4, 4, 1)  # BPF_MAP_TYPE_ARRAY, 4-byte keys and values
    return attr

def perf_task_clock():
    attr = zeroed(64)  # PERF_ATTR_SIZE_VER0
    struct.pack_into("IIQ", attr, 0, 1, 64, 1)  # PERF_TYPE_SOFTWARE, PERF_COUNT_SW_TASK_CLOCK
    struct.pack_into("Q", attr, 40, 1 | 1 << 5 | 1 << 6)  # disabled, exclude_kernel, exclude_hv
    return attr

def clone_args():
    args = zeroed(64)  # CLONE_ARGS_SIZE_VER0: no flags, exit_signal SIGCHLD
    struct.pack_into("Q", args, 32, signal.SIGCHLD)
    return args

def uts_namespace():
    try:
        return os.open("/proc/self/ns/uts", os.O_RDONLY)
    except OSError:
        return -1  # no such file (gVisor): unfiltered, setns fails with EBADF
"""

CLONE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

#: name -> (the call, as Python over PRELUDE, and the errno it must fail with).
DENIED = {
    "io_uring_setup": ("raw(425, 1, zeroed(120))", "EPERM"),
    "io_uring_enter": ("raw(426, ring(), 0, 0, 0, None, 0)", "EPERM"),
    "io_uring_register": ("raw(427, ring(), 8, zeroed(16 + 8 * 256), 256)", "EPERM"),  # PROBE
    "userfaultfd": ("raw(323, os.O_CLOEXEC | 1)", "EPERM"),  # UFFD_USER_MODE_ONLY
    "bpf": ("raw(321, 0, bpf_array_map(), 128)", "EPERM"),  # BPF_MAP_CREATE
    "perf_event_open": ("raw(298, perf_task_clock(), 0, -1, -1, 8)", "EPERM"),  # FD_CLOEXEC
    "add_key": ('raw(248, b"user", b"assay", b"x", 1, -2)', "EPERM"),  # process keyring
    "request_key": (
        'raw(248, b"user", b"assay", b"x", 1, -2) and raw(249, b"user", b"assay", None, 0)',
        "EPERM",
    ),
    "keyctl": ("raw(250, 0, -2, 1)", "EPERM"),  # KEYCTL_GET_KEYRING_ID, process keyring, create
    "unshare(CLONE_NEWUSER)": ("raw(272, 0x10000000)", "EPERM"),
    "unshare(CLONE_NEWNS)": ("raw(272, 0x00020000)", "EPERM"),
    "setns": ("raw(308, uts_namespace(), 0x04000000)", "EPERM"),  # CLONE_NEWUTS
    "clone3": ("forking(435, clone_args(), 64)", "ENOSYS"),
    **{
        f"clone({flag})": (f"forking(56, {value} | signal.SIGCHLD, 0, 0, 0, 0)", "EPERM")
        for flag, value in CLONE_FLAGS.items()
    },
}


@pytest.mark.parametrize(("call", "errno"), DENIED.values(), ids=list(DENIED))
async def test_the_call_is_denied(engine: DockerEngine, call: str, errno: str) -> None:
    result = await run(engine, f"{PRELUDE}\nreport({call})\n")
    assert result.status is ExecutionStatus.COMPLETED, result
    assert result.stdout == f"-1 {errno}\n", result.stderr


async def test_ordinary_programs_still_run(engine: DockerEngine) -> None:
    """Threads, fork, subprocesses and plain clone: glibc's clone3 falls back to clone."""
    result = await run(
        engine,
        PRELUDE
        + """
import subprocess, sys, threading

found = []
thread = threading.Thread(target=found.append, args=["thread"])
thread.start()
thread.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
found.append(f"fork {os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}")
child = subprocess.run([sys.executable, "-c", "print('child')"], capture_output=True, text=True)
found.append(child.stdout.strip())
found.append(f"clone {'ok' if forking(56, signal.SIGCHLD, 0, 0, 0, 0)[0] > 0 else 'failed'}")
print(found)
""",
    )
    assert result.status is ExecutionStatus.COMPLETED, result
    assert result.stdout == "['thread', 'fork 7', 'child', 'clone ok']\n", result.stderr
    await assert_healthy(engine)
