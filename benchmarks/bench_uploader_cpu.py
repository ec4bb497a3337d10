"""The uploader's CPU per reading, alone, as ratios to a bare SQLite read of the same rows.

    .venv/bin/python benchmarks/bench_uploader_cpu.py [--rows 30000] [--batch-size 2000]
        [--repeat 3]

No queue and no LocalStack: the real uploader (``Uploader.drain``: SQLite read, decision
per column, controller read, pending checkpoint, envelope, checkpoint) drains a simulated
database into a sender that encodes exactly as the ingest producer does
(``encode_to_fit``, gzip JSON or Arrow) and keeps nothing. Measured in the same run:

- the baseline every figure is divided by: the bare read of the same rows (``SELECT *``,
  ``fetchall``, TEXT decoded by SQLite), the floor any uploader pays;
- the bare read with TEXT undecoded (``RawText``), as the row-by-row uploader read;
- the uploader forced row by row (every batch read undecoded, as a batch holding text
  that is not UTF-8 is, and as every batch was before issue 12).

CPU is ``time.process_time``; the best of ``--repeat`` runs is shown (the machine is
shared; the least disturbed run is the truest).
"""

from __future__ import annotations

import argparse
import io
import logging
import shlex
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

from edge.uploader import CheckpointStore, SensorSource, Uploader, UploadOptions
from edge.uploader.blocks import RowBlock
from edge.uploader.rows import RawText
from sensorpipe.controller import PipelineController
from sensorpipe.envelope import Encoded, Envelope, encode_to_fit
from sensorpipe.scenarios import BUILTIN_SCENARIOS

if not __package__:  # run as a script (python benchmarks/<name>.py): import from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_uploader import simulated_database

MAX_BYTES = 240 * 1024


class EncodingSender:
    """Encodes like ``EnvelopeProducer.send`` and sends nowhere."""

    def __init__(self, columnar: bool) -> None:
        self.columnar = columnar
        self.records = 0

    def send(self, envelopes: list[Envelope]) -> list[Encoded]:
        out = [
            part
            for envelope in envelopes
            for part in encode_to_fit(
                envelope, max_bytes=MAX_BYTES, compress=True, columnar=self.columnar
            )
        ]
        self.records += sum(part.record_count for part in out)
        return out


class RowByRowSource(SensorSource):
    """A source that reads every batch undecoded: each row decided on its own."""

    def block_after(self, after_id: int, limit: int) -> RowBlock:
        return self.block_between(after_id + 1, 2**63 - 1, limit, decode=False)


def bare_read(db: Path, text: type[str | RawText]) -> float:
    """CPU seconds to read every row, TEXT as ``text``, and nothing else."""
    conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True)
    conn.text_factory = text
    started = time.process_time()
    rows = conn.execute("SELECT * FROM sensor_readings ORDER BY id").fetchall()
    seconds = time.process_time() - started
    conn.close()
    assert rows
    return seconds


def drain(
    tmp: Path, db: Path, batch: int, columnar: bool, row_by_row: bool = False
) -> tuple[int, float]:
    """(records sent, CPU seconds) of one full drain."""
    sender = EncodingSender(columnar)
    uploader = Uploader(
        source=(RowByRowSource if row_by_row else SensorSource)(db, "sensor_readings"),
        store=CheckpointStore(tmp / f"ckpt-{uuid.uuid4().hex}.json"),
        controller=PipelineController(tmp / "controller.db"),
        sender=sender,
        options=UploadOptions(
            "bench", batch_size=batch, max_batch_bytes=MAX_BYTES, columnar=columnar
        ),
        known_scenarios=BUILTIN_SCENARIOS,
        dry_run_out=io.StringIO(),
    )
    started = time.process_time()
    uploader.drain()
    seconds = time.process_time() - started
    uploader.source.close()
    return sender.records, seconds


def run(rows: int, batch: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-uploader-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "sensors.db"
        simulated_database(db, rows)
        base = min(bare_read(db, str) for _ in range(repeat))
        undecoded = min(bare_read(db, RawText) for _ in range(repeat))
        print(f"{rows} rows, batch {batch}, best of {repeat}\n")
        print(f"{'':<44} {'CPU s':>7} {'us/reading':>11} {'vs bare read':>13}")
        for label, seconds in (
            ("baseline: bare SQLite read", base),
            ("bare SQLite read, TEXT undecoded", undecoded),
        ):
            print(
                f"{label:<44} {seconds:7.3f} {seconds / rows * 1e6:11.1f} {seconds / base:12.2f}x"
            )
        for label, columnar, row_by_row in (
            ("uploader, json (gzip) bodies", False, False),
            ("uploader, arrow bodies", True, False),
            ("uploader row by row, json (gzip) bodies", False, True),
            ("uploader row by row, arrow bodies", True, True),
        ):
            figures = [drain(tmp, db, batch, columnar, row_by_row) for _ in range(repeat)]
            sent, seconds = min(figures, key=lambda figure: figure[1])
            assert sent == rows, f"sent {sent} of {rows}"
            print(
                f"{label:<44} {seconds:7.3f} {seconds / rows * 1e6:11.1f} {seconds / base:12.2f}x"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is shown)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    run(args.rows, args.batch_size, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
