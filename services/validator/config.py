"""Settings of the validator alone (environment ``SENSORPIPE_VALIDATOR_<NAME>``).

The spec itself is chosen by the pipeline config (``validation.spec_path``) or
``SENSORPIPE_VALIDATION_SPEC``; the future-timestamp skew by
``validation.max_future_skew_seconds`` of the pipeline config.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ValidatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENSORPIPE_VALIDATOR_", extra="ignore")

    # Error-bucket objects are gzip JSON Lines (``.jsonl.gz``) unless turned off.
    gzip_objects: bool = True
