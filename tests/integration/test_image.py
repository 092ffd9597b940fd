"""`assay image build --base-image`: the route for users who can pull an image. Our machines
reach no registry, so the base here is the locally built sandbox image itself."""

from __future__ import annotations

import pytest

from assay.config import SANDBOX_IMAGE_VERSION
from assay.errors import ImageBuildError, SandboxImageNotFoundError
from assay.execution_engine import ExecutionStatus
from assay.execution_engine.docker_daemon import DockerDaemon
from assay.execution_engine.docker_engine import DockerEngine
from assay.execution_engine.image import build_image, image_status
from tests.sandbox import make_settings, run

pytestmark = [pytest.mark.docker, pytest.mark.integration, pytest.mark.slow]

DERIVED = "assay-sandbox:test-from-base"


async def test_build_from_a_base_image_runs_programs_the_same_way() -> None:
    base = make_settings().image
    settings = make_settings(image=DERIVED, languages=("python",))
    lines: list[str] = []
    try:
        assert build_image(settings, base_image=base, log=lines.append) == DERIVED
        status = image_status(settings)
        assert status.exists and status.version == SANDBOX_IMAGE_VERSION
        assert status.languages == {"python": "unknown"}, "Python only, from a base image"
        every_language = DockerEngine(make_settings(image=DERIVED))
        try:
            with pytest.raises(SandboxImageNotFoundError, match="has no javascript"):
                await every_language.start()
        finally:
            await every_language.close()
        engine = DockerEngine(settings)
        try:
            result = await run(engine, "import os, sys\nprint(os.getuid(), sys.version_info[0])")
        finally:
            await engine.close()
        assert result.status is ExecutionStatus.COMPLETED, result
        assert result.stdout == "10001 3\n"
    finally:
        daemon = DockerDaemon(None, timeout=60)
        daemon.remove_image(DERIVED)
        daemon.close()


def test_a_base_image_that_is_not_present_is_not_pulled() -> None:
    with pytest.raises(ImageBuildError, match=r"docker pull python:0\.0-absent"):
        build_image(make_settings(image=DERIVED), base_image="python:0.0-absent")
