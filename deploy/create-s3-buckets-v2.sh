#!/usr/bin/env bash
# create-s3-buckets-v2.sh: create (or bring up to date) every S3 bucket and SQS queue the
# pipeline uses: five buckets with versioning, default encryption, public access block and
# lifecycle rules; every consumer queue with its dead-letter queue and redrive policy.
#
# Idempotent: running it twice changes nothing and fails nothing. --dry-run prints the
# exact plan (the same lines a real run prints as it applies them) and calls no AWS API.
#
# AWS is reached with the standard environment (AWS_ENDPOINT_URL, AWS_REGION,
# credentials chain), so LocalStack and real AWS need no flag. The work is done by the
# Python provisioner (sensorpipe.provisioning) so this script and the tests share one plan.
set -euo pipefail

readonly PROG="${0##*/}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT

usage() {
    cat <<EOF
Usage: $PROG [--dry-run] [--config FILE] [--help]

Create the pipeline's S3 buckets and SQS queues (with DLQs), idempotently.

Options:
  --dry-run      print the plan and change nothing (no AWS call is made)
  --config FILE  pipeline-config-v2.yaml to use (default: \$SENSORPIPE_PIPELINE_CONFIG,
                 else the packaged default)
  -h, --help     show this help

Environment: AWS_ENDPOINT_URL (e.g. http://127.0.0.1:4566 for LocalStack), AWS_REGION,
AWS credentials; S3_BUCKET_PREFIX / SQS_QUEUE_PREFIX feed the default config's names.
Exit codes: 0 done, 1 an AWS call failed, 2 bad usage or bad configuration.
EOF
}

die_usage() {
    echo "$PROG: $1" >&2
    echo "Try '$PROG --help'." >&2
    exit 2
}

dry_run=0
config=""
while (($# > 0)); do
    case "$1" in
        --dry-run)
            dry_run=1
            ;;
        --config)
            (($# >= 2)) || die_usage "--config needs a file argument"
            config="$2"
            shift
            ;;
        --config=*)
            config="${1#--config=}"
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            die_usage "unknown argument '$1'"
            ;;
    esac
    shift
done

if [[ -n "$config" && ! -e "$config" ]]; then
    echo "$PROG: configuration error: $config: file not found" >&2
    exit 2
fi

if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
    python="$REPO_ROOT/.venv/bin/python"
elif command -v python3 >/dev/null 2>&1; then
    python="python3"
else
    echo "$PROG: no Python found: create the project's .venv or install python3" >&2
    exit 2
fi

args=()
((dry_run)) && args+=(--dry-run)
[[ -n "$config" ]] && args+=(--config "$config")

# find_spec does not import the package: a cheap check that gives a clear message.
if ! "$python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('sensorpipe') is None)"
then
    echo "$PROG: $python cannot import sensorpipe: install the project first" \
        "(e.g. '$python -m pip install -e $REPO_ROOT')" >&2
    exit 2
fi

# exec: the provisioner's exit code (0 / 1 AWS failure / 2 bad config) is ours.
exec "$python" -m sensorpipe.provisioning.cli ${args[@]+"${args[@]}"}
