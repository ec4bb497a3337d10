"""``python -m sensorpipe.replay``: the same command as ``sensorpipe-replay``."""

from sensorpipe.replay.cli import main

raise SystemExit(main())
