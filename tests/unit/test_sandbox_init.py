"""The sandbox's PID 1, run here as an ordinary process: the stdin protocol, files, exit
status and the trailer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from assay.execution_engine.docker_engine import _init_source, encode_payload
from assay.execution_engine.output import OutputCollector

NONCE = "cd" * 16


def run_init(
    tmp_path: Path, files: dict[str, str], stdin: bytes = b""
) -> tuple[int, OutputCollector]:
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _init_source(), sys.executable, "main.py"],
        input=encode_payload(files, NONCE) + stdin,
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        check=False,
    )
    collector = OutputCollector(limit=1 << 20, nonce=NONCE)
    collector.feed("stdout", completed.stdout)
    collector.feed("stderr", completed.stderr)
    return completed.returncode, collector


def test_files_are_written_and_the_rest_of_stdin_reaches_the_program(tmp_path: Path) -> None:
    code = "import sys\nprint(open('data/in.txt').read(), sys.stdin.read())\nsys.exit(4)"
    status, collector = run_init(tmp_path, {"main.py": code, "data/in.txt": "ü"}, b"from stdin")
    out = collector.finish()
    assert status == 4
    assert out.stdout == "ü from stdin\n".encode()
    assert out.trailer is not None
    assert out.trailer.exit_code == 4 and out.trailer.signal is None
    assert out.trailer.cpu_time_seconds is not None
    assert out.trailer.peak_memory_bytes is not None and out.trailer.peak_memory_bytes > 1 << 20
    assert (tmp_path / "data/in.txt").read_text() == "ü"


def test_the_trailer_ends_both_streams(tmp_path: Path) -> None:
    code = "import sys\nprint('last words')\nprint('oops', file=sys.stderr)"
    _, collector = run_init(tmp_path, {"main.py": code})
    assert collector.ended
    out = collector.finish()
    assert (out.stdout, out.stderr) == (b"last words\n", b"oops\n")


def test_death_by_signal_is_reported_as_such(tmp_path: Path) -> None:
    status, collector = run_init(tmp_path, {"main.py": "import os; os.kill(os.getpid(), 15)"})
    out = collector.finish()
    assert status == 128 + 15
    assert out.trailer is not None
    assert (out.trailer.exit_code, out.trailer.signal) == (128 + 15, 15)


def test_a_bad_header_fails_setup(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _init_source()],
        input=b"NOPE" * 10,
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 125
    assert b"bad sandbox header" in completed.stderr
