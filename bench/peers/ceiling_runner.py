"""The machine's two ceilings for HumanEval, measured as bench/humaneval_peers.py measures
every runner. Run with epicbox's venv (bench/peers/epicbox-venv), which has the docker SDK:

    $(bench/peers/epicbox-venv) bench/peers/ceiling_runner.py --image assay-sandbox:7 \
        --concurrency 1 4              # the cheapest fresh container per program
    $(bench/peers/epicbox-venv) bench/peers/ceiling_runner.py --image assay-sandbox:7 \
        --processes --concurrency 2    # plain processes in one container

- Fresh containers: the cheapest create -> start -> wait -> remove cycle Docker allows here,
  through its API (the docker SDK's low-level client): networking disabled (its own empty
  network namespace, no libnetwork hook), the limits the others get (256 MiB without swap,
  128 PIDs), nothing else: no attach, no log reading (the exit code is the verdict), root
  filesystem writable. The ceiling of every fresh-sandbox runner.
- ``--processes``: every program as a plain ``python3`` process inside one container, N at
  a time (a driver in the container; its wall time from the container's start to its
  exit): the ceiling of batch isolation, which runs programs one after another in shared
  sandboxes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import time
from collections.abc import Callable
from importlib.metadata import version

import docker
from sdk_runner import (
    LABEL,
    MEMORY_MB,
    PIDS,
    TIMEOUT_SECONDS,
    CpuClock,
    Run,
    load_programs,
    run_as_script,
)

#: Runs /tmp/programs.json's programs, ``argv[1]`` at a time, each `python3 -c` with the
#: time limit; prints each one's seconds and its failures as JSON.
DRIVER = f"""
import json, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
programs = json.load(open("/tmp/programs.json"))
def one(program):
    began = time.perf_counter()
    try:
        done = subprocess.run(["python3", "-c", program], capture_output=True,
                              timeout={TIMEOUT_SECONDS})
        failure = None if done.returncode == 0 else f"exit {{done.returncode}}"
    except subprocess.TimeoutExpired:
        failure = "timed out"
    return time.perf_counter() - began, failure
with ThreadPoolExecutor(int(sys.argv[1])) as pool:
    results = list(pool.map(one, programs))
json.dump({{"latencies": [r[0] for r in results],
           "failures": [r[1] for r in results if r[1]]}}, sys.stdout)
"""


def cheapest(image: str) -> tuple[Callable[[str], None], str]:
    api = docker.APIClient(timeout=60)
    api.inspect_image(image)  # raises when missing: nothing is pulled
    host = api.create_host_config(
        network_mode="none",
        mem_limit=f"{MEMORY_MB}m",
        memswap_limit=f"{MEMORY_MB}m",
        pids_limit=PIDS,
    )

    def evaluate(program: str) -> None:
        container = api.create_container(
            image,
            ["timeout", "-s", "KILL", str(TIMEOUT_SECONDS), "python3", "-c", program],
            network_disabled=True,
            host_config=host,
            labels=LABEL,
        )
        try:
            api.start(container)
            code = api.wait(container)["StatusCode"]
        finally:
            api.remove_container(container)
        if code != 0:
            raise RuntimeError(f"exit {code}")

    engine = api.version()["Version"]
    about = (
        f"docker SDK {version('docker')} APIClient create/start/wait/remove, Docker {engine}; "
        f"networking disabled, {MEMORY_MB} MiB, {PIDS} PIDs, image's user, no attach, no logs"
    )
    return evaluate, about


def processes(image: str, programs: list[str], concurrency: int) -> Run:
    """One container, every program a process in it, ``concurrency`` at a time."""
    api = docker.APIClient(timeout=600)
    api.inspect_image(image)
    host = api.create_host_config(
        network_mode="none", mem_limit="1g", memswap_limit="1g", pids_limit=PIDS * concurrency
    )
    container = api.create_container(
        image,
        ["python3", "-c", DRIVER, str(concurrency)],
        network_disabled=True,
        host_config=host,
        labels=LABEL,
    )
    try:
        data = json.dumps(programs).encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo("programs.json")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        api.put_archive(container, "/tmp", archive.getvalue())  # noqa: S108  (in the container)
        clock, client, began = CpuClock(), time.process_time(), time.perf_counter()
        api.start(container)
        code = api.wait(container)["StatusCode"]
        seconds = time.perf_counter() - began
        busy, breakdown = clock.read()
        output = api.logs(container, stdout=True, stderr=False)
        if code != 0:
            errors = api.logs(container, stdout=False, stderr=True).decode(errors="replace")
            raise RuntimeError(f"the driver exited {code}: {errors[-500:]}")
    finally:
        api.remove_container(container, force=True)
    report = json.loads(output)
    return Run(
        concurrency,
        len(programs),
        seconds,
        report["latencies"],
        busy,
        time.process_time() - client,
        report["failures"],
        breakdown,
    )


def main() -> None:
    if "--processes" not in sys.argv:
        run_as_script("cheapest fresh container", cheapest)
        return
    parser = argparse.ArgumentParser(description="HumanEval as processes in one container")
    parser.add_argument("--processes", action="store_true", required=True)
    parser.add_argument("--image", required=True, help="a local image, never pulled")
    parser.add_argument("--problems", type=int, help="the first N problems (all 164)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[os.cpu_count() or 1])
    args = parser.parse_args()
    programs = load_programs(args.problems)
    runs = [processes(args.image, programs, n).__dict__ for n in args.concurrency]
    about = (
        f"one container (docker SDK {version('docker')}), every program a python3 process "
        "in it, run by a driver there; wall time from its start to its exit"
    )
    print(json.dumps({"name": "processes", "about": about, "runs": runs}))
    if any(run["failures"] for run in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
