"""llm-sandbox's ``SandboxSession`` (Docker backend), measured as bench/sandboxes.py does.
Run with the peers' venv (bench/peers/venv), not the project's:

    $(bench/peers/venv) bench/peers/llm_sandbox_runner.py --image assay-sandbox:7 \
        --creates 15 --execs 30 --files 5

The same local image as Assay's, never pulled (it is looked up first, and a missing image is
an error; ``keep_template`` so the session never removes it); no environment setup (no venv,
no pip: the image has what the commands need); no network. Otherwise the session's
defaults: it runs as root, with a TTY, in the container's writable layer. Commands go
through ``execute_command`` (a string, which docker-py splits back into the same argv),
files through ``copy_to_runtime`` and ``copy_from_runtime`` (local files: the payload is
written to one before the clock, and the read includes loading the copy back).
"""

from __future__ import annotations

import shlex
import tempfile
from importlib.metadata import version
from pathlib import Path

import docker
from llm_sandbox import SandboxSession
from llm_sandbox.docker import SandboxDockerSession
from protocol import LABEL, Payload, run_as_script


class LlmSandboxSessions:
    def __init__(self, image: str) -> None:
        self.image = image
        self.client = docker.from_env()
        self.client.images.get(image)  # raises when missing: the session would pull it
        self.local = Path(tempfile.mkdtemp(prefix="assay-bench-llm-sandbox-"))
        engine = self.client.version()["Version"]
        self.about = (
            f"llm-sandbox {version('llm-sandbox')}, docker SDK {version('docker')}, "
            f"Docker {engine}; root, no network"
        )

    def settle(self) -> None:
        pass

    def create(self) -> SandboxDockerSession:
        session = SandboxSession(
            client=self.client,
            lang="python",
            image=self.image,
            keep_template=True,
            skip_environment_setup=True,
            workdir="/workspace",
            # The image's own command is Assay's init, which waits for a frame on stdin.
            runtime_configs={
                "command": ["sleep", "infinity"],
                "network_mode": "none",
                "labels": LABEL,
            },
        )
        assert isinstance(session, SandboxDockerSession)
        session.open()
        return session

    def exec(self, sandbox: SandboxDockerSession, argv: list[str]) -> bytes:
        result = sandbox.execute_command(shlex.join(argv))
        if result.exit_code != 0:
            raise RuntimeError(f"{argv} exited {result.exit_code}: {result.stderr[-500:]}")
        return result.stdout.encode()

    def write(self, sandbox: SandboxDockerSession, path: str, payload: Payload) -> None:
        sandbox.copy_to_runtime(str(payload.path), path)

    def read(self, sandbox: SandboxDockerSession, path: str) -> bytes:
        copy = self.local / "read.bin"
        sandbox.copy_from_runtime(path, str(copy))
        return copy.read_bytes()

    def delete(self, sandbox: SandboxDockerSession) -> None:
        # sleep as PID 1 ignores the SIGTERM of close()'s stop: kill it, then close.
        sandbox.container.kill()
        sandbox.close()


if __name__ == "__main__":
    run_as_script("llm-sandbox", LlmSandboxSessions)
