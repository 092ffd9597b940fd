"""The sandbox's PID 1 (``sandbox_init.c``), compiled as ``assay image build`` does (with the
machine's C compiler) and run here as an ordinary process: the stdin protocol, files, exit
status and the trailer."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from assay.execution_engine.attach import GO, encode_frame
from assay.execution_engine.image import compile_supervisor
from assay.execution_engine.output import OutputCollector

pytestmark = [pytest.mark.integration]

NONCE = "cd" * 16
PYTHON = [sys.executable, "main.py"]


def frame(
    files: dict[str, str],
    *,
    run: list[str] = PYTHON,
    compile_argv: list[str] | None = None,
    stdin: bytes = b"",
) -> bytes:
    return encode_frame(
        NONCE, files, stdin=stdin, batch=False, compile_argv=compile_argv or (), run_argv=run
    )


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_supervisor(tmp_path_factory.mktemp("init") / "assay-init")


def started(
    supervisor: Path,
    cwd: Path,
    stdin: bytes,
    output: int,
    *,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The supervisor, ``stdin`` written to it, its stdin left open (as the engine's attach
    leaves it)."""
    process = subprocess.Popen(
        [str(supervisor)],
        stdin=subprocess.PIPE,
        stdout=output,
        stderr=output,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        process.stdin.write(stdin)
        process.stdin.flush()
    return process


def supervise(
    supervisor: Path,
    cwd: Path,
    stdin: bytes,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run the supervisor with ``stdin`` written to it and its stdin kept open until it
    exits."""
    with started(supervisor, cwd, stdin, subprocess.PIPE, env=env) as process:
        assert process.stdin is not None
        reader = ThreadPoolExecutor(2)
        out, err = (reader.submit(stream.read) for stream in (process.stdout, process.stderr))  # type: ignore[union-attr]
        status = process.wait(timeout=30)
        process.stdin.close()
        completed = subprocess.CompletedProcess(process.args, status, out.result(), err.result())
        reader.shutdown()
    return completed


def run_init(
    supervisor: Path,
    cwd: Path,
    files: dict[str, str],
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
) -> tuple[int, OutputCollector]:
    completed = supervise(supervisor, cwd, frame(files, stdin=stdin), env)
    collector = OutputCollector(limit=1 << 20, nonce=NONCE)
    collector.feed("stdout", completed.stdout)
    collector.feed("stderr", completed.stderr)
    return completed.returncode, collector


def test_files_are_written_and_the_rest_of_stdin_reaches_the_program(
    supervisor: Path, tmp_path: Path
) -> None:
    code = "import sys\nprint(open('data/in.txt').read(), sys.stdin.read())\nsys.exit(4)"
    files = {"main.py": code, "data/in.txt": "ü"}
    status, collector = run_init(supervisor, tmp_path, files, b"from stdin")
    out = collector.finish()
    assert status == 4
    assert out.stdout == "ü from stdin\n".encode()
    assert out.trailer is not None
    assert out.trailer.exit_code == 4 and out.trailer.signal is None
    assert out.trailer.cpu_time_seconds is not None and out.trailer.cpu_time_seconds > 0
    assert out.trailer.peak_memory_bytes is not None and out.trailer.peak_memory_bytes > 1 << 20
    assert (tmp_path / "data/in.txt").read_text() == "ü"


def test_the_trailer_ends_both_streams(supervisor: Path, tmp_path: Path) -> None:
    code = "import sys\nprint('last words')\nprint('oops', file=sys.stderr)"
    _, collector = run_init(supervisor, tmp_path, {"main.py": code})
    assert collector.ended
    out = collector.finish()
    assert (out.stdout, out.stderr) == (b"last words\n", b"oops\n")


def test_death_by_signal_is_reported_as_such(supervisor: Path, tmp_path: Path) -> None:
    status, collector = run_init(
        supervisor, tmp_path, {"main.py": "import os; os.kill(os.getpid(), 15)"}
    )
    out = collector.finish()
    assert status == 128 + 15
    assert out.trailer is not None
    assert (out.trailer.exit_code, out.trailer.signal) == (128 + 15, 15)


def test_a_file_that_cannot_be_written_is_a_setup_error(supervisor: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a directory")
    status, collector = run_init(supervisor, tmp_path, {"main.py": "", "taken/x.py": ""})
    out = collector.finish()
    assert status == 125
    assert out.trailer is not None and out.trailer.setup_error is not None
    assert "cannot write the program's files: taken/x.py" in out.trailer.setup_error


def test_a_missing_interpreter_exits_127(supervisor: Path, tmp_path: Path) -> None:
    payload = frame({"main.py": ""}, run=["/nonexistent/python"])
    completed = supervise(supervisor, tmp_path, payload)
    assert completed.returncode == 127
    assert b"cannot start /nonexistent/python" in completed.stderr


def test_a_bad_header_fails_setup(supervisor: Path, tmp_path: Path) -> None:
    completed = supervise(supervisor, tmp_path, b"NOPE" * 10)
    assert completed.returncode == 125
    assert b"bad sandbox header" in completed.stderr


def test_every_trailer_says_what_the_sandbox_is(supervisor: Path, tmp_path: Path) -> None:
    _, collector = run_init(supervisor, tmp_path, {"main.py": "pass"})
    trailer = collector.finish().trailer
    assert trailer is not None
    assert trailer.kernel == os.uname().release
    assert trailer.io_uring_errno is not None  # 0 here: no seccomp filter outside a sandbox


def test_the_end_of_stdin_while_a_program_runs_kills_it(supervisor: Path, tmp_path: Path) -> None:
    """Stdin is the owner's lifeline: Docker closes it when the engine's process dies."""
    (tmp_path / "pid").unlink(missing_ok=True)
    code = "import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(300)"
    payload = frame({"main.py": code})
    with started(supervisor, tmp_path, payload, subprocess.DEVNULL) as process:
        assert process.stdin is not None
        deadline = time.monotonic() + 10
        while not (tmp_path / "pid").exists() or not (tmp_path / "pid").read_text():
            assert time.monotonic() < deadline, "the program never started"
            time.sleep(0.02)
        program = int((tmp_path / "pid").read_text())
        process.stdin.close()
        assert process.wait(timeout=10) == 137
    deadline = time.monotonic() + 5
    while Path(f"/proc/{program}").exists() and "Z" not in _state(program):
        assert time.monotonic() < deadline, "the program outlived its supervisor's stdin"
        time.sleep(0.02)


def test_the_end_of_stdin_before_any_program_is_a_quiet_exit(
    supervisor: Path, tmp_path: Path
) -> None:
    completed = subprocess.run(
        [str(supervisor)], input=b"", capture_output=True, cwd=tmp_path, timeout=30, check=False
    )
    assert (completed.returncode, completed.stderr) == (0, b"")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_what_the_engine_expects_is_checked_before_the_program_runs(
    supervisor: Path, tmp_path: Path
) -> None:
    code = "import os\nopen('ran', 'w').write(repr(sorted(k for k in os.environ if 'EXPECT' in k)))"
    here = os.uname().release
    status, collector = run_init(
        supervisor, tmp_path, {"main.py": code}, env={"ASSAY_EXPECT_KERNEL": f"={here}"}
    )
    assert status == 0 and (tmp_path / "ran").read_text() == "[]", "runs, and never sees it"
    (tmp_path / "ran").unlink()
    for wanted in ({"ASSAY_EXPECT_KERNEL": f"!{here}"}, {"ASSAY_EXPECT_IO_URING_ERRNO": "1"}):
        status, collector = run_init(supervisor, tmp_path, {"main.py": code}, env=wanted)
        trailer = collector.finish().trailer
        assert status == 125 and not (tmp_path / "ran").exists(), wanted
        assert trailer is not None and trailer.setup_error is not None
        assert trailer.setup_error.startswith("isolation not in force"), trailer.setup_error


def _collected(completed: subprocess.CompletedProcess[bytes]) -> OutputCollector:
    collector = OutputCollector(limit=1 << 20, nonce=NONCE)
    collector.feed("stdout", completed.stdout)
    collector.feed("stderr", completed.stderr)
    return collector


#: A "compiler" that writes to both streams, then makes the program.
COMPILER = [
    sys.executable,
    "-c",
    "import sys, shutil; print('to stdout'); print('to stderr', file=sys.stderr); "
    "shutil.copy('source.txt', 'main.py'); sys.exit(int(sys.argv[1]))",
]


def test_a_failed_compilation_is_reported_and_nothing_runs(
    supervisor: Path, tmp_path: Path
) -> None:
    payload = frame({"source.txt": "open('ran', 'w')"}, compile_argv=[*COMPILER, "3"])
    completed = supervise(supervisor, tmp_path, payload)
    assert completed.returncode == 3
    assert completed.stdout.startswith(b"\0ASSAY-TRAILER-"), "the compiler's output is on stderr"
    out = _collected(completed).finish()
    assert out.stderr == b"to stdout\nto stderr\n"
    assert out.trailer is not None and out.trailer.phase == "compile"
    assert out.trailer.exit_code == 3
    assert not (tmp_path / "ran").exists()


def test_after_compiling_it_waits_for_go_then_runs_the_program(
    supervisor: Path, tmp_path: Path
) -> None:
    code = "import sys; print('ran with', sys.stdin.read())"
    payload = frame({"source.txt": code}, compile_argv=[*COMPILER, "0"], stdin=b"input")
    with started(supervisor, tmp_path, payload, subprocess.PIPE) as process:
        assert process.stdin is not None and process.stdout is not None
        first = process.stdout.read1(4096)  # the compile trailer, on stdout
        while b"\n" not in first:
            first += process.stdout.read1(4096)
        assert b'"phase": "compile"' in first and b'"exit_code": 0' in first
        time.sleep(0.2)
        assert (tmp_path / "main.py").read_text() == code, "compiled"
        assert process.poll() is None, "waits for the engine's go-ahead"
        process.stdin.write(GO)
        process.stdin.flush()
        rest = process.stdout.read()
        assert process.wait(timeout=10) == 0
    assert rest.startswith(b"ran with input\n")
    assert b'"phase": "run"' in rest


def test_the_end_of_stdin_instead_of_go_ends_the_sandbox(supervisor: Path, tmp_path: Path) -> None:
    payload = frame({"source.txt": "open('ran', 'w')"}, compile_argv=[*COMPILER, "0"])
    with started(supervisor, tmp_path, payload, subprocess.DEVNULL) as process:
        assert process.stdin is not None
        deadline = time.monotonic() + 10
        while not (tmp_path / "main.py").exists():
            assert time.monotonic() < deadline, "never compiled"
            time.sleep(0.02)
        process.stdin.close()
        assert process.wait(timeout=10) == 137
    assert not (tmp_path / "ran").exists()
