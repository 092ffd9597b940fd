"""Building the sandbox image without any container registry.

Default recipe: a minimal Debian root filesystem made with ``debootstrap`` holding every
enabled language's toolchain (their recipes' packages, ``languages.toml``), then each
recipe's wheels (from a local wheelhouse) and setup commands, a non-root ``sandbox`` user,
no setuid/setgid binaries; imported into Docker with ``docker import`` and versioned by a
label. Each language's version is measured in the new root filesystem and kept in another
label (``GET /api/v1/languages`` shows it). Users who can pull may start from a base image
instead (``--base-image python:3.12-slim``: Python only). Either way the image gets the
sandbox supervisor (``sandbox_init.c``), compiled here with the host's C compiler into a
static binary at ``INIT_PATH``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from assay.config import SANDBOX_IMAGE_VERSION, ExecutionSettings
from assay.errors import ImageBuildError
from assay.execution_engine.docker_daemon import DockerDaemon
from assay.execution_engine.languages import Languages
from assay.execution_engine.models import languages_of
from assay.execution_engine.sandbox_spec import INIT_PATH, SANDBOX_ENV, SANDBOX_UID, WORKDIR

__all__ = [
    "LABEL_LANGUAGES",
    "LABEL_VERSION",
    "ImageStatus",
    "build_image",
    "compile_supervisor",
    "debian_mirror",
    "image_languages",
    "image_status",
    "install_wheels",
]

LABEL_VERSION = "assay.sandbox.version"
LABEL_RECIPE = "assay.sandbox.recipe"
#: JSON: each language's version, as measured in the image when it was built.
LABEL_LANGUAGES = "assay.sandbox.languages"
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
    #: Each language's version in the image, by name (measured when it was built).
    languages: dict[str, str] = field(default_factory=dict)

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
    return ImageStatus(
        settings.image,
        exists=True,
        version=labels.get(LABEL_VERSION),
        languages=image_languages(labels),
    )


def image_languages(labels: dict[str, str]) -> dict[str, str]:
    """The languages an image's labels say it holds, with their versions."""
    try:
        found = json.loads(labels.get(LABEL_LANGUAGES) or "{}")
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(name): str(version) for name, version in found.items()}


def build_image(
    settings: ExecutionSettings,
    *,
    base_image: str | None = None,
    mirror: str | None = None,
    suite: str | None = None,
    wheelhouse: Path | None = None,
    log: Log = lambda _line: None,
) -> str:
    """Build the sandbox image named by ``settings.image``, with every language
    ``settings`` enables; returns its name. ``wheelhouse``: a directory of wheels that the
    recipes' ``wheels`` are installed from (nothing is fetched).

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
            _build_with_debootstrap(
                daemon, settings.image, languages_of(settings), mirror, suite, wheelhouse, log
            )
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
    # Python only, its version unmeasured (serve it with ASSAY_EXECUTION__LANGUAGES='["python"]').
    python_only = json.dumps(json.dumps({"python": "unknown"}))
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
LABEL {LABEL_VERSION}={SANDBOX_IMAGE_VERSION} {LABEL_RECIPE}="base:{base_image}" \\
      {LABEL_LANGUAGES}={python_only}
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


def _build_with_debootstrap(  # noqa: PLR0917  (one call site, every argument named)
    daemon: DockerDaemon,
    image: str,
    languages: Languages,
    mirror: str | None,
    suite: str | None,
    wheelhouse: Path | None,
    log: Log,
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
    wheels = [wheel for recipe in languages for wheel in recipe.wheels]
    if wheels and wheelhouse is None:
        raise ImageBuildError(
            f"the recipes ask for wheels ({', '.join(wheels)}): pass --wheelhouse DIR, a "
            "directory of wheels (`pip wheel -w DIR ...`); nothing is downloaded"
        )
    suite = suite or languages.image.suite
    mirror = mirror or _mirror_for(suite)
    with tempfile.TemporaryDirectory(prefix="assay-rootfs-", dir="/var/tmp") as work:
        rootfs = Path(work) / "rootfs"
        supervisor = compile_supervisor(Path(work) / "assay-init")  # fails fast without gcc
        packages = languages.packages()
        log(f"debootstrap {suite} from {mirror} with {len(packages)} packages (a minute or two)")
        _check(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                suite,
                str(rootfs),
                mirror,
            ],
            "debootstrap",
        )
        versions = _add_languages(rootfs, languages, wheelhouse, log)
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
            # Quoted, inner quotes escaped: Docker's LABEL takes them away once.
            f"LABEL {LABEL_LANGUAGES}={json.dumps(json.dumps(versions, separators=(',', ':')))}",
            f"USER {SANDBOX_UID}:{SANDBOX_UID}",
            f"WORKDIR {WORKDIR}",
            f'CMD ["{INIT_PATH}"]',
        ]
        daemon.import_rootfs(str(tarball), repository, tag, changes)


def _add_languages(
    rootfs: Path, languages: Languages, wheelhouse: Path | None, log: Log
) -> dict[str, str]:
    """Each recipe's wheels and setup commands, run in ``rootfs``; then every language's
    version, measured there. Returns the versions by language.

    Raises:
        ImageBuildError: a setup command failed, or a language's version cannot be read
            (its toolchain is not there).
    """
    versions: dict[str, str] = {}
    with _proc_mounted(rootfs):
        for recipe in languages:
            if recipe.wheels and wheelhouse is not None:
                log(f"{recipe.name}: wheels {', '.join(recipe.wheels)} from {wheelhouse}")
                install_wheels(rootfs, recipe.wheels, wheelhouse, _image_python(rootfs))
            for command in recipe.setup:
                log(f"{recipe.name}: {command}")
                _check(
                    [
                        "chroot",
                        str(rootfs),
                        "/usr/bin/env",
                        "-i",
                        *_env(recipe.env),
                        "sh",
                        "-ec",
                        command,
                    ],
                    f"{recipe.name}'s setup command {command!r}",
                )
        for recipe in languages:
            result = subprocess.run(
                ["chroot", str(rootfs), "/usr/bin/env", "-i", *_env(recipe.env), *recipe.version],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise ImageBuildError(
                    f"{recipe.name}: its version command {list(recipe.version)} failed in the "
                    f"image (exit {result.returncode}): {(result.stderr or result.stdout)[-500:]}"
                )
            versions[recipe.name] = recipe.describe_version(result.stdout + result.stderr)
            log(f"{recipe.name} {versions[recipe.name]}")
    return versions


def _env(extra: Mapping[str, str]) -> list[str]:
    base = {key: value for key, value in SANDBOX_ENV.items() if key != "HOME"}
    return [f"{key}={value}" for key, value in {**base, "HOME": "/root", **extra}.items()]


@contextlib.contextmanager
def _proc_mounted(rootfs: Path) -> Iterator[None]:
    """/proc in ``rootfs`` while commands run there (Java and Go find themselves through it)."""
    proc = rootfs / "proc"
    proc.mkdir(exist_ok=True)
    _check(["mount", "-t", "proc", "proc", str(proc)], "mounting /proc in the image")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(proc)], check=False, capture_output=True)


def _image_python(rootfs: Path) -> str:
    """The image's Python version, ``3.13``.

    Raises:
        ImageBuildError: the image has no python3.
    """
    probe = subprocess.run(
        [
            "chroot",
            str(rootfs),
            "python3",
            "-c",
            "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    version = probe.stdout.strip()
    if probe.returncode != 0 or not version:
        raise ImageBuildError("the recipes ask for wheels, but the image has no python3")
    return version


def install_wheels(rootfs: Path, wheels: tuple[str, ...], wheelhouse: Path, version: str) -> None:
    """Install ``wheels`` (and what they need) from ``wheelhouse`` into ``rootfs``'s Python
    ``version`` (the image's, not the host's), offline: binary wheels only.

    Raises:
        ImageBuildError: a wheel (or a dependency) is not in the wheelhouse, or does not
            fit that Python.
    """
    target = rootfs / f"usr/local/lib/python{version}/dist-packages"
    target.mkdir(parents=True, exist_ok=True)
    _check(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "--only-binary=:all:",
            "--python-version",
            version,
            "--no-compile",
            "--target",
            str(target),
            *wheels,
        ],
        f"installing wheels {', '.join(wheels)} from {wheelhouse}",
    )


def _mirror_for(suite: str) -> str:
    """The host's mirror for ``suite``, or for the host's own suite (Debian serves every
    suite from one archive: trixie comes from where bookworm does)."""
    try:
        return debian_mirror(suite)
    except ImageBuildError:
        return debian_mirror(_host_codename())


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
    _resolve_localhost(rootfs / "etc/nsswitch.conf")
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


def _resolve_localhost(nsswitch: Path) -> None:
    """Host names resolve from /etc/hosts, then nss-myhostname (``localhost``, the sandbox's
    own name), never DNS: in a sandbox Docker masks the image's /etc/hosts with an empty
    one, as it creates sandboxes with networking disabled (sandbox_spec.py)."""
    lines = nsswitch.read_text().splitlines() if nsswitch.exists() else []
    kept = [line for line in lines if not line.startswith("hosts:")]
    nsswitch.write_text("\n".join([*kept, "hosts: files myhostname"]) + "\n")


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
