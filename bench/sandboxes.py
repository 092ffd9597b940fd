"""Live sandboxes (one sandbox, many commands): Assay through its REST API against its
peers, side by side in one run.

    .venv/bin/python bench/sandboxes.py [--samples 30] [--creates 15] [--files 5]
    .venv/bin/python bench/sandboxes.py --quick      # smoke run: 5 execs, 3 creates, 1 file
    .venv/bin/python bench/sandboxes.py --runners llm-sandbox docker

Runners, each measured by the same code (bench/peers/protocol.py: the same commands, order
and checks):

- ``assay``: ``assay serve`` in another process on loopback (local mode, SQLite in a
  temporary directory, default settings, so a warm pool of live sandboxes), through
  ``assay.client.AssayClient``; before each timed create, every warm pool is full again;
- ``llm-sandbox``: its ``SandboxSession`` on the same local image (Assay's configured sandbox
  image), never pulled
  (bench/peers/llm_sandbox_runner.py);
- ``docker``: plain ``docker run -d`` + ``docker exec`` through the docker SDK
  (bench/peers/docker_runner.py).

The peers run in their own venv (bench/peers/venv creates it, outside the repository), each
as a subprocess printing its samples as JSON.

Per runner, p50 of: create -> first command result (create a sandbox, run ``true``, clock
stopped at its result; deleted outside the clock); exec round trip of ``true`` and of a
1 MiB echo; writing 50 MiB of random bytes, reading them back, and both (round trip).
Assay's goals (create -> first result <= 100 ms, exec <= 30 ms, 50 MiB round trip <= 1.5 s)
are marked met or not met. A runner that fails (a wrong output, an error) makes the run exit
non-zero, after the others ran. Compare within one run: absolute timings on a shared machine
are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import serving
from assay.client import AssayClient
from assay.config import ExecutionSettings
from peers.protocol import FILE_SIZE, LABEL, METRICS, Payload, measure

PEERS = Path(__file__).parent / "peers"
#: Peer name -> its runner script in bench/peers.
PEER_RUNNERS = {"llm-sandbox": "llm_sandbox_runner.py", "docker": "docker_runner.py"}
RUNNERS = ("assay", *PEER_RUNNERS)
#: Assay's goals: metric -> most seconds for its p50.
GOALS = {"create": 0.100, "exec_true": 0.030, "exec_1mib": 0.030, "round_trip": 1.5}
TITLES = {
    "create": "create->1st",
    "exec_true": "exec true",
    "exec_1mib": "exec 1 MiB",
    "write": "50M write",
    "read": "50M read",
    "round_trip": "50M trip",
}


class AssaySandboxes:
    """Live sandboxes through ``assay serve``'s REST API."""

    def __init__(self, client: AssayClient) -> None:
        self.client = client
        #: Per create, in order, whether it came from the warm pool.
        self.warm: list[bool] = []
        self.about = "assay serve (local mode, default settings) through AssayClient"

    def settle(self) -> None:
        """Until every warm pool the server reports is full (the deleted sandbox is
        replaced), at most 60 s."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(pool.ready >= pool.target for pool in self.client.queue().pool):
                return
            time.sleep(0.02)
        raise RuntimeError("the warm pools did not fill again within 60 s")

    def create(self) -> str:
        sandbox = self.client.create_sandbox()
        self.warm.append(sandbox.warm)
        return sandbox.id

    def exec(self, sandbox: str, argv: list[str]) -> bytes:
        result = self.client.exec(sandbox, argv, timeout=60)
        if result.returncode != 0 or result.timed_out or result.stdout_truncated:
            raise RuntimeError(f"{argv}: {result}")
        return result.stdout

    def write(self, sandbox: str, path: str, payload: Payload) -> None:
        self.client.write_file(sandbox, path, payload.data)

    def read(self, sandbox: str, path: str) -> bytes:
        return self.client.read_file(sandbox, path, max_bytes=FILE_SIZE)

    def delete(self, sandbox: str) -> None:
        self.client.delete_sandbox(sandbox)


async def run_assay(creates: int, execs: int, files: int) -> dict[str, Any]:
    async with serving(ASSAY_EXECUTION__ENGINE_ID="bench-sandboxes") as url:
        with AssayClient(url, timeout=120) as client:
            runner = AssaySandboxes(client)
            samples = await asyncio.to_thread(measure, runner, creates, execs, files)
            timed = runner.warm[1 : 1 + creates]  # measure's first create is untimed
            about = f"{runner.about}; {sum(timed)} of {len(timed)} timed creates warm"
            return {"name": "assay", "about": about, "samples": samples}


def run_peer(name: str, creates: int, execs: int, files: int) -> dict[str, Any]:
    python = subprocess.run(
        [PEERS / "venv"], check=True, capture_output=True, text=True
    ).stdout.strip()
    counts = [
        "--image",
        ExecutionSettings().image,
        "--creates",
        str(creates),
        "--execs",
        str(execs),
        "--files",
        str(files),
    ]
    try:
        done = subprocess.run(
            [python, PEERS / PEER_RUNNERS[name], *counts],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        remove_leftovers()
    if done.returncode != 0:
        raise RuntimeError(f"its runner exited {done.returncode} (its stderr is above)")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def remove_leftovers() -> None:
    """Containers a peer left behind (killed or failed half-way)."""
    (key, value), *_ = LABEL.items()
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={key}={value}"],
        capture_output=True,
        text=True,
        check=True,
    )
    if ids := listed.stdout.split():
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=True)


def p50_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}" if values else "-"


def print_report(
    results: dict[str, dict[str, Any]], errors: dict[str, str], counts: dict[str, int]
) -> None:
    print(
        f"\n{os.cpu_count()} CPUs; image {ExecutionSettings().image}; p50 in milliseconds; "
        f"samples: create {counts['create']}, exec {counts['exec']} each, "
        f"50 MiB {counts['files']} (round trip = write + read)\n"
    )
    widths = [max(12, len(TITLES[metric]) + 2) for metric in METRICS]
    header = "".join(f"{TITLES[m]:>{w}}" for m, w in zip(METRICS, widths, strict=True))
    print(f"{'runner':<14}{header}")
    for name, result in results.items():
        cells = [p50_ms(result["samples"][metric]) for metric in METRICS]
        print(f"{name:<14}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    for name in errors:
        print(f"{name:<14}FAILED")
    print()
    for name, result in results.items():
        print(f"{name}: {result['about']}")
    if "assay" in results:
        print("\nAssay's goals (p50)")
        samples = results["assay"]["samples"]
        for metric, goal in GOALS.items():
            p50 = statistics.median(samples[metric])
            verdict = "met" if p50 <= goal else "NOT MET"
            limit = f"<= {goal * 1000:.0f} ms"
            print(f"  {TITLES[metric]:<12}{p50 * 1000:>9.1f} {limit:<12}{verdict}")
    for name, error in errors.items():
        print(f"\n{name} FAILED: {error}", file=sys.stderr)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, help="exec round trips of each command (30)")
    parser.add_argument("--creates", type=int, help="create -> first result samples (15)")
    parser.add_argument("--files", type=int, help="50 MiB write and read samples (5)")
    parser.add_argument("--runners", nargs="+", choices=RUNNERS, default=list(RUNNERS))
    parser.add_argument("--quick", action="store_true", help="smoke run: 5, 3 and 1 samples")
    args = parser.parse_args()
    execs = args.samples or (5 if args.quick else 30)
    creates = args.creates or (3 if args.quick else 15)
    files = args.files or (1 if args.quick else 5)

    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    began = time.perf_counter()
    for name in args.runners:
        try:
            if name == "assay":
                results[name] = await run_assay(creates, execs, files)
            else:
                results[name] = await asyncio.to_thread(run_peer, name, creates, execs, files)
        except Exception as exc:  # reported, and the run exits non-zero
            errors[name] = f"{type(exc).__name__}: {exc}"
        print(f"{name}: done ({time.perf_counter() - began:.0f} s)", flush=True)

    print_report(results, errors, {"create": creates, "exec": execs, "files": files})
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
