"""`assay serve` and `assay keys`: commands that run or administer a platform locally."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import socket
import sys

from assay.config import Settings
from assay.storage import ApiKey, Storage, create_storage

__all__ = ["add_commands"]

logger = logging.getLogger("assay.serve")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the platform: REST API, queue, engine")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser(
        "worker",
        help="run queue workers without the API (replicas sharing PostgreSQL; see "
        "ASSAY_QUEUE__RUN_WORKERS, ASSAY_REDIS_URL)",
    )
    worker.add_argument(
        "--port",
        type=int,
        help="serve /healthz, /readyz and /metrics on this port (default: no HTTP at all)",
    )
    worker.add_argument("--host", default="127.0.0.1", help="address for --port (127.0.0.1)")
    worker.set_defaults(handler=_worker)

    executor = commands.add_parser(
        "executor", help="serve the execution engine alone (Phase 1; needs ASSAY_EXECUTOR__TOKEN)"
    )
    executor.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    executor.add_argument("--port", type=int, default=8100, help="port (default 8100)")
    executor.set_defaults(handler=_executor)

    keys = commands.add_parser("keys", help="manage API keys (stored hashed)")
    key_commands = keys.add_subparsers(title="keys commands", metavar="COMMAND")
    create = key_commands.add_parser("create", help="create a key and print it once")
    create.add_argument("name", help="who or what the key is for")
    create.set_defaults(handler=_keys_create)
    listing = key_commands.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(handler=_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=_keys_revoke)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _storage(settings: Settings) -> Storage:
    if settings.storage.url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    storage = create_storage(settings.storage_url())
    await storage.start()
    return storage


def _may_listen(settings: Settings, host: str, port: int) -> bool:
    """False (and says why) when ``host`` is not loopback and no API key exists yet."""

    async def keys_exist() -> bool:
        storage = await _storage(settings)
        try:
            return await storage.has_active_api_keys()
        finally:
            await storage.close()

    if asyncio.run(keys_exist()):
        return True
    if not is_loopback(host):
        print(
            f"assay: refusing to serve on {host} without an API key; create one with "
            "`assay keys create NAME`, or bind to 127.0.0.1",
            file=sys.stderr,
        )
        return False
    logger.warning(
        "no API key exists: %s:%d is open to anyone on this machine "
        "(create one with `assay keys create NAME`)",
        host,
        port,
    )
    return True


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from assay.app import create_app  # noqa: PLC0415

    if not _may_listen(settings, args.host, args.port):
        return 2
    logger.warning("serving on http://%s:%d (docs at /docs)", args.host, args.port)
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    """The platform's queue workers and engine, no REST API (with ``--port``, its health and
    metrics): until SIGTERM or SIGINT, after which running evaluations are killed and put
    back in the queue."""
    if settings.storage.url is None or settings.storage.url.startswith("sqlite"):
        logger.warning("a worker on SQLite shares it only with processes on this machine")
    listening = None
    if args.port is not None:
        if not _may_listen(settings, args.host, args.port):
            return 2
        try:
            family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
            listening = socket.create_server((args.host, args.port), family=family)
        except OSError as exc:
            print(f"assay: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 2
    from assay.worker import run_worker  # noqa: PLC0415

    run_worker(settings, listening)
    return 0


def _executor(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn  # noqa: PLC0415 - only the servers need it

    from assay.execution_engine import LocalExecutionEngine  # noqa: PLC0415
    from assay.executor_service import create_executor_app  # noqa: PLC0415

    token = settings.executor.token.get_secret_value() if settings.executor.token else ""
    if len(token) < 16:
        print(
            "assay: the executor refuses to start without ASSAY_EXECUTOR__TOKEN (16 characters "
            "or more); the platform sends the same value",
            file=sys.stderr,
        )
        return 2
    app = create_executor_app(
        LocalExecutionEngine(settings.execution), token=token, capacity=settings.executor.capacity
    )
    logger.warning(
        "executor on http://%s:%d with %d slots", args.host, args.port, settings.executor.capacity
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _print_key(key: ApiKey) -> None:
    state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
    print(f"{key.id:>4}  {key.prefix}…  {key.name:<24} {key.created_at:%Y-%m-%d %H:%M}  {state}")


def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    async def create() -> tuple[ApiKey, str]:
        storage = await _storage(settings)
        try:
            return await storage.create_api_key(args.name)
        finally:
            await storage.close()

    key, secret = asyncio.run(create())
    print(secret)
    print(
        f"created API key {key.id} ({key.name}); it is shown only now. Use it as "
        "'Authorization: Bearer <key>' or ASSAY_API_KEY.",
        file=sys.stderr,
    )
    return 0


def _keys_list(_args: argparse.Namespace, settings: Settings) -> int:
    async def listing() -> list[ApiKey]:
        storage = await _storage(settings)
        try:
            return await storage.list_api_keys()
        finally:
            await storage.close()

    keys = asyncio.run(listing())
    if not keys:
        print("no API keys: the API is open on loopback and refuses other addresses")
    for key in keys:
        _print_key(key)
    return 0


def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def revoke() -> ApiKey:
        storage = await _storage(settings)
        try:
            return await storage.revoke_api_key(args.id)
        finally:
            await storage.close()

    _print_key(asyncio.run(revoke()))
    return 0
