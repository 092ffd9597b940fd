"""A real dataset through the REST API: HumanEval problems translated to C++ and Go
(``tests/data/humaneval_x``: 20 each, with canonical solutions and broken variants). Every
canonical solution passes its tests; every broken variant fails with its exact verdict
(wrong answer: failed; does not compile: compile_error; never ends: timeout). Each set goes
in as one batch, in batch isolation (a submitter's many short programs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer

pytestmark = [pytest.mark.docker, pytest.mark.integration]

DATA = Path(__file__).parents[1] / "data" / "humaneval_x"


def problems(language: str) -> list[dict[str, Any]]:
    lines = (DATA / f"{language}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.parametrize(
    "server", [{"queue": {"concurrency": 2, "max_queued": 1000}}], indirect=True
)
@pytest.mark.parametrize("language", ["cpp", "go"])
async def test_canonical_solutions_pass_and_broken_ones_fail_exactly(
    server: RunningServer, language: str
) -> None:
    cases: list[tuple[str, str]] = []  # (task, expected status)
    bodies: list[dict[str, Any]] = []
    for problem in problems(language):
        cases.append((problem["task_id"], "completed"))
        bodies.append({"code": problem["program"]})
        for index, broken in enumerate(problem["broken"]):
            cases.append((f"{problem['task_id']} broken #{index}", broken["expected"]))
            bodies.append({"code": broken["program"]})
    assert len(bodies) >= 40 and {status for _, status in cases} == {
        "completed",
        "failed",
        "compile_error",
        "timeout",
    }
    for body in bodies:
        body.update(language=language, timeout_seconds=2, memory_mb=256)
    async with server.client() as client:
        created = await client.submit_batch(bodies, isolation="batch")
        finished = [await client.wait(evaluation.id, timeout=300) for evaluation in created]
    wrong = [
        (task, expected, got.status.value, (got.compile_output or got.stderr or "")[-300:])
        for (task, expected), got in zip(cases, finished, strict=True)
        if got.status.value != expected
    ]
    assert wrong == [], wrong
    compiled = [got for got in finished if got.status.value == "completed"]
    assert all(got.compile_duration_seconds for got in compiled)
