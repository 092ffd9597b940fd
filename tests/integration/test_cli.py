"""`assay run`, `assay doctor` and `assay image build --if-missing`, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sandbox import TEST_ENGINE_PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.integration]


def assay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "ASSAY_EXECUTION__ENGINE_ID": f"{TEST_ENGINE_PREFIX}cli"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "assay", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def test_run_prints_output_and_a_readable_verdict(tmp_path: Path) -> None:
    program = tmp_path / "greet.py"
    program.write_text("import sys\nprint('hello', sys.stdin.read().strip())\nsys.exit(3)")
    stdin = tmp_path / "in.txt"
    stdin.write_text("tester")
    completed = assay("run", str(program), "--stdin", str(stdin), "--timeout", "5")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "hello tester\n"
    assert completed.stderr.startswith("[assay] failed, exit 3, ")


def test_run_json_prints_the_execution_result(tmp_path: Path) -> None:
    program = tmp_path / "loop.py"
    program.write_text("while True:\n    pass\n")
    completed = assay("run", str(program), "--timeout", "1", "--memory", "64", "--json")
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["status"] == "timeout"
    assert result["signal"] == 9
    assert set(result) >= {"stdout", "stderr", "stdout_truncated", "duration_seconds"}


def test_run_with_extra_files(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("VALUE = 'from helper'\n")
    program = tmp_path / "main_program.py"
    program.write_text("import helper\nprint(helper.VALUE)\n")
    completed = assay("run", str(program), "--file", str(tmp_path / "helper.py"), "--json")
    assert json.loads(completed.stdout)["stdout"] == "from helper\n"


def test_run_infers_the_language_from_the_file_name(tmp_path: Path) -> None:
    program = tmp_path / "sum.rs"
    program.write_text(
        "fn main() { let n: i64 = std::env::args().skip(1).map(|a| a.parse::<i64>().unwrap())"
        '.sum(); println!("{n}"); }'
    )
    completed = assay("run", str(program), "--arg", "2", "--arg", "40")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "42\n"
    assert completed.stderr.startswith("[assay] completed, exit 0, ")


def test_run_shows_why_a_program_does_not_compile(tmp_path: Path) -> None:
    program = tmp_path / "broken.c"
    program.write_text("int main(void) { return missing; }\n")
    completed = assay("run", str(program))
    assert completed.returncode == 0, completed.stderr
    assert "missing" in completed.stderr and "error" in completed.stderr
    assert completed.stderr.splitlines()[-1].startswith("[assay] compile_error")
    as_bash = assay("run", str(program), "--language", "bash", "--json")
    assert json.loads(as_bash.stdout)["status"] == "failed", "--language overrides the ending"


def test_run_with_compiler_options(tmp_path: Path) -> None:
    program = tmp_path / "version.cpp"
    program.write_text('#include <cstdio>\nint main() { std::printf("%ld\\n", __cplusplus); }\n')
    completed = assay("run", str(program), "--compiler-option=-std=c++20", "--json")
    assert json.loads(completed.stdout)["stdout"] == "202002\n"


def test_run_refuses_a_file_whose_language_it_cannot_tell(tmp_path: Path) -> None:
    program = tmp_path / "notes.txt"
    program.write_text("print(1)")
    completed = assay("run", str(program))
    assert completed.returncode == 2
    assert "cannot tell the language of notes.txt" in completed.stderr
    assert "--language" in completed.stderr


def test_run_rejects_bad_limits_with_a_clear_message(tmp_path: Path) -> None:
    program = tmp_path / "p.py"
    program.write_text("print(1)")
    completed = assay("run", str(program), "--memory", "-5")
    assert completed.returncode == 2
    assert "memory_mb must be at least 16" in completed.stderr
    missing = assay("run", str(tmp_path / "absent.py"))
    assert missing.returncode == 2
    assert "cannot read input" in missing.stderr


def test_run_says_how_to_fix_an_unreachable_daemon(tmp_path: Path) -> None:
    program = tmp_path / "p.py"
    program.write_text("print(1)")
    completed = assay(
        "run", str(program), env={"ASSAY_EXECUTION__DOCKER_HOST": "unix:///nonexistent.sock"}
    )
    assert completed.returncode == 2
    assert "Docker daemon not reachable" in completed.stderr
    assert "scripts/bootstrap" in completed.stderr


def test_doctor_reports_ready() -> None:
    completed = assay("doctor")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "ready: sandboxes can run" in completed.stdout
    assert "docker_version" in completed.stdout


@pytest.mark.parametrize("runtime", ["runc", "runsc"])
def test_doctor_proves_the_runtime_and_the_seccomp_profile_from_inside_a_sandbox(
    runtime: str,
) -> None:
    """It used to echo ``runtime: runsc`` while sandboxes ran under runc."""
    completed = assay("doctor", env={"ASSAY_EXECUTION__RUNTIME": runtime})
    assert completed.returncode == 0, completed.stdout + completed.stderr
    host = os.uname().release
    if runtime == "runsc":
        expected = f"runtime: runsc (the sandbox sees kernel 4.4.0, the host {host})"
    else:
        expected = f"runtime: runc (the sandbox shares the host's kernel {host})"
    assert expected in completed.stdout
    assert "seccomp: assay (sha256:" in completed.stdout
    assert "in force: io_uring_setup refused with EPERM" in completed.stdout


def test_doctor_reports_a_missing_image() -> None:
    completed = assay("doctor", env={"ASSAY_EXECUTION__IMAGE": "assay-sandbox-python:absent"})
    assert completed.returncode == 1
    assert "assay image build" in completed.stdout


def test_image_build_if_missing_is_quick_when_present() -> None:
    completed = assay("image", "build", "--if-missing")
    assert completed.returncode == 0, completed.stderr
    assert "is present" in completed.stdout
