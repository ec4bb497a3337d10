"""The upload loop: read rows after the checkpoint, stamp, send, then checkpoint.

Per batch: check the database is still the same generation; read the active scenario
and config version from the pipeline controller (at the start of *every* batch, so a
switch applies from the next batch on); write the batch down as pending; send its
envelope(s) to the ingest queue; only then advance the checkpoint. A crash anywhere in
between resends the identical batch under the identical batch id.

Nothing stops the upload, and nothing is skipped silently: a poison row (text that is not
UTF-8, or a row too large for one message) goes to the local quarantine file and the rows
around it go on (``rows.py``, ``quarantine.py``). A batch is read and decided by
columns (``blocks.py``): only a batch with text that is not UTF-8 is decided row by
row, and only rows that might be too large are measured one by one; rows that appear at or below the
checkpoint (ids at or below 0, a gap filled later) are found in the checkpoint's gaps and
sent as a batch of their own, the next in the stream; an unreadable controller means the
last known scenario (``stamp.py``), never an invented one.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import IO, Protocol

import orjson

from edge.uploader import metrics
from edge.uploader.batches import batch_id, build_envelope, generation_token, stream_id
from edge.uploader.blocks import RowBlock, Sendable, sendable
from edge.uploader.checkpoint import Checkpoint, CheckpointStore, PendingBatch
from edge.uploader.errors import CheckpointError, SourceError, StampError
from edge.uploader.idranges import IdRanges
from edge.uploader.quarantine import Quarantine, quarantine_path
from edge.uploader.rows import Row
from edge.uploader.source import RowFingerprint, SensorSource, fingerprint_of
from edge.uploader.stamp import LastKnownStore, ScenarioReader, StampKeeper, last_known_path
from sensorpipe.envelope import (
    Encoded,
    Envelope,
    EnvelopeError,
    Position,
    encode,
    encode_to_fit,
    encoded_size,
)
from sensorpipe.runtime.errors import SendError
from sensorpipe.runtime.metrics import RECORDS_PROCESSED, SCENARIO_INFO

log = logging.getLogger("edge.uploader")

# The gaps behind the checkpoint it remembers (the newest ones); normally one or two.
MAX_GAPS = 1024
# A split part's id and path are longer than the batch's: room kept for them when a row
# is measured alone (batch_size <= 100,000 means at most 17 halvings).
_SPLIT_DEPTH = 20
_HEADER_ROOM = 512


class EnvelopeSender(Protocol):
    def send(self, envelopes: list[Envelope]) -> list[Encoded]: ...


@dataclass(frozen=True)
class UploadOptions:
    source_name: str
    batch_size: int = 500
    max_batch_bytes: int = 240 * 1024
    poll_interval_s: float = 2.0
    compress: bool = True
    columnar: bool = False
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class BatchResult:
    batch_id: str
    first_id: int
    last_id: int
    records: int
    messages: int
    bytes: int
    scenario: str
    config_version: int
    resent: bool
    quarantined: int = 0  # rows of the batch set aside instead of sent


@dataclass(slots=True)
class Totals:
    batches: int = 0
    records: int = 0
    messages: int = 0
    bytes: int = 0


class Uploader:
    def __init__(
        self,
        *,
        source: SensorSource,
        store: CheckpointStore,
        controller: ScenarioReader,
        sender: EnvelopeSender | None,
        options: UploadOptions,
        known_scenarios: Collection[str],
        dry_run_out: IO[str] | None = None,
        last_known: LastKnownStore | None = None,
        quarantine: Quarantine | None = None,
    ) -> None:
        if sender is None and not options.dry_run:
            raise ValueError("a sender is required unless dry_run is set")
        self.source = source
        self.store = store
        self.sender = sender
        self.options = options
        self.dry_run_out = dry_run_out
        writes = not options.dry_run
        self.stamps = StampKeeper(
            controller,
            last_known or LastKnownStore(last_known_path(store.path), write=writes),
            known_scenarios,
        )
        self.quarantine = quarantine or Quarantine(quarantine_path(store.path), write=writes)
        self.rows_behind_found = 0
        self.state = store.load(source.name)
        if self.state.source != source.name:
            # Fingerprints still protect us: another database reads as a recreated one.
            log.warning(
                "checkpoint %s was written for %s, now reading %s",
                store.path,
                self.state.source,
                source.name,
            )
            self.state.source = source.name
        self.totals = Totals()
        self.last_error: str | None = None
        self._last_scenario: str | None = None

    # -- one batch ------------------------------------------------------------------

    def step(self) -> BatchResult | None:
        """Send one batch (a pending one first); None when there is nothing new."""
        self._check_generation()
        pending = self.state.pending
        if pending is not None:
            result = self._resend(pending)
            if result is not None:
                return result
        while True:
            behind = self._rows_behind()
            raw = behind or self.source.block_after(self.state.last_id, self.options.batch_size)
            if not raw:
                return None
            result = self._new_batch(raw, behind=bool(behind))
            if result is not None:
                return result
            # Every row read went to quarantine and the checkpoint moved past them: read on.

    def _new_batch(self, raw: RowBlock, *, behind: bool) -> BatchResult | None:
        stamp = self.stamps.stamp()
        if self.state.generation_token is None:
            anchor = self.source.first_row() or fingerprint_of(raw.row(0))
            token = generation_token(self.source.table, anchor)
            self.state = replace(self.state, anchor=anchor, generation_token=token)
        state = self.state
        assert state.generation_token is not None
        ids = raw.ids
        first, last = ids[0], ids[-1]
        pending = PendingBatch(
            batch_id=batch_id(
                self.options.source_name, state.generation, state.generation_token, first, last
            ),
            first_id=first,
            last_id=last,
            count=0,
            scenario=stamp.scenario,
            config_version=stamp.config_version,
            seq=state.next_seq,
            read=IdRanges.of(ids),
            behind=behind,
        )
        rows = self._sendable(raw, pending)
        last_fp = fingerprint_of(raw.row(-1))
        if not rows:
            self._commit(pending, last_fp=last_fp, next_seq=state.next_seq)
            return None
        pending = replace(pending, count=len(rows), sent=IdRanges.of(rows.ids))
        self._save(replace(state, pending=pending, next_seq=state.next_seq + 1))
        return self._send(rows, pending, resent=False, last_fp=last_fp)

    def _resend(self, pending: PendingBatch) -> BatchResult | None:
        in_range = self.source.block_between(pending.first_id, pending.last_id)
        # Exactly the rows it was sent with: a row written into its range since is not one.
        raw = in_range.only(pending.sent)
        last_fp = fingerprint_of(in_range.row(-1)) if in_range else None
        rows = self._sendable(raw, pending)
        if rows:
            return self._send(rows, pending, resent=True, last_fp=last_fp)
        log.error(
            "pending batch %s (rows %d..%d) is gone from the database; nothing to resend",
            pending.batch_id,
            pending.first_id,
            pending.last_id,
        )
        # Its number goes to the next batch: downstream never saw it complete, and
        # a number no batch ever completes would hold the source's progress back.
        self._commit(pending, last_fp=last_fp, next_seq=pending.seq)
        return None

    def _rows_behind(self) -> RowBlock | None:
        """Rows in the checkpoint's gaps: written at or below it after it moved past
        (rare: read undecoded, each row decided on its own)."""
        found: RowBlock | None = None
        for lo, hi in self.state.gaps:
            room = self.options.batch_size - (len(found) if found else 0)
            block = self.source.block_between(lo, hi, room, decode=False)
            found = block if found is None else found.plus(block)
            if len(found) >= self.options.batch_size:
                break
        if found:
            self.rows_behind_found += len(found)
            if not self.options.dry_run:
                metrics.ROWS_BEHIND_CHECKPOINT.inc(len(found))
            ids = found.ids
            log.warning(
                "ROWS BEHIND THE CHECKPOINT: %d row(s) of %s at or below row id %d appeared "
                "after the uploader read past their ids (ids %s%s); sending them as a batch "
                "of their own",
                len(found),
                self.source.name,
                self.state.last_id,
                ids[:10],
                ", ..." if len(ids) > 10 else "",
            )
        return found

    def _sendable(self, raw: RowBlock, pending: PendingBatch) -> Sendable:
        """The rows that can travel; the others go to quarantine, with their reason."""
        position = Position(self._stream(), pending.seq)
        rows, poison = sendable(
            raw,
            too_large=lambda row: self._too_large(row, pending, position),
            fits=self._certainly_fits,
            columnar=self.options.columnar,
        )
        if poison:
            self.quarantine.add(
                poison, table=self.source.table, stream=position.stream, batch_id=pending.batch_id
            )
        return rows

    def _certainly_fits(self, json_bytes: int) -> bool:
        """Whether a row of ``json_bytes`` of JSON fits one message alone, even
        incompressible and base64-encoded."""
        return (json_bytes + 4096) * 1.4 <= self.options.max_batch_bytes - _HEADER_ROOM

    def _too_large(self, row: Row, pending: PendingBatch, position: Position) -> str | None:
        """Why ``row`` cannot fit one message even alone, or None (it fits)."""
        limit = self.options.max_batch_bytes - _HEADER_ROOM
        size = len(orjson.dumps(row))
        if self._certainly_fits(size):
            return None
        alone = build_envelope(
            batch=pending.batch_id + ".1" * _SPLIT_DEPTH,
            scenario=pending.scenario,
            config_version=pending.config_version,
            rows=Sendable([row["id"]], rows=[row]),
            source_name=self.options.source_name,
            table=self.source.table,
            generation=self.state.generation,
            position=Position(position.stream, position.seq, "1" * _SPLIT_DEPTH),
        )
        encoded = encoded_size(
            encode(alone, compress=self.options.compress, columnar=self.options.columnar)
        )
        if encoded <= limit:
            return None
        return (
            f"the row alone encodes to {encoded} bytes ({size} bytes of JSON), over the "
            f"{self.options.max_batch_bytes}-byte message limit (queues.max_body_bytes / "
            "uploader.max_batch_bytes)"
        )

    def _stream(self) -> str:
        token = self.state.generation_token
        assert token is not None  # set before the first batch of a generation is read
        return stream_id(self.options.source_name, self.state.generation, token)

    def _send(
        self,
        rows: Sendable,
        pending: PendingBatch,
        *,
        resent: bool,
        last_fp: RowFingerprint | None,
    ) -> BatchResult:
        if resent:
            if len(rows) != pending.count:
                log.warning(
                    "resending batch %s with %d rows, %d were read before the crash "
                    "(rows deleted or no longer sendable meanwhile)",
                    pending.batch_id,
                    len(rows),
                    pending.count,
                )
            log.info(
                "resending batch %s (rows %d..%d) that may not have reached SQS",
                pending.batch_id,
                pending.first_id,
                pending.last_id,
            )
        envelope = build_envelope(
            batch=pending.batch_id,
            scenario=pending.scenario,
            config_version=pending.config_version,
            rows=rows,
            source_name=self.options.source_name,
            table=self.source.table,
            generation=self.state.generation,
            position=Position(self._stream(), pending.seq),
        )
        if self.options.dry_run:
            encoded = encode_to_fit(
                envelope,
                max_bytes=self.options.max_batch_bytes,
                compress=self.options.compress,
                columnar=self.options.columnar,
            )
        else:
            assert self.sender is not None
            encoded = self.sender.send([envelope])
        result = BatchResult(
            batch_id=pending.batch_id,
            first_id=pending.first_id,
            last_id=rows.ids[-1],
            records=len(rows),
            messages=len(encoded),
            bytes=sum(encoded_size(e) for e in encoded),
            scenario=pending.scenario,
            config_version=pending.config_version,
            resent=resent,
            quarantined=_count(pending.read) - _count(pending.sent),
        )
        self._commit(pending, last_fp=last_fp, next_seq=self.state.next_seq)
        self._report(result, encoded)
        return result

    def _commit(
        self, pending: PendingBatch, *, last_fp: RowFingerprint | None, next_seq: int
    ) -> None:
        """The batch is accounted for: move the checkpoint, or fill the gaps it came from."""
        state = self.state
        if pending.behind:
            gaps = state.gaps.minus(pending.read)
            last_id, last = state.last_id, state.last
        else:
            passed = IdRanges.span(state.last_id + 1, pending.last_id).minus(pending.read)
            gaps = state.gaps.union(passed)
            if len(gaps) > MAX_GAPS:
                kept = gaps.newest(MAX_GAPS)
                log.warning(
                    "%d gaps behind the checkpoint; forgetting the oldest: rows written "
                    "later into ids below %d will not be found",
                    len(gaps),
                    kept.intervals[0][0],
                )
                gaps = kept
            last_id = max(pending.last_id, state.last_id)
            last = last_fp or state.last
        self._save(
            replace(state, last_id=last_id, last=last, gaps=gaps, pending=None, next_seq=next_seq)
        )

    # -- generation, checkpoint, report ---------------------------------------------

    def _check_generation(self) -> None:
        state = self.state
        max_id = self.source.max_id()
        reason = self._recreation_reason(state, max_id)
        metrics.SOURCE_GENERATION.set(state.generation)
        if reason is None:
            if max_id > state.max_id_seen:
                state.max_id_seen = max_id  # informational; persisted with the next save
            metrics.BACKLOG_ROWS.set(max(max_id - state.last_id, 0))
            return
        metrics.SOURCE_RECREATIONS.inc()
        unsent = max(state.max_id_seen - state.last_id, 0)
        log.warning(
            "SOURCE DATABASE RECREATED: %s. %s: generation %d (token %s) ended at row id %d "
            "(highest id seen %d%s). Starting generation %d from row id 0; its batch ids "
            "differ from the old ones.",
            reason,
            self.source.name,
            state.generation,
            state.generation_token,
            state.last_id,
            state.max_id_seen,
            f"; {unsent} rows of the old file were never sent and went with it" if unsent else "",
            state.generation + 1,
        )
        if state.pending is not None:
            log.warning(
                "pending batch %s of the old generation is dropped: it belongs to the old "
                "file (it may or may not have reached SQS)",
                state.pending.batch_id,
            )
        self._save(
            Checkpoint(source=state.source, generation=state.generation + 1, max_id_seen=max_id)
        )

    def _recreation_reason(self, state: Checkpoint, max_id: int) -> str | None:
        """Why the database is not the one the checkpoint describes, or None."""
        for known in (state.last, state.anchor):
            if known is None:
                continue
            found = self.source.fingerprint(known.id)
            if found == known:
                return None
            if found is not None:
                return (
                    f"row id {known.id} now holds ({found.timestamp}, {found.sensor_id}), "
                    f"not ({known.timestamp}, {known.sensor_id})"
                )
            if max_id < known.id:
                return f"ids restarted: the highest id is now {max_id}, below {known.id}"
        return None  # rows deleted (pruned) but ids kept growing: same database

    def _save(self, state: Checkpoint) -> None:
        if not self.options.dry_run:
            self.store.save(state)
        self.state = state

    def _report(self, result: BatchResult, encoded: list[Encoded]) -> None:
        totals = self.totals
        totals.batches += 1
        totals.records += result.records
        totals.messages += result.messages
        totals.bytes += result.bytes
        behind = max(self.state.max_id_seen - self.state.last_id, 0)
        if not self.options.dry_run:
            metrics.BATCHES.labels("resent" if result.resent else "sent").inc()
            RECORDS_PROCESSED.labels("uploader", "sent").inc(result.records)
            if self._last_scenario not in (None, result.scenario):
                SCENARIO_INFO.labels("uploader", self._last_scenario).set(0)
            SCENARIO_INFO.labels("uploader", result.scenario).set(1)
            self._last_scenario = result.scenario
            metrics.CHECKPOINT_ROW_ID.set(self.state.last_id)
            metrics.BACKLOG_ROWS.set(behind)
            metrics.LAST_BATCH_TIMESTAMP.set(time.time())
        verb = "would send" if self.options.dry_run else ("resent" if result.resent else "sent")
        log.info(
            "%s batch %s: rows %d..%d, %d records in %d message(s), %.1f KiB, scenario %s "
            "(config v%d); %d rows behind",
            verb,
            result.batch_id,
            result.first_id,
            result.last_id,
            result.records,
            result.messages,
            result.bytes / 1024,
            result.scenario,
            result.config_version,
            behind,
        )
        if self.options.dry_run and self.dry_run_out is not None:
            parts = [
                {"batch_id": e.batch_id, "records": e.record_count, "bytes": encoded_size(e)}
                for e in encoded
            ]
            line = {**{k: getattr(result, k) for k in BatchResult.__slots__}, "parts": parts}
            print(json.dumps(line), file=self.dry_run_out, flush=True)

    def health(self) -> dict[str, object]:
        """For /healthz: "ok", "degraded" (sending under the last known scenario while the
        controller is unreadable) or "unhealthy" (no scenario known: not sending), with
        the reason. Other errors are retried, so they leave it "ok", with ``last_error``."""
        status, reason = self.stamps.status()
        return {
            "status": status,
            "reason": reason,
            "controller": self.stamps.health(),
            "rows_quarantined": self.quarantine.count,
            "quarantine_file": str(self.quarantine.path),
            "rows_behind_checkpoint": self.rows_behind_found,
            "source": self.source.name,
            "generation": self.state.generation,
            "checkpoint_row_id": self.state.last_id,
            "batches": self.totals.batches,
            "records": self.totals.records,
            "last_error": self.last_error,
        }

    # -- loops ----------------------------------------------------------------------

    def drain(self, stop: threading.Event | None = None) -> Totals:
        """Send batches until no new row is left (``--once``); errors propagate."""
        while stop is None or not stop.is_set():
            if self.step() is None:
                break
        return self.totals

    def run(self, stop: threading.Event) -> Totals:
        """Send continuously until ``stop`` is set; waits a poll interval when idle
        and retries after errors (nothing is checkpointed past an unsent batch)."""
        last_progress = time.monotonic()
        while not stop.is_set():
            try:
                result = self.step()
            except (SourceError, StampError, SendError, CheckpointError, EnvelopeError) as exc:
                # Once per distinct error, not every poll: a long outage is one line.
                level = logging.DEBUG if str(exc) == self.last_error else logging.WARNING
                self.last_error = str(exc)
                log.log(level, "%s; retrying every %.1f s", exc, self.options.poll_interval_s)
                stop.wait(self.options.poll_interval_s)
                continue
            self.last_error = None
            if result is None or result.records < self.options.batch_size:
                if time.monotonic() - last_progress > 60:
                    log.info(
                        "idle: checkpoint at row id %d of %s", self.state.last_id, self.source.name
                    )
                    last_progress = time.monotonic()
                stop.wait(self.options.poll_interval_s)
            else:
                last_progress = time.monotonic()
        return self.totals


def _count(ids: IdRanges) -> int:
    return sum(hi - lo + 1 for lo, hi in ids)
