"""The reaper: removes an engine's containers once the engine's process is gone.

A sandbox's lifeline (its attach, see ``docker_engine.py``) ends every sandbox that was
started; the reaper covers what the lifeline cannot: a container created by a process that
died before it attached to it, which stays ``created`` and runs nothing. Each
:class:`DockerEngine` starts one reaper (``python -m assay.execution_engine.reaper OWNER``)
in a session of its own and holds the write end of its stdin; when that closes (the engine
closed, or its process died, SIGKILL included), the reaper removes every container labelled
with the owner id, in any state, and exits; unless the engine said first that it closed
cleanly. It imports the Docker SDK only when it has work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

__all__ = ["CLEAN_CLOSE", "start_reaper"]

#: What an engine writes to its reaper once it has removed every sandbox of its own.
CLEAN_CLOSE = b"closed\n"

#: Rounds of removal after the owner is gone: a create call in flight may still land.
_ROUNDS = 3
_ROUND_GAP_SECONDS = 1.0


def start_reaper(owner: str, docker_host: str | None) -> subprocess.Popen[bytes]:
    """Start the reaper of ``owner``'s containers; close its ``stdin`` to set it off."""
    env = dict(os.environ)
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return subprocess.Popen(
        [sys.executable, "-m", "assay.execution_engine.reaper", owner],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # signals to the owner's process group do not reach it
        close_fds=True,
    )


def _main(owner: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    said = b""
    while chunk := sys.stdin.buffer.read(4096):
        said += chunk[:16]
    if said.startswith(CLEAN_CLOSE):
        return 0  # the engine closed and removed its sandboxes itself
    from assay.errors import ExecutionError  # noqa: PLC0415 - only once the owner is gone
    from assay.execution_engine.docker_daemon import DockerDaemon  # noqa: PLC0415
    from assay.execution_engine.sandbox_spec import LABEL_OWNER  # noqa: PLC0415

    try:
        daemon = DockerDaemon(os.environ.get("DOCKER_HOST"), timeout=30)
    except ExecutionError:
        return 1
    try:
        for round_ in range(_ROUNDS):
            for container_id in daemon.container_ids({LABEL_OWNER: owner}):
                daemon.remove(container_id)
            if round_ + 1 < _ROUNDS:
                time.sleep(_ROUND_GAP_SECONDS)
    except ExecutionError:
        return 1
    finally:
        daemon.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
