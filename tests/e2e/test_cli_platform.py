"""`assay serve`, `assay keys` and the client commands, as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.test_crash_recovery import free_port, start_server, wait_ready
from tests.sandbox import TEST_ENGINE_PREFIX

pytestmark = [pytest.mark.docker, pytest.mark.e2e]


def assay(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assay", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def test_serve_refuses_a_public_address_without_a_key(tmp_path: Path) -> None:
    completed = assay("serve", "--host", "0.0.0.0", env={"ASSAY_DATA_DIR": str(tmp_path)})  # noqa: S104
    assert completed.returncode == 2
    assert "refusing to serve on 0.0.0.0 without an API key" in completed.stderr


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    env = {"ASSAY_DATA_DIR": str(tmp_path)}
    created = assay("keys", "create", "grader", env=env)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("ak_")
    listed = assay("keys", "list", env=env)
    assert "grader" in listed.stdout and "active" in listed.stdout
    assert secret not in listed.stdout
    revoked = assay("keys", "revoke", "1", env=env)
    assert "revoked" in revoked.stdout
    missing = assay("keys", "revoke", "99", env=env)
    assert missing.returncode == 2 and "no API key with id 99" in missing.stderr


async def test_client_commands_against_a_live_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"ASSAY_DATA_DIR": str(data)}
    secret = assay("keys", "create", "cli", env=env).stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    engine_id = f"{TEST_ENGINE_PREFIX}cli-{uuid.uuid4().hex[:8]}"
    server = start_server(data, port, engine_id, log)
    try:
        await wait_ready(url, server, log)
        client_env = {"ASSAY_URL": url, "ASSAY_API_KEY": secret}
        program = tmp_path / "count.py"
        program.write_text(
            "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)\n"
        )
        submitted = assay("submit", str(program), "--wait", "--label", "via=cli", env=client_env)
        assert submitted.returncode == 0, submitted.stderr
        assert submitted.stdout == "0\n1\n2\n"
        assert "[assay] completed, exit 0" in submitted.stderr
        evaluation_id = submitted.stderr.split("submitted ", 1)[1].split()[0]
        status = assay("status", evaluation_id, env=client_env)
        assert "completed" in status.stdout and "via=cli" in status.stdout
        logs = assay("logs", evaluation_id, "--follow", env=client_env)
        assert logs.stdout == "0\n1\n2\n"
        listed = assay("list", "--label", "via=cli", env=client_env)
        assert evaluation_id in listed.stdout
        first, second = tmp_path / "first.py", tmp_path / "second.c"
        first.write_text("print('one')\n")
        second.write_text("int main(void) { return 2; }\n")
        batch = assay(
            "submit", str(first), str(second), "--isolation", "batch", "--wait", env=client_env
        )
        assert batch.returncode == 0, batch.stderr
        assert "submitted 2 evaluations (batch)" in batch.stderr
        one, two = batch.stdout.splitlines()
        assert one.startswith("first.py: [assay] completed, exit 0")
        assert two.startswith("second.c: [assay] failed, exit 2"), "its language from its name"
        in_batch = assay("list", "--label", "file=second.c", env=client_env)
        assert "failed" in in_batch.stdout
        broken = tmp_path / "broken.go"
        broken.write_text("package main\nfunc main() { undefined() }\n")
        refused = assay("submit", str(broken), "--wait", env=client_env)
        assert "undefined: undefined" in refused.stderr, "the compiler's words are shown"
        assert "[assay] compile_error" in refused.stderr
        slow = tmp_path / "slow.py"
        slow.write_text("import time\ntime.sleep(30)\n")
        queued_id = assay("submit", str(slow), "--timeout", "60", env=client_env).stdout.strip()
        cancelled = assay("cancel", queued_id, env=client_env)
        assert cancelled.stdout.strip() == f"{queued_id} cancelled"
        unauthorised = assay("list", env={"ASSAY_URL": url, "ASSAY_API_KEY": "ak_wrong"})
        assert unauthorised.returncode == 2 and "invalid or revoked API key" in unauthorised.stderr
        unreachable = assay("list", env={"ASSAY_URL": f"http://127.0.0.1:{free_port()}"})
        assert unreachable.returncode == 2 and "cannot reach the server" in unreachable.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
