"""Where the CPU time of one fresh sandbox goes: Docker's create -> start -> wait -> remove
cycle of a container running ``true``, one after another, with Assay's sandbox settings
added one group at a time, and with Docker's networking enabled (as sandboxes were created
before issue 18) or disabled (as they are now).

    .venv/bin/python bench/fresh_sandbox_cpu.py            # 30 cycles per variant
    .venv/bin/python bench/fresh_sandbox_cpu.py -n 60

Per variant: wall time and the machine's busy CPU time per cycle (/proc/stat), and the
shares of dockerd, containerd and this process (the client); the rest is the shims, runc,
the container's processes and the kernel. Every variant's first cycle is untimed. Compare
within one run: absolute figures on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import docker

from assay.config import ExecutionSettings
from assay.execution_engine.sandbox_spec import SANDBOX_UID
from peers.sdk_runner import CpuClock

SECCOMP = Path(__file__).parents[1] / "src/assay/execution_engine/seccomp.json"


def variants(seccomp: str) -> dict[str, dict[str, Any]]:
    """Host configs, from Docker's defaults (no network) to all of Assay's settings."""
    bare: dict[str, Any] = {"NetworkMode": "none"}
    limits = {"PidsLimit": 128, "Memory": 256 << 20, "MemorySwap": 256 << 20, "NanoCpus": 10**9}
    filesystem = {
        "ReadonlyRootfs": True,
        "Tmpfs": {
            "/workspace": f"rw,exec,nosuid,nodev,size=64m,uid={SANDBOX_UID},mode=0700",
            "/tmp": "rw,nosuid,nodev,noexec,size=64m,mode=1777",  # noqa: S108  (inside)
        },
    }
    privileges = {
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges:true", f"seccomp={seccomp}"],
    }
    rest = {
        "Ulimits": [{"Name": "nofile", "Soft": 256, "Hard": 256}],
        "IpcMode": "private",
        "ShmSize": 64 << 20,
        "LogConfig": {"Type": "none", "Config": {}},
    }
    return {
        "no network": bare,
        "+ limits (pids, memory, CFS quota)": {**bare, **limits},
        "+ read-only root, 2 tmpfs": {**bare, **limits, **filesystem},
        "+ no capabilities, seccomp": {**bare, **limits, **filesystem, **privileges},
        "+ ulimits, IPC, no log driver (all)": {
            **bare,
            **limits,
            **filesystem,
            **privileges,
            **rest,
        },
    }


def cycle(api: docker.APIClient, image: str, host: dict[str, Any], *, networking: bool) -> None:
    container = api.create_container(
        image,
        ["true"],
        user=f"{SANDBOX_UID}:{SANDBOX_UID}",
        host_config=host,
        network_disabled=not networking,
        labels={"assay.bench": "fresh-sandbox-cpu"},
    )
    try:
        api.start(container)
        api.wait(container)
    finally:
        api.remove_container(container, force=True)


def measure(api: docker.APIClient, image: str, host: dict[str, Any], n: int, **how: bool) -> str:
    cycle(api, image, host, **how)
    clock, began = CpuClock(), time.perf_counter()
    for _ in range(n):
        cycle(api, image, host, **how)
    wall = time.perf_counter() - began
    busy, share = clock.read()  # no server here: its share is 0, the rest is what it was
    cells = [wall, busy, share["dockerd"], share["containerd"], share["client"], share["rest"]]
    return "".join(f"{value / n * 1000:>11.1f}" for value in cells)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=30, help="cycles per variant (30)")
    args = parser.parse_args()
    image = ExecutionSettings().image
    api = docker.APIClient(timeout=60)
    api.inspect_image(image)  # raises when missing: nothing is pulled
    header = ("wall ms", "CPU ms", "dockerd", "containerd", "client", "rest")
    print(f"\n{args.n} cycles each of create -> start -> wait -> remove, `true`, {image}\n")
    print(f"{'networking':<12}{'settings':<38}" + "".join(f"{h:>11}" for h in header))
    for name, host in variants(SECCOMP.read_text()).items():
        for networking in (True, False):
            row = measure(api, image, host, args.n, networking=networking)
            label = "enabled" if networking else "disabled"
            print(f"{label:<12}{name:<38}{row}", flush=True)


if __name__ == "__main__":
    main()
