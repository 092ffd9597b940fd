"""The shape of a sandbox container, as plain data: what Docker is asked to create.

:func:`sandbox_spec` is a pure function of the settings, the limits fixed at creation
(:class:`Profile`) and what the engine learnt from the daemon when it started
(:class:`Isolation`). Its result is the body of Docker's ``POST /containers/create``: no
network (and no networking set up by Docker), read-only root, tmpfs working directory and
/tmp, non-root user, no capabilities, no-new-privileges, the seccomp profile, the configured
OCI runtime, pids/memory/CPU/ulimit caps, no log driver, AutoRemove, stdin kept open for the
sandbox's PID 1 and closed when the attach ends (the lifeline), and labels saying which
engine and which process own it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from assay.config import ExecutionSettings
from assay.execution_engine.isolation import Isolation

__all__ = [
    "INIT_PATH",
    "LABEL_ENGINE",
    "LABEL_LIVE",
    "LABEL_MANAGED",
    "LABEL_OWNER",
    "LABEL_SANDBOX",
    "LIVE_SCRATCH",
    "ROOT_CAPABILITIES",
    "SANDBOX_ENV",
    "SANDBOX_UID",
    "WORKDIR",
    "LiveLimits",
    "Profile",
    "SandboxSpec",
    "live_sandbox_spec",
    "sandbox_spec",
]

LABEL_MANAGED = "assay.managed"
LABEL_ENGINE = "assay.engine"
LABEL_SANDBOX = "assay.sandbox"
#: Unique to one engine instance (one process): only its owner ever touches a running sandbox.
LABEL_OWNER = "assay.owner"
SANDBOX_UID = 10001
#: The supervisor (``sandbox_init.c``), compiled into the image by ``assay image build``.
INIT_PATH = "/usr/local/libexec/assay-init"
WORKDIR = "/workspace"
SANDBOX_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": WORKDIR,
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True, order=True)
class Profile:
    """The limits baked into a container when it is created."""

    memory_mb: int
    cpus: float

    def __str__(self) -> str:
        return f"{self.memory_mb}m-{self.cpus:g}cpu"


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    """One sandbox container to create."""

    #: The container's name, also its hostname.
    name: str
    #: The body of ``POST /containers/create`` (Docker Engine API).
    config: dict[str, Any]


def sandbox_spec(
    settings: ExecutionSettings,
    profile: Profile,
    *,
    isolation: Isolation,
    owner: str,
    token: str,
) -> SandboxSpec:
    """The container of a sandbox with ``profile``'s limits.

    Args:
        settings: the image, the OCI runtime and the limits every sandbox shares.
        profile: the memory and CPU limits of this one.
        isolation: the seccomp profile to apply, and what its PID 1 must find in force.
        owner: the owning engine's id (``DockerEngine.owner``).
        token: unique to this sandbox; names it.
    """
    uid = SANDBOX_UID
    fsize = max(settings.workspace_size_mb, settings.tmp_size_mb) * _MIB
    host_config: dict[str, Any] = {
        "NetworkMode": "none",
        "ReadonlyRootfs": True,
        "Tmpfs": {
            # exec: a compiled program runs from here (Docker's tmpfs default is noexec).
            WORKDIR: f"rw,exec,nosuid,nodev,size={settings.workspace_size_mb}m,"
            f"uid={uid},gid={uid},mode=0700",
            "/tmp": f"rw,nosuid,nodev,noexec,size={settings.tmp_size_mb}m,mode=1777",  # noqa: S108
        },
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges:true", f"seccomp={isolation.seccomp.json}"],
        # Gone as soon as it stops, whoever stopped it (its owner may be dead).
        "AutoRemove": True,
        "PidsLimit": settings.pids_limit,
        "Memory": profile.memory_mb * _MIB,
        "MemorySwap": profile.memory_mb * _MIB,
        "NanoCpus": round(profile.cpus * 1e9),
        "Ulimits": [
            {
                "Name": "nofile",
                "Soft": settings.open_files_limit,
                "Hard": settings.open_files_limit,
            },
            {"Name": "fsize", "Soft": fsize, "Hard": fsize},
            {"Name": "core", "Soft": 0, "Hard": 0},
        ],
        "IpcMode": "private",
        "ShmSize": settings.shm_size_mb * _MIB,
        "LogConfig": {"Type": "none", "Config": {}},
        "OomScoreAdj": 500,
    }
    if settings.runtime:
        # Here, in HostConfig: Docker ignores a runtime anywhere else.
        host_config["Runtime"] = settings.runtime
    name = f"assay-{token}"
    environment = {**SANDBOX_ENV, **isolation.expectations()}
    config: dict[str, Any] = {
        "Image": settings.image,
        # The commands (compile, run) come with the program, in its frame.
        "Cmd": [INIT_PATH],
        "User": f"{uid}:{uid}",
        # Seen inside as the hostname: `docker ps` and the program name the same sandbox
        # (under gVisor nothing else inside says which it is).
        "Hostname": name,
        "WorkingDir": WORKDIR,
        "Env": [f"{key}={value}" for key, value in environment.items()],
        "Tty": False,
        # Its own network namespace (NetworkMode none) holding only loopback, with none of
        # Docker's networking for it: no libnetwork prestart hook (a re-exec of dockerd per
        # start, half a fresh sandbox's CPU) and no /etc/hosts or /etc/resolv.conf bind
        # mounts (the image resolves `localhost` through nss-myhostname: image.py).
        "NetworkDisabled": True,
        # The program comes in on stdin. StdinOnce: Docker closes the sandbox's stdin when
        # our attach ends, and its PID 1 then ends everything; the sandbox's lifeline
        # (tests/integration/test_sandbox_ownership.py proves it).
        "OpenStdin": True,
        "StdinOnce": True,
        "AttachStdin": True,
        "AttachStdout": True,
        "AttachStderr": True,
        "Labels": {
            LABEL_MANAGED: "true",
            LABEL_ENGINE: settings.engine_id,
            LABEL_OWNER: owner,
            LABEL_SANDBOX: token,
        },
        "HostConfig": host_config,
    }
    return SandboxSpec(name=name, config=config)


#: Marks a live sandbox (``/api/v1/sandboxes``): many commands, one after another.
LABEL_LIVE = "assay.live"
#: A live sandbox's writable directories: tmpfs, exec allowed (agents build and run there).
LIVE_SCRATCH = (WORKDIR, "/tmp", "/var/tmp")  # noqa: S108
#: What a root live sandbox may do beyond an unprivileged one: become another user.
ROOT_CAPABILITIES = ("SETUID", "SETGID")


def live_sandbox_spec(
    settings: ExecutionSettings,
    sandbox: LiveLimits,
    *,
    isolation: Isolation,
    owner: str,
    token: str,
) -> SandboxSpec:
    """A live sandbox's container: an evaluation sandbox's hardening (no network, read-only
    root, no capabilities, no-new-privileges, the seccomp profile, the runtime, the lifeline
    on stdin, AutoRemove) with its own limits, and three bounded tmpfs mounts for its
    writes. A root one runs as uid 0 with only SETUID and SETGID, to run commands as others.
    """
    live = settings.sandboxes
    spec = sandbox_spec(
        settings,
        Profile(sandbox.memory_mb, sandbox.cpus),
        isolation=isolation,
        owner=owner,
        token=token,
    )
    config = spec.config
    host = config["HostConfig"]
    root = sandbox.user == "root"
    uid = 0 if root else SANDBOX_UID
    owned = f"uid={uid},gid={uid}"
    host["Tmpfs"] = {
        WORKDIR: f"rw,exec,nosuid,nodev,size={live.workspace_size_mb}m,{owned},mode=0755",
        "/tmp": f"rw,exec,nosuid,nodev,size={live.tmp_size_mb}m,mode=1777",  # noqa: S108
        "/var/tmp": f"rw,exec,nosuid,nodev,size={live.tmp_size_mb}m,mode=1777",  # noqa: S108
    }
    fsize = max(live.workspace_size_mb, live.tmp_size_mb) * _MIB
    host["Ulimits"] = [
        {"Name": "nofile", "Soft": 4096, "Hard": 4096},
        {"Name": "fsize", "Soft": fsize, "Hard": fsize},
        {"Name": "core", "Soft": 0, "Hard": 0},
    ]
    host["PidsLimit"] = sandbox.pids_limit
    if root:
        host["CapAdd"] = list(ROOT_CAPABILITIES)
    config["User"] = f"{uid}:{uid}"
    config["Labels"] = {**config["Labels"], LABEL_LIVE: "true"}
    return spec


class LiveLimits(Protocol):
    """What a live sandbox's container is created with (``ResolvedSandbox`` has it)."""

    @property
    def memory_mb(self) -> int: ...
    @property
    def cpus(self) -> float: ...
    @property
    def pids_limit(self) -> int: ...
    @property
    def user(self) -> str: ...
