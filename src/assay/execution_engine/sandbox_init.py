"""PID 1 of every sandbox: unpacks the program, runs it, reaps zombies, reports.

This file is not imported by Assay; its source is passed to ``python3 -I -S -c`` inside the
container, so it uses the standard library only. The engine writes to the container's stdin:

    b"ASSAY2" + 10 ASCII digits (header length) + header + the program's own stdin

where the header is the nonce (32 hex digits), then for each file its path and its text,
each as 10 ASCII digits (length in bytes) and UTF-8 bytes. (Not JSON: importing ``json``
would cost every sandbox about 14 ms of CPU, for ``re`` and ``enum``.) This process writes the files
into the working directory, forks, and the child execs the command given after ``-c SOURCE``
with the rest of stdin still open as its fd 0. When that child exits, the same trailer line
goes to stdout and to stderr,

    b"\\x00ASSAY-TRAILER-" + nonce + b":" + JSON + b"\\n"

with the exit status, resource usage and the number of OOM kills in the sandbox's memory
cgroup, and this process exits with the child's code (128 + signal when killed). PID 1 exiting
makes the kernel kill whatever the program left behind. Each pipe delivers in order, so once
the engine has read the trailer on both streams it has every byte the program wrote, and
can report the verdict without waiting for Docker to notice that the container ended.
The nonce is never in the program's memory (the child execs straight after fork), and this
process is made non-dumpable, so the program cannot ptrace it to forge the trailer.
"""

import os
import signal
import sys

MAGIC = b"ASSAY2"
NONCE_SIZE = 32
LENGTH_SIZE = 10
SETUP_FAILED = 125


def _read_exact(count: int) -> bytes:
    chunks = []
    while count > 0:
        chunk = os.read(0, min(count, 1 << 20))
        if not chunk:
            raise EOFError("stdin closed before the header was complete")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


_OOM_COUNTERS = (
    "/sys/fs/cgroup/memory/memory.oom_control",  # cgroup v1
    "/sys/fs/cgroup/memory.events",  # cgroup v2
)


def _trailer(nonce: str, report: dict[str, object]) -> None:
    line = b"\x00ASSAY-TRAILER-" + nonce.encode() + b":" + _json(report).encode() + b"\n"
    for fd in (1, 2):
        try:  # noqa: SIM105 - PID 1 imports as little as it can
            os.write(fd, line)
        except OSError:
            pass  # nobody reads that stream any more: the engine falls back to Docker's view


def _json(report: dict[str, object]) -> str:
    """JSON of numbers and None without the json module; strings (rare) take the slow road."""
    if any(isinstance(value, str) for value in report.values()):
        import json  # noqa: PLC0415 - only for a setup error

        return json.dumps(report)
    fields = ", ".join(
        f'"{key}": {"null" if value is None else repr(value)}' for key, value in report.items()
    )
    return "{" + fields + "}"


def _parse_header(header: bytes) -> tuple[str, dict[str, str]]:
    nonce = header[:NONCE_SIZE].decode()
    files = {}
    at = NONCE_SIZE
    while at < len(header):
        fields = []
        for _ in range(2):
            size = int(header[at : at + LENGTH_SIZE])
            at += LENGTH_SIZE
            fields.append(header[at : at + size].decode())
            at += size
        files[fields[0]] = fields[1]
    return nonce, files


def _oom_kills() -> int | None:
    """OOM kills in this cgroup so far (the kernel's count, read-only here), if visible."""
    for path in _OOM_COUNTERS:
        try:
            with open(path) as handle:
                for line in handle:
                    name, _, value = line.partition(" ")
                    if name == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def _make_undumpable() -> None:
    try:
        import ctypes  # noqa: PLC0415 - only PID 1 needs it, and only here

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (ImportError, OSError, AttributeError):
        pass  # a base image without ctypes: the trailer is then advisory


def _write_files(files: dict[str, str]) -> None:
    for path, text in files.items():
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)


def _exec_child(argv: list[str]) -> None:
    # Python ignores these in this interpreter; the program starts with default dispositions.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    try:
        # The program, not PID 1, is what the kernel kills first at the memory limit.
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
    try:
        os.execvp(argv[0], argv)  # noqa: S606 - the program's own interpreter, never a shell
    except OSError as exc:
        os.write(2, f"assay: cannot start {argv[0]}: {exc}\n".encode())
        os._exit(127)


def main() -> int:
    _make_undumpable()
    head = _read_exact(16)
    if not head.startswith(MAGIC):
        os.write(2, b"assay: bad sandbox header\n")
        return SETUP_FAILED
    nonce, files = _parse_header(_read_exact(int(head[len(MAGIC) :])))
    try:
        _write_files(files)
    except OSError as exc:
        _trailer(nonce, {"setup_error": f"cannot write the program's files: {exc}"})
        return SETUP_FAILED
    del files
    oom_before = _oom_kills()
    child = os.fork()
    if child == 0:
        _exec_child(sys.argv[1:] or ["python3", "main.py"])
    os.close(0)
    while True:
        try:
            pid, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            return SETUP_FAILED
        except InterruptedError:
            continue
        if pid != child:
            continue  # a reparented orphan: reaped, nothing to report
        code = os.waitstatus_to_exitcode(status)
        oom_after = _oom_kills()
        _trailer(
            nonce,
            {
                "exit_code": code if code >= 0 else 128 - code,
                "signal": -code if code < 0 else None,
                "cpu_time_seconds": usage.ru_utime + usage.ru_stime,
                "peak_memory_bytes": usage.ru_maxrss * 1024,
                "oom_kills": None
                if oom_before is None or oom_after is None
                else oom_after - oom_before,
            },
        )
        return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
