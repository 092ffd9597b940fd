"""No network: only loopback, no routes, no DNS, no path to the host, no raw sockets.

Nothing here aims traffic at an outside address; isolation is shown from inside the sandbox
(interfaces, routes, resolver) and against a listener on the host's own loopback."""

from __future__ import annotations

import socket
import threading

import pytest

from assay.execution_engine import ExecutionStatus
from assay.execution_engine.docker_engine import DockerEngine
from tests.sandbox import assert_healthy, run

pytestmark = [pytest.mark.docker, pytest.mark.integration]


async def test_only_loopback_and_no_routes(engine: DockerEngine) -> None:
    result = await run(
        engine,
        """
        import socket
        print(sorted(name for _, name in socket.if_nameindex()))
        routes = open("/proc/net/route").read().splitlines()[1:]
        routes6 = [l for l in open("/proc/net/ipv6_route").read().splitlines()
                   if not l.split()[-1] == "lo"]
        print(len(routes), len(routes6))
        """,
    )
    assert result.stdout.splitlines() == ["['lo']", "0 0"]


async def test_names_do_not_resolve(engine: DockerEngine) -> None:
    result = await run(
        engine,
        """
        import socket
        try:
            socket.getaddrinfo("example.com", 80)
            print("RESOLVED")
        except socket.gaierror as exc:
            print("gaierror", exc.errno)
        """,
    )
    assert result.stdout.startswith("gaierror"), result.stdout


async def test_its_own_loopback_works_and_localhost_resolves(engine: DockerEngine) -> None:
    result = await run(
        engine,
        """
        import socket
        server = socket.create_server(("localhost", 0))
        client = socket.create_connection(server.getsockname()[:2], timeout=5)
        peer, _ = server.accept()
        client.sendall(b"ping")
        print(peer.recv(4).decode(), socket.gethostbyname("localhost"))
        """,
    )
    assert result.stdout.split() == ["ping", "127.0.0.1"], result


async def test_a_listener_on_the_hosts_loopback_is_unreachable(engine: DockerEngine) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        result = await run(
            engine,
            f"""
            import errno, socket
            for host in ["127.0.0.1", "localhost", "::1"]:
                try:
                    socket.create_connection((host, {port}), timeout=2)
                    print(host, "CONNECTED")
                except OSError as exc:
                    print(host, errno.errorcode.get(exc.errno, exc))
            """,
        )
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert result.status is ExecutionStatus.COMPLETED
    outcomes = dict(line.split() for line in result.stdout.splitlines())
    assert set(outcomes) == {"127.0.0.1", "localhost", "::1"}
    assert set(outcomes.values()) <= {"ECONNREFUSED", "EADDRNOTAVAIL", "ENETUNREACH"}, outcomes
    assert accepted == []


async def test_raw_and_packet_sockets_are_refused(engine: DockerEngine) -> None:
    result = await run(
        engine,
        """
        import errno, socket
        for family, kind, proto in [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                                    (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
                                    (socket.AF_PACKET, socket.SOCK_RAW, 0)]:
            try:
                socket.socket(family, kind, proto)
                print("OPENED")
            except OSError as exc:
                print(errno.errorcode[exc.errno])
        """,
    )
    assert result.stdout.split() == ["EPERM", "EPERM", "EPERM"]
    await assert_healthy(engine)
