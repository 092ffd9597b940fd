"""Settings, read from the environment (prefix ``ASSAY_``, nested groups with ``__``).

Nothing is instantiated at import time: entry points build a :class:`Settings` and pass
it down, so tests can build their own.

Example: ``ASSAY_EXECUTION__MAX_TIMEOUT_SECONDS=60`` sets
``settings.execution.max_timeout_seconds``. Every setting lives in a group, except the
seed's ``EXECUTION_MODE`` and ``EXECUTION_SERVICE_URL`` and ``ASSAY_DATA_DIR``. The flat
names of earlier versions (``ASSAY_REDIS_URL``, ``ASSAY_EXECUTOR_TOKEN``,
``ASSAY_EXECUTOR_CAPACITY``) are still read, with a warning; the grouped name wins.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = [
    "SANDBOX_IMAGE_REPOSITORY",
    "SANDBOX_IMAGE_VERSION",
    "ApiSettings",
    "ExecutionSettings",
    "ExecutorSettings",
    "LiveSandboxSettings",
    "PoolProfileSettings",
    "PoolSettings",
    "QueueSettings",
    "RedisSettings",
    "Settings",
    "StorageSettings",
]

#: Bumped whenever the image recipe in ``execution_engine/image.py`` changes.
SANDBOX_IMAGE_VERSION = "7"
SANDBOX_IMAGE_REPOSITORY = "assay-sandbox"

logger = logging.getLogger(__name__)

MIB = 1024 * 1024

#: Flat names of earlier versions: (old field, group, field in the group).
DEPRECATED_NAMES = (
    ("redis_url", "redis", "url"),
    ("executor_token", "executor", "token"),
    ("executor_capacity", "executor", "capacity"),
)


class PoolProfileSettings(BaseModel):
    """An extra warm pool for requests with these limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory_mb: int = Field(ge=16)
    cpus: float = Field(gt=0)
    size: int = Field(ge=1, le=256)


class PoolSettings(BaseModel):
    """The warm pool: sandboxes started ahead of time, each used for one execution only.

    ``size`` sandboxes are kept ready with the default limits (memory, CPUs); ``profiles``
    adds pools for other limits. A request whose limits match no pool runs cold (a sandbox
    created for it), with the same verdict. ``size=0`` turns the default pool off.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(default_factory=lambda: 2 * (os.cpu_count() or 1), ge=0, le=256)
    profiles: tuple[PoolProfileSettings, ...] = ()
    #: Idle sandboxes older than this are destroyed and replaced.
    max_age_seconds: float = Field(default=300.0, gt=0)
    #: Sandboxes created at once while refilling (each start costs about 0.25 CPU-seconds).
    refill_parallelism: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)


class LiveSandboxSettings(BaseModel):
    """Live sandboxes (``/api/v1/sandboxes``): their default and largest limits, and their
    warm pool. A live sandbox keeps running between commands until it is deleted, idle for
    its idle timeout, or at its lifetime."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    default_memory_mb: int = Field(default=1024, ge=64)
    default_cpus: float = Field(default=1.0, gt=0)
    default_pids_limit: int = Field(default=256, ge=16)
    max_pids_limit: int = Field(default=4096, ge=16)
    #: Its writable directories (tmpfs, counted in its memory too): the working directory
    #: (/workspace, also HOME), /tmp and /var/tmp.
    workspace_size_mb: int = Field(default=1024, ge=16)
    tmp_size_mb: int = Field(default=512, ge=16)
    default_idle_timeout_seconds: float = Field(default=900.0, gt=0)
    max_idle_timeout_seconds: float = Field(default=86400.0, gt=0)
    default_lifetime_seconds: float = Field(default=4 * 3600.0, gt=0)
    max_lifetime_seconds: float = Field(default=24 * 3600.0, gt=0)
    #: One command: its default and largest time limit, and output cap per stream.
    default_command_timeout_seconds: float = Field(default=600.0, gt=0)
    max_command_timeout_seconds: float = Field(default=3600.0, gt=0)
    default_command_output_bytes: int = Field(default=10 * MIB, ge=1024)
    max_command_output_bytes: int = Field(default=64 * MIB, ge=1024)
    #: The largest file written into, or read from, a sandbox; and a command's stdin.
    max_file_bytes: int = Field(default=256 * MIB, ge=MIB)
    #: Started sandboxes kept ready with the default limits, once the first was asked for.
    pool_size: int = Field(default=2, ge=0, le=64)


class ExecutionSettings(BaseModel):
    """How sandboxes are run: the image, the per-request defaults and the hard maxima."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = f"{SANDBOX_IMAGE_REPOSITORY}:{SANDBOX_IMAGE_VERSION}"
    #: OCI runtime registered with Docker (for example ``runsc``, gVisor); None: Docker's default.
    #: Every sandbox proves it (the kernel it sees); ``scripts/bootstrap --runsc`` installs it.
    runtime: str | None = None
    #: A seccomp profile (Docker's JSON format) for every sandbox; None: Assay's own
    #: (``execution_engine/seccomp.json``, docs/seccomp.md).
    seccomp_profile: Path | None = None
    #: Labels every container this engine creates (with an owner id unique to the process,
    #: so that processes sharing one Docker daemon never touch each other's sandboxes,
    #: whatever ids they are given).
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

    #: Recipes of the operator's, merged over the built-in ones by name (docs/languages.md).
    languages_file: Path | None = None
    #: The languages this server runs (and its image holds); None: every recipe.
    languages: tuple[str, ...] | None = None
    max_compile_timeout_seconds: float = Field(default=120.0, gt=0)
    max_compile_memory_mb: int = Field(default=4096, ge=16)

    pids_limit: int = Field(default=128, ge=8)
    sandboxes: LiveSandboxSettings = Field(default_factory=LiveSandboxSettings)
    workspace_size_mb: int = Field(default=64, ge=1)
    tmp_size_mb: int = Field(default=64, ge=1)
    shm_size_mb: int = Field(default=16, ge=1)
    open_files_limit: int = Field(default=256, ge=16)

    pool: PoolSettings = Field(default_factory=PoolSettings)

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


class StorageSettings(BaseModel):
    """Where evaluations and their events are kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: SQLAlchemy URL; None: SQLite file ``assay.db`` in the data directory.
    #: PostgreSQL: ``postgresql+psycopg://user:password@host/db``.
    url: str | None = None


class QueueSettings(BaseModel):
    """How many evaluations run at once, and how many may wait."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    #: Queued evaluations beyond this are refused with 429 and Retry-After.
    max_queued: int = Field(default=10_000, ge=1)
    retry_after_seconds: int = Field(default=5, ge=1)
    #: Runs of one evaluation interrupted by platform restarts before it ends as ``error``.
    max_attempts: int = Field(default=3, ge=1)
    #: A running evaluation's worker renews its lease every third of this; when a worker
    #: dies, any other worker sharing the database takes its evaluations back after this.
    lease_seconds: float = Field(default=30.0, ge=3, le=3600)
    #: ``local``: workers in this process claim from the database. ``celery``: API replicas
    #: ring Celery doorbells on ``redis_url`` and ``assay worker`` processes answer them.
    backend: Literal["local", "celery"] = "local"
    #: False: this process only accepts, stores and streams; other replicas sharing its
    #: database (and ``redis_url``) run the evaluations.
    run_workers: bool = True
    #: Batch isolation: a batch's sandbox idle this long (its batch done) is destroyed.
    batch_sandbox_idle_seconds: float = Field(default=2.0, gt=0, le=600)


class RedisSettings(BaseModel):
    """Redis, when replicas share one database (``ASSAY_REDIS__URL=redis://host:6379/0``):
    it carries live notices between them (SSE and cancellation then work whichever replica a
    client talks to) and, with ``ASSAY_QUEUE__BACKEND=celery``, the doorbells."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = None


class ExecutorSettings(BaseModel):
    """The executor service (``assay executor``) and the platform's access to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Bearer token between platform and executor (``ASSAY_EXECUTOR__TOKEN``); both need it.
    token: SecretStr | None = None
    #: Slots of one executor service: executions it runs at once.
    capacity: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)


class ApiSettings(BaseModel):
    """Limits of the REST API."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_wait_seconds: float = Field(default=60.0, ge=0)
    max_batch_size: int = Field(default=500, ge=1)
    max_body_bytes: int = Field(default=32 * MIB, ge=1024)
    default_page_size: int = Field(default=50, ge=1)
    max_page_size: int = Field(default=500, ge=1)
    #: How soon an API key made or revoked with the CLI (another process) takes effect.
    key_cache_seconds: float = Field(default=2.0, ge=0, le=300)
    #: Live sandboxes one API key may hold at once (without keys: the whole server).
    max_sandboxes_per_key: int = Field(default=16, ge=1)


class Settings(BaseSettings):
    """Everything configurable in Assay."""

    model_config = SettingsConfigDict(
        env_prefix="ASSAY_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    #: Where sandboxes run: ``local`` (this process drives Docker) or ``remote`` (executor
    #: services at ``execution_service_url``). Read from EXECUTION_MODE, as the design names it.
    execution_mode: Literal["local", "remote"] = Field(
        default="local", validation_alias=AliasChoices("EXECUTION_MODE", "ASSAY_EXECUTION_MODE")
    )
    #: Comma-separated executor URLs (EXECUTION_SERVICE_URL), for ``remote`` mode.
    execution_service_url: str = Field(
        default="",
        validation_alias=AliasChoices("EXECUTION_SERVICE_URL", "ASSAY_EXECUTION_SERVICE_URL"),
    )
    #: Directory for the SQLite database and other local state (``ASSAY_DATA_DIR``).
    data_dir: Path = Path(".assay")
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_names(cls, data: Any) -> Any:
        """``Settings(redis_url=…)`` and the other flat names of earlier versions."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, group, name in DEPRECATED_NAMES:
            if old not in data:
                continue
            value = data.pop(old)
            nested = data.get(group) or {}
            if isinstance(nested, BaseModel):
                nested = nested.model_dump()
            data[group] = {**nested, name: value}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        deprecated = _DeprecatedEnv(settings_cls)
        return init_settings, env_settings, deprecated, dotenv_settings, file_secret_settings

    @property
    def bus_backend(self) -> Literal["memory", "redis"]:
        """Where live notices travel: this process only, or Redis between replicas."""
        return "memory" if self.redis.url is None else "redis"

    def executor_urls(self) -> list[str]:
        return [
            url.strip().rstrip("/") for url in self.execution_service_url.split(",") if url.strip()
        ]

    def storage_url(self) -> str:
        """The configured database URL, or the SQLite file in ``data_dir``."""
        if self.storage.url:
            return self.storage.url
        return f"sqlite:///{(self.data_dir / 'assay.db').resolve()}"


class _DeprecatedEnv(EnvSettingsSource):
    """``ASSAY_REDIS_URL`` and the other flat names of earlier versions, as their groups."""

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for old, group, name in DEPRECATED_NAMES:
            value = os.environ.get(f"ASSAY_{old.upper()}")
            if value is None:
                continue
            new = f"ASSAY_{group.upper()}__{name.upper()}"
            logger.warning("ASSAY_%s is deprecated; use %s", old.upper(), new)
            found.setdefault(group, {})[name] = value
        return found

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False
