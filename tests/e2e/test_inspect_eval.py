"""``inspect eval --sandbox assay`` as a user runs it, against a real ``assay serve``: a
scripted agent writes a module and its test with ``text_editor()``, runs the test with
``bash()``, uses the module in ``bash_session()``, and the scorer checks the result in the
sandbox. The eval runs with nothing but loopback reachable, and nothing tries to leave."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from inspect_ai.log import read_eval_log
from inspect_ai.model import ChatMessageTool

from assay.client import AsyncAssayClient
from assay.inspect_sandbox import LABEL_PROVIDER, PROVIDER
from tests.integration.test_inspect_self_check import running_assay

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[1] / "data" / "inspect"
TASK = DATA / "write_and_test.py"
INSPECT = Path(sys.executable).parent / "inspect"


def inspect_env(tmp_path: Path, url: str) -> dict[str, str]:
    """The environment of ``inspect eval``: the Assay server, only the mock model, no hooks
    that could send anything, and the loopback-only guard (``sitecustomize``) loaded."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ASSAY_", "INSPECT_", "EXECUTION_"))
    }
    env.update(
        ASSAY_URL=url,
        INSPECT_DISABLE_MODEL_API="1",
        INSPECT_LOG_DIR=str(tmp_path / "logs"),
        PYTHONPATH=os.pathsep.join([str(DATA), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        LOOPBACK_ONLY_LOG=str(tmp_path / "refused.log"),
    )
    return env


def test_the_guard_refuses_what_is_not_loopback_in_a_subprocess(tmp_path: Path) -> None:
    env = inspect_env(tmp_path, "http://127.0.0.1:1")
    probe = "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=5)\n"
    refused = subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "loopback only" in refused.stderr
    assert "192.0.2.1" in (tmp_path / "refused.log").read_text()


async def test_an_agent_writes_and_tests_a_module_in_an_assay_sandbox(tmp_path: Path) -> None:
    async with running_assay("local", tmp_path) as url:
        env = inspect_env(tmp_path, url)
        # Run where a user would: beside the task file (Inspect takes its path relative).
        shutil.copy(TASK, tmp_path / TASK.name)
        ran = subprocess.run(
            [str(INSPECT), "eval", TASK.name, "--sandbox", "assay", "--display", "plain"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}"
        async with AsyncAssayClient(url) as client:
            made = [s for s in await client.list_sandboxes() if s.labels.get(LABEL_PROVIDER)]
    refused = tmp_path / "refused.log"
    assert not refused.exists(), f"tried to leave the machine: {refused.read_text()}"

    [log_file] = (tmp_path / "logs").glob("*.eval")
    log = read_eval_log(str(log_file))
    assert log.status == "success", log.error
    assert log.results is not None
    assert log.results.scores[0].metrics["accuracy"].value == 1.0
    [sample] = log.samples or []
    assert sample.scores is not None
    assert sample.scores["module_tested"].value == "C"

    tools = {m.function: m for m in sample.messages if isinstance(m, ChatMessageTool)}
    assert set(tools) == {"text_editor", "bash", "bash_session"}
    assert all(m.error is None for m in tools.values()), [m.error for m in tools.values()]
    assert "Ran 1 test" in tools["bash"].text and "OK" in tools["bash"].text
    assert "sum 5" in tools["bash_session"].text

    [sandbox] = made
    assert sandbox.labels[LABEL_PROVIDER] == PROVIDER
    assert sandbox.labels["inspect.task"] == "write_and_test"
    assert sandbox.labels["inspect.eval"] == log.eval.eval_id
    assert sandbox.labels["inspect.sample"] == str(sample.id)
    assert sandbox.labels["inspect.epoch"] == "1"
    assert sandbox.state == "ended", "the sample's cleanup deleted it"
