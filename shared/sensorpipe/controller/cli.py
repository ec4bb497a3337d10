"""``pipeline-controller``: the seed's command line (get, set, history, monitor).

Exit codes: 0 success (also for a ``set`` that changed nothing and for an interrupted
``monitor``), 1 the database could not be used, 2 invalid usage or input, 141 stdout
closed early (``history | head -1``; quietly).
Errors are one line on stderr: what, where, why, what to do.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

from sensorpipe.cli import command
from sensorpipe.controller.errors import InvalidInputError
from sensorpipe.controller.models import ActiveScenario, Change
from sensorpipe.controller.store import DEFAULT_LOCK_TIMEOUT_S, PipelineController
from sensorpipe.controller.validation import (
    metadata_json,
    validate_operator,
    validate_scenario_name,
)
from sensorpipe.errors import SensorPipeError
from sensorpipe.scenarios import BUILTIN_SCENARIOS

PROG = "pipeline-controller"
DB_ENV = "PIPELINE_CONTROLLER_DB"
STATE_DIR_ENV = "UPLOADER_STATE_DIR"
CONFIG_ENV = "SENSORPIPE_PIPELINE_CONFIG"
EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2

_EXAMPLES = f"""examples:
  {PROG} --db state/pipeline_config.db get
  {PROG} --db state/pipeline_config.db set filtered --by "operations" --reason "Enabling anomaly filtering"
  {PROG} --db state/pipeline_config.db history --limit 20 --format json
  {PROG} --db state/pipeline_config.db monitor
"""  # noqa: E501


class _UsageError(Exception):
    """argparse found a usage problem; reported as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def default_db_path() -> str:
    """$PIPELINE_CONTROLLER_DB, else $UPLOADER_STATE_DIR/pipeline_config.db (state dir
    ``state``), the file the uploader reads."""
    explicit = os.environ.get(DB_ENV)
    if explicit:
        return explicit
    return str(Path(os.environ.get(STATE_DIR_ENV) or "state") / "pipeline_config.db")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Atomic, audited switching of the pipeline scenario stored in SQLite.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--db",
        default=default_db_path(),
        metavar="PATH",
        help=f"SQLite file (default: ${DB_ENV}, else ${STATE_DIR_ENV}/pipeline_config.db "
        "with state dir 'state')",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV) or None,
        metavar="PATH",
        help=f"pipeline config YAML whose scenarios may be set (default: ${CONFIG_ENV}, "
        "else the packaged default)",
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULT_LOCK_TIMEOUT_S,
        metavar="SECONDS",
        help="how long to retry a locked database before giving up (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    get = commands.add_parser("get", help="show the active scenario")
    _add_format(get)

    set_ = commands.add_parser("set", help="switch the scenario (records who and why)")
    set_.add_argument("scenario", metavar="SCENARIO", help="e.g. " + ", ".join(BUILTIN_SCENARIOS))
    set_.add_argument("--by", required=True, metavar="WHO", help="who makes the change")
    set_.add_argument("--reason", default=None, metavar="WHY", help="why (stored in metadata)")

    history = commands.add_parser("history", help="show past changes, newest first")
    history.add_argument("--limit", type=int, default=20, metavar="N", help="rows (default 20)")
    _add_format(history)

    monitor = commands.add_parser("monitor", help="print each change until Ctrl-C / SIGTERM")
    monitor.add_argument(
        "--interval", type=float, default=0.5, metavar="SECONDS", help="poll interval"
    )
    _add_format(monitor)
    return parser


def _add_format(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--format", choices=("table", "json"), default="table", help="output (default: table)"
    )


@command
def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return _dispatch(args)
    except _UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except InvalidInputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except SensorPipeError as exc:
        return _fail(str(exc), EXIT_RUNTIME)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "set":
        return _set(args)
    controller = PipelineController(args.db, lock_timeout_s=args.lock_timeout)
    if args.command == "get":
        _print_rows([controller.active()], args.format, single=True)
    elif args.command == "history":
        _print_rows(controller.history(args.limit), args.format, single=False)
    else:
        _monitor(controller, args.interval, args.format)
    return EXIT_OK


def _set(args: argparse.Namespace) -> int:
    # Validate everything before the database is opened (or created).
    validate_scenario_name(args.scenario, db_path=args.db)
    validate_operator(args.by, db_path=args.db)
    metadata_json(args.reason, db_path=args.db)
    extra = _configured_scenarios(args.config)
    validate_scenario_name(args.scenario, set(BUILTIN_SCENARIOS) | extra, db_path=args.db)
    controller = PipelineController(args.db, extra, lock_timeout_s=args.lock_timeout)
    result = controller.set(args.scenario, args.by, args.reason, {"source": PROG})
    current = result.current
    if not result.changed:
        print(
            f"Scenario is already {current.scenario!r} (config version "
            f"{current.config_version}, set by {current.updated_by} at "
            f"{_when(current)}); nothing recorded."
        )
        return EXIT_OK
    before = result.previous.scenario if result.previous is not None else "(none)"
    print(
        f"Scenario changed: {before} -> {current.scenario} (config version "
        f"{current.config_version}, by {current.updated_by}"
        + (f": {current.reason}" if current.reason else "")
        + ")"
    )
    return EXIT_OK


def _configured_scenarios(config_path: str | None) -> set[str]:
    """Scenario names of the pipeline config (the packaged default when no path)."""
    try:
        # Imported here: get/history/monitor must work even if the config is broken.
        from sensorpipe.config import load_pipeline_config
    except ImportError as exc:
        if config_path is None:
            return set()
        raise InvalidInputError(
            f"cannot read pipeline config {config_path}: {exc}", db_path=None
        ) from exc
    try:
        return set(load_pipeline_config(config_path).scenarios)
    except SensorPipeError as exc:
        raise InvalidInputError(
            f"pipeline config: {exc.message}", db_path=None, hint=exc.hint
        ) from exc


def _when(row: ActiveScenario) -> str:
    return row.updated_at.isoformat(timespec="microseconds")


def _print_rows(rows: list[ActiveScenario], output: str, *, single: bool) -> None:
    if output == "json":
        payload: Any = rows[0].to_dict() if single else [row.to_dict() for row in rows]
        print(json.dumps(payload, indent=2, sort_keys=True))
    elif single:
        row = rows[0]
        fields = [
            ("scenario", row.scenario),
            ("config version", str(row.config_version)),
            ("updated at", _when(row)),
            ("updated by", row.updated_by),
            ("reason", row.reason or "-"),
        ]
        for label, value in fields:
            print(f"{label:<15} {value}")
    else:
        header = ("VERSION", "SCENARIO", "UPDATED AT (UTC)", "UPDATED BY", "REASON")
        table = [header] + [
            (
                ("* " if i == 0 else "  ") + str(row.config_version),
                row.scenario,
                _when(row),
                row.updated_by,
                row.reason or "-",
            )
            for i, row in enumerate(rows)
        ]
        _print_table(table, sys.stdout)
        print("* = active")


def _print_table(table: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[col]) for row in table) for col in range(len(table[0]))]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip(), file=out)


def _monitor(controller: PipelineController, interval: float, output: str) -> None:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous_handlers = {
        sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        changes = controller.watch(interval, stop)  # the starting point is fixed here
        active = controller.active()
        print(
            f"Watching {controller.db_path}: active {active.scenario!r} (config version "
            f"{active.config_version}); Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        for change in changes:
            print(_format_change(change, output), flush=True)
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


def _format_change(change: Change, output: str) -> str:
    if output == "json":
        return json.dumps(change.to_dict(), sort_keys=True)
    why = f" reason: {change.why}" if change.why else ""
    return (
        f"{change.when.isoformat(timespec='microseconds')}  "
        f"{change.from_scenario or '(none)'} -> {change.to_scenario}  "
        f"by {change.who}  (config version {change.current.config_version}){why}"
    )
