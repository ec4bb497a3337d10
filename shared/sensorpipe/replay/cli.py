"""``sensorpipe-replay``: replay a DLQ or a bucket into the pipeline, and show its status.

Exit codes: 0 done; 1 an AWS call failed (nothing not yet moved was lost: re-run);
2 usage or configuration problem (nothing changed); 3 ``status --fail-on-dlq`` found
messages in a dead-letter queue; 141 stdout closed early (``status | head -1``; quietly).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from sensorpipe.aws import s3_client, sqs_client
from sensorpipe.cli import command
from sensorpipe.config import BucketKind, ConfigError, PipelineConfig, load_pipeline_config
from sensorpipe.replay.archive import (
    REPLAYABLE_KINDS,
    ArchiveReplayer,
    ArchiveSelection,
    full_prefix,
    parse_time_option,
)
from sensorpipe.replay.dlq import DlqSelection, parse_rate, replay_dlq
from sensorpipe.replay.errors import ReplayError, ReplaySendError
from sensorpipe.replay.status import collect_status, render_table

PROG = "sensorpipe-replay"
EXIT_DLQ_NOT_EMPTY = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Replay dead-lettered messages or stored readings, and show pipeline status.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, help="pipeline-config-v2.yaml (default: $SENSORPIPE_PIPELINE_CONFIG)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    dlq = sub.add_parser(
        "dlq",
        parents=[common],
        help="move messages from <queue>-dlq back to <queue>, filtered and rate-limited",
    )
    dlq.add_argument("--queue", required=True, help="source queue: full name or stage (ingest)")
    dlq.add_argument(
        "--filter-reason", help="move only messages whose failure-reason contains this"
    )
    dlq.add_argument("--filter-batch-id", help="move only messages of this batch id")
    dlq.add_argument("--max", type=int, help="move at most N messages")
    dlq.add_argument("--rate", help="at most N messages per second, e.g. 5/s")
    dlq.add_argument("--dry-run", action="store_true", help="count what would move, move nothing")

    archive = sub.add_parser(
        "archive",
        parents=[common],
        help="re-send stored readings (or, from the error bucket, the records the validator "
        "rejected or filtered) to the ingest queue",
    )
    archive.add_argument(
        "--bucket-kind", required=True, choices=[k.value for k in REPLAYABLE_KINDS]
    )
    archive.add_argument(
        "--prefix",
        default="",
        help="key prefix below <kind>/, e.g. year=2026/month=11/; for the error bucket "
        "rejected/... or filtered/...",
    )
    archive.add_argument("--scenario", help="scenario to stamp (default: the object's own)")
    archive.add_argument("--sensor-id", help="only readings of this sensor")
    archive.add_argument("--location", help="only readings at this location")
    archive.add_argument("--since", help="event time from (inclusive), ISO-8601")
    archive.add_argument("--until", help="event time until (exclusive), ISO-8601")
    archive.add_argument("--dry-run", action="store_true", help="count what would be sent")

    status = sub.add_parser("status", parents=[common], help="queue depths and bucket counts")
    status.add_argument("--format", choices=["table", "json"], default="table")
    status.add_argument(
        "--fail-on-dlq",
        action="store_true",
        help=f"exit {EXIT_DLQ_NOT_EMPTY} when any dead-letter queue holds messages",
    )
    return parser


def _run_dlq(args: argparse.Namespace, config: PipelineConfig) -> int:
    result = replay_dlq(
        sqs_client(),
        config,
        args.queue,
        selection=DlqSelection(args.filter_reason, args.filter_batch_id),
        max_messages=args.max,
        rate=parse_rate(args.rate) if args.rate else None,
        dry_run=args.dry_run,
    )
    print("\n".join(result.lines()))
    # Copies whose original could not be deleted would replay again: make that visible.
    return 1 if result.delete_failures else 0


def _run_archive(args: argparse.Namespace, config: PipelineConfig) -> int:
    selection = ArchiveSelection(
        sensor_id=args.sensor_id,
        location=args.location,
        since=parse_time_option("--since", args.since) if args.since else None,
        until=parse_time_option("--until", args.until) if args.until else None,
    )
    kind = BucketKind(args.bucket_kind)
    full_prefix(kind, args.prefix)  # refuses a bad prefix before any AWS client exists
    replayer = ArchiveReplayer(
        s3_client(),
        sqs_client(),
        config,
        kind=kind,
        prefix=args.prefix,
        selection=selection,
        scenario=args.scenario,
        dry_run=args.dry_run,
    )
    result = replayer.run()
    print("\n".join(result.lines()))
    # Unreadable objects were listed; a non-zero exit makes sure nobody misses them.
    return 1 if result.skipped_objects else 0


def _run_status(args: argparse.Namespace, config: PipelineConfig) -> int:
    status = collect_status(config, sqs_client(), s3_client())
    if args.format == "json":
        print(json.dumps(status.to_dict(), indent=2))
    else:
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        print(render_table(status, color=color))
    if args.fail_on_dlq and status.dlq_messages > 0:
        return EXIT_DLQ_NOT_EMPTY
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, PipelineConfig], int]] = {
    "dlq": _run_dlq,
    "archive": _run_archive,
    "status": _run_status,
}


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prefix = f"{PROG} {args.command}"
    try:
        config = load_pipeline_config(args.config)
        return _COMMANDS[args.command](args, config)
    except ConfigError as exc:
        print(f"{prefix}: configuration error: {exc}", file=sys.stderr)
        return 2
    except ReplayError as exc:
        if isinstance(exc, ReplaySendError) and exc.summary:
            print("\n".join(exc.summary))
        print(f"{prefix}: {exc}", file=sys.stderr)
        return exc.exit_code
    except NoRegionError:
        print(f"{prefix}: no AWS region configured (set AWS_REGION)", file=sys.stderr)
        return 2
    except NoCredentialsError:
        print(
            f"{prefix}: no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID)",
            file=sys.stderr,
        )
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"{prefix}: AWS call failed: {exc} (check the endpoint and retry)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted (messages not yet moved were left in place)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
