"""Plain Docker through the docker SDK, measured as bench/sandboxes.py does. Run with the
peers' venv (bench/peers/venv), the same SDK llm-sandbox uses, so this is the floor under it:

    $(bench/peers/venv) bench/peers/docker_runner.py --image assay-sandbox:7 \
        --creates 15 --execs 30 --files 5

``containers.run(detach=True)`` of the same image sleeping (the image's user, no network,
no other limits), ``exec_run`` per command, ``put_archive`` and ``get_archive`` for files
(the tar built and unpacked in memory, inside the clock).
"""

from __future__ import annotations

import io
import tarfile
from importlib.metadata import version
from pathlib import PurePosixPath

import docker
from docker.models.containers import Container
from protocol import LABEL, Payload, run_as_script


class DockerContainers:
    def __init__(self, image: str) -> None:
        self.image = image
        self.client = docker.from_env()
        self.client.images.get(image)  # raises when missing: never pulled
        engine = self.client.version()["Version"]
        self.about = f"docker SDK {version('docker')}, Docker {engine}; image's user, no network"

    def settle(self) -> None:
        pass

    def create(self) -> Container:
        return self.client.containers.run(
            self.image, ["sleep", "infinity"], detach=True, network_mode="none", labels=LABEL
        )

    def exec(self, sandbox: Container, argv: list[str]) -> bytes:
        exit_code, (stdout, stderr) = sandbox.exec_run(argv, demux=True)
        if exit_code != 0:
            raise RuntimeError(f"{argv} exited {exit_code}: {(stderr or b'')[-500:]!r}")
        return stdout or b""

    def write(self, sandbox: Container, path: str, payload: Payload) -> None:
        target = PurePosixPath(path)
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            member = tarfile.TarInfo(target.name)
            member.size = len(payload.data)
            member.mode = 0o644
            tar.addfile(member, io.BytesIO(payload.data))
        if not sandbox.put_archive(str(target.parent), archive.getvalue()):
            raise RuntimeError(f"put_archive to {target.parent} failed")

    def read(self, sandbox: Container, path: str) -> bytes:
        chunks, _ = sandbox.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.next()
            extracted = tar.extractfile(member) if member else None
            if extracted is None:
                raise RuntimeError(f"{path}: no file in the archive")
            return extracted.read()

    def delete(self, sandbox: Container) -> None:
        sandbox.remove(force=True)


if __name__ == "__main__":
    run_as_script("plain docker", DockerContainers)
