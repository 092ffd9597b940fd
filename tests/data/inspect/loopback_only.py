"""Refuses every network connection that is not to this machine (loopback or a Unix socket),
and records each attempt: tests install it to prove that Inspect, its mock model and the Assay
provider send nothing off the machine (no telemetry, update check, tokenizer or helper-binary
download).

In a subprocess it is installed by ``sitecustomize.py`` beside it (this directory on
``PYTHONPATH``), and writes each attempt as a line to the file ``LOOPBACK_ONLY_LOG`` names.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

#: Every refused attempt in this process: (what, address).
ATTEMPTS: list[tuple[str, str]] = []

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}
#: What install() replaced, for uninstall(): (owner, name, original).
_saved: list[tuple[object, str, Any]] = []


def _loopback_host(host: object) -> bool:
    if host is None:
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _refuse(what: str, address: object) -> None:
    ATTEMPTS.append((what, repr(address)))
    log = os.environ.get("LOOPBACK_ONLY_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{what} {address!r}\n")


def install() -> None:
    """Patch ``socket`` so that connecting to, or resolving, anything else fails."""
    if _saved:
        return
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    sendto, getaddrinfo = socket.socket.sendto, socket.getaddrinfo

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True  # a Unix socket (the Docker daemon's) never leaves the machine
        return _loopback_host(address[0])

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        if not allowed(sock, address):
            _refuse("connect", address)
            raise ConnectionRefusedError(f"loopback only: refused a connection to {address!r}")
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        if not allowed(sock, address):
            _refuse("connect", address)
            return 111  # ECONNREFUSED
        return connect_ex(sock, address)

    def guarded_sendto(sock: socket.socket, data: Any, *args: Any) -> int:
        address = args[-1]
        if not allowed(sock, address):
            _refuse("sendto", address)
            raise ConnectionRefusedError(f"loopback only: refused a datagram to {address!r}")
        return sendto(sock, data, *args)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback_host(host):
            _refuse("resolve", host)
            raise socket.gaierror(socket.EAI_NONAME, f"loopback only: refused to resolve {host!r}")
        return getaddrinfo(host, *args, **kwargs)

    for owner, name, guard in (
        (socket.socket, "connect", guarded_connect),
        (socket.socket, "connect_ex", guarded_connect_ex),
        (socket.socket, "sendto", guarded_sendto),
        (socket, "getaddrinfo", guarded_getaddrinfo),
    ):
        _saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, guard)


def uninstall() -> None:
    """Undo :func:`install`."""
    while _saved:
        owner, name, original = _saved.pop()
        setattr(owner, name, original)
