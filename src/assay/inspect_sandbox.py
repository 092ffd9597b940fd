"""Assay as a sandbox provider for Inspect (``inspect eval task.py --sandbox assay``).

Each sample gets one live Assay sandbox per environment name (``default`` unless the config
names others), created through the REST API and deleted when the sample ends. The provider is
registered under the name ``assay`` through the ``inspect_ai`` entry-point group, so
installing Assay with its ``inspect`` extra is all Inspect needs.

Its config, :class:`AssayConfig`, comes from ``ASSAY_URL`` and ``ASSAY_API_KEY``, and can be
given instead as a YAML or JSON file (``--sandbox assay:assay.yaml``, or ``assay.yaml`` next
to the task) or as an ``AssayConfig`` passed as Inspect's sandbox config.

What Assay answers is translated here into what Inspect's contract names::

    exec         a command at its timeout (its tree killed)  -> TimeoutError
                 exec_failure permission_denied              -> PermissionError
                 output truncated at Inspect's limit         -> OutputLimitExceededError
    read_file,   SandboxFileNotFoundError                    -> FileNotFoundError
    write_file   SandboxPermissionError                      -> PermissionError
                 SandboxIsADirectoryError                    -> IsADirectoryError
    read_file    SandboxFileTooLargeError (Inspect's limit)  -> OutputLimitExceededError
    any          UserUnsupportedError                        -> SandboxUserUnsupportedError
                 SandboxNotFoundError, SandboxEndedError, SandboxLostError,
                 ServerUnreachableError, a cleaned-up sample -> SandboxUnavailableError
                 InvalidRequestError                         -> ValueError
                 any other AssayError                        -> RuntimeError

A non-zero exit, a missing program (127) or an unknown user of a root sandbox is an
``ExecResult``, not an exception.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, overload

import anyio
import yaml
from inspect_ai._util.error import PrerequisiteError
from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxConnection,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    SandboxUnavailableError,
    SandboxUserUnsupportedError,
    sandboxenv,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from typing_extensions import override

from assay.api.schemas import SandboxOut
from assay.client import DEFAULT_URL, AsyncAssayClient, CommandOutput
from assay.errors import (
    AssayError,
    AuthenticationError,
    InvalidRequestError,
    SandboxEndedError,
    SandboxFileNotFoundError,
    SandboxFileTooLargeError,
    SandboxIsADirectoryError,
    SandboxLostError,
    SandboxNotFoundError,
    SandboxPermissionError,
    ServerUnreachableError,
    UserUnsupportedError,
)

__all__ = [
    "CONFIG_FILES",
    "LABEL_PROVIDER",
    "PROVIDER",
    "AssayConfig",
    "AssaySandboxEnvironment",
]

logger = logging.getLogger(__name__)

#: The provider's name in Inspect, and the value of :data:`LABEL_PROVIDER` on every sandbox
#: it creates (what ``inspect sandbox cleanup assay`` looks for).
PROVIDER = "assay"
LABEL_PROVIDER = "inspect.provider"
LABEL_TASK = "inspect.task"
LABEL_SAMPLE = "inspect.sample"
LABEL_EPOCH = "inspect.epoch"
LABEL_EVAL = "inspect.eval"
LABEL_ENVIRONMENT = "inspect.environment"
_MAX_LABEL_VALUE = 256

#: Config files Inspect looks for next to the task when ``--sandbox assay`` names none.
CONFIG_FILES = ["assay.yaml", "assay.yml", "assay.json"]


class AssayConfig(BaseModel):
    """Where the Assay server is, and the sandboxes to create for each sample.

    ``url`` and ``api_key`` left out are read from ``ASSAY_URL`` and ``ASSAY_API_KEY`` when
    the provider connects. The API key is never written to Inspect's log. Limits left out
    take the server's defaults (``ASSAY_EXECUTION__SANDBOXES__*``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    url: str | None = Field(default=None, description="The Assay server; default ASSAY_URL.")
    api_key: SecretStr | None = Field(
        default=None, exclude=True, description="Its API key; default ASSAY_API_KEY."
    )
    environments: list[str] = Field(
        default_factory=lambda: ["default"],
        min_length=1,
        description="One sandbox per name for each sample; the first is sandbox().",
    )
    memory_mb: int | None = None
    cpus: float | None = Field(default=None, gt=0)
    pids_limit: int | None = None
    idle_timeout_seconds: float | None = Field(default=None, gt=0)
    lifetime_seconds: float | None = Field(default=None, gt=0)
    user: Literal["sandbox", "root"] = Field(
        default="sandbox",
        description="'root' sandboxes may run commands as any user (prefer gVisor for them).",
    )
    language: str | None = None
    image: str | None = None
    labels: dict[str, str] = Field(default_factory=dict, description="Added to every sandbox.")
    request_timeout_seconds: float = Field(
        default=60.0, gt=0, description="HTTP timeout of a call (a command waits longer)."
    )

    def __hash__(self) -> int:
        # Inspect keeps sandbox specs, config included, in sets.
        return hash(self.model_dump_json())

    def server_url(self) -> str:
        return self.url or os.environ.get("ASSAY_URL") or DEFAULT_URL

    def client(self) -> AsyncAssayClient:
        """A client of the configured server (use it in one event loop, then close it)."""
        key = self.api_key.get_secret_value() if self.api_key else os.environ.get("ASSAY_API_KEY")
        return AsyncAssayClient(
            self.server_url(), api_key=key or None, timeout=self.request_timeout_seconds
        )

    @classmethod
    def from_file(cls, path: str | Path) -> AssayConfig:
        """The config in a YAML or JSON file (JSON is YAML too)."""
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: an Assay sandbox config is a mapping of its fields")
        return cls.model_validate(data)


@dataclass(frozen=True, slots=True)
class _Made:
    """A sandbox this process created and has not deleted yet."""

    sandbox_id: str
    config: AssayConfig


@sandboxenv(name=PROVIDER)
class AssaySandboxEnvironment(SandboxEnvironment):
    """One live Assay sandbox, seen through Inspect's ``SandboxEnvironment`` contract.

    Its commands run as the sandbox's user (``sandbox``, uid 10001, unless the config asks
    for ``root``), in /workspace (its HOME and working directory; relative paths are
    relative to it), with a read-only root filesystem and writable /workspace, /tmp and
    /var/tmp. It has no network.
    """

    #: Config files read once at task start (where relative paths are the task's), by the
    #: string Inspect passes as the config.
    _configs: ClassVar[dict[str, AssayConfig]] = {}
    #: Sandboxes created and not yet deleted, for task_cleanup.
    _made: ClassVar[dict[str, _Made]] = {}

    def __init__(self, sandbox: SandboxOut, client: AsyncAssayClient, config: AssayConfig) -> None:
        super().__init__()
        self.sandbox = sandbox
        self._client = client
        self._config = config
        self._cleaned_up = False

    @property
    def client(self) -> AsyncAssayClient:
        """The sample's client; SandboxUnavailableError once its sample was cleaned up."""
        if self._cleaned_up:
            raise SandboxUnavailableError(f"Assay sandbox {self.sandbox.id} was cleaned up")
        return self._client

    # -- the task and the sample ----------------------------------------------------------

    @classmethod
    def config_files(cls) -> list[str]:
        return list(CONFIG_FILES)

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return AssayConfig.model_validate(config)

    @classmethod
    def default_concurrency(cls) -> int | None:
        # Half the server's default limit of live sandboxes per API key (16).
        return 8

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        """Reads the config (a file's path is the task's) and checks that the server
        answers and takes the API key."""
        resolved = cls._resolve(config)
        async with resolved.client() as client:
            try:
                await client.list_sandboxes(state="running")
            except (ServerUnreachableError, AuthenticationError) as exc:
                raise PrerequisiteError(
                    f"Assay sandbox provider: {exc.message} (set ASSAY_URL and ASSAY_API_KEY, "
                    "or url and api_key in the sandbox config)"
                ) from exc

    @classmethod
    async def sample_init(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, metadata: dict[str, str]
    ) -> dict[str, SandboxEnvironment]:
        """Creates one sandbox per environment name of the config, labelled with the task,
        sample, epoch and eval; if one cannot be created, deletes those that were."""
        resolved = cls._resolve(config)
        client = resolved.client()
        environments: dict[str, AssaySandboxEnvironment] = {}
        try:
            for name in resolved.environments:
                labels = {**resolved.labels, **_labels(task_name, metadata, name)}
                with _sandbox_errors():
                    created = await client.create_sandbox(
                        memory_mb=resolved.memory_mb,
                        cpus=resolved.cpus,
                        pids_limit=resolved.pids_limit,
                        idle_timeout_seconds=resolved.idle_timeout_seconds,
                        lifetime_seconds=resolved.lifetime_seconds,
                        labels=labels,
                        language=resolved.language,
                        image=resolved.image,
                        user=resolved.user,
                    )
                cls._made[created.id] = _Made(created.id, resolved)
                environments[name] = cls(created, client, resolved)
        except BaseException:
            with anyio.CancelScope(shield=True):  # a cancelled sample leaves none behind
                await cls._delete_all(client, environments)
                await client.close()
            raise
        return dict(environments)

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        """Deletes the sample's sandboxes (task_cleanup retries any that fail)."""
        mine = {k: v.as_type(cls) for k, v in environments.items()}
        clients = {id(env._client): env._client for env in mine.values()}
        for client in clients.values():
            await cls._delete_all(client, mine)
            await client.close()
        for env in mine.values():
            env._cleaned_up = True

    @classmethod
    async def task_cleanup(
        cls, task_name: str, config: SandboxEnvironmentConfigType | None, cleanup: bool
    ) -> None:
        """Deletes the sandboxes no sample cleanup deleted; with ``cleanup=False``
        (``--no-sandbox-cleanup``) leaves them running and prints how to remove them."""
        made, cls._made = list(cls._made.values()), {}
        if not made:
            return
        if not cleanup:
            # Inspect's own providers tell the console user the same way.
            lines = [f"Assay sandboxes left running ({len(made)}):"]
            lines += [f"  {m.sandbox_id}  (at {m.config.server_url()})" for m in made]
            lines.append("Remove one with `inspect sandbox cleanup assay ID`")
            lines.append(
                "(or `assay sandbox rm ID`); all of them: `inspect sandbox cleanup assay`."
            )
            print("\n".join(lines))
            return
        for config_made in _by_config(made).values():
            async with config_made[0].config.client() as client:
                for m in config_made:
                    await _delete(client, m.sandbox_id)

    @classmethod
    async def cli_cleanup(cls, id: str | None) -> None:
        """``inspect sandbox cleanup assay [ID]``: deletes sandbox ``ID``, or every running
        sandbox this provider created, on the server of ``ASSAY_URL``."""
        async with AssayConfig().client() as client:
            if id is not None:
                try:
                    await client.delete_sandbox(id)
                except SandboxNotFoundError:
                    print(f"no Assay sandbox {id}")
                    return
                print(f"removed Assay sandbox {id}")
                return
            running = await client.list_sandboxes(state="running")
            ours = [s for s in running if s.labels.get(LABEL_PROVIDER) == PROVIDER]
            for sandbox in ours:
                await _delete(client, sandbox.id)
            print(f"removed {len(ours)} Assay sandbox(es) made by Inspect")

    @classmethod
    def _resolve(cls, config: SandboxEnvironmentConfigType | None) -> AssayConfig:
        if config is None:
            return AssayConfig()
        if isinstance(config, AssayConfig):
            return config
        if isinstance(config, str):
            if config not in cls._configs:
                cls._configs[config] = AssayConfig.from_file(config)
            return cls._configs[config]
        raise TypeError(
            f"the assay sandbox takes an AssayConfig or a config file, not {type(config).__name__}"
        )

    @classmethod
    async def _delete_all(
        cls, client: AsyncAssayClient, environments: dict[str, AssaySandboxEnvironment]
    ) -> None:
        for env in environments.values():
            if env._client is client and await _delete(client, env.sandbox.id):
                cls._made.pop(env.sandbox.id, None)

    # -- one sandbox ----------------------------------------------------------------------

    @override
    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        """Runs ``cmd`` through Assay's exec; ``timeout`` None is the server's default
        command limit. ``timeout_retry`` and ``concurrency`` do not apply: a command at its
        limit was killed by the sandbox (no transport hung), and nothing runs locally."""
        limit = SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE
        with _sandbox_errors():
            out = await self.client.exec(
                self.sandbox.id,
                cmd,
                input=input,
                cwd=cwd,
                env=env,
                user=user,
                timeout=timeout,
                output_limit_bytes=limit,
            )
        return _exec_result(out, cmd, user, timeout)

    @override
    async def write_file(self, file: str, contents: str | bytes) -> None:
        with _sandbox_errors(), _file_errors(file):
            await self.client.write_file(self.sandbox.id, file, contents)

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    @override
    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        limit = SandboxEnvironmentLimits.MAX_READ_FILE_SIZE
        with _sandbox_errors(), _file_errors(file):
            try:
                data = await self.client.read_file(self.sandbox.id, file, max_bytes=limit)
            except SandboxFileTooLargeError as exc:
                raise OutputLimitExceededError(
                    limit_str=SandboxEnvironmentLimits.MAX_READ_FILE_SIZE_STR,
                    truncated_output=None,
                ) from exc
        return data.decode("utf-8") if text else data

    @override
    async def connection(self, *, user: str | None = None) -> SandboxConnection:
        """``assay sandbox exec ID --url URL --stdin-file - -- bash``: a shell that runs what
        it reads on stdin, not a terminal (the API key from ASSAY_API_KEY); ConnectionError
        once the sandbox has ended."""
        try:
            current = await self.client.get_sandbox(self.sandbox.id)
        except (AssayError, SandboxUnavailableError) as exc:
            raise ConnectionError(f"Assay sandbox {self.sandbox.id}: {exc}") from exc
        if current.state != "running":
            raise ConnectionError(f"Assay sandbox {self.sandbox.id} has ended")
        command = ["assay", "sandbox", "exec", self.sandbox.id, "--url", self._config.server_url()]
        if user is not None:
            command += ["--user", user]
        command += ["--stdin-file", "-", "--", "bash"]
        return SandboxConnection(
            type=PROVIDER, command=shlex.join(command), container=self.sandbox.id
        )

    @override
    def default_polling_interval(self) -> float:
        # A command's round trip is a few milliseconds, as docker exec's is.
        return 0.2


def _exec_result(
    out: CommandOutput, cmd: list[str], user: str | None, timeout: int | None
) -> ExecResult[str]:
    stdout = out.stdout.decode("utf-8", errors="replace")
    stderr = out.stderr.decode("utf-8", errors="replace")
    if out.timed_out:
        error = TimeoutError(f"Command timed out after {timeout} seconds")
        if stdout or stderr:
            error.truncated_output = stdout + stderr  # type: ignore[attr-defined]
        raise error
    if out.exec_failure == "permission_denied":
        raise PermissionError(f"Permission denied executing command: {shlex.join(cmd)}")
    if out.stdout_truncated or out.stderr_truncated:
        raise OutputLimitExceededError(
            limit_str=SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE_STR,
            truncated_output=stdout + stderr,
        )
    if out.exec_failure == "unknown_user" and user is not None and user not in stderr:
        stderr += f"unknown user: {user}\n"
    return ExecResult(
        success=out.returncode == 0, returncode=out.returncode, stdout=stdout, stderr=stderr
    )


@contextlib.contextmanager
def _file_errors(file: str) -> Iterator[None]:
    """Assay's file errors as the OSErrors Inspect's contract names, each naming ``file``."""
    try:
        yield
    except SandboxFileNotFoundError as exc:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", file) from exc
    except SandboxPermissionError as exc:
        raise PermissionError(errno.EACCES, "Permission denied", file) from exc
    except SandboxIsADirectoryError as exc:
        raise IsADirectoryError(errno.EISDIR, "Is a directory", file) from exc
    except SandboxFileTooLargeError as exc:
        raise OSError(errno.EFBIG, exc.message, file) from exc


@contextlib.contextmanager
def _sandbox_errors() -> Iterator[None]:
    """Assay's errors that belong to no one operation, as Inspect names them."""
    try:
        yield
    except UserUnsupportedError as exc:
        raise SandboxUserUnsupportedError(exc.message) from exc
    except (
        SandboxNotFoundError,
        SandboxEndedError,
        SandboxLostError,
        ServerUnreachableError,
    ) as exc:
        raise SandboxUnavailableError(exc.message) from exc
    except InvalidRequestError as exc:
        raise ValueError(exc.message) from exc
    except AssayError as exc:
        raise RuntimeError(exc.message) from exc


def _labels(task_name: str, metadata: dict[str, str], environment: str) -> dict[str, str]:
    """The labels that say which provider, task, sample, epoch and eval a sandbox is for."""
    from inspect_ai.log._samples import sample_active  # noqa: PLC0415 - Inspect's internals

    labels = {LABEL_PROVIDER: PROVIDER, LABEL_TASK: task_name, LABEL_ENVIRONMENT: environment}
    active = sample_active()
    sample_id: object = metadata.get("__sample_id__")
    if active is not None:
        sample_id = active.sample.id if active.sample.id is not None else sample_id
        labels[LABEL_EPOCH] = str(active.epoch)
        labels[LABEL_EVAL] = active.eval_id
    if sample_id is not None:
        labels[LABEL_SAMPLE] = str(sample_id)
    return {key: value.replace("\0", "")[:_MAX_LABEL_VALUE] for key, value in labels.items()}


async def _delete(client: AsyncAssayClient, sandbox_id: str) -> bool:
    """Deletes a sandbox; whether it is gone (an ended or forgotten one is)."""
    try:
        await client.delete_sandbox(sandbox_id)
    except SandboxNotFoundError:
        return True
    except AssayError as exc:
        logger.warning("could not delete Assay sandbox %s: %s", sandbox_id, exc.message)
        return False
    return True


def _by_config(made: list[_Made]) -> dict[AssayConfig, list[_Made]]:
    grouped: dict[AssayConfig, list[_Made]] = {}
    for m in made:
        grouped.setdefault(m.config, []).append(m)
    return grouped
