"""HumanEval through epicbox 1.1.0, one fresh container per problem, measured as
bench/humaneval_peers.py measures every runner. Run with epicbox's venv (it needs urllib3<2):

    $(bench/peers/epicbox-venv) bench/peers/epicbox_runner.py --image assay-sandbox:7 \
        --problems 164 --concurrency 1 4

``epicbox.run`` with one profile on the local image (epicbox only ever creates containers
of a profile's image, it never pulls; the image is checked to be there first): the program
written to ``main.py`` in its working directory, ``python3 main.py``, 10 s wall-clock and
CPU, 256 MiB, 128 PIDs, no network, the image's user. It passes when it exits 0 (no
timeout, no OOM). Its containers are named ``epicbox-<uuid>``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

import docker
import epicbox
from sdk_runner import MEMORY_MB, PIDS, TIMEOUT_SECONDS, run_as_script

PROFILE = "python"
LIMITS = {
    "cputime": TIMEOUT_SECONDS,
    "realtime": TIMEOUT_SECONDS,
    "memory": MEMORY_MB,
    "processes": PIDS,
}


def make(image: str) -> tuple[Callable[[str], None], str]:
    client = docker.from_env()
    client.images.get(image)  # raises when missing
    # user=None: the image's user (epicbox's default is root)
    epicbox.configure(profiles=[epicbox.Profile(PROFILE, image, user=None)])

    def evaluate(program: str) -> None:
        result = epicbox.run(
            PROFILE,
            "python3 main.py",
            files=[{"name": "main.py", "content": program.encode()}],
            limits=LIMITS,
        )
        if result["exit_code"] != 0 or result["timeout"] or result["oom_killed"]:
            stderr = result["stderr"][-300:]
            raise RuntimeError(
                f"exit {result['exit_code']}, timeout {result['timeout']}, "
                f"oom {result['oom_killed']}: {stderr!r}"
            )

    engine = client.version()["Version"]
    about = (
        f"epicbox {version('epicbox')} (docker SDK {version('docker')}, urllib3 "
        f"{version('urllib3')}), Docker {engine}; no network, {MEMORY_MB} MiB, "
        f"{PIDS} PIDs, {TIMEOUT_SECONDS} s, image's user"
    )
    return evaluate, about


if __name__ == "__main__":
    run_as_script("epicbox", make)
