"""Settings, read from the environment (prefix ``ASSAY_``, nested groups with ``__``).

Nothing is instantiated at import time: entry points build a :class:`Settings` and pass
it down, so tests can build their own.

Example: ``ASSAY_EXECUTION__MAX_TIMEOUT_SECONDS=60`` sets
``settings.execution.max_timeout_seconds``.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SANDBOX_IMAGE_REPOSITORY", "SANDBOX_IMAGE_VERSION", "ExecutionSettings", "Settings"]

#: Bumped whenever the image recipe in ``execution_engine/image.py`` changes.
SANDBOX_IMAGE_VERSION = "1"
SANDBOX_IMAGE_REPOSITORY = "assay-sandbox-python"

MIB = 1024 * 1024


class ExecutionSettings(BaseModel):
    """How sandboxes are run: the image, the per-request defaults and the hard maxima."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = f"{SANDBOX_IMAGE_REPOSITORY}:{SANDBOX_IMAGE_VERSION}"
    #: OCI runtime registered with Docker (for example ``runsc``, gVisor); None: Docker's default.
    runtime: str | None = None
    #: Labels every container this engine creates; on start the engine removes containers left
    #: with its id by an earlier crash. Engines sharing one Docker daemon need distinct ids.
    engine_id: str = Field(default="local", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    #: Docker endpoint (``unix:///var/run/docker.sock``); None: ``DOCKER_HOST`` or the default.
    docker_host: str | None = None
    docker_api_timeout_seconds: float = Field(default=60.0, gt=0)

    default_timeout_seconds: float = Field(default=10.0, gt=0)
    max_timeout_seconds: float = Field(default=300.0, gt=0)
    default_memory_mb: int = Field(default=256, ge=16)
    max_memory_mb: int = Field(default=4096, ge=16)
    default_cpus: float = Field(default=1.0, gt=0)
    max_cpus: float = Field(default_factory=lambda: float(os.cpu_count() or 1), gt=0)
    default_output_limit_bytes: int = Field(default=1 * MIB, gt=0)
    max_output_limit_bytes: int = Field(default=16 * MIB, gt=0)

    max_code_bytes: int = Field(default=1 * MIB, gt=0)
    max_stdin_bytes: int = Field(default=8 * MIB, ge=0)
    max_files: int = Field(default=32, ge=0)
    max_files_bytes: int = Field(default=1 * MIB, ge=0)

    pids_limit: int = Field(default=128, ge=8)
    workspace_size_mb: int = Field(default=64, ge=1)
    tmp_size_mb: int = Field(default=64, ge=1)
    shm_size_mb: int = Field(default=16, ge=1)
    open_files_limit: int = Field(default=256, ge=16)

    @model_validator(mode="after")
    def _defaults_within_maxima(self) -> ExecutionSettings:
        pairs = [
            ("timeout_seconds", self.default_timeout_seconds, self.max_timeout_seconds),
            ("memory_mb", self.default_memory_mb, self.max_memory_mb),
            ("cpus", self.default_cpus, self.max_cpus),
            ("output_limit_bytes", self.default_output_limit_bytes, self.max_output_limit_bytes),
        ]
        for name, default, maximum in pairs:
            if default > maximum:
                raise ValueError(f"default_{name} ({default}) exceeds max_{name} ({maximum})")
        return self


class Settings(BaseSettings):
    """Everything configurable in Assay."""

    model_config = SettingsConfigDict(
        env_prefix="ASSAY_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
