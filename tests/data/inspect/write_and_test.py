"""An Inspect task for tests/e2e/test_inspect_eval.py: a scripted agent (``mockllm`` with
tool calls) writes a small Python module and its test with ``text_editor()``, runs the test
with ``bash()``, uses the module once in ``bash_session()``, and the scorer runs the test
again in the sandbox and reads the module back from it.

Run it as ``inspect eval write_and_test.py --sandbox assay``: the task brings its own model.
Every scripted output carries ``usage``, so the mock model never counts tokens (which would
load a tokenizer's encoding from the network)."""

from __future__ import annotations

from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer
from inspect_ai.solver import TaskState, generate, use_tools
from inspect_ai.tool import bash, bash_session, text_editor
from inspect_ai.util import sandbox

MODEL = "mockllm/model"

MODULE = '''"""Arithmetic."""


def add(a: int, b: int) -> int:
    return a + b
'''

TEST = """import unittest

from mathlib import add


class AddTest(unittest.TestCase):
    def test_adds(self) -> None:
        self.assertEqual(add(2, 3), 5)


if __name__ == "__main__":
    unittest.main()
"""


def _used(output: ModelOutput) -> ModelOutput:
    output.usage = ModelUsage(input_tokens=10, output_tokens=5, total_tokens=15)
    return output


def _call(tool: str, **arguments: Any) -> ModelOutput:
    return _used(ModelOutput.for_tool_call(MODEL, tool, arguments, tool_call_id=f"call-{tool}"))


def script() -> list[ModelOutput]:
    """What the mock model says, turn by turn."""
    return [
        _call("text_editor", command="create", path="/workspace/mathlib.py", file_text=MODULE),
        _call("text_editor", command="create", path="/workspace/test_mathlib.py", file_text=TEST),
        _call("bash", command="cd /workspace && python3 -m unittest -v test_mathlib"),
        _call(
            "bash_session",
            action="type_submit",
            input="cd /workspace && python3 -c 'import mathlib; print(\"sum\", mathlib.add(2, 3))'",
        ),
        _used(ModelOutput.from_content(MODEL, "mathlib.add is written and its test passes.")),
    ]


@scorer(metrics=[accuracy()])
def module_tested() -> Any:
    """Correct when the module the agent wrote is in the sandbox and its test passes there."""

    async def score(state: TaskState, target: Target) -> Score:
        source = await sandbox().read_file("mathlib.py")
        run = await sandbox().exec(["python3", "-m", "unittest", "test_mathlib"])
        passed = run.success and source == MODULE
        return Score(value=CORRECT if passed else INCORRECT, answer=source, explanation=run.stderr)

    return score


@task
def write_and_test() -> Task:
    return Task(
        dataset=[Sample(input="Write mathlib.add and test it.", target="5")],
        solver=[use_tools([text_editor(), bash(), bash_session()]), generate()],
        scorer=module_tested(),
        model=get_model(MODEL, custom_outputs=script()),
        message_limit=20,
    )
