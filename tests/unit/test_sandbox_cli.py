"""``assay sandbox create | exec | cp | rm | ls | show | events`` through ``assay.cli.main``,
the client's HTTP answered in-process by ``httpx.MockTransport``: what each command sends,
what it prints (exact bytes for exec and cp) and what it exits with."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from assay import cli_client
from assay.api.schemas import SandboxOut
from assay.cli import main
from assay.cli_format import sandbox_table, span
from assay.client import AssayClient
from tests.unit.test_sandbox_client import (
    AWKWARD,
    Server,
    chunk_line,
    command_json,
    error_response,
    event_json,
    file_server,
    ndjson,
    result_line,
    sandbox_json,
    sent_json,
    sse,
)

URL = "http://cli.test"


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[httpx.Request], Any]], Server]:
    """Answers the CLI's requests with the given handler (which returns an httpx.Response)."""
    monkeypatch.setenv("ASSAY_URL", URL)
    monkeypatch.setenv("ASSAY_API_KEY", "cli-key")

    def install(answer: Callable[[httpx.Request], httpx.Response]) -> Server:
        server = Server(answer)

        def client(url: str, *, api_key: str | None = None) -> AssayClient:
            return AssayClient(url, api_key=api_key, transport=httpx.MockTransport(server))

        monkeypatch.setattr(cli_client, "AssayClient", client)
        return server

    return install


Serve = Callable[[Callable[[httpx.Request], httpx.Response]], Server]


def output(capsys: pytest.CaptureFixture[bytes]) -> tuple[bytes, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err.decode()


# -- create, ls, show, rm ----------------------------------------------------------------


def test_create_prints_the_id_and_sends_the_limits(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    server = serve(lambda _r: httpx.Response(201, json=sandbox_json(id="sb-new")))
    argv = ["sandbox", "create", "--memory-mb", "512", "--cpus", "0.5", "--pids-limit", "64"]
    argv += ["--idle-timeout", "30", "--lifetime", "600", "--label", "task=t1"]
    argv += ["--label", "run=7", "--language", "python", "--user", "root"]
    assert main(argv) == 0
    assert output(capsysbinary) == (b"sb-new\n", "")
    request = server.last
    assert (request.method, str(request.url)) == ("POST", f"{URL}/api/v1/sandboxes")
    assert request.headers["authorization"] == "Bearer cli-key"
    assert sent_json(request) == {
        "memory_mb": 512,
        "cpus": 0.5,
        "pids_limit": 64,
        "idle_timeout_seconds": 30.0,
        "lifetime_seconds": 600.0,
        "labels": {"task": "t1", "run": "7"},
        "language": "python",
        "user": "root",
    }


def test_create_json_prints_the_whole_sandbox(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    server = serve(lambda _r: httpx.Response(201, json=sandbox_json(labels={"a": "b"})))
    assert main(["sandbox", "create", "--json", "--url", "http://other.test"]) == 0
    out, _ = output(capsysbinary)
    assert SandboxOut.model_validate_json(out) == SandboxOut.model_validate(
        sandbox_json(labels={"a": "b"})
    )
    assert sent_json(server.last) == {}
    assert server.last.url.host == "other.test"


def test_a_quota_error_exits_2_with_the_message(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    serve(lambda _r: error_response(429, "sandbox_quota", "this key has 8 live sandboxes"))
    assert main(["sandbox", "create"]) == 2
    assert output(capsysbinary) == (b"", "assay: this key has 8 live sandboxes\n")


def test_ls_shows_a_table_of_running_ones_or_all(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    now = datetime.now(UTC)
    running = sandbox_json(
        id="sb-running",
        created_at=(now - timedelta(minutes=5, seconds=3)).isoformat(),
        expires_at=(now + timedelta(minutes=10, seconds=30)).isoformat(),
        commands=3,
        labels={"task": "t1", "k": "v"},
    )
    ended = sandbox_json(
        id="sb-ended",
        state="ended",
        end_reason="idle",
        created_at=(now - timedelta(hours=2)).isoformat(),
    )

    def answer(request: httpx.Request) -> httpx.Response:
        state = request.url.params.get("state")
        items = [running, ended] if state is None else [running]
        return httpx.Response(200, json={"items": items})

    server = serve(answer)
    assert main(["sandbox", "ls"]) == 0
    table, _ = output(capsysbinary)
    assert server.last.url.params["state"] == "running"
    header, row = table.decode().splitlines()
    assert header.split() == ["ID", "STATE", "AGE", "IDLE-EXPIRES", "COMMANDS", "LABELS"]
    assert row.split() == ["sb-running", "running", "5m", "in", "10m", "3", "task=t1,k=v"]
    assert row.index(" running") + 1 == header.index("STATE"), "the columns line up"
    assert row.index(" 3 ") + 1 == header.index("COMMANDS")

    assert main(["sandbox", "ls", "--all"]) == 0
    table, _ = output(capsysbinary)
    assert "state" not in server.last.url.params
    assert [line.split()[:4] for line in table.decode().splitlines()[1:]] == [
        ["sb-running", "running", "5m", "in"],
        ["sb-ended", "ended", "(idle)", "2h"],
    ]


def test_the_table_and_spans() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    sandbox = SandboxOut.model_validate(sandbox_json(id="x", created_at="2026-03-01T11:59:18Z"))
    assert sandbox_table([sandbox], now)[1].split()[:5] == ["x", "running", "42s", "in", "15m"]
    assert sandbox_table([], now) == ["ID  STATE  AGE  IDLE-EXPIRES  COMMANDS  LABELS"]
    assert [span(s) for s in (-3, 0, 59, 60, 3599, 3600, 3660, 86400, 90000)] == [
        "0s",
        "0s",
        "59s",
        "1m",
        "59m",
        "1h",
        "1h1m",
        "1d",
        "1d1h",
    ]


def test_show_prints_the_facts_or_json(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    body = sandbox_json(id="sb-9", labels={"task": "t"}, commands=12, user="root")
    server = serve(lambda _r: httpx.Response(200, json=body))
    assert main(["sandbox", "show", "sb-9"]) == 0
    text, _ = output(capsysbinary)
    lines = text.decode().splitlines()
    assert server.last.url.path == "/api/v1/sandboxes/sb-9"
    assert lines[0].split() == ["id:", "sb-9"]
    assert "commands:  12" in lines and "labels:    task=t" in lines
    assert any(line.startswith("user:      root") for line in lines)
    assert main(["sandbox", "show", "sb-9", "--json"]) == 0
    text, _ = output(capsysbinary)
    assert json.loads(text)["commands"] == 12


def test_rm_removes_each_and_exits_2_if_one_failed(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        sandbox_id = request.url.path.rsplit("/", 1)[-1]
        if sandbox_id == "gone":
            return error_response(404, "sandbox_not_found", "no sandbox gone")
        return httpx.Response(200, json=sandbox_json(id=sandbox_id, state="ended"))

    server = serve(answer)
    assert main(["sandbox", "rm", "sb-1", "gone", "sb-2"]) == 2
    assert output(capsysbinary) == (b"sb-1\nsb-2\n", "assay: gone: no sandbox gone\n")
    assert [(r.method, r.url.path) for r in server.requests] == [
        ("DELETE", "/api/v1/sandboxes/sb-1"),
        ("DELETE", "/api/v1/sandboxes/gone"),
        ("DELETE", "/api/v1/sandboxes/sb-2"),
    ]
    assert main(["sandbox", "rm", "sb-1"]) == 0


# -- exec --------------------------------------------------------------------------------


def streaming(body: bytes) -> Callable[[httpx.Request], httpx.Response]:
    return lambda _request: httpx.Response(200, content=body)


def test_exec_streams_exact_bytes_and_exits_with_the_commands_status(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    written_before_the_end: list[tuple[bytes, bytes]] = []

    def live() -> Iterator[bytes]:
        yield json.dumps(chunk_line("stdout", b"first\n")).encode() + b"\n"
        yield json.dumps(chunk_line("stderr", AWKWARD)).encode() + b"\n"
        yield json.dumps(chunk_line("stdout", b"\x00\xff")).encode() + b"\n"
        captured = capsysbinary.readouterr()
        written_before_the_end.append((captured.out, captured.err))
        result = result_line(stdout=b"first\n\x00\xff", stderr=AWKWARD, returncode=3)
        yield json.dumps(result).encode() + b"\n"

    server = serve(lambda _request: httpx.Response(200, content=live()))
    stdin = tmp_path / "in.bin"
    stdin.write_bytes(AWKWARD)
    argv = ["sandbox", "exec", "sb-1", "--cwd", "sub", "--env", "A=1", "--env", "B=x=y"]
    argv += ["--user", "root", "--timeout", "7", "--stdin-file", str(stdin)]
    argv += ["--", "sh", "-c", "echo --", "--", "-x"]
    assert main(argv) == 3
    assert written_before_the_end == [(b"first\n\x00\xff", AWKWARD)], "output shows as it comes"
    assert capsysbinary.readouterr() == (b"", b""), "and is not written again"
    request = server.last
    assert (request.method, request.url.path) == ("POST", "/api/v1/sandboxes/sb-1/exec")
    assert request.url.params["stream"] == "true"
    assert sent_json(request) == {
        "command": ["sh", "-c", "echo --", "--", "-x"],
        "cwd": "sub",
        "env": {"A": "1", "B": "x=y"},
        "user": "root",
        "timeout_seconds": 7.0,
        "input_base64": base64.b64encode(AWKWARD).decode(),
        "encoding": "base64",
    }


def test_exec_without_dashes_and_with_our_stdin(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(streaming(ndjson(chunk_line("stdout", b"hi\n"), result_line(stdout=b"hi\n"))))
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\x00piped\xff")))
    assert main(["sandbox", "exec", "sb-1", "--stdin-file", "-", "cat"]) == 0
    assert output(capsysbinary) == (b"hi\n", "")
    assert sent_json(server.last) == {
        "command": ["cat"],
        "input_base64": base64.b64encode(b"\x00piped\xff").decode(),
        "encoding": "base64",
    }


def test_a_timed_out_command_exits_124_and_says_so(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    body = ndjson(
        chunk_line("stdout", b"tick\n"),
        result_line(stdout=b"tick\n", returncode=137, timed_out=True, duration_seconds=2.0),
    )
    serve(streaming(body))
    assert main(["sandbox", "exec", "sb-1", "--timeout", "2", "--", "sleep", "9"]) == 124
    out, err = output(capsysbinary)
    assert out == b"tick\n"
    assert err == "assay: the command timed out after 2.0 s (its processes were killed)\n"


def test_a_command_that_cannot_start_says_why(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    serve(streaming(ndjson(result_line(returncode=127, exec_failure="not_found"))))
    assert main(["sandbox", "exec", "sb-1", "--", "nope"]) == 127
    assert output(capsysbinary) == (b"", "assay: the command could not start: not_found\n")


def test_truncated_output_is_said(serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    serve(streaming(ndjson(result_line(stdout_truncated=True))))
    assert main(["sandbox", "exec", "sb-1", "--", "yes"]) == 0
    assert "output truncated" in output(capsysbinary)[1]


@pytest.mark.parametrize(
    "answer",
    [
        error_response(409, "sandbox_ended", "sandbox sb-1 ended: idle"),
        httpx.Response(
            200,
            content=ndjson(
                {
                    "type": "error",
                    "error": {"code": "sandbox_ended", "message": "sandbox sb-1 ended: idle"},
                }
            ),
        ),
    ],
    ids=["before", "midway"],
)
def test_an_error_exits_2_with_the_message(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes], answer: httpx.Response
) -> None:
    serve(lambda _request: answer)
    assert main(["sandbox", "exec", "sb-1", "--", "true"]) == 2
    assert output(capsysbinary) == (b"", "assay: sandbox sb-1 ended: idle\n")


def test_exec_needs_a_command(serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    server = serve(streaming(b""))
    assert main(["sandbox", "exec", "sb-1", "--"]) == 2
    assert "give the command" in output(capsysbinary)[1]
    assert server.requests == []


# -- cp ----------------------------------------------------------------------------------


def test_cp_uploads_a_file_and_stdin(
    serve: Serve,
    capsysbinary: pytest.CaptureFixture[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files, answer = file_server()
    server = serve(answer)
    local = tmp_path / "data.bin"
    local.write_bytes(AWKWARD)
    assert main(["sandbox", "cp", str(local), "sb-1:/workspace/in.bin", "--user", "root"]) == 0
    assert output(capsysbinary) == (
        b"",
        f"copied {len(AWKWARD)} bytes to sb-1:/workspace/in.bin\n",
    )
    assert files["/workspace/in.bin"] == AWKWARD
    request = server.last
    assert (request.method, request.url.path) == ("PUT", "/api/v1/sandboxes/sb-1/files")
    assert dict(request.url.params) == {"path": "/workspace/in.bin", "user": "root"}

    assert main(["sandbox", "cp", str(local), "sb-1:dir/"]) == 0
    assert files["dir/data.bin"] == AWKWARD, "into a directory: under the file's own name"

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"from\x00stdin")))
    assert main(["sandbox", "cp", "-", "sb-1:piped"]) == 0
    assert files["piped"] == b"from\x00stdin"


def test_cp_downloads_to_a_file_a_directory_and_stdout(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    files, answer = file_server()
    files["/workspace/out.bin"] = AWKWARD
    server = serve(answer)
    target = tmp_path / "got.bin"
    assert main(["sandbox", "cp", "sb-1:/workspace/out.bin", str(target)]) == 0
    assert target.read_bytes() == AWKWARD
    assert output(capsysbinary) == (b"", f"copied {len(AWKWARD)} bytes to {target}\n")
    assert (server.last.method, dict(server.last.url.params)) == (
        "GET",
        {"path": "/workspace/out.bin"},
    )

    assert main(["sandbox", "cp", "sb-1:/workspace/out.bin", str(tmp_path)]) == 0
    assert (tmp_path / "out.bin").read_bytes() == AWKWARD
    capsysbinary.readouterr()

    assert main(["sandbox", "cp", "sb-1:/workspace/out.bin", "-"]) == 0
    assert output(capsysbinary) == (AWKWARD, "")


def test_cp_of_a_missing_file_exits_2(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    _, answer = file_server()
    serve(answer)
    assert main(["sandbox", "cp", "sb-1:/nope", str(tmp_path / "x")]) == 2
    assert output(capsysbinary) == (b"", "assay: no such file: /nope\n")
    assert not (tmp_path / "x").exists()
    assert main(["sandbox", "cp", str(tmp_path / "absent"), "sb-1:/x"]) == 2
    assert "cannot read" in output(capsysbinary)[1]


@pytest.mark.parametrize(
    ("src", "dst"),
    [("sb-1:/a", "sb-2:/b"), ("./local", "other"), ("-", "-"), ("./a:b", "c")],
)
def test_cp_needs_exactly_one_side_in_a_sandbox(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes], src: str, dst: str
) -> None:
    server = serve(lambda _request: httpx.Response(500))
    assert main(["sandbox", "cp", src, dst]) == 2
    assert output(capsysbinary) == (b"", "assay: exactly one of SRC and DST must be ID:PATH\n")
    assert server.requests == []


# -- events ------------------------------------------------------------------------------


def test_events_print_one_line_each_and_follow(
    serve: Serve, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    events = [
        event_json(1, "created"),
        event_json(2, "exec", command=["true"], returncode=0),
        event_json(3, "ended", reason="deleted"),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("follow") == "true":
            return httpx.Response(200, content=sse(*events))
        return httpx.Response(200, json={"items": events[1:]})

    server = serve(answer)
    assert main(["sandbox", "events", "sb-1", "--after", "1"]) == 0
    text, _ = output(capsysbinary)
    assert dict(server.last.url.params) == {"after": "1", "limit": "1000"}
    assert text.decode().splitlines() == [
        '   2 12:00:01 exec       {"command": ["true"], "returncode": 0}',
        '   3 12:00:01 ended      {"reason": "deleted"}',
    ]
    assert main(["sandbox", "events", "sb-1", "--follow", "--json"]) == 0
    text, _ = output(capsysbinary)
    assert [json.loads(line)["seq"] for line in text.splitlines()] == [1, 2, 3]
    assert server.last.url.params["follow"] == "true"


def test_sandbox_alone_prints_its_commands(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["sandbox"]) == 2
    _, err = output(capsysbinary)
    assert all(name in err for name in ("create", "exec", "cp", "rm", "ls"))


def test_command_json_helper_is_the_schema() -> None:
    """The answers above are checked against the API's schemas."""
    with pytest.raises(ValueError, match="returncode"):
        command_json(returncode="not a number")
