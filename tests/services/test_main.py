"""Every service's ``python -m services.<name>`` as a process: usage, bad settings, bad
flags and a closed pipe.

None of this needs LocalStack: ``--help`` and every settings error come before the
config file is read or any AWS client is made (the config path and the endpoint given
here are unusable on purpose, so a service that reached them would fail differently).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.pipes import run_reader_gone

UNUSABLE = {
    "SENSORPIPE_PIPELINE_CONFIG": "/nonexistent/pipeline-config-v2.yaml",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
}


@dataclass(frozen=True)
class Service:
    name: str
    bad: tuple[str, str, str]  # an own setting, a bad value, a fragment of its problem
    other_bad: tuple[str, str]  # a second bad setting, reported on the same line
    port_flag: str = "--metrics-port"
    sharded: bool = False

    @property
    def prog(self) -> str:
        return f"sensorpipe-{self.name}"


SERVICES = [
    Service(
        "enricher",
        ("SENSORPIPE_LOG_LEVEL", "chatty", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("SENSORPIPE_METRICS_PORT", "http"),
    ),
    Service(
        "validator",
        ("SENSORPIPE_VALIDATOR_GZIP_OBJECTS", "maybe", "true or false"),
        ("SENSORPIPE_METRICS_PORT", "http"),
    ),
    Service(
        "router",
        ("SENSORPIPE_ROUTER_ROUTE_THREADS", "0", "must be >= 1 and <= 10"),
        ("SENSORPIPE_METRICS_PORT", "http"),
    ),
    Service(
        "aggregator",
        ("SENSORPIPE_AGGREGATOR_WRITER_THREADS", "0", "must be >= 1 and <= 64"),
        ("SENSORPIPE_METRICS_PORT", "http"),
        sharded=True,
    ),
    Service(
        "notifier",
        ("SENSORPIPE_NOTIFIER_MAX_IN_FLIGHT", "5", "must be >= 20 and <= 100000"),
        ("SENSORPIPE_METRICS_PORT", "http"),
        sharded=True,
    ),
    Service(
        "dashboard",
        ("SENSORPIPE_DASHBOARD_ROWS", "0", "must be >= 1 and <= 500"),
        ("SENSORPIPE_DASHBOARD_REFRESH_SECONDS", "x"),
        port_flag="--port",
    ),
]
BY_NAME = pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])


def _env(extra: dict[str, str]) -> dict[str, str]:
    # Inherit PYTHONPATH (this tree); drop settings and buffering that would change the run.
    base = {k: v for k, v in os.environ.items() if not k.startswith("SENSORPIPE")}
    base.pop("PYTHONUNBUFFERED", None)
    return {**base, **UNUSABLE, **extra}


def run(
    service: Service, args: list[str], extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"services.{service.name}", *args],
        env=_env(extra or {}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_bad_setting_line(
    service: Service, done: subprocess.CompletedProcess[str], *needles: str
) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{service.prog}: bad setting "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@BY_NAME
def test_help_prints_usage_and_starts_nothing(service: Service) -> None:
    done = run(service, ["--help"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {service.prog}")
    assert done.stderr == ""  # no config error: the (unusable) config was never read


@BY_NAME
def test_a_bad_own_setting_exits_2_with_one_line_before_the_config_is_read(
    service: Service,
) -> None:
    variable, value, problem = service.bad
    done = run(service, [], {variable: value})
    assert_one_bad_setting_line(service, done, f"{variable}={value}", problem)


@BY_NAME
def test_several_bad_settings_are_reported_on_the_same_line(service: Service) -> None:
    variable, value, _ = service.bad
    other, other_value = service.other_bad
    done = run(service, [], {variable: value, other: other_value})
    assert_one_bad_setting_line(service, done, f"{variable}={value}", f"{other}={other_value}")
    assert "(and 1 more: " in done.stderr


@BY_NAME
def test_a_flag_out_of_range_names_the_flag(service: Service) -> None:
    done = run(service, [service.port_flag, "70000"])
    assert_one_bad_setting_line(service, done, f"{service.port_flag}=70000", "<= 65535")


@pytest.mark.parametrize(
    "service", [s for s in SERVICES if s.sharded], ids=[s.name for s in SERVICES if s.sharded]
)
def test_a_negative_shard_exits_2_with_one_line(service: Service) -> None:
    done = run(service, ["--shard", "-1"])
    assert_one_bad_setting_line(service, done, "--shard=-1", "must be >= 0")


@BY_NAME
def test_a_closed_pipe_ends_quietly(service: Service) -> None:
    done = run_reader_gone([sys.executable, "-m", f"services.{service.name}", "--help"], _env({}))
    assert done.returncode == 128 + signal.SIGPIPE
    assert done.stderr == ""
