"""What every command line shares: one-line setting errors, bounded flags, quiet pipes."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from typing import Literal

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sensorpipe.cli import EXIT_BROKEN_PIPE, bounded_int, load_settings
from sensorpipe.config.errors import SettingsError


class Probe(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROBE_", extra="ignore")

    threads: int = Field(default=4, ge=1, le=64)
    ratio: float = Field(default=0.5, gt=0)
    mode: Literal["fast", "safe"] = "safe"
    enabled: bool = True
    names: list[str] = []


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PROBE_"):
            monkeypatch.delenv(key)


def problems(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **flags: object) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    given = {field: (f"--{field}", value) for field, value in flags.items()}
    with pytest.raises(SettingsError) as caught:
        load_settings(Probe, given)
    text = str(caught.value)
    assert "\n" not in text
    return text


def test_good_values_come_from_the_environment_and_flags_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROBE_THREADS", "8")
    monkeypatch.setenv("PROBE_MODE", "fast")
    parsed = load_settings(Probe, {"threads": ("--threads", 2)})
    assert (parsed.threads, parsed.mode, parsed.enabled) == (2, "fast", True)


def test_a_value_out_of_range_names_variable_value_and_the_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = problems(monkeypatch, {"PROBE_THREADS": "0"})
    assert text.startswith("PROBE_THREADS=0: threads must be >= 1 and <= 64 (")
    assert "greater than or equal to 1" in text


def test_a_flag_is_named_as_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBE_THREADS", "3")  # valid, and beaten by the flag anyway
    assert problems(monkeypatch, {}, threads=99).startswith("--threads=99: threads must be")


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("PROBE_THREADS", "many", "must be a whole number >= 1 and <= 64"),
        ("PROBE_RATIO", "half", "must be a number > 0"),
        ("PROBE_RATIO", "0", "must be > 0"),
        ("PROBE_MODE", "reckless", "must be one of 'fast' or 'safe'"),
        ("PROBE_ENABLED", "perhaps", "must be true or false"),
    ],
)
def test_each_kind_of_problem_says_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, allowed: str
) -> None:
    text = problems(monkeypatch, {variable: value})
    assert text.startswith(f"{variable}={value}: "), text
    assert allowed in text


def test_several_problems_are_one_line_first_then_and_n_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = problems(monkeypatch, {"PROBE_THREADS": "0", "PROBE_MODE": "x", "PROBE_RATIO": "-1"})
    assert "(and 2 more: " in text
    for given in ("PROBE_THREADS=0", "PROBE_MODE=x", "PROBE_RATIO=-1"):
        assert text.count(given) == 1


def test_a_complex_value_that_is_not_json_is_one_problem_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = problems(monkeypatch, {"PROBE_NAMES": "[not json"})
    assert "names" in text and text.startswith("PROBE_*")


def test_bounded_int_accepts_the_range_and_refuses_the_rest() -> None:
    port = bounded_int(0, 65535)
    assert [port("0"), port("65535")] == [0, 65535]
    for bad in ("-1", "65536", "eighty"):
        with pytest.raises(argparse.ArgumentTypeError):
            port(bad)
    assert bounded_int(1)("1000000") == 1_000_000


def test_a_bounded_flag_out_of_range_is_a_usage_error() -> None:
    parser = argparse.ArgumentParser(prog="probe")
    parser.add_argument("--rows", type=bounded_int(1))
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["--rows", "0"])
    assert caught.value.code == 2


SCRIPT = textwrap.dedent(
    """
    import sys
    from sensorpipe.cli import command

    @command
    def main(lines: int) -> int:
        for i in range(lines):
            print(f"line {i}")
        return 7

    raise SystemExit(main(int(sys.argv[1])))
    """
)


def run_script(lines: int, *, reader_gone: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    read_end, write_end = os.pipe()
    if reader_gone:
        os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-c", SCRIPT, str(lines)],
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
        if not reader_gone:
            os.close(read_end)


def test_a_command_whose_reader_left_exits_141_without_a_traceback() -> None:
    done = run_script(100_000, reader_gone=True)  # far more than a pipe buffer holds
    assert done.returncode == EXIT_BROKEN_PIPE == 128 + signal.SIGPIPE
    assert done.stderr == ""


def test_a_command_with_its_reader_keeps_its_own_exit_code() -> None:
    done = run_script(3, reader_gone=False)
    assert done.returncode == 7
    assert done.stderr == ""
