"""Building the sandbox image without any container registry.

Default recipe: a minimal Debian root filesystem made with ``debootstrap`` (full ``python3``
with its complete standard library), a non-root ``sandbox`` user, no setuid/setgid binaries,
imported into Docker with ``docker import`` and versioned by a label. Users who can pull may
start from a base image instead (``--base-image python:3.12-slim``). Either way the image gets
the sandbox supervisor (``sandbox_init.c``), compiled here with the host's C compiler into a
static binary at ``INIT_PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from assay.config import SANDBOX_IMAGE_VERSION, ExecutionSettings
from assay.errors import ImageBuildError
from assay.execution_engine.docker_daemon import DockerDaemon
from assay.execution_engine.sandbox_spec import INIT_PATH, SANDBOX_ENV, SANDBOX_UID, WORKDIR

__all__ = [
    "LABEL_VERSION",
    "ImageStatus",
    "build_image",
    "compile_supervisor",
    "debian_mirror",
    "image_status",
]

LABEL_VERSION = "assay.sandbox.version"
LABEL_RECIPE = "assay.sandbox.recipe"
_SLIM_PATHS = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ImageStatus:
    name: str
    exists: bool
    version: str | None

    @property
    def current(self) -> bool:
        return self.exists and self.version == SANDBOX_IMAGE_VERSION


def image_status(settings: ExecutionSettings) -> ImageStatus:
    """Whether the configured sandbox image exists, and which recipe version built it."""
    daemon = DockerDaemon(settings.docker_host, timeout=settings.docker_api_timeout_seconds)
    try:
        labels = daemon.image_labels(settings.image)
    finally:
        daemon.close()
    if labels is None:
        return ImageStatus(settings.image, exists=False, version=None)
    return ImageStatus(settings.image, exists=True, version=labels.get(LABEL_VERSION))


def build_image(
    settings: ExecutionSettings,
    *,
    base_image: str | None = None,
    mirror: str | None = None,
    suite: str | None = None,
    log: Log = lambda _line: None,
) -> str:
    """Build the sandbox image named by ``settings.image``; returns its name.

    Raises:
        ImageBuildError: with what the user must do (be root, install debootstrap, pull the
            base image, ...).
        EngineUnavailableError: Docker is not running.
    """
    daemon = DockerDaemon(settings.docker_host, timeout=settings.docker_api_timeout_seconds)
    try:
        if base_image is not None:
            _build_from_base(daemon, settings.image, base_image, log)
        else:
            _build_with_debootstrap(daemon, settings.image, mirror, suite, log)
    finally:
        daemon.close()
    return settings.image


def compile_supervisor(output: Path) -> Path:
    """Compile ``sandbox_init.c`` into a static binary at ``output``.

    Raises:
        ImageBuildError: no C compiler (or static C library), or the build failed.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ImageBuildError(
            "no C compiler to build the sandbox supervisor; `apt-get install gcc libc6-dev` "
            "(scripts/bootstrap does this)"
        )
    source = resources.files("assay.execution_engine") / "sandbox_init.c"
    with resources.as_file(source) as path:
        _check(
            [compiler, "-O2", "-static", "-s", "-Wall", "-o", str(output), str(path)],
            "compiling the sandbox supervisor (static; needs libc6-dev)",
        )
    return output


def _split_name(image: str) -> tuple[str, str]:
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        return image, "latest"
    return repository, tag


def _build_from_base(daemon: DockerDaemon, image: str, base_image: str, log: Log) -> None:
    if daemon.image_labels(base_image) is None:
        raise ImageBuildError(
            f"base image {base_image!r} is not present locally; `docker pull {base_image}` "
            "first (Assay never pulls), or build without --base-image"
        )
    uid = SANDBOX_UID
    env = " ".join(f"{key}={value}" for key, value in SANDBOX_ENV.items() if key != "HOME")
    dockerfile = f"""\
FROM {base_image}
USER 0
RUN command -v python3 >/dev/null || {{ echo "base image has no python3" >&2; exit 1; }}; \\
    id -u {uid} >/dev/null 2>&1 \\
    || ( groupadd --gid {uid} sandbox && useradd --uid {uid} --gid {uid} --no-create-home \\
        --home-dir {WORKDIR} --shell /usr/sbin/nologin sandbox ) \\
    || ( addgroup -g {uid} sandbox && adduser -D -H -u {uid} -G sandbox -h {WORKDIR} sandbox ) \\
    || {{ echo "cannot add the sandbox user" >&2; exit 1; }}; \\
    mkdir -p {WORKDIR} && chown {uid}:{uid} {WORKDIR}; \\
    find / -xdev -type f -perm /6000 -exec chmod a-s {{}} + 2>/dev/null; true
COPY assay-init {INIT_PATH}
ENV {env}
LABEL {LABEL_VERSION}={SANDBOX_IMAGE_VERSION} {LABEL_RECIPE}="base:{base_image}"
USER {uid}:{uid}
WORKDIR {WORKDIR}
CMD ["python3"]
"""
    log(f"building {image} from {base_image}")
    with tempfile.TemporaryDirectory(prefix="assay-init-") as work:
        supervisor = compile_supervisor(Path(work) / "assay-init").read_bytes()
    for line in daemon.build(dockerfile, image, {"assay-init": supervisor}):
        if line.strip():
            log(line.rstrip())


def _build_with_debootstrap(
    daemon: DockerDaemon, image: str, mirror: str | None, suite: str | None, log: Log
) -> None:
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building the sandbox image with debootstrap needs root; run `sudo assay image "
            "build`, or build from an image you can pull: `assay image build --base-image "
            "python:3.12-slim`"
        )
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "debootstrap is not installed; `apt-get install debootstrap` (scripts/bootstrap "
            "does this), or use --base-image"
        )
    suite = suite or _host_codename()
    mirror = mirror or debian_mirror(suite)
    with tempfile.TemporaryDirectory(prefix="assay-rootfs-", dir="/var/tmp") as work:
        rootfs = Path(work) / "rootfs"
        supervisor = compile_supervisor(Path(work) / "assay-init")  # fails fast without gcc
        log(f"debootstrap {suite} from {mirror} (about a minute)")
        _check(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3",
                suite,
                str(rootfs),
                mirror,
            ],
            "debootstrap",
        )
        _prepare_rootfs(rootfs)
        init = rootfs / INIT_PATH.lstrip("/")
        init.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(supervisor, init)
        init.chmod(0o755)
        tarball = Path(work) / "rootfs.tar"
        _check(
            [
                "tar",
                "--numeric-owner",
                "--exclude=./dev/*",
                "--exclude=./proc/*",
                "--exclude=./sys/*",
                "-C",
                str(rootfs),
                "-cf",
                str(tarball),
                ".",
            ],
            "tar",
        )
        log(f"importing {tarball.stat().st_size // (1024 * 1024)} MiB root filesystem as {image}")
        repository, tag = _split_name(image)
        changes = [f"ENV {key}={value}" for key, value in SANDBOX_ENV.items() if key != "HOME"]
        changes += [
            f"LABEL {LABEL_VERSION}={SANDBOX_IMAGE_VERSION}",
            f"LABEL {LABEL_RECIPE}=debootstrap:{suite}",
            f"USER {SANDBOX_UID}:{SANDBOX_UID}",
            f"WORKDIR {WORKDIR}",
            'CMD ["python3"]',
        ]
        daemon.import_rootfs(str(tarball), repository, tag, changes)


def _prepare_rootfs(rootfs: Path) -> None:
    """Add the sandbox user, remove what a sandbox never needs, strip setuid/setgid bits."""
    uid = SANDBOX_UID
    with (rootfs / "etc/passwd").open("a") as passwd:
        passwd.write(f"sandbox:x:{uid}:{uid}:Assay sandbox:{WORKDIR}:/usr/sbin/nologin\n")
    with (rootfs / "etc/group").open("a") as group:
        group.write(f"sandbox:x:{uid}:\n")
    with (rootfs / "etc/shadow").open("a") as shadow:
        shadow.write("sandbox:!:19000:0:99999:7:::\n")
    (rootfs / WORKDIR.lstrip("/")).mkdir(mode=0o755, exist_ok=True)
    for relative in _SLIM_PATHS:
        target = rootfs / relative
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    for directory, _dirs, files in os.walk(rootfs):
        for name in files:
            path = Path(directory) / name
            if path.is_symlink():
                continue
            mode = path.lstat().st_mode
            if mode & 0o6000:
                path.chmod(mode & ~0o6000 & 0o7777)


def _host_codename() -> str:
    release = _os_release()
    if release.get("ID") != "debian" and "debian" not in release.get("ID_LIKE", ""):
        return "bookworm"
    return release.get("VERSION_CODENAME") or "bookworm"


def _os_release() -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def debian_mirror(suite: str, apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this host's apt already uses for ``suite`` (so the image comes from the
    same place as the host's packages).

    Raises:
        ImageBuildError: no apt source for ``suite`` (pass ``--mirror``).
    """
    sources: list[tuple[list[str], list[str]]] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ")):
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                sources.append((fields.get("uris", "").split(), fields.get("suites", "").split()))
    for path in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                words = [w for w in line.split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb":
                    sources.append(([words[1]], [words[2]]))
    for uris, suites in sources:
        if suite in suites and uris:
            return uris[0]
    raise ImageBuildError(
        f"no apt source for suite {suite!r} in {apt_dir}; pass --mirror URL (a Debian mirror)"
    )


def _check(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise ImageBuildError(f"{what} failed (exit {result.returncode}):\n{tail}")
