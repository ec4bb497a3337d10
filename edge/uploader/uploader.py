"""The upload loop: read rows after the checkpoint, stamp, send, then checkpoint.

Per batch: check the database is still the same generation; read the active scenario
and config version from the pipeline controller (at the start of *every* batch, so a
switch applies from the next batch on); write the batch down as pending; send its
envelope(s) to the ingest queue; only then advance the checkpoint. A crash anywhere in
between resends the identical batch under the identical batch id.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import IO, Protocol

from edge.uploader import metrics
from edge.uploader.batches import batch_id, build_envelope, generation_token, stream_id
from edge.uploader.checkpoint import Checkpoint, CheckpointStore, PendingBatch
from edge.uploader.errors import CheckpointError, SourceError, StampError
from edge.uploader.source import Row, RowFingerprint, SensorSource
from sensorpipe.controller import ActiveScenario, ControllerError
from sensorpipe.envelope import (
    Encoded,
    Envelope,
    EnvelopeError,
    Position,
    encode_to_fit,
    encoded_size,
)
from sensorpipe.runtime.errors import SendError
from sensorpipe.runtime.metrics import RECORDS_PROCESSED, SCENARIO_INFO

log = logging.getLogger("edge.uploader")


class ScenarioReader(Protocol):
    def active(self) -> ActiveScenario: ...


class EnvelopeSender(Protocol):
    def send(self, envelopes: list[Envelope]) -> list[Encoded]: ...


@dataclass(frozen=True)
class UploadOptions:
    source_name: str
    batch_size: int = 500
    max_batch_bytes: int = 240 * 1024
    poll_interval_s: float = 2.0
    compress: bool = True
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
    ) -> None:
        if sender is None and not options.dry_run:
            raise ValueError("a sender is required unless dry_run is set")
        self.source = source
        self.store = store
        self.controller = controller
        self.sender = sender
        self.options = options
        self.known_scenarios = frozenset(known_scenarios)
        self.dry_run_out = dry_run_out
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
            rows = self.source.rows_between(pending.first_id, pending.last_id)
            if rows:
                return self._send(rows, pending, resent=True)
            log.error(
                "pending batch %s (rows %d..%d) is gone from the database; nothing to resend",
                pending.batch_id,
                pending.first_id,
                pending.last_id,
            )
            # Its number goes to the next batch: downstream never saw it complete, and
            # a number no batch ever completes would hold the source's progress back.
            self._save(replace(self.state, pending=None, next_seq=pending.seq))
        rows = self.source.rows_after(self.state.last_id, self.options.batch_size)
        if not rows:
            return None
        stamp = self._stamp()
        state = self.state
        if state.generation_token is None:
            anchor = self.source.first_row() or _fingerprint(rows[0])
            state = replace(
                state, anchor=anchor, generation_token=generation_token(self.source.table, anchor)
            )
        assert state.generation_token is not None
        first, last = int(rows[0]["id"]), int(rows[-1]["id"])
        pending = PendingBatch(
            batch_id=batch_id(
                self.options.source_name, state.generation, state.generation_token, first, last
            ),
            first_id=first,
            last_id=last,
            count=len(rows),
            scenario=stamp.scenario,
            config_version=stamp.config_version,
            seq=state.next_seq,
        )
        self._save(replace(state, pending=pending, next_seq=state.next_seq + 1))
        return self._send(rows, pending, resent=False)

    def _send(self, rows: list[Row], pending: PendingBatch, *, resent: bool) -> BatchResult:
        if resent:
            if len(rows) != pending.count:
                log.warning(
                    "resending batch %s with %d rows, %d were read before the crash "
                    "(rows deleted meanwhile)",
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
        token = self.state.generation_token
        assert token is not None  # set before the first batch of a generation is written
        stream = stream_id(self.options.source_name, self.state.generation, token)
        envelope = build_envelope(
            batch=pending.batch_id,
            scenario=pending.scenario,
            config_version=pending.config_version,
            rows=rows,
            source_name=self.options.source_name,
            table=self.source.table,
            generation=self.state.generation,
            position=Position(stream, pending.seq),
        )
        if self.options.dry_run:
            encoded = encode_to_fit(
                envelope, max_bytes=self.options.max_batch_bytes, compress=self.options.compress
            )
        else:
            assert self.sender is not None
            encoded = self.sender.send([envelope])
        result = BatchResult(
            batch_id=pending.batch_id,
            first_id=pending.first_id,
            last_id=int(rows[-1]["id"]),
            records=len(rows),
            messages=len(encoded),
            bytes=sum(encoded_size(e) for e in encoded),
            scenario=pending.scenario,
            config_version=pending.config_version,
            resent=resent,
        )
        last_id = max(pending.last_id, self.state.last_id)
        self._save(replace(self.state, last_id=last_id, last=_fingerprint(rows[-1]), pending=None))
        self._report(result, encoded)
        return result

    # -- stamp, generation, checkpoint ----------------------------------------------

    def _stamp(self) -> ActiveScenario:
        try:
            active = self.controller.active()
        except ControllerError as exc:
            raise StampError(f"cannot read the active scenario: {exc}") from exc
        if active.scenario not in self.known_scenarios:
            raise StampError(
                f"active scenario {active.scenario!r} (config version {active.config_version}) "
                "has no route in the pipeline config; holding rows at the edge",
                hint="add the scenario to the config's scenarios table or switch to a known one",
            )
        return active

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
        """For /healthz: alive and where it stands (errors are retried, so still ok)."""
        return {
            "status": "ok",
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
                self.last_error = str(exc)
                log.warning("%s; retrying in %.1f s", exc, self.options.poll_interval_s)
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


def _fingerprint(row: Row) -> RowFingerprint:
    return RowFingerprint(int(row["id"]), row.get("timestamp"), row.get("sensor_id"))
