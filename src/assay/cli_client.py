"""`assay submit | status | logs | list | cancel` and `assay sandbox create | exec | cp | rm
| ls | show | events`: the API from the command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from assay.api.schemas import EvaluationOut
from assay.cli_format import (
    add_program_options,
    event_line,
    program_fields,
    sandbox_details,
    sandbox_table,
    verdict_line,
)
from assay.client import DEFAULT_URL, AssayClient, CommandOutput
from assay.config import Settings
from assay.errors import AssayError
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

    _add_sandbox_commands(commands, connection)


def _client(args: argparse.Namespace) -> AssayClient:
    return AssayClient(args.url, api_key=args.api_key)


def _labels(items: list[str], what: str = "label") -> dict[str, str]:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"assay: {what} {item!r} must be KEY=VALUE")
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


# -- assay sandbox ------------------------------------------------------------------------

EXIT_TIMEOUT = 124  # what timeout(1) exits with


class _CommandParser(argparse.ArgumentParser):
    """A parser that, when ``takes_command``, keeps everything after the first ``--`` as
    ``command``, verbatim (argparse before Python 3.13 drops every later ``--`` too); without
    ``--``, the words after the options are the command (``exec ID --timeout 3 ls -l``)."""

    takes_command = False

    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        strings = list(sys.argv[1:] if args is None else args)
        if not self.takes_command:
            return super().parse_known_args(strings, namespace)
        at = strings.index("--") if "--" in strings else None
        parsed, extra = super().parse_known_args(strings[:at], namespace)
        if at is not None:
            parsed.command = strings[at + 1 :]
        elif extra and not extra[0].startswith("-"):
            parsed.command, extra = [*parsed.command, *extra], []
        return parsed, extra


def _add_sandbox_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    options: argparse.ArgumentParser,
) -> None:
    sandbox = commands.add_parser(
        "sandbox", help="live sandboxes: start one, run commands and copy files in it"
    )
    sandbox.set_defaults(handler=lambda _args, _settings: _usage(sandbox))
    group = sandbox.add_subparsers(
        title="sandbox commands", metavar="COMMAND", parser_class=_CommandParser
    )
    connection = _CommandParser(add_help=False, parents=[options])

    create = group.add_parser("create", parents=[connection], help="start one, print its id")
    create.add_argument("--memory-mb", type=int, help="memory limit (MiB, its files included)")
    create.add_argument("--cpus", type=float, help="CPU limit in cores")
    create.add_argument("--pids-limit", type=int, help="most processes at once")
    create.add_argument(
        "--idle-timeout", type=float, metavar="SECONDS", help="ended after this long unused"
    )
    create.add_argument(
        "--lifetime", type=float, metavar="SECONDS", help="ended this long after it started"
    )
    create.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    create.add_argument("--language", help="a language it is meant for (checked, kept)")
    create.add_argument(
        "--user",
        choices=["sandbox", "root"],
        help="sandbox (uid 10001, the default) or root (may run commands as any user)",
    )
    create.add_argument("--json", action="store_true", help="print the sandbox as JSON")
    create.set_defaults(handler=_sandbox_create)

    run = group.add_parser(
        "exec",
        parents=[connection],
        help="run a command, its output live; exit with its exit status",
        usage="assay sandbox exec ID [options] -- COMMAND [ARG ...]",
        description="Run COMMAND (no shell: `-- sh -c '...'` for one) and exit with its exit "
        f"status ({EXIT_TIMEOUT} when it timed out).",
    )
    run.takes_command = True
    run.add_argument("id")
    run.add_argument("--cwd", help="working directory (relative to /workspace)")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    run.add_argument("--user", help="user name or uid (sandboxes created as root)")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="time limit")
    run.add_argument("--stdin-file", metavar="FILE", help="its standard input; - for ours")
    run.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    run.set_defaults(handler=_sandbox_exec)

    copy = group.add_parser(
        "cp",
        parents=[connection],
        help="copy a file in or out: SRC DST, one of them ID:PATH",
        description="Copy one file into a sandbox (DST is ID:PATH) or out of it (SRC is "
        "ID:PATH); - is standard input or output. A path with / before its first : is "
        "local (./a:b).",
    )
    copy.add_argument("src")
    copy.add_argument("dst")
    copy.add_argument("--user", help="read or write as this user (sandboxes created as root)")
    copy.set_defaults(handler=_sandbox_cp)

    remove = group.add_parser("rm", parents=[connection], help="end and remove sandboxes")
    remove.add_argument("ids", nargs="+", metavar="ID")
    remove.set_defaults(handler=_sandbox_rm)

    listing = group.add_parser("ls", parents=[connection], help="list running sandboxes")
    listing.add_argument("--all", action="store_true", help="ended ones too")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.set_defaults(handler=_sandbox_ls)

    show = group.add_parser("show", parents=[connection], help="show one sandbox")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_sandbox_show)

    events = group.add_parser(
        "events", parents=[connection], help="what was done in a sandbox (commands, files)"
    )
    events.add_argument("id")
    events.add_argument("--after", type=int, metavar="SEQ", help="only events after this one")
    events.add_argument("--follow", "-f", action="store_true", help="stream until it ends")
    events.add_argument("--json", action="store_true", help="one JSON object a line")
    events.set_defaults(handler=_sandbox_events)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _sandbox_create(args: argparse.Namespace, _settings: Settings) -> int:
    with _client(args) as client:
        sandbox = client.create_sandbox(
            memory_mb=args.memory_mb,
            cpus=args.cpus,
            pids_limit=args.pids_limit,
            idle_timeout_seconds=args.idle_timeout,
            lifetime_seconds=args.lifetime,
            labels=_labels(args.label) or None,
            language=args.language,
            user=args.user,
        )
    print(sandbox.model_dump_json() if args.json else sandbox.id)
    return 0


def _read_input(source: str) -> bytes:
    return sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()


def _sandbox_exec(args: argparse.Namespace, _settings: Settings) -> int:
    if not args.command:
        print("assay: give the command after --: sandbox exec ID -- COMMAND", file=sys.stderr)
        return 2
    env = _labels(args.env, "env")
    try:
        stdin = None if args.stdin_file is None else _read_input(args.stdin_file)
    except OSError as exc:
        print(f"assay: cannot read input: {exc}", file=sys.stderr)
        return 2
    with _client(args) as client:
        for item in client.exec_stream(
            args.id,
            args.command,
            input=stdin,
            cwd=args.cwd,
            env=env or None,
            user=args.user,
            timeout=args.timeout,
        ):
            if isinstance(item, CommandOutput):
                return _exit_status(item)
            stream = sys.stdout if item[0] == "stdout" else sys.stderr
            stream.buffer.write(item[1])
            stream.buffer.flush()
    raise AssertionError("unreachable: exec_stream ends with the command's output")


def _exit_status(output: CommandOutput) -> int:
    """The command's exit status, after saying on stderr what its output does not."""
    if output.stdout_truncated or output.stderr_truncated:
        print("assay: output truncated at the command's output limit", file=sys.stderr)
    if output.timed_out:
        print(
            f"assay: the command timed out after {output.duration_seconds:.1f} s "
            "(its processes were killed)",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    if output.exec_failure is not None:
        print(f"assay: the command could not start: {output.exec_failure}", file=sys.stderr)
    return output.returncode


def _in_sandbox(spec: str) -> tuple[str, str] | None:
    """``ID:PATH`` as (id, path); None for a local path: ``-``, no colon, or a ``/`` before
    the first colon (``./a:b``), as ``docker cp`` reads them."""
    head, colon, tail = spec.partition(":")
    if spec == "-" or not colon or not head or "/" in head:
        return None
    return head, tail


def _sandbox_cp(args: argparse.Namespace, _settings: Settings) -> int:
    source, target = _in_sandbox(args.src), _in_sandbox(args.dst)
    if target is not None and source is None:
        return _upload(args, *target)
    if source is not None and target is None:
        return _download(args, *source)
    print("assay: exactly one of SRC and DST must be ID:PATH", file=sys.stderr)
    return 2


def _upload(args: argparse.Namespace, sandbox_id: str, path: str) -> int:
    if path.endswith("/") and args.src != "-":
        path += Path(args.src).name
    try:
        data = _read_input(args.src)
    except OSError as exc:
        print(f"assay: cannot read {args.src}: {exc}", file=sys.stderr)
        return 2
    with _client(args) as client:
        written = client.write_file(sandbox_id, path, data, user=args.user)
    print(f"copied {written.size} bytes to {sandbox_id}:{written.path}", file=sys.stderr)
    return 0


def _download(args: argparse.Namespace, sandbox_id: str, path: str) -> int:
    with _client(args) as client:
        data = client.read_file(sandbox_id, path, user=args.user)
    if args.dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    local = Path(args.dst)
    if local.is_dir():
        local /= PurePosixPath(path).name
    try:
        local.write_bytes(data)
    except OSError as exc:
        print(f"assay: cannot write {local}: {exc}", file=sys.stderr)
        return 2
    print(f"copied {len(data)} bytes to {local}", file=sys.stderr)
    return 0


def _sandbox_rm(args: argparse.Namespace, _settings: Settings) -> int:
    failed = False
    with _client(args) as client:
        for sandbox_id in args.ids:
            try:
                client.delete_sandbox(sandbox_id)
            except AssayError as exc:
                print(f"assay: {sandbox_id}: {exc.message}", file=sys.stderr)
                failed = True
            else:
                print(sandbox_id)
    return 2 if failed else 0


def _sandbox_ls(args: argparse.Namespace, _settings: Settings) -> int:
    with _client(args) as client:
        sandboxes = client.list_sandboxes(state=None if args.all else "running")
    if args.json:
        for sandbox in sandboxes:
            print(sandbox.model_dump_json())
    else:
        print("\n".join(sandbox_table(sandboxes, datetime.now(UTC))))
    return 0


def _sandbox_show(args: argparse.Namespace, _settings: Settings) -> int:
    with _client(args) as client:
        sandbox = client.get_sandbox(args.id)
    if args.json:
        print(sandbox.model_dump_json())
    else:
        print("\n".join(sandbox_details(sandbox, datetime.now(UTC))))
    return 0


def _sandbox_events(args: argparse.Namespace, _settings: Settings) -> int:
    with _client(args) as client:
        for event in client.sandbox_events(args.id, after=args.after, follow=args.follow):
            print(event.model_dump_json() if args.json else event_line(event), flush=True)
    return 0
