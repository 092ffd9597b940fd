"""The ``assay`` command line. The only place that configures logging or prints."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from assay import __version__
from assay.cli_format import add_program_options, program_fields, verdict_line
from assay.config import Settings
from assay.errors import AssayError
from assay.execution_engine import EngineHealth, ExecutionRequest, ExecutionResult

__all__ = ["main"]

EXIT_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_ERROR
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"assay: invalid settings: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        code: int = args.handler(args, settings)
    except AssayError as exc:  # ServerUnreachableError too: it names the URL
        print(f"assay: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assay", description="Run untrusted code in locked-down sandboxes."
    )
    parser.add_argument("--version", action="version", version=f"assay {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run a program once in a fresh sandbox")
    run.add_argument("file", type=Path, help="source file (its ending names the language)")
    run.add_argument("--stdin", type=Path, help="file fed to the program's standard input")
    run.add_argument("--timeout", type=float, help="wall-clock limit in seconds")
    run.add_argument("--memory", type=int, help="memory limit in MB")
    run.add_argument("--cpus", type=float, help="CPU quota in cores")
    run.add_argument("--output-limit", type=int, help="cap on stdout+stderr in bytes")
    run.add_argument(
        "--file",
        dest="files",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="extra file copied into the working directory (repeatable)",
    )
    add_program_options(run)
    run.add_argument("--json", action="store_true", help="print the result as one JSON object")
    run.set_defaults(handler=_run)

    image = commands.add_parser("image", help="manage the sandbox image")
    image_commands = image.add_subparsers(title="image commands", metavar="COMMAND")
    build = image_commands.add_parser("build", help="build the sandbox image (no registry needed)")
    build.add_argument("--base-image", help="start from this local image (e.g. python:3.12-slim)")
    build.add_argument("--mirror", help="Debian mirror for debootstrap (default: the host's apt)")
    build.add_argument("--suite", help="Debian suite for debootstrap (default: the host's)")
    build.add_argument(
        "--wheelhouse",
        type=Path,
        help="directory of wheels the recipes' `wheels` are installed from (offline)",
    )
    build.add_argument(
        "--if-missing", action="store_true", help="do nothing if the current image exists"
    )
    build.set_defaults(handler=_image_build)

    doctor = commands.add_parser("doctor", help="check Docker, the sandbox image and the runtime")
    doctor.set_defaults(handler=_doctor)

    from assay import cli_client, cli_server  # noqa: PLC0415 - keep `assay run` light

    cli_server.add_commands(commands)
    cli_client.add_commands(commands)
    return parser


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        code = args.file.read_text()
        stdin = args.stdin.read_text() if args.stdin else ""
        files = {path.name: path.read_text() for path in args.files}
    except (OSError, UnicodeDecodeError) as exc:
        print(f"assay: cannot read input: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        program = program_fields(args, args.file)
    except ValueError as exc:
        print(f"assay: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        request = ExecutionRequest(
            code=code,
            **program,
            stdin=stdin,
            timeout_seconds=args.timeout,
            memory_mb=args.memory,
            cpus=args.cpus,
            output_limit_bytes=args.output_limit,
            files=files,
        )
    except ValidationError as exc:
        print(f"assay: invalid request: {exc}", file=sys.stderr)
        return EXIT_ERROR
    result = asyncio.run(_execute_once(settings, request))
    if args.json:
        print(result.model_dump_json())
    else:
        if result.compile_output and result.status == "compile_error":
            sys.stderr.write(result.compile_output)
        sys.stdout.write(result.stdout)
        sys.stdout.flush()
        sys.stderr.write(result.stderr)
        print(verdict_line(result), file=sys.stderr)
    return 0


async def _execute_once(settings: Settings, request: ExecutionRequest) -> ExecutionResult:
    from assay.execution_engine import LocalExecutionEngine  # noqa: PLC0415 - Docker SDK

    async with LocalExecutionEngine(settings.execution) as engine:
        return await engine.execute(request)


def _image_build(args: argparse.Namespace, settings: Settings) -> int:
    from assay.execution_engine import build_image, image_status, languages_of  # noqa: PLC0415

    if args.if_missing:
        status = image_status(settings.execution)
        wanted = set(languages_of(settings.execution).recipes)
        if status.current and wanted <= set(status.languages):
            print(f"sandbox image {status.name} is present")
            return 0
    name = build_image(
        settings.execution,
        base_image=args.base_image,
        mirror=args.mirror,
        suite=args.suite,
        wheelhouse=args.wheelhouse,
        log=lambda line: print(line, flush=True),
    )
    print(f"built sandbox image {name}")
    return 0


def _doctor(_args: argparse.Namespace, settings: Settings) -> int:
    health = asyncio.run(_health(settings))
    if not health.healthy:
        print(f"not ready: {health.detail}")
        return 1
    for key, value in health.facts.items():
        print(f"{key:>15}: {value}")
    from assay.execution_engine import image_status  # noqa: PLC0415

    status = image_status(settings.execution)
    if not status.current:
        print(
            f"image {status.name} was built by recipe {status.version}, not the current one; "
            "rebuild it with `assay image build`"
        )
        return 1
    print("ready: sandboxes can run")
    return 0


async def _health(settings: Settings) -> EngineHealth:
    from assay.execution_engine import LocalExecutionEngine  # noqa: PLC0415 - Docker SDK

    async with LocalExecutionEngine(settings.execution) as engine:
        return await engine.check_health()
