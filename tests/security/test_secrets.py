"""Nothing of the host reaches the sandbox: its environment, the Docker socket, its paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.sandbox_spec import INIT_PATH, SANDBOX_ENV
from tests.sandbox import run

pytestmark = [pytest.mark.docker, pytest.mark.integration]


async def test_no_host_environment_leaks_in(
    engine: DockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSAY_TEST_SECRET", "hunter2-do-not-leak")
    monkeypatch.setenv("DOCKER_TOKEN", "also-secret")
    result = await run(engine, "import json, os\nprint(json.dumps(dict(os.environ)))")
    seen = json.loads(result.stdout)
    assert re.fullmatch(r"assay-[0-9a-f]{16}", seen.pop("HOSTNAME"))  # the container's name
    assert seen == SANDBOX_ENV
    assert "hunter2" not in result.stdout


async def test_no_docker_socket_and_no_host_paths(engine: DockerEngine) -> None:
    project = str(Path(__file__).resolve().parents[2])
    probes = [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/run/containerd/containerd.sock",
        project,
        "/root/.ssh",
        "/var/lib/docker",
        "/host",
    ]
    result = await run(
        engine,
        f"""
        import os
        for path in {probes!r}:
            print(path, os.path.exists(path))
        print(open("/proc/1/cmdline").read().split("\\0")[:-1])
        """,
    )
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"{path} False" for path in probes]
    assert lines[-1] == f"[{INIT_PATH!r}]", (
        "PID 1 must be our own init (its commands come in its frame)"
    )


async def test_only_docker_managed_files_are_mounted_from_the_host(engine: DockerEngine) -> None:
    """The root is the image; the only host files are the three Docker always provides.
    (Under gVisor the image, too, is served to the sandbox by its gofer, over 9p.)"""
    result = await run(
        engine,
        """
        for line in open("/proc/self/mountinfo"):
            fields = line.split()
            source_type = fields[fields.index("-") + 1]
            print(fields[4], source_type)
        """,
    )
    mounts = dict(line.split() for line in result.stdout.splitlines())
    host_backed = {
        point
        for point, kind in mounts.items()
        if kind not in {"overlay", "proc", "tmpfs", "devpts", "sysfs", "cgroup", "mqueue"}
    }
    assert host_backed - {"/"} <= {"/etc/hostname"}, host_backed
    assert mounts["/"] in {"overlay", "9p"}
    assert mounts["/workspace"] == "tmpfs"
    assert mounts["/tmp"] == "tmpfs"
