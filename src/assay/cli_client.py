"""`assay submit | status | logs | list | cancel`: the API from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from assay.api.schemas import EvaluationOut
from assay.cli_format import add_program_options, program_fields, verdict_line
from assay.client import DEFAULT_URL, AssayClient
from assay.config import Settings
from assay.storage import TERMINAL_EVENTS, EventType

__all__ = ["add_commands"]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--url", default=os.environ.get("ASSAY_URL", DEFAULT_URL), help="server (ASSAY_URL)"
    )
    connection.add_argument(
        "--api-key", default=os.environ.get("ASSAY_API_KEY"), help="API key (ASSAY_API_KEY)"
    )

    submit = commands.add_parser("submit", parents=[connection], help="queue programs")
    submit.add_argument(
        "files",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="source file(s), their endings naming the language; several: a batch",
    )
    add_program_options(submit)
    submit.add_argument(
        "--isolation",
        choices=["evaluation", "batch"],
        default="evaluation",
        help="for a batch: a fresh sandbox each (default), or sandboxes of the batch reset "
        "between programs (docs/batch-isolation.md)",
    )
    submit.add_argument("--stdin", type=Path, help="file fed to standard input")
    submit.add_argument("--timeout", type=float, help="wall-clock limit in seconds")
    submit.add_argument("--memory", type=int, help="memory limit in MB")
    submit.add_argument("--cpus", type=float, help="CPU quota in cores")
    submit.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    submit.add_argument("--priority", type=int, default=0, help="0-9, higher runs first")
    submit.add_argument("--wait", action="store_true", help="wait for the verdict, show progress")
    submit.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    submit.set_defaults(handler=_submit)

    status = commands.add_parser("status", parents=[connection], help="show one evaluation")
    status.add_argument("id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    logs = commands.add_parser("logs", parents=[connection], help="print an evaluation's output")
    logs.add_argument("id")
    logs.add_argument("--follow", "-f", action="store_true", help="stream until it ends")
    logs.set_defaults(handler=_logs)

    listing = commands.add_parser("list", parents=[connection], help="list evaluations")
    listing.add_argument("--status", action="append", help="repeatable")
    listing.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--cursor")
    listing.set_defaults(handler=_list)

    cancel = commands.add_parser("cancel", parents=[connection], help="cancel an evaluation")
    cancel.add_argument("id")
    cancel.set_defaults(handler=_cancel)


def _client(args: argparse.Namespace) -> AssayClient:
    return AssayClient(args.url, api_key=args.api_key)


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"assay: label {item!r} must be KEY=VALUE")
        labels[key] = value
    return labels


def _show(evaluation: EvaluationOut, as_json: bool) -> None:
    if as_json:
        print(evaluation.model_dump_json())
        return
    if evaluation.status.terminal:
        if evaluation.status == "compile_error":
            sys.stderr.write(evaluation.compile_output or "")
        sys.stdout.write(evaluation.stdout or "")
        sys.stdout.flush()
        sys.stderr.write(evaluation.stderr or "")
        print(verdict_line(evaluation), file=sys.stderr)
    else:
        print(f"{evaluation.id} {evaluation.status.value}")


def _submit(args: argparse.Namespace, _settings: Settings) -> int:
    try:
        codes = [path.read_text() for path in args.files]
        stdin = args.stdin.read_text() if args.stdin else None
    except (OSError, UnicodeDecodeError) as exc:
        print(f"assay: cannot read input: {exc}", file=sys.stderr)
        return 2
    try:
        programs = [program_fields(args, path) for path in args.files]
    except ValueError as exc:
        print(f"assay: {exc}", file=sys.stderr)
        return 2
    limits = {"timeout_seconds": args.timeout, "memory_mb": args.memory, "cpus": args.cpus}
    if len(codes) > 1 or args.isolation == "batch":
        return _submit_batch(args, codes, programs, stdin, limits)
    with _client(args) as client:
        evaluation = client.submit(
            codes[0],
            **programs[0],
            stdin=stdin,
            labels=_labels(args.label) or None,
            priority=args.priority or None,
            **limits,
        )
        if not args.wait:
            print(evaluation.model_dump_json() if args.json else evaluation.id)
            return 0
        print(f"submitted {evaluation.id}", file=sys.stderr)
        evaluation = _wait_with_progress(client, evaluation)
    _show(evaluation, args.json)
    return 0


def _submit_batch(
    args: argparse.Namespace,
    codes: list[str],
    programs: list[dict[str, Any]],
    stdin: str | None,
    limits: dict[str, object],
) -> int:
    """One batch, each file labelled ``file=<name>``; with --wait, a verdict line per file."""
    common = {key: value for key, value in limits.items() if value is not None}
    if stdin is not None:
        common["stdin"] = stdin
    if args.priority:
        common["priority"] = args.priority
    labels = _labels(args.label)
    bodies = [
        {"code": code, "labels": {**labels, "file": path.name}, **program, **common}
        for path, code, program in zip(args.files, codes, programs, strict=True)
    ]
    with _client(args) as client:
        created = client.submit_batch(bodies, isolation=args.isolation)
        if not args.wait:
            for evaluation in created:
                print(evaluation.model_dump_json() if args.json else evaluation.id)
            return 0
        print(f"submitted {len(created)} evaluations ({args.isolation})", file=sys.stderr)
        for path, evaluation in zip(args.files, created, strict=True):
            finished = client.wait(evaluation.id)
            if args.json:
                print(finished.model_dump_json())
            else:
                print(f"{path.name}: {verdict_line(finished)}")
    return 0


def _wait_with_progress(client: AssayClient, evaluation: EvaluationOut) -> EvaluationOut:
    began = time.monotonic()
    interactive = sys.stderr.isatty()
    while not evaluation.status.terminal:
        line = f"  {evaluation.status.value} … {time.monotonic() - began:.1f} s"
        if interactive:
            print(f"\r{line}\033[K", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
        evaluation = client.get(evaluation.id, wait=1.0 if interactive else 5.0)
    if interactive:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    return evaluation


def _status(args: argparse.Namespace, _settings: Settings) -> int:
    with _client(args) as client:
        evaluation = client.get(args.id)
    if args.json:
        print(evaluation.model_dump_json())
        return 0
    print(f"id:       {evaluation.id}")
    print(f"status:   {evaluation.status.value}")
    print(f"created:  {evaluation.created_at:%Y-%m-%d %H:%M:%S}  attempts: {evaluation.attempts}")
    if evaluation.labels:
        print("labels:   " + ", ".join(f"{k}={v}" for k, v in evaluation.labels.items()))
    if evaluation.status.terminal:
        print(verdict_line(evaluation))
    return 0


def _logs(args: argparse.Namespace, _settings: Settings) -> int:
    with _client(args) as client:
        evaluation = client.get(args.id)
        if evaluation.status.terminal and not args.follow:
            sys.stdout.write(evaluation.stdout or "")
            sys.stderr.write(evaluation.stderr or "")
            return 0
        if not args.follow:
            print(
                f"{evaluation.id} is {evaluation.status.value}; --follow streams its output",
                file=sys.stderr,
            )
            return 0
        for event in client.events(args.id):
            if event.type == EventType.OUTPUT:
                stream = sys.stdout if event.data.get("stream") == "stdout" else sys.stderr
                stream.write(str(event.data.get("text", "")))
                stream.flush()
            elif event.type in TERMINAL_EVENTS:
                print(f"[assay] {event.data.get('status', event.type)}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace, _settings: Settings) -> int:
    with _client(args) as client:
        page = client.list(
            status=args.status,
            labels=_labels(args.label) or None,
            cursor=args.cursor,
            limit=args.limit,
        )
    for evaluation in page.items:
        labels = ",".join(f"{k}={v}" for k, v in evaluation.labels.items())
        print(
            f"{evaluation.id}  {evaluation.status.value:<12} "
            f"{evaluation.created_at:%Y-%m-%d %H:%M:%S}  {labels}"
        )
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def _cancel(args: argparse.Namespace, _settings: Settings) -> int:
    with _client(args) as client:
        evaluation = client.cancel(args.id)
    print(f"{evaluation.id} {evaluation.status.value}")
    return 0
