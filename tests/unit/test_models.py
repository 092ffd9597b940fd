"""Requests are checked against the configured limits before any sandbox exists."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from assay.config import ExecutionSettings, Settings
from assay.errors import InvalidRequestError
from assay.execution_engine import ExecutionRequest, resolve_request

SETTINGS = ExecutionSettings(max_cpus=2.0)


def test_unset_limits_take_the_configured_defaults() -> None:
    resolved = resolve_request(ExecutionRequest(code="print(1)"), SETTINGS)
    assert resolved.timeout_seconds == SETTINGS.default_timeout_seconds
    assert resolved.memory_mb == SETTINGS.default_memory_mb
    assert resolved.cpus == SETTINGS.default_cpus
    assert resolved.output_limit_bytes == SETTINGS.default_output_limit_bytes
    assert resolved.stdin == b""


def test_limits_within_the_maxima_are_kept() -> None:
    request = ExecutionRequest(
        code="x", stdin="é", timeout_seconds=2.5, memory_mb=64, cpus=0.5, output_limit_bytes=10
    )
    resolved = resolve_request(request, SETTINGS)
    assert (resolved.timeout_seconds, resolved.memory_mb, resolved.cpus) == (2.5, 64, 0.5)
    assert resolved.output_limit_bytes == 10
    assert resolved.stdin == "é".encode()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timeout_seconds", -1, "timeout_seconds must be at least"),
        ("timeout_seconds", 0, "timeout_seconds must be at least"),
        ("timeout_seconds", 301, "timeout_seconds must be at most 300"),
        ("memory_mb", -5, "memory_mb must be at least 16"),
        ("memory_mb", 1_000_000, "memory_mb must be at most 4096"),
        ("cpus", 0, "cpus must be at least"),
        ("cpus", 3, "cpus must be at most 2.0"),
        ("output_limit_bytes", 0, "output_limit_bytes must be at least 1"),
        ("output_limit_bytes", 10**9, "output_limit_bytes must be at most"),
    ],
)
def test_out_of_range_limits_name_the_field(field: str, value: float, message: str) -> None:
    request = ExecutionRequest.model_validate({"code": "x", field: value})
    with pytest.raises(InvalidRequestError, match=message) as caught:
        resolve_request(request, SETTINGS)
    assert caught.value.field == field
    assert caught.value.code == "invalid_request"


def test_code_over_the_size_cap_is_rejected() -> None:
    limit = SETTINGS.max_code_bytes
    assert limit == 1024 * 1024
    resolve_request(ExecutionRequest(code="#" * limit), SETTINGS)
    with pytest.raises(InvalidRequestError, match=f"limit is {limit}") as caught:
        resolve_request(ExecutionRequest(code="#" * (limit + 1)), SETTINGS)
    assert caught.value.field == "code"


def test_code_size_is_counted_in_utf8_bytes() -> None:
    settings = ExecutionSettings(max_code_bytes=10)
    resolve_request(ExecutionRequest(code="é" * 5), settings)
    with pytest.raises(InvalidRequestError):
        resolve_request(ExecutionRequest(code="é" * 6), settings)


def test_empty_code_and_oversized_stdin_are_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="code is empty"):
        resolve_request(ExecutionRequest(code=""), SETTINGS)
    settings = ExecutionSettings(max_stdin_bytes=4)
    with pytest.raises(InvalidRequestError, match="stdin is 5 bytes") as caught:
        resolve_request(ExecutionRequest(code="x", stdin="12345"), settings)
    assert caught.value.field == "stdin"


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../escape.py", "a/../../b", "a/./b", "", "main.py", "x\x00y"]
)
def test_unsafe_or_reserved_file_paths_are_rejected(path: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        resolve_request(ExecutionRequest(code="x", files={path: "data"}), SETTINGS)
    assert caught.value.field == "files"


def test_file_count_and_total_size_are_capped() -> None:
    settings = ExecutionSettings(max_files=2, max_files_bytes=10)
    resolve_request(
        ExecutionRequest(code="x", files={"a.txt": "12345", "d/b.txt": "12345"}), settings
    )
    with pytest.raises(InvalidRequestError, match="3 files"):
        resolve_request(ExecutionRequest(code="x", files={"a": "", "b": "", "c": ""}), settings)
    with pytest.raises(InvalidRequestError, match="files total 11 bytes"):
        resolve_request(ExecutionRequest(code="x", files={"a": "123456", "b": "12345"}), settings)


def test_unknown_fields_are_schema_errors_and_unknown_languages_are_named() -> None:
    with pytest.raises(ValidationError):
        ExecutionRequest.model_validate({"code": "x", "langauge": "python"})
    with pytest.raises(InvalidRequestError, match=r"unknown language 'cobol'.*python") as caught:
        resolve_request(ExecutionRequest(code="x", language="cobol"), SETTINGS)
    assert caught.value.field == "language"


def test_a_server_runs_only_the_languages_it_enables() -> None:
    settings = ExecutionSettings(languages=("python", "c"))
    resolve_request(ExecutionRequest(code="x", language="c"), settings)
    with pytest.raises(InvalidRequestError, match="this server runs: python, c"):
        resolve_request(ExecutionRequest(code="x", language="rust"), settings)


def test_each_language_stores_its_program_under_its_own_name() -> None:
    for language, source in [("python", "main.py"), ("c", "main.c"), ("go", "main.go")]:
        plan = resolve_request(ExecutionRequest(code="x", language=language), SETTINGS).plan
        assert plan.source == source
    with pytest.raises(InvalidRequestError, match=r"'main\.c' is reserved"):
        resolve_request(ExecutionRequest(code="x", language="c", files={"main.c": ""}), SETTINGS)
    resolve_request(ExecutionRequest(code="x", language="c", files={"main.py": ""}), SETTINGS)


def test_java_is_stored_under_its_single_public_class() -> None:
    def source(code: str) -> str:
        return resolve_request(ExecutionRequest(code=code, language="java"), SETTINGS).plan.source

    assert source("public class Solution { public static void main(String[] a) {} }") == (
        "Solution.java"
    )
    assert source("class Helper {}\npublic final class Task {}") == "Task.java"
    assert source("class Main { public static void main(String[] a) {} }") == "Main.java"


def test_compiler_options_and_args_reach_the_commands_in_place() -> None:
    request = ExecutionRequest(
        code="fn main() {}",
        language="rust",
        compiler_options=("--test", "-C", "opt-level=0"),
        args=("--nocapture", "a b"),
    )
    plan = resolve_request(request, SETTINGS).plan
    assert plan.compile is not None
    assert plan.compile[-5:] == ("main", "--test", "-C", "opt-level=0", "main.rs")
    assert plan.run == ("./main", "--nocapture", "a b")


def test_extra_sources_are_compiled_with_the_program() -> None:
    files = {"util.c": "int f(void) { return 1; }", "util.h": "int f(void);", "data.txt": ""}
    plan = resolve_request(ExecutionRequest(code="x", language="c", files=files), SETTINGS).plan
    assert plan.compile is not None
    assert "main.c" in plan.compile and "util.c" in plan.compile
    assert "util.h" not in plan.compile and "data.txt" not in plan.compile


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"compiler_options": ["-O2"]}, "compiler_options", "python is not compiled"),
        ({"compile_timeout_seconds": 1}, "compile_timeout_seconds", "python is not compiled"),
        ({"args": ["a\x00b"]}, "args", "NUL"),
        ({"args": ["x" * 5000]}, "args", "over 4096 bytes"),
        ({"args": ["a"] * 300}, "args", "300 args given"),
        ({"language": "c", "compile_timeout_seconds": 10**6}, "compile_timeout_seconds", "most"),
        ({"language": "c", "compile_memory_mb": 1}, "compile_memory_mb", "at least 16"),
    ],
)
def test_bad_program_fields_are_refused_naming_the_field(
    fields: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message) as caught:
        resolve_request(ExecutionRequest.model_validate({"code": "x", **fields}), SETTINGS)
    assert caught.value.field == field


def test_compile_limits_default_per_language_within_the_maxima() -> None:
    rust = resolve_request(ExecutionRequest(code="x", language="rust"), SETTINGS)
    assert (rust.compile_timeout_seconds, rust.compile_memory_mb) == (30.0, 256)
    big = resolve_request(ExecutionRequest(code="x", language="rust", memory_mb=1000), SETTINGS)
    assert big.compile_memory_mb == 1000, "the program's limit when it is the larger"
    small = resolve_request(ExecutionRequest(code="x", language="rust", memory_mb=64), SETTINGS)
    assert small.compile_memory_mb == 256, "the language's floor when that is the larger"
    capped = ExecutionSettings(max_compile_timeout_seconds=5, max_compile_memory_mb=200)
    rust = resolve_request(ExecutionRequest(code="x", language="rust"), capped)
    assert (rust.compile_timeout_seconds, rust.compile_memory_mb) == (5.0, 200)


def test_settings_refuse_defaults_above_their_maxima() -> None:
    with pytest.raises(ValidationError, match="default_timeout_seconds"):
        ExecutionSettings(default_timeout_seconds=100, max_timeout_seconds=10)


def test_settings_read_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_EXECUTION__MAX_TIMEOUT_SECONDS", "42")
    monkeypatch.setenv("ASSAY_EXECUTION__RUNTIME", "runsc")
    settings = Settings()
    assert settings.execution.max_timeout_seconds == 42
    assert settings.execution.runtime == "runsc"
