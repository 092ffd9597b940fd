"""The sandbox's PID 1 (``sandbox_init.c``), compiled as ``assay image build`` does and run
here as an ordinary process: the stdin protocol, files, exit status and the trailer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from assay.execution_engine.attach import encode_payload
from assay.execution_engine.image import compile_supervisor
from assay.execution_engine.output import OutputCollector

NONCE = "cd" * 16


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_supervisor(tmp_path_factory.mktemp("init") / "assay-init")


def supervise(
    supervisor: Path, cwd: Path, command: list[str], stdin: bytes
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(supervisor), *command],
        input=stdin,
        cwd=cwd,
        capture_output=True,
        timeout=30,
        check=False,
    )


def run_init(
    supervisor: Path, cwd: Path, files: dict[str, str], stdin: bytes = b""
) -> tuple[int, OutputCollector]:
    payload = encode_payload(files, NONCE) + stdin
    completed = supervise(supervisor, cwd, [sys.executable, "main.py"], payload)
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
    payload = encode_payload({"main.py": ""}, NONCE)
    completed = supervise(supervisor, tmp_path, ["/nonexistent/python"], payload)
    assert completed.returncode == 127
    assert b"cannot start /nonexistent/python" in completed.stderr


def test_a_bad_header_fails_setup(supervisor: Path, tmp_path: Path) -> None:
    completed = supervise(supervisor, tmp_path, [], b"NOPE" * 10)
    assert completed.returncode == 125
    assert b"bad sandbox header" in completed.stderr
