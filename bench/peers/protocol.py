"""What every runner of bench/sandboxes.py measures, and how: the same commands, the same
order, the same checks, the same JSON. Standard library only, so it runs both in the
project's venv (Assay) and in the peers' venv (bench/peers/*_runner.py).

A runner is a :class:`Sandboxes`; :func:`measure` drives it:

1. one untimed create, first command and delete (caches, connections, Assay's warm pool,
   which fills once a first sandbox was asked for);
2. ``creates`` times: ``settle()`` (outside the clock), then create and run ``true``, the
   clock stopped at its result; the delete is outside the clock;
3. in one new sandbox: two untimed rounds, then ``execs`` rounds of ``true`` and of the
   1 MiB echo, alternating, so both see the machine alike;
4. in the same sandbox, ``files`` rounds of writing :data:`FILE_SIZE` random bytes to
   :data:`FILE_PATH` and reading them back, each timed; round trip = write + read.

Every output is checked; any failure raises, and a runner script exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = [
    "ECHO_1MIB",
    "FILE_PATH",
    "FILE_SIZE",
    "LABEL",
    "METRICS",
    "TRUE",
    "Payload",
    "Sandboxes",
    "measure",
    "run_as_script",
]

MIB = 1024 * 1024
#: Put on every container a peer creates, so that leftovers can be found and removed.
LABEL = {"assay.bench": "sandboxes"}
TRUE = ["true"]
ECHO_1MIB = ["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x"]
ECHO_OUTPUT = b"x" * MIB
FILE_SIZE = 50 * MIB
#: Writable for all runners: a tmpfs in Assay's sandboxes, the container's layer otherwise.
FILE_PATH = "/workspace/bench-50mib.bin"
METRICS = ("create", "exec_true", "exec_1mib", "write", "read", "round_trip")

H = TypeVar("H")


class BenchError(Exception):
    """A runner did not do what it should."""


@dataclass(frozen=True)
class Payload:
    """The file's bytes, and the same bytes in a local file (for APIs that copy files)."""

    data: bytes
    path: Path


class Sandboxes(Protocol[H]):
    """One way of running sandboxes; ``H`` is its handle of one sandbox."""

    #: What was measured (versions, settings), shown under the table.
    about: str

    def settle(self) -> None:
        """Wait until the next create starts from a rested state (outside the clock)."""

    def create(self) -> H: ...

    def exec(self, sandbox: H, argv: list[str]) -> bytes:
        """``argv``'s stdout; raises unless it exited 0."""

    def write(self, sandbox: H, path: str, payload: Payload) -> None: ...

    def read(self, sandbox: H, path: str) -> bytes: ...

    def delete(self, sandbox: H) -> None: ...


def _expect(what: str, got: bytes, wanted: bytes) -> None:
    if got != wanted:
        raise BenchError(f"{what}: {len(got)} bytes, not the {len(wanted)} expected")


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    value = action()
    return time.perf_counter() - began, value


def measure(runner: Sandboxes[Any], creates: int, execs: int, files: int) -> dict[str, list[float]]:
    """Seconds per sample of each of :data:`METRICS`."""
    samples: dict[str, list[float]] = {metric: [] for metric in METRICS}
    first = runner.create()
    try:
        _expect("true", runner.exec(first, TRUE), b"")
    finally:
        runner.delete(first)

    for _ in range(creates):
        runner.settle()
        began = time.perf_counter()
        sandbox = runner.create()
        try:
            output = runner.exec(sandbox, TRUE)
            samples["create"].append(time.perf_counter() - began)
            _expect("true", output, b"")
        finally:
            runner.delete(sandbox)

    runner.settle()
    sandbox = runner.create()
    try:
        for round_ in range(2 + execs):
            took, output = _timed(lambda: runner.exec(sandbox, TRUE))
            _expect("true", output, b"")
            if round_ >= 2:
                samples["exec_true"].append(took)
            took, output = _timed(lambda: runner.exec(sandbox, ECHO_1MIB))
            _expect("1 MiB echo", output, ECHO_OUTPUT)
            if round_ >= 2:
                samples["exec_1mib"].append(took)

        with tempfile.TemporaryDirectory(prefix="assay-bench-") as local:
            payload = Payload(os.urandom(FILE_SIZE), Path(local, "payload.bin"))
            payload.path.write_bytes(payload.data)
            for _ in range(files):
                wrote, _ = _timed(lambda: runner.write(sandbox, FILE_PATH, payload))
                read, back = _timed(lambda: runner.read(sandbox, FILE_PATH))
                _expect("50 MiB read back", back, payload.data)
                samples["write"].append(wrote)
                samples["read"].append(read)
                samples["round_trip"].append(wrote + read)
    finally:
        runner.delete(sandbox)
    return samples


def run_as_script(name: str, make: Callable[[str], Sandboxes[Any]]) -> None:
    """A peer's runner script: measure with the image (Assay's sandbox image, local) and the
    counts given on the command line and print ``{"name", "about", "samples"}`` as JSON on
    stdout."""
    parser = argparse.ArgumentParser(description=f"{name}, measured as bench/sandboxes.py does")
    parser.add_argument("--image", required=True, help="a local image, never pulled")
    parser.add_argument("--creates", type=int, required=True)
    parser.add_argument("--execs", type=int, required=True)
    parser.add_argument("--files", type=int, required=True)
    args = parser.parse_args()
    runner = make(args.image)
    samples = measure(runner, args.creates, args.execs, args.files)
    print(json.dumps({"name": name, "about": runner.about, "samples": samples}))
