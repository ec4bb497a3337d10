"""``python -m sensorpipe.controller``: the same command as ``pipeline-controller``."""

from sensorpipe.controller.cli import main

raise SystemExit(main())
