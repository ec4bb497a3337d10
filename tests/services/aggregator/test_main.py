"""``python -m services.aggregator`` as a process: usage, bad settings, a closed pipe.

None of this needs LocalStack: ``--help`` and every settings error come before the
config file is read or any AWS client is made (the config path and the endpoint given
here are unusable on purpose).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

PROG = "sensorpipe-aggregator"
UNUSABLE = {
    "SENSORPIPE_PIPELINE_CONFIG": "/nonexistent/pipeline-config-v2.yaml",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
}


def _env(extra: dict[str, str]) -> dict[str, str]:
    # Inherit PYTHONPATH (this tree); drop settings and buffering that would change the run.
    base = {k: v for k, v in os.environ.items() if not k.startswith("SENSORPIPE")}
    base.pop("PYTHONUNBUFFERED", None)
    return {**base, **UNUSABLE, **extra}


def run(args: list[str], extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.aggregator", *args],
        env=_env(extra or {}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_bad_setting_line(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{PROG}: bad setting "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_help_prints_usage_and_starts_nothing() -> None:
    done = run(["--help"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {PROG}")
    assert done.stderr == ""  # no config error: the (unusable) config was never read


def test_a_bad_own_setting_exits_2_with_one_line_before_the_config_is_read() -> None:
    done = run([], {"SENSORPIPE_AGGREGATOR_WRITER_THREADS": "0"})
    assert_one_bad_setting_line(
        done, "SENSORPIPE_AGGREGATOR_WRITER_THREADS=0", "must be >= 1 and <= 64"
    )


def test_shared_and_own_settings_are_reported_together() -> None:
    done = run([], {"SENSORPIPE_METRICS_PORT": "http", "SENSORPIPE_AGGREGATOR_WRITER_THREADS": "0"})
    assert_one_bad_setting_line(
        done, "SENSORPIPE_METRICS_PORT=http", "SENSORPIPE_AGGREGATOR_WRITER_THREADS=0"
    )
    assert "(and 1 more: " in done.stderr


def test_a_flag_out_of_range_names_the_flag() -> None:
    done = run(["--metrics-port", "70000"])
    assert_one_bad_setting_line(done, "--metrics-port=70000", "<= 65535")


def test_a_closed_pipe_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte (``| head`` that quit)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "services.aggregator", "--help"],
            env=_env({}),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 128 + signal.SIGPIPE
    assert done.stderr == ""


def test_a_negative_shard_exits_2_with_one_line() -> None:
    done = run(["--shard", "-1"])
    assert_one_bad_setting_line(done, "--shard=-1", "must be >= 0")
