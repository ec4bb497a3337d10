"""The end-to-end benchmark runs (``--smoke``) against the test session's LocalStack and
prints and writes every figure: each table row is there with its numbers, every ratio is
a positive finite number, every stage counted the rows the test asked for, and the JSON
holds the commit, the machine and the same figures. No timing is asserted."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_e2e import (
    ADDED,
    BACKLOG,
    BEHIND,
    CEILING,
    CODEC,
    DRAINED,
    FUSED,
    HOPS,
    STAGES,
    STEADY,
    WRITTEN,
)
from sensorpipe.devstack.localstack import aws_environment

pytestmark = [pytest.mark.integration, pytest.mark.e2e]  # services on LocalStack

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_e2e.py"
NUMBER = r"-?[0-9][0-9,]*(?:\.[0-9]+)?"
ROWS = 2500


def number(text: str) -> float:
    return float(text.replace(",", ""))


def positive_finite(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_smoke_run_prints_and_writes_every_figure(localstack: str, tmp_path: Path) -> None:
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SENSORPIPE__", "SENSORPIPE_NOTIFIER_"))
        },
        **aws_environment(localstack),
    }
    out_json = tmp_path / "e2e.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--rows", str(ROWS), "--json", str(out_json)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr[-3000:]}"
    assert "FAIL" not in out, out

    # Throughput: every row has the rows asked for and a positive, finite ratio.
    for label in (DRAINED, WRITTEN, FUSED, CEILING, CODEC):
        line = rf"^  {re.escape(label)} +([0-9]+) +({NUMBER}) +({NUMBER}) +({NUMBER})x$"
        found = re.search(line, out, re.MULTILINE)
        assert found, f"no figures for {label!r}:\n{out}"
        assert int(found.group(1)) == ROWS, found.group(0)
        for value in found.groups()[1:]:
            assert positive_finite(number(value)), found.group(0)

    # CPU per process: every stage, LocalStack and every forwarder of the ceiling (one
    # of them may use less than a clock tick in a smoke run: >= 0), and the totals.
    for name in ("uploader (in bench)", *STAGES, "localstack", *HOPS, "total, stages"):
        line = rf"^  {re.escape(name)} +({NUMBER}) +({NUMBER}) +({NUMBER})x"
        found = re.search(line, out, re.MULTILINE)
        assert found, f"no CPU figures for {name!r}:\n{out}"
        assert all(math.isfinite(number(v)) and number(v) >= 0 for v in found.groups())
    for name in ("total, stages", "baseline (a) fused"):
        found = re.search(rf"^  {re.escape(name)} +({NUMBER}) +({NUMBER}) +({NUMBER})x", out, re.M)
        assert found, f"no CPU figures for {name!r}:\n{out}"
        assert all(positive_finite(number(v)) for v in found.groups()), found.group(0)

    # Latency rows: the steady notifications were measured.
    for label in (STEADY, ADDED, BEHIND, BACKLOG):
        line = rf"^  {re.escape(label)} +([0-9]+) +({NUMBER}) +({NUMBER}) +({NUMBER})$"
        found = re.search(line, out, re.MULTILINE)
        assert found, f"no latency figures for {label!r}:\n{out}"
        assert int(found.group(1)) >= 1, found.group(0)

    # Counts: every stage saw the rows the test asked for.
    counted = re.search(
        r"^counts: sent ([0-9]+), enricher ([0-9]+), validator ([0-9]+) \(valid ([0-9]+), "
        r"invalid ([0-9]+), filtered ([0-9]+)\), router ([0-9]+), aggregator ([0-9]+); "
        r"anomalous ([0-9]+), notifier ([0-9]+); windows ([0-9]+) \(fused ([0-9]+)\), "
        r"notifications ([0-9]+) \(received ([0-9]+), fused ([0-9]+)\)",
        out,
        re.MULTILINE,
    )
    assert counted, out
    sent, enricher, validator, valid, invalid, filtered, router, aggregator = map(
        int, counted.groups()[:8]
    )
    anomalous, notifier, windows, fused_windows, notes, received, fused_notes = map(
        int, counted.groups()[8:]
    )
    assert sent == enricher == validator == ROWS
    assert valid + invalid + filtered == ROWS
    assert router == aggregator == valid
    assert notifier == anomalous
    assert windows == fused_windows >= 1
    assert notes == received == fused_notes

    # The JSON: the commit and machine, and the same figures.
    figures = json.loads(out_json.read_text())
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert figures["commit"] == head.stdout.strip()
    assert figures["machine"]["cpus"] == os.cpu_count()
    assert len(figures["machine"]["load"]) == 3
    assert figures["rows"] == ROWS
    assert figures["counts"]["sent"] == ROWS
    assert set(figures["rates"]) == {DRAINED, WRITTEN, FUSED, CEILING, CODEC}
    for rate in figures["rates"].values():
        assert rate["readings"] == ROWS
        assert positive_finite(rate["per_s"]), rate
    assert set(figures["cpu"]) >= {*STAGES, "localstack"}
    for use in figures["cpu"].values():
        assert use["cpu_s"] >= 0
    assert all(figures["cpu"][stage]["peak_rss"] > 0 for stage in STAGES)
    assert figures["live"]["latency"]["n"] >= 1
    buckets = figures["buckets"]
    assert {"archival", "aggregated"} <= set(buckets)
    assert all(entry["objects"] >= 1 and entry["bytes"] > 0 for entry in buckets.values())
    assert figures["failures"] == []
