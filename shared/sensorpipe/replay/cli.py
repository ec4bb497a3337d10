"""``sensorpipe-replay``: replay a DLQ or a bucket into the pipeline, show its status,
and print any message or object as JSON Lines (``inspect``).

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
from sensorpipe.config.pipeline import QueueSettings
from sensorpipe.envelope import ATTR_ENCODING, ENCODINGS, EnvelopeError
from sensorpipe.replay.archive import (
    REPLAYABLE_KINDS,
    ArchiveReplayer,
    ArchiveSelection,
    full_prefix,
    parse_time_option,
)
from sensorpipe.replay.dlq import DlqSelection, parse_rate, replay_dlq, resolve_queue
from sensorpipe.replay.errors import ReplayError, ReplaySendError, ReplayUsageError
from sensorpipe.replay.inspect import message_lines, object_lines
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

    inspect = sub.add_parser(
        "inspect",
        parents=[common],
        help="print a message body, a DLQ's messages or a stored object as JSON Lines",
    )
    source = inspect.add_mutually_exclusive_group(required=True)
    source.add_argument("--body", help="a message body saved in a file ('-': stdin)")
    source.add_argument(
        "--dlq",
        metavar="QUEUE",
        help="the messages of <QUEUE>-dlq (full name or stage), left in place",
    )
    source.add_argument("--object", metavar="S3_URI", help="s3://bucket/key")
    inspect.add_argument(
        "--encoding",
        default="arrow",
        choices=ENCODINGS,
        help="the content-encoding the --body travelled with (default: arrow)",
    )
    inspect.add_argument("--max", type=int, default=10, help="--dlq: at most N messages")

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


def _run_inspect(args: argparse.Namespace, config: PipelineConfig) -> int:
    if args.body is not None:
        try:
            text = sys.stdin.read() if args.body == "-" else Path(args.body).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ReplayUsageError(f"--body {args.body}: cannot read it: {exc}") from exc
        return _print_message(text.strip(), {ATTR_ENCODING: args.encoding})
    if args.object is not None:
        bucket, _, key = args.object.removeprefix("s3://").partition("/")
        if not args.object.startswith("s3://") or not bucket or not key:
            raise ReplayUsageError(f"--object {args.object!r} is not s3://bucket/key")
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            print("\n".join(object_lines(key, body)))
        except (ValueError, OSError) as exc:  # not gzip, not UTF-8, not JSON
            print(
                f"{PROG} inspect: {args.object} is not JSON or JSON Lines: {exc}", file=sys.stderr
            )
            return 1
        return 0
    sqs = sqs_client()
    dlq = QueueSettings.dlq_name(resolve_queue(config, args.dlq))
    url = sqs.get_queue_url(QueueName=dlq)["QueueUrl"]
    seen: set[str] = set()
    worst = 0
    while len(seen) < args.max:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, args.max - len(seen)),
            MessageAttributeNames=["All"],
            VisibilityTimeout=2,  # hidden a moment, never deleted: it stays in the DLQ
            WaitTimeSeconds=1,
        ).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            seen.add(message["MessageId"])
            attributes = {
                k: v.get("StringValue", "") for k, v in message.get("MessageAttributes", {}).items()
            }
            worst = max(worst, _print_message(message.get("Body", ""), attributes))
    return worst


def _print_message(body: str, attributes: dict[str, str]) -> int:
    try:
        print("\n".join(message_lines(body, attributes)))
    except EnvelopeError as exc:
        reason = attributes.get("failure-reason")
        line = {"not_an_envelope": str(exc), "failure_reason": reason, "body": body[:200]}
        print(json.dumps(line))
        return 1
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, PipelineConfig], int]] = {
    "dlq": _run_dlq,
    "archive": _run_archive,
    "inspect": _run_inspect,
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
