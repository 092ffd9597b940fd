"""The only module that imports the Docker SDK.

:class:`DockerDaemon` is a thin, synchronous, thread-safe wrapper over the low-level API
that translates every Docker error into Assay's exception tree at this boundary.
"""

from __future__ import annotations

import io
import logging
import socket
import tarfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.transport import UnixHTTPAdapter

from assay.errors import (
    EngineUnavailableError,
    ExecutionError,
    ImageBuildError,
    RuntimeNotAvailableError,
    SandboxError,
    SandboxImageNotFoundError,
)

__all__ = ["ContainerSummary", "DockerDaemon", "epoch"]

logger = logging.getLogger(__name__)

START_DOCKER_HINT = (
    "start it with `scripts/bootstrap` (root on Debian/Ubuntu: installs docker.io and runs "
    "`dockerd --bridge=none`), or point DOCKER_HOST / ASSAY_EXECUTION__DOCKER_HOST at a running one"
)


#: The key of the one connection pool to a daemon's Unix socket (any URL of it would do).
_ONE_POOL = "http+docker://localhost"


def _reuse_connections(api: docker.APIClient) -> None:
    """One pool of kept-alive connections to the daemon's socket for every request. The
    SDK's socket adapter keeps a pool per URL, so a call about a new container (all of a
    sandbox's calls) opened a connection, and evicted pools closed theirs. No netrc or
    proxy settings are read either: the daemon is a socket, not a web server."""
    api.trust_env = False
    adapter = getattr(api, "_custom_adapter", None)
    if isinstance(adapter, UnixHTTPAdapter):
        per_url = adapter.get_connection
        adapter.get_connection = lambda url, proxies=None: per_url(_ONE_POOL, proxies)  # type: ignore[method-assign]


class DockerDaemon:
    """A connection to one Docker daemon. Every method may raise
    :class:`EngineUnavailableError` when the daemon stops answering."""

    def __init__(self, base_url: str | None, *, timeout: float, pool_size: int = 32) -> None:
        self._where = base_url or "the default Docker socket"
        try:
            if base_url is None:
                self._client = docker.from_env(timeout=int(timeout), max_pool_size=pool_size)
            else:
                self._client = docker.DockerClient(
                    base_url=base_url, timeout=int(timeout), max_pool_size=pool_size
                )
            self._api = self._client.api
            _reuse_connections(self._api)
        except docker.errors.DockerException as exc:
            raise EngineUnavailableError(
                f"Docker daemon not reachable at {self._where} ({_short(exc)}); {START_DOCKER_HINT}"
            ) from exc

    @contextmanager
    def _translated(self, image: str | None = None) -> Iterator[None]:
        try:
            yield
        except docker.errors.ImageNotFound as exc:
            raise SandboxImageNotFoundError(
                f"sandbox image {image!r} not found; build it with `assay image build`"
            ) from exc
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if "runtime" in text and ("unknown" in text or "invalid" in text):
                raise RuntimeNotAvailableError(
                    f"OCI runtime not available: {text}; install it and register it in "
                    "/etc/docker/daemon.json, or unset ASSAY_EXECUTION__RUNTIME"
                ) from exc
            raise SandboxError(f"Docker refused: {text}") from exc
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise EngineUnavailableError(
                f"Docker daemon at {self._where} stopped answering ({_short(exc)}); "
                f"{START_DOCKER_HINT}"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise SandboxError(f"Docker API call failed: {_short(exc)}") from exc
        except docker.errors.DockerException as exc:
            raise SandboxError(f"Docker error: {_short(exc)}") from exc

    # -- daemon --------------------------------------------------------------------------

    def ping(self) -> None:
        with self._translated():
            self._api.ping()

    def version(self) -> Mapping[str, Any]:
        with self._translated():
            return dict(self._api.version())

    def info(self) -> Mapping[str, Any]:
        with self._translated():
            return dict(self._api.info())

    def close(self) -> None:
        self._client.close()

    # -- images --------------------------------------------------------------------------

    def image_labels(self, name: str) -> dict[str, str] | None:
        """Labels of image ``name``, or None when it does not exist."""
        with self._translated(name):
            try:
                attrs = self._api.inspect_image(name)  # type: ignore[no-untyped-call]
            except docker.errors.ImageNotFound:
                return None
        return dict((attrs.get("Config") or {}).get("Labels") or {})

    def import_rootfs(self, tarball: str, repository: str, tag: str, changes: list[str]) -> None:
        """``docker import``: make an image from a root filesystem tarball."""
        try:
            with self._translated():
                self._api.import_image_from_file(
                    tarball, repository=repository, tag=tag, changes=changes
                )
        except ExecutionError as exc:
            raise ImageBuildError(f"docker import failed: {exc}") from exc

    def build(self, dockerfile: str, tag: str, files: Mapping[str, bytes] = {}) -> list[str]:
        """Build ``dockerfile`` with ``files`` (name -> bytes, mode 0755) as its context, and
        no network; returns the build log."""
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, data in {"Dockerfile": dockerfile.encode(), **files}.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
        context.seek(0)
        log: list[str] = []
        try:
            with self._translated():
                for chunk in self._api.build(
                    fileobj=context,
                    custom_context=True,
                    tag=tag,
                    rm=True,
                    forcerm=True,
                    network_mode="none",
                    decode=True,
                ):
                    if "error" in chunk:
                        raise ImageBuildError(f"docker build failed: {chunk['error']}")
                    if "stream" in chunk:
                        log.append(chunk["stream"])
        except ExecutionError as exc:
            raise ImageBuildError(f"docker build failed: {exc}") from exc
        return log

    def remove_image(self, name: str) -> None:
        """Remove image ``name``; no error if it does not exist."""
        with self._translated():
            try:
                self._api.remove_image(name, force=True)
            except docker.errors.ImageNotFound:
                return

    # -- containers ----------------------------------------------------------------------

    def create_container(self, image: str, **config: Any) -> str:
        """Create a container from docker-py's keyword arguments."""
        with self._translated(image):
            created = self._api.create_container(image, **config)
        return str(created["Id"])

    def create_from_config(self, config: Mapping[str, Any], *, name: str) -> str:
        """Create container ``name`` from the body of ``POST /containers/create`` as is."""
        with self._translated(str(config.get("Image"))):
            created = self._api.create_container_from_config(  # type: ignore[no-untyped-call]
                dict(config), name=name
            )
        return str(created["Id"])

    def host_config(self, **options: Any) -> dict[str, Any]:
        with self._translated():
            return dict(self._api.create_host_config(**options))

    def attach(self, container_id: str) -> socket.socket:
        """Attach stdin, stdout and stderr; returns the raw (multiplexed) socket."""
        with self._translated():
            wrapped = self._api.attach_socket(
                container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
        raw = getattr(wrapped, "_sock", wrapped)
        if not isinstance(raw, socket.socket):
            raise SandboxError(f"unexpected attach transport {type(raw).__name__}")
        return raw

    def start(self, container_id: str) -> None:
        with self._translated():
            self._api.start(container_id)

    def set_memory(self, container_id: str, memory_bytes: int) -> None:
        """Change a running container's memory limit (and its memory+swap, to the same)."""
        with self._translated():
            self._api.update_container(
                container_id, mem_limit=memory_bytes, memswap_limit=memory_bytes
            )

    def kill(self, container_id: str) -> None:
        """SIGKILL the container; no error if it has already stopped."""
        with self._translated():
            try:
                self._api.kill(container_id)
            except docker.errors.APIError as exc:
                if exc.status_code in (404, 409):
                    return
                raise

    def wait(self, container_id: str, timeout: float) -> int:
        with self._translated():
            return int(self._api.wait(container_id, timeout=int(timeout))["StatusCode"])

    def wait_removed(self, container_id: str, timeout: float) -> bool:
        """Wait until the container is gone (it was created with AutoRemove); False if it
        is still there after ``timeout`` seconds."""
        with self._translated():
            began = time.monotonic()
            try:
                self._api.wait(container_id, timeout=max(1, int(timeout)), condition="removed")
            except docker.errors.NotFound:
                return True
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                # The daemon sends the headers at once: a timeout reading the body comes out
                # of requests as a ConnectionError.
                if time.monotonic() - began >= max(1, int(timeout)) - 0.1:
                    return False
                raise
            except docker.errors.APIError as exc:
                if exc.status_code == 404:
                    return True
                raise
        return True

    def events_of(
        self, container_id: str, actions: tuple[str, ...], since: float
    ) -> list[tuple[str, dict[str, str]]]:
        """(action, attributes) of the container's events in Docker's event log since ``since``
        (epoch seconds), oldest first: still known after the container is removed, while the
        daemon's in-memory log (its last 256 events) holds them."""
        filters = {"container": [container_id], "event": list(actions)}
        with self._translated():
            # No read timeout: an `until` in the daemon's future keeps the stream open.
            events = self._api.events(  # type: ignore[call-overload]  # (str: nanoseconds)
                since=_timestamp(since), until=_timestamp(time.time()), filters=filters, decode=True
            )
            try:
                return [
                    (str(e.get("Action", "")), dict((e.get("Actor") or {}).get("Attributes") or {}))
                    for e in events
                ]
            finally:
                events.close()

    def remove(self, container_id: str) -> None:
        """Force-remove the container; no error if it is already gone. Retries briefly when
        it is between states (stopping as we remove it, or removed by someone else); when
        someone else (AutoRemove) is removing it, returns once it is gone."""
        for attempt in range(5):
            with self._translated():
                try:
                    self._api.remove_container(container_id, force=True, v=True)
                    return
                except docker.errors.NotFound:
                    return
                except docker.errors.APIError as exc:
                    text = str(exc.explanation)
                    if "already in progress" in text:
                        in_progress = True
                    elif "is not running" not in text or attempt == 4:
                        raise
                    else:
                        in_progress = False
            if in_progress:
                self.wait_removed(container_id, 5)
                return
            time.sleep(0.1 * (attempt + 1))

    def container_ids(self, labels: Mapping[str, str], *, running: bool = False) -> list[str]:
        """Ids of every container carrying all ``labels`` (only running ones if ``running``)."""
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        with self._translated():
            return [c["Id"] for c in self._api.containers(all=not running, filters=filters)]

    def containers_labelled(self, key: str) -> list[ContainerSummary]:
        """Every container that has label ``key`` at all."""
        with self._translated():
            found = self._api.containers(all=True, filters={"label": [key]})
        return [
            ContainerSummary(
                c["Id"],
                (c.get("Names") or ["/"])[0].lstrip("/"),
                dict(c.get("Labels") or {}),
                str(c.get("State", "")),
                c.get("Created", 0),
            )
            for c in found
        ]

    def finished_at(self, container_id: str) -> float | None:
        """When a stopped container stopped (epoch seconds); None if it is gone or running."""
        with self._translated():
            try:
                state = self._api.inspect_container(container_id)["State"]
            except docker.errors.NotFound:
                return None
        if state.get("Running"):
            return None
        return epoch(str(state.get("FinishedAt", "")))


@dataclass(frozen=True, slots=True)
class ContainerSummary:
    id: str
    name: str
    labels: dict[str, str]
    #: ``created``, ``running``, ``exited``, ...
    state: str
    #: Epoch seconds.
    created: float


def _timestamp(epoch: float) -> str:
    """Docker's ``seconds.nanoseconds`` form (its fraction is read as nanoseconds)."""
    seconds = int(epoch)
    return f"{seconds}.{int((epoch - seconds) * 1e9):09d}"


def epoch(rfc3339: str) -> float | None:
    """Docker's RFC 3339 time with nanoseconds, as epoch seconds; None for the zero time."""
    if not rfc3339 or rfc3339.startswith("0001-"):
        return None
    head, _, rest = rfc3339.partition(".")
    zone = rest.lstrip("0123456789") if rest else rfc3339[19:]
    fraction = rest[: len(rest) - len(zone)] if rest else ""
    try:
        moment = datetime.fromisoformat(head[:19] + (zone.replace("Z", "+00:00") or "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
