"""Rendering the IAM policies from a pipeline config: names follow the prefixes, shards
and KMS settings of the config; the command writes and checks the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sensorpipe.config import PipelineConfig, load_pipeline_config
from sensorpipe.config.pipeline import BucketSettings, EncryptionSettings, QueueSettings
from sensorpipe.provisioning.iam import SERVICES, main, render_policies


def resources(policy: dict[str, Any]) -> set[str]:
    return {r for s in policy["Statement"] for r in s["Resource"]}


def actions(policy: dict[str, Any]) -> set[str]:
    return {a for s in policy["Statement"] for a in s["Action"]}


def test_names_follow_the_prefixes_and_shards() -> None:
    config = PipelineConfig(
        buckets=BucketSettings(prefix="acme"),
        queues=QueueSettings(prefix="acme-q", aggregate_shards=3, notify_shards=2),
    )
    policies = render_policies(config)
    assert set(policies) == set(SERVICES)
    agg = resources(policies["aggregator"])
    assert {f"arn:aws:sqs:*:*:acme-q-aggregate-{i}" for i in range(3)} <= agg
    assert "arn:aws:s3:::acme-aggregated/1-minute/*" in agg
    assert "arn:aws:s3:::acme-aggregated/_checkpoints/aggregator-shard-*" in agg
    every = {r for p in policies.values() for r in resources(p)}
    assert all("acme" in r for r in every)
    assert not any("sensorpipe" in r for r in every)
    assert not any(r in ("*", "arn:aws:s3:::*") for r in every)


def test_prefix_from_the_environment() -> None:
    config = load_pipeline_config(None, env={"S3_BUCKET_PREFIX": "lab", "SQS_QUEUE_PREFIX": "labq"})
    uploader = render_policies(config)["uploader"]
    assert resources(uploader) == {"arn:aws:sqs:*:*:labq-ingest"}


def test_kms_statements_only_with_sse_kms() -> None:
    plain = render_policies(PipelineConfig())
    assert not any(a.startswith("kms:") for p in plain.values() for a in actions(p))
    key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    config = PipelineConfig(
        buckets=BucketSettings(encryption=EncryptionSettings(mode="sse-kms", kms_key_id=key))
    )
    policies = render_policies(config)
    validator = {s["Sid"]: s for s in policies["validator"]["Statement"]}
    write = validator["KmsWrite"]
    assert write["Action"] == ["kms:GenerateDataKey"] and write["Resource"] == [key]
    like = write["Condition"]["StringLike"]
    assert like["kms:ViaService"] == "s3.*.amazonaws.com"
    assert like["kms:EncryptionContext:aws:s3:arn"] == ["arn:aws:s3:::sensorpipe-error"]
    assert "KmsRead" not in validator  # it never reads an object
    dashboard = actions(policies["dashboard"])
    assert "kms:Decrypt" in dashboard and "kms:GenerateDataKey" not in dashboard
    assert not any(a.startswith("kms:") for a in actions(policies["uploader"]))


def test_kms_alias_is_a_condition() -> None:
    config = PipelineConfig(
        buckets=BucketSettings(
            encryption=EncryptionSettings(mode="sse-kms", kms_key_id="alias/sensorpipe")
        )
    )
    statements = render_policies(config)["router"]["Statement"]
    kms = next(s for s in statements if s["Sid"] == "KmsWrite")
    assert kms["Resource"] == ["arn:aws:kms:*:*:key/*"]
    assert kms["Condition"]["ForAnyValue:StringEquals"] == {
        "kms:ResourceAliases": ["alias/sensorpipe"]
    }


def test_command_writes_then_checks(tmp_path: Path) -> None:
    out = tmp_path / "iam"
    assert main(["--out", str(out), "--check"]) == 1  # nothing there yet
    assert main(["--out", str(out)]) == 0
    assert sorted(p.stem for p in out.glob("*.json")) == sorted(SERVICES)
    assert main(["--out", str(out), "--check"]) == 0
    (out / "router.json").write_text("{}\n")
    assert main(["--out", str(out), "--check"]) == 1
