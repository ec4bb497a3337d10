"""``run_service`` start-up: settings first, once, handed to the handler factory.

In-process: the handler factory records the context it gets and then refuses to go
on (a SensorPipeError, exit 1), so no consumer is ever started and no AWS call made.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sensorpipe.config import PipelineConfig
from sensorpipe.errors import SensorPipeError
from sensorpipe.runtime import BatchHandler, ServiceContext, ServiceSettings, run_service
from sensorpipe.runtime import service as service_module


class StageKnobs(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_PROBE_", extra="ignore")

    threads: int = Field(default=4, ge=1, le=8)


class OtherKnobs(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_OTHER_", extra="ignore")


class _Stop(SensorPipeError):
    pass


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("SENSORPIPE"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers  # run_service configured logging for the process
    root.setLevel(level)


def _queue(config: PipelineConfig, _settings: ServiceSettings) -> str:
    return config.queues.ingest


def test_the_factory_gets_the_settings_parsed_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENSORPIPE_PROBE_THREADS", "3")
    seen: list[ServiceContext] = []

    def factory(context: ServiceContext) -> BatchHandler:
        seen.append(context)
        raise _Stop("enough")

    code = run_service("probe", _queue, factory, ["--shard", "2"], stage_settings=StageKnobs)
    assert code == 1
    (context,) = seen
    assert context.settings.shard == 2
    assert context.settings_of(StageKnobs).threads == 3
    # Parsed once: a later change of the environment does not reach the handler.
    monkeypatch.setenv("SENSORPIPE_PROBE_THREADS", "5")
    assert context.settings_of(StageKnobs).threads == 3
    with pytest.raises(TypeError, match="StageKnobs, not OtherKnobs"):
        context.settings_of(OtherKnobs)


def test_a_bad_stage_setting_stops_before_the_config_and_any_client(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("SENSORPIPE_PROBE_THREADS", "9")
    monkeypatch.setenv("SENSORPIPE_PIPELINE_CONFIG", str(tmp_path / "missing.yaml"))

    def no_client() -> None:
        raise AssertionError("a client was made before the settings were checked")

    monkeypatch.setattr(service_module, "sqs_client", no_client)
    monkeypatch.setattr(service_module, "s3_client", no_client)
    calls: list[ServiceContext] = []

    def factory(context: ServiceContext) -> BatchHandler:
        calls.append(context)
        raise _Stop("unreachable")

    code = run_service("probe", _queue, factory, [], stage_settings=StageKnobs)
    err = capsys.readouterr().err
    assert code == 2
    assert calls == []
    assert err == (
        "sensorpipe-probe: bad setting SENSORPIPE_PROBE_THREADS=9: threads must be >= 1 "
        "and <= 8 (Input should be less than or equal to 8)\n"
    )


def test_bad_flags_and_bad_stage_settings_are_reported_together(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SENSORPIPE_PROBE_THREADS", "0")

    def factory(context: ServiceContext) -> BatchHandler:
        raise _Stop("unreachable")

    argv = ["--shard", "-1", "--metrics-port", "70000"]
    code = run_service("probe", _queue, factory, argv, stage_settings=StageKnobs)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    for given in ("--shard=-1", "--metrics-port=70000", "SENSORPIPE_PROBE_THREADS=0"):
        assert given in err
    assert "(and 2 more: " in err


def test_a_context_built_by_hand_reads_the_stage_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENSORPIPE_PROBE_THREADS", "6")
    from sensorpipe.aws import s3_client, sqs_client
    from sensorpipe.config import load_pipeline_config

    context = ServiceContext(
        "probe", load_pipeline_config(), ServiceSettings(), sqs_client(), s3_client()
    )
    assert context.settings_of(StageKnobs).threads == 6


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), ("Warning", "WARNING")])
def test_log_level_is_any_case_and_anything_else_is_refused(
    monkeypatch: pytest.MonkeyPatch, given: str, level: str
) -> None:
    monkeypatch.setenv("SENSORPIPE_LOG_LEVEL", given)
    assert ServiceSettings().log_level == level
    monkeypatch.setenv("SENSORPIPE_LOG_LEVEL", "loud")
    with pytest.raises(ValueError, match="DEBUG, INFO, WARNING, ERROR, CRITICAL"):
        ServiceSettings()
