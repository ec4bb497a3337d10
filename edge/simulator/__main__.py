"""``python -m edge.simulator``: write simulated sensor readings into a SQLite database.

Examples:
  python -m edge.simulator --db data/sensor_data.db --count 10000 --seed 42 \\
      --replay-start 2025-08-18T00:00:00+00:00 --invalid-fraction 0.02 --manifest m.json
  python -m edge.simulator --db data/sensor_data.db --rate 30 --speed 1   # live, until Ctrl-C

Exit codes: 0 done (also when stopped by SIGTERM/SIGINT); 1 the database cannot be
used; 2 a bad option (one line on stderr, nothing written); 141 stdout closed early.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from edge.simulator.errors import SimulatorError
from edge.simulator.schema import SENSOR_TABLES
from edge.simulator.simulation import Simulation, SimulationOptions
from sensorpipe.cli import command


def _iso_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edge.simulator",
        description="Write simulated sensor readings (sensor-log-generator layout) to SQLite.",
    )
    p.add_argument("--db", type=Path, required=True, help="SQLite file to write")
    p.add_argument("--table", choices=SENSOR_TABLES, default="sensor_readings")
    p.add_argument("--sensors", type=int, default=50)
    p.add_argument("--locations", type=int, default=5)
    p.add_argument("--rate", type=float, default=10.0, help="readings per second, whole fleet")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--duration", type=float, help="simulated seconds to cover")
    stop.add_argument("--count", type=int, help="rows to write")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--replay-start",
        type=_iso_time,
        help="event time of the first reading (default: now); fix it for reproducible rows",
    )
    p.add_argument(
        "--speed",
        type=float,
        help="x real time (0 = as fast as possible); default 0 with --replay-start, else 1. "
        "Without --replay-start, a speed other than 1 makes event times run ahead of the clock",
    )
    p.add_argument("--invalid-fraction", type=float, default=0.0)
    p.add_argument("--late-fraction", type=float, default=0.0)
    p.add_argument(
        "--late-delay",
        type=float,
        nargs=2,
        default=(30.0, 300.0),
        metavar=("MIN_S", "MAX_S"),
        help="how late a late row is written, in simulated seconds",
    )
    p.add_argument("--duplicate-fraction", type=float, default=0.0)
    p.add_argument(
        "--anomaly-probability",
        type=float,
        default=0.01,
        help="chance per reading that an anomaly starts on that sensor; spikes last one "
        "reading, trends/patterns/noise several, all flagged",
    )
    p.add_argument("--commit-every", type=int, default=50, help="rows per transaction")
    p.add_argument(
        "--recreate",
        action="store_true",
        help="delete the database first, as the generator does on start (ids restart at 1)",
    )
    p.add_argument("--manifest", type=Path, help="write a JSON manifest of row ids here")
    return p


@command
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.count is None and args.duration is None and args.replay_start is not None:
        # A replay from a fixed start with no end would never finish unthrottled.
        _parser().error("--replay-start needs --count or --duration")
    speed = args.speed if args.speed is not None else (0.0 if args.replay_start else 1.0)
    options = SimulationOptions(
        db=args.db,
        table=args.table,
        sensors=args.sensors,
        locations=args.locations,
        rate=args.rate,
        duration_s=args.duration,
        count=args.count,
        seed=args.seed,
        replay_start=args.replay_start,
        speed=speed,
        invalid_fraction=args.invalid_fraction,
        late_fraction=args.late_fraction,
        duplicate_fraction=args.duplicate_fraction,
        anomaly_probability=args.anomaly_probability,
        late_delay_s=(args.late_delay[0], args.late_delay[1]),
        commit_every=args.commit_every,
        recreate=args.recreate,
    )
    stop_event = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        simulation = Simulation(options, stop_event)  # checks every option, touches nothing
    except SimulatorError as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        manifest = simulation.run()
    except SimulatorError as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return 1
    if args.manifest is not None:
        manifest.write(args.manifest)
    counts = manifest.to_dict()["counts"]
    elapsed = time.monotonic() - started
    print(
        f"simulator: wrote {manifest.rows} rows (ids {manifest.first_id}..{manifest.last_id}) "
        f"to {args.db}:{args.table} in {elapsed:.2f} s; "
        + ", ".join(f"{k} {v}" for k, v in counts.items()),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
