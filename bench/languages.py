"""Every language side by side, in one run against one ``assay serve`` (default settings).

    .venv/bin/python bench/languages.py [--samples 20] [--programs 100] [--languages c go]
    .venv/bin/python bench/languages.py --quick      # smoke run: 5 samples, 20 programs

Per language (its recipe's ``example``, which prints ``Hello, world!``):

1. warm end to end: ``POST /api/v1/evaluations?wait=60`` until the verdict is in the answer,
   each sample starting with the warm pool full (after a warm-up); p50 and p90;
2. compile and run as Assay reports them: p50 of ``compile_duration_seconds`` (0 for an
   interpreted language) and of ``duration_seconds`` over the same samples;
3. overhead: per sample, end to end minus compile minus run (HTTP, queue, storage, the
   sandbox's acquisition and reporting); p50;
4. naive ``docker run --rm -i --network none`` of the same image writing the source from
   stdin, then the recipe's compile and run commands (its env through ``env``), one sample
   right after each API sample, so both see the same machine; p50;
5. throughput: N short programs of the language (the example printing ``Hello <n>`` instead,
   every stdout checked) as one ``POST /api/v1/evaluations/batch``, with ``isolation:
   evaluation`` then ``isolation: batch``; programs/s from submission to the last verdict,
   and the overhead per program, ``finished_at - started_at - compile - run`` (p50: getting
   a sandbox, a cold one once the warm pool is drained, or resetting the batch's; talking to
   it; storing the verdict; not the program's queueing), for both isolations and their
   ratio. Programs slower than the pool's refill find it full even with the default
   isolation: their ratio is small because there is little to save.

Goals, checked per language: (a) warm end-to-end p50 <= compile p50 + 60 ms; (b) overhead
with batch isolation at least 5x smaller than with the default one. The benchmark reports
PASS or FAIL and exits 0 either way. A language that breaks (a wrong output, a refused
request) is reported as such and the others still run. Absolute numbers on a shared machine
are noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shlex
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from _common import cpu_seconds, percentile, serving
from assay.config import ExecutionSettings, QueueSettings
from assay.execution_engine import Recipe, load_languages
from assay.execution_engine.sandbox_spec import SANDBOX_UID, WORKDIR
from batch_isolation import settle

HELLO = "Hello, world!"
TERMINAL = {
    "completed",
    "failed",
    "timeout",
    "oom",
    "output_limit",
    "compile_error",
    "error",
    "cancelled",
}
E2E_BUDGET = 0.060  # goal (a): end to end within compile + 60 ms
RATIO_GOAL = 5.0  # goal (b): batch isolation's overhead 5x smaller


class Broken(Exception):
    """The language did not do what it should (wrong output, refused request)."""


@dataclass
class Result:
    e2e: list[float] = field(default_factory=list)
    compile: list[float] = field(default_factory=list)
    run: list[float] = field(default_factory=list)
    overhead: list[float] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    rate: dict[str, float] = field(default_factory=dict)
    batch_overhead: dict[str, list[float]] = field(default_factory=dict)
    #: Per isolation: machine time per program (wall x concurrency / programs) minus the
    #: program's own compile + run (mean): what the sandbox costs when the machine is full.
    slot_overhead: dict[str, float] = field(default_factory=dict)
    #: Per isolation: system-wide CPU-seconds per program.
    cpu: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def short_programs(recipe: Recipe, count: int) -> list[tuple[str, str]]:
    """``count`` programs of ``recipe``'s language, each printing its own number."""
    if recipe.example.count(HELLO) != 1:
        raise Broken(f"its example does not print {HELLO!r} once")
    return [(recipe.example.replace(HELLO, f"Hello {n}"), f"Hello {n}\n") for n in range(count)]


async def verdict(http: httpx.AsyncClient, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The evaluation once it has its verdict (``?wait`` may answer before)."""
    for _ in range(20):
        if evaluation.get("status") in TERMINAL:
            return evaluation
        response = await http.get(f"/api/v1/evaluations/{evaluation['id']}?wait=60")
        evaluation = response.json()
    raise Broken(f"no verdict after 20 minutes: {evaluation}")


def check(evaluation: dict[str, Any], expected: str) -> None:
    if evaluation.get("status") != "completed" or evaluation.get("stdout") != expected:
        keys = ("status", "stdout", "stderr", "compile_output", "error")
        seen = {key: evaluation.get(key) for key in keys}
        raise Broken(f"unexpected evaluation {seen}")


def naive_command(image: str, recipe: Recipe) -> list[str]:
    """``docker run`` of ``image`` compiling and running ``recipe``'s example from stdin."""
    plan = recipe.plan(recipe.example, {})
    steps = [f"cat > {shlex.quote(plan.source)}"]
    if plan.compile is not None:
        steps.append(shlex.join(plan.compile))
    steps.append(shlex.join(plan.run))
    return [
        "docker", "run", "--rm", "-i", "--network", "none",
        "--user", f"{SANDBOX_UID}:{SANDBOX_UID}",
        "--tmpfs", f"{WORKDIR}:exec,uid={SANDBOX_UID},gid={SANDBOX_UID}", "-w", WORKDIR,
        "-e", f"HOME={WORKDIR}", image, "sh", "-c", " && ".join(steps),
    ]  # fmt: skip


async def naive_once(command: list[str], code: str) -> float:
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await process.communicate(code.encode())
    elapsed = time.perf_counter() - began
    if process.returncode != 0 or stdout.decode() != HELLO + "\n":
        raise Broken(f"naive docker run: exit {process.returncode}, {stdout!r} {stderr[-500:]!r}")
    return elapsed


async def api_once(http: httpx.AsyncClient, recipe: Recipe) -> tuple[float, dict[str, Any]]:
    await settle(http)  # every sample starts with the warm pool full and nothing running
    body = {"code": recipe.example, "language": recipe.name}
    began = time.perf_counter()
    response = await http.post("/api/v1/evaluations?wait=60", json=body)
    if response.status_code >= 300:
        raise Broken(f"submission refused: {response.status_code} {response.text}")
    evaluation = await verdict(http, response.json())
    elapsed = time.perf_counter() - began
    check(evaluation, HELLO + "\n")
    return elapsed, evaluation


def own_time(evaluation: dict[str, Any]) -> tuple[float, float]:
    """Compile and run seconds as Assay reports them (compile 0 when interpreted)."""
    return evaluation.get("compile_duration_seconds") or 0.0, evaluation["duration_seconds"]


async def latency(
    http: httpx.AsyncClient, image: str, recipe: Recipe, samples: int, result: Result
) -> None:
    command = naive_command(image, recipe)
    for _ in range(2):  # warm-up: the toolchain's files in the page cache, our connections
        await api_once(http, recipe)
    await naive_once(command, recipe.example)
    for _ in range(samples):
        elapsed, evaluation = await api_once(http, recipe)
        compile_seconds, run_seconds = own_time(evaluation)
        result.e2e.append(elapsed)
        result.compile.append(compile_seconds)
        result.run.append(run_seconds)
        result.overhead.append(elapsed - compile_seconds - run_seconds)
        await settle(http)  # the pool's refill is not the naive run's competition
        result.naive.append(await naive_once(command, recipe.example))


async def throughput(  # noqa: PLR0917  (one call site)
    http: httpx.AsyncClient,
    recipe: Recipe,
    isolation: str,
    count: int,
    concurrency: int,
    result: Result,
) -> None:
    programs = short_programs(recipe, count)
    await settle(http)
    # The previous run's batch sandboxes close once idle.
    await asyncio.sleep(QueueSettings().batch_sandbox_idle_seconds + 0.5)
    body = {
        "isolation": isolation,
        "evaluations": [{"code": code, "language": recipe.name} for code, _ in programs],
    }
    cpu_before = cpu_seconds()
    began = time.perf_counter()
    response = await http.post("/api/v1/evaluations/batch", json=body)
    if response.status_code != 202:
        raise Broken(f"batch refused: {response.status_code} {response.text}")
    overheads = []
    own = []
    for submitted, (_, expected) in zip(response.json()["evaluations"], programs, strict=True):
        evaluation = await verdict(http, {"id": submitted["id"]})
        check(evaluation, expected)
        compile_seconds, run_seconds = own_time(evaluation)
        own.append(compile_seconds + run_seconds)
        started = datetime.fromisoformat(evaluation["started_at"])
        finished = datetime.fromisoformat(evaluation["finished_at"])
        overheads.append((finished - started).total_seconds() - compile_seconds - run_seconds)
    wall = time.perf_counter() - began
    result.cpu[isolation] = (cpu_seconds() - cpu_before) / count
    result.rate[isolation] = count / wall
    result.batch_overhead[isolation] = overheads
    result.slot_overhead[isolation] = wall * concurrency / count - statistics.fmean(own)


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"  # NaN: not measured


def ratio_of(result: Result) -> float:
    evaluation = p50(result.batch_overhead.get("evaluation", []))
    batch = p50(result.batch_overhead.get("batch", []))
    return evaluation / batch if batch > 0 else float("inf")


def row(result: Result) -> list[str]:
    ratio = ratio_of(result)
    return [
        ms(p50(result.e2e)),
        ms(percentile(result.e2e, 0.9) if result.e2e else float("nan")),
        ms(p50(result.compile)),
        ms(p50(result.run)),
        ms(p50(result.overhead)),
        ms(p50(result.naive)),
        f"{result.rate['evaluation']:.2f}" if "evaluation" in result.rate else "-",
        f"{result.rate['batch']:.2f}" if "batch" in result.rate else "-",
        ms(p50(result.batch_overhead.get("evaluation", []))),
        ms(p50(result.batch_overhead.get("batch", []))),
        "-" if math.isnan(ratio) else f"{ratio:.1f}x",
    ]


def print_report(results: dict[str, Result], programs: int) -> None:
    header = [
        "e2e p50", "e2e p90", "compile", "run", "overhead", "naive", f"{programs}/s eval",
        f"{programs}/s batch", "ovh eval", "ovh batch", "ratio",
    ]  # fmt: skip
    widths = [max(9, len(title) + 2) for title in header]
    print(
        "milliseconds, p50 unless said; overhead = e2e - compile - run; naive = docker run "
        f"compile + run;\n{programs}/s = programs/s of one batch of {programs} (isolation "
        "evaluation, batch); ovh = per program finished_at - started_at - compile - run;\n"
        "ratio = ovh eval / ovh batch\n"
    )
    print(f"{'language':<11}" + "".join(f"{t:>{w}}" for t, w in zip(header, widths, strict=True)))
    for name, result in results.items():
        cells = "".join(f"{c:>{w}}" for c, w in zip(row(result), widths, strict=True))
        print(f"{name:<11}{cells}{'  broken' if result.error else ''}")
    print(
        "\nwith the machine full (the same batches): slot = wall x concurrency / programs "
        "- mean(compile + run); cpu = system-wide CPU ms per program"
    )
    print(
        f"{'language':<11}{'slot eval':>11}{'slot batch':>12}{'ratio':>8}{'cpu eval':>10}"
        f"{'cpu batch':>11}{'ratio':>8}"
    )
    for name, result in results.items():
        if len(result.slot_overhead) < 2 or len(result.cpu) < 2:
            continue
        slots, cpu = result.slot_overhead, result.cpu
        slot_ratio = slots["evaluation"] / slots["batch"] if slots["batch"] > 0 else float("inf")
        cpu_ratio = cpu["evaluation"] / cpu["batch"] if cpu["batch"] > 0 else float("inf")
        print(
            f"{name:<11}{ms(slots['evaluation']):>11}{ms(slots['batch']):>12}{slot_ratio:>7.1f}x"
            f"{ms(cpu['evaluation']):>10}{ms(cpu['batch']):>11}{cpu_ratio:>7.1f}x"
        )
    print(
        f"\ngoals: (a) warm e2e p50 <= compile p50 + {E2E_BUDGET * 1000:.0f} ms; "
        f"(b) overhead with batch isolation >= {RATIO_GOAL:.0f}x smaller than with evaluation"
    )
    for name, result in results.items():
        if result.error is not None:
            print(f"{name:<11}FAIL  broken: {result.error}")
            continue
        e2e, compile_ = p50(result.e2e), p50(result.compile)
        a = "PASS" if e2e <= compile_ + E2E_BUDGET else "FAIL"
        ratio = ratio_of(result)
        b = "PASS" if ratio >= RATIO_GOAL else "FAIL"
        evaluation = ms(p50(result.batch_overhead["evaluation"]))
        batch = ms(p50(result.batch_overhead["batch"]))
        a_text = f"(a) {a}  {ms(e2e)} <= {ms(compile_)} + {E2E_BUDGET * 1000:.0f}"
        print(f"{name:<11}{a_text:<36}(b) {b}  {evaluation} / {batch} = {ratio:.1f}x")


async def main() -> None:
    recipes = load_languages().recipes
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, help="latency samples per language (20)")
    parser.add_argument("--programs", type=int, help="programs per batch (100)")
    parser.add_argument("--languages", nargs="+", choices=list(recipes), default=list(recipes))
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 samples, 20 programs")
    args = parser.parse_args()
    samples = args.samples or (5 if args.quick else 20)
    programs = args.programs or (20 if args.quick else 100)
    image = ExecutionSettings().image
    results: dict[str, Result] = {}
    began = time.perf_counter()
    async with (
        serving(ASSAY_EXECUTION__ENGINE_ID="bench-languages") as url,
        httpx.AsyncClient(base_url=url, timeout=180) as http,
    ):
        queue = (await http.get("/api/v1/queue")).json()
        for name in args.languages:
            result = results[name] = Result()
            recipe = recipes[name]
            try:
                await latency(http, image, recipe, samples, result)
                for isolation in ("evaluation", "batch"):
                    await throughput(http, recipe, isolation, programs, queue["capacity"], result)
            except Broken as exc:
                result.error = str(exc)
            print(f"{name}: done ({time.perf_counter() - began:.0f} s)", flush=True)

    pool = sum(pool["target"] for pool in queue["pool"])
    print(
        f"\n{os.cpu_count()} CPUs; image {image}; platform concurrency {queue['capacity']}, "
        f"warm pool {pool}; {samples} latency samples per language, batches of {programs}\n"
    )
    print_report(results, programs)


if __name__ == "__main__":
    asyncio.run(main())
