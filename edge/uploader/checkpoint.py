"""The durable checkpoint: the last row id SQS accepted, and what the database was.

Written atomically (temporary file, fsync, rename, fsync of the directory), so a crash
leaves either the old or the new state, never a torn file. Besides the last row id it
keeps fingerprints (id, timestamp, sensor_id) of the generation's first row and of the
last row sent, so a recreated database (ids restarting) is recognised, and a *pending*
batch: the exact id range, batch id and stamp about to be sent. After a crash between
send and checkpoint, that same batch is sent again, byte for byte the same records under
the same batch id, even if the writer has added rows since.

It also numbers the generation's batches (``next_seq``): batch n of a generation carries
position (stream, n) downstream, so the stateful stages can tell which of the source's
batches they have seen. A resent pending batch keeps its number.

A pending batch names its rows exactly: ``sent`` (the ids in the envelope) and ``read``
(those plus the rows set aside in quarantine), so a resend carries the same records even
if rows were written into its id range meanwhile. The checkpoint also remembers its
*gaps*, ids at or below ``last_id`` that held no row when the uploader read past them
(``[MIN_ID, 0]`` before anything was read): a row that appears there later is behind the
checkpoint, and is found and sent as a batch of its own instead of being skipped.
Old files without these fields read as whole-range batches and a gap below id 1, which
is what the uploader that wrote them did.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.uploader.errors import CheckpointError
from edge.uploader.idranges import MIN_ID, IdRanges
from edge.uploader.source import RowFingerprint

_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """A batch written down before sending; cleared once SQS accepted it."""

    batch_id: str
    first_id: int
    last_id: int
    count: int
    scenario: str
    config_version: int
    seq: int = 0  # the batch's number in its generation
    sent: IdRanges = field(default_factory=IdRanges)  # the ids in the envelope
    # sent plus quarantined: every row the batch accounts for
    read: IdRanges = field(default_factory=IdRanges)
    behind: bool = False  # rows found behind the checkpoint (last_id does not move)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "count": self.count,
            "scenario": self.scenario,
            "config_version": self.config_version,
            "seq": self.seq,
            "sent": self.sent.to_json(),
            "read": self.read.to_json(),
            "behind": self.behind,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingBatch:
        first, last = int(data["first_id"]), int(data["last_id"])
        whole = [[first, last]]  # written before batches named their rows
        return cls(
            batch_id=str(data["batch_id"]),
            first_id=first,
            last_id=last,
            count=int(data["count"]),
            scenario=str(data["scenario"]),
            config_version=int(data["config_version"]),
            seq=int(data.get("seq", 0)),
            sent=IdRanges.from_json(data.get("sent", whole)),
            read=IdRanges.from_json(data.get("read", whole)),
            behind=bool(data.get("behind", False)),
        )


def fresh_gaps() -> IdRanges:
    """Nothing read yet: every id up to 0 is a gap (ids at or below 0 are found there)."""
    return IdRanges.span(MIN_ID, 0)


@dataclass(slots=True)
class Checkpoint:
    source: str
    generation: int = 0
    generation_token: str | None = None
    anchor: RowFingerprint | None = None
    last_id: int = 0
    last: RowFingerprint | None = None
    max_id_seen: int = 0
    pending: PendingBatch | None = None
    next_seq: int = 0  # the number the generation's next new batch gets
    gaps: IdRanges = field(default_factory=fresh_gaps)
    updated_at: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "source": self.source,
            "generation": self.generation,
            "generation_token": self.generation_token,
            "anchor": self.anchor.to_dict() if self.anchor else None,
            "last_id": self.last_id,
            "last": self.last.to_dict() if self.last else None,
            "max_id_seen": self.max_id_seen,
            "pending": self.pending.to_dict() if self.pending else None,
            "next_seq": self.next_seq,
            "gaps": self.gaps.to_json(),
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        anchor, last, pending = data.get("anchor"), data.get("last"), data.get("pending")
        return cls(
            source=str(data["source"]),
            generation=int(data["generation"]),
            generation_token=data.get("generation_token"),
            anchor=RowFingerprint.from_dict(anchor) if anchor else None,
            last_id=int(data["last_id"]),
            last=RowFingerprint.from_dict(last) if last else None,
            max_id_seen=int(data.get("max_id_seen", 0)),
            pending=PendingBatch.from_dict(pending) if pending else None,
            next_seq=int(data.get("next_seq", 0)),
            gaps=IdRanges.from_json(data["gaps"]) if "gaps" in data else fresh_gaps(),
            updated_at=str(data.get("updated_at", "")),
        )


def default_checkpoint_path(state_dir: Path, source_name: str, db: Path, table: str) -> Path:
    """One checkpoint per (source name, database file, table)."""
    digest = hashlib.blake2b(str(db.absolute()).encode(), digest_size=6).hexdigest()
    name = _UNSAFE.sub("-", source_name).strip("-") or "edge"
    return state_dir / f"uploader-{name}-{table}-{digest}.json"


class CheckpointStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self, source: str) -> Checkpoint:
        """The stored checkpoint, or a fresh one (generation 0, nothing sent)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Checkpoint(source=source)
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
            if data.get("version") != _VERSION:
                raise ValueError(f"version {data.get('version')!r} is not {_VERSION}")
            return Checkpoint.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(
                f"checkpoint {self.path} is unreadable: {exc}",
                hint="it is never written partially; if it was edited by hand, fix or remove "
                "it (removing it resends everything, with the same batch ids)",
            ) from exc

    def save(self, checkpoint: Checkpoint) -> None:
        checkpoint.updated_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        data = json.dumps(checkpoint.to_dict(), indent=1, sort_keys=True).encode()
        try:
            write_atomically(self.path, data)
        except OSError as exc:
            raise CheckpointError(
                f"cannot write checkpoint {self.path}: {exc.strerror}",
                hint="check disk space and permissions of the state directory",
            ) from exc


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a crash leaves the old or the new file, never a
    torn one (temporary file, fsync, rename, fsync of the directory)."""
    directory = path.parent
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(directory)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
