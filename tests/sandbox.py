"""Helpers for tests that run programs in real sandboxes."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

from assay.config import ExecutionSettings, Settings
from assay.execution_engine import (
    ExecutionInterface,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
)
from assay.execution_engine.docker_engine import SANDBOX_UID

TEST_ENGINE_PREFIX = "test-"


def make_settings(**overrides: object) -> ExecutionSettings:
    """Settings for one test's engine: a unique engine id and short default limits."""
    values: dict[str, object] = {
        "engine_id": f"{TEST_ENGINE_PREFIX}{uuid.uuid4().hex[:12]}",
        "default_timeout_seconds": 5.0,
        "max_timeout_seconds": 30.0,
        "default_memory_mb": 128,
    }
    values.update(overrides)
    return ExecutionSettings.model_validate(values)


async def run(engine: ExecutionInterface, code: str, **limits: object) -> ExecutionResult:
    """Run dedented ``code`` with the given request fields."""
    request = ExecutionRequest.model_validate({"code": textwrap.dedent(code), **limits})
    return await engine.execute(request)


async def assert_healthy(engine: ExecutionInterface) -> None:
    """The engine still runs a trivial program correctly."""
    result = await run(engine, "print('still fine')")
    assert result.status is ExecutionStatus.COMPLETED, result
    assert result.stdout == "still fine\n"


def sandbox_processes() -> list[int]:
    """Host pids of processes running as the sandbox user (none once a sandbox is gone)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("Uid:") and int(line.split()[1]) == SANDBOX_UID:
                    pids.append(int(entry.name))
    return pids


def platform_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a test platform: its own SQLite file and engine id."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "execution": make_settings().model_dump(),
        "queue": {"concurrency": 2},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}  # type: ignore[dict-item]
        else:
            values[key] = value
    return Settings.model_validate(values)
