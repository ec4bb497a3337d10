"""kill -9 of a real uploader process in the middle of a run, three times, against LocalStack:
after dropping whole resent batches (same batch id, identical records) every row arrives
exactly once."""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest

from tests.edge.uploader.conftest import Edge, rows_exactly_once, simulate

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_kill_9_in_the_middle_loses_and_duplicates_nothing(edge: Edge) -> None:
    total = 2000
    simulate(edge.db, total, invalid_fraction=0.02, duplicate_fraction=0.01)
    kills = []
    for quarter in (1, 2, 3):  # three crashes at different points of the run
        process = edge.uploader("--batch-size", "40")
        edge.wait_for_checkpoint(total * quarter // 4, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        kills.append(edge.last_id())
        json.loads(edge.checkpoint.read_text())  # never torn
    assert all(0 < at < total for at in kills), f"killed in the middle of the run: {kills}"
    edge.run_once("--batch-size", "40")
    received = edge.received()
    assert len(received.envelopes) >= total // 40
    rows_exactly_once(received, range(1, total + 1))
    assert set(Counter(received.row_ids()).values()) <= {1, 2}
