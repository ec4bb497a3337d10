"""``sensorpipe-provision [--dry-run] [--config FILE]``: buckets and queues.

Exit codes: 0 done (or planned); 1 an AWS call failed; 2 a bad flag, configuration file
or no region; 141 stdout closed early (``--dry-run | head``; quietly).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from sensorpipe.cli import command
from sensorpipe.config import ConfigError, load_pipeline_config
from sensorpipe.provisioning import provision


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sensorpipe-provision",
        description="Create the pipeline's S3 buckets and SQS queues (idempotent).",
    )
    parser.add_argument("--config", type=Path, help="pipeline-config-v2.yaml")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    args = parser.parse_args(argv)
    try:
        config = load_pipeline_config(args.config)
        steps = provision(config, dry_run=args.dry_run)
    except ConfigError as exc:
        print(f"sensorpipe-provision: configuration error: {exc}", file=sys.stderr)
        return 2
    except NoRegionError:
        print("sensorpipe-provision: no AWS region: set AWS_REGION", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as exc:
        print(f"sensorpipe-provision: AWS call failed: {exc}", file=sys.stderr)
        return 1
    verb = "would run" if args.dry_run else "done"
    for step in steps:
        print(f"[{verb}] {step}")
    outcome = "planned (dry run, nothing changed)" if args.dry_run else "applied"
    print(f"{len(steps)} step(s) {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
