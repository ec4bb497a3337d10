"""The local quarantine: rows that cannot travel, kept beside the checkpoint.

A poison row (text that is not UTF-8, or a row too large for one message) must not stop
the edge node, and must not vanish. Each is appended as one JSON Lines entry (table,
row id, stream and batch, reason, and every value made safe: invalid text as replaced
text plus its bytes in base64) to ``<checkpoint>.quarantine.jsonl``, fsynced before the
checkpoint moves past it, counted in ``sensorpipe_uploader_rows_quarantined_total{reason}``
and logged at WARNING. A row is written once per stream: a resend after a crash, which
classifies the same rows the same way, finds it there already.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from edge.uploader import metrics
from edge.uploader.errors import CheckpointError
from edge.uploader.rows import Poison, safe_values

log = logging.getLogger("edge.uploader")


def quarantine_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(f"{checkpoint.stem}.quarantine.jsonl")


class Quarantine:
    """Appends poison rows to a JSON Lines file (``write=False``: only log and count)."""

    def __init__(self, path: Path, *, write: bool = True) -> None:
        self.path = Path(path)
        self.write = write
        self._seen = self._load_keys() if write else set()
        self.count = 0  # rows quarantined by this process

    def add(self, poison: Iterable[Poison], *, table: str, stream: str, batch_id: str) -> None:
        lines: list[str] = []
        for item in poison:
            key = (stream, item.row_id)
            if key in self._seen:
                continue
            self._seen.add(key)
            entry = {
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "table": table,
                "row_id": item.row_id,
                "reason": item.reason,
                "detail": item.detail,
                "stream": stream,
                "batch_id": batch_id,
                "values": safe_values(item.raw),
            }
            lines.append(json.dumps(entry, sort_keys=True, ensure_ascii=True) + "\n")
            self.count += 1
            metrics.ROWS_QUARANTINED.labels(item.reason).inc()
            log.warning(
                "QUARANTINED row id %d of %s (%s): %s; kept in %s, the upload goes on",
                item.row_id,
                table,
                item.reason,
                item.detail,
                self.path if self.write else "(dry run: not written)",
            )
        if lines and self.write:
            self._append("".join(lines))

    def _append(self, text: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="ascii") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise CheckpointError(
                f"cannot append to quarantine file {self.path}: {exc.strerror}",
                hint="check disk space and permissions of the state directory",
            ) from exc

    def _load_keys(self) -> set[tuple[str, int]]:
        try:
            text = self.path.read_text(encoding="ascii", errors="replace")
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise CheckpointError(
                f"cannot read quarantine file {self.path}: {exc.strerror}"
            ) from exc
        keys: set[tuple[str, int]] = set()
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                keys.add((str(entry["stream"]), int(entry["row_id"])))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash mid-append: its row is written again
        return keys
