"""Atomic reads and audited, append-only writes of the active pipeline scenario.

Concurrency model (the seed's promises, kept): WAL mode so readers never block the writer;
every write is one ``BEGIN IMMEDIATE`` transaction that reads the newest row and appends
after it; every read is a single SELECT, so it sees either the whole change or none of it.
"Database is locked" is retried with exponential back-off until ``lock_timeout_s``.

``read_only=True`` (or :meth:`PipelineController.open_existing`) opens an existing file
with ``mode=ro`` and never creates, migrates or seeds it: a reader such as the edge
uploader must not turn a deleted controller into a fresh one seeded ``raw``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from sensorpipe.controller.errors import (
    DatabaseLockedError,
    DatabaseUnavailableError,
    EmptyConfigError,
    InvalidLimitError,
)
from sensorpipe.controller.models import ActiveScenario, Change, SetResult, parse_row
from sensorpipe.controller.schema import (
    INSERT_ROW,
    Layout,
    bring_up_to_date,
    inspect_schema,
    utc_now_iso,
)
from sensorpipe.controller.validation import (
    metadata_json,
    validate_operator,
    validate_scenario_name,
)
from sensorpipe.scenarios import BUILTIN_SCENARIOS

MAX_HISTORY_LIMIT = 100_000
DEFAULT_LOCK_TIMEOUT_S = 15.0
# Short waits inside SQLite's own busy handler; tenacity does the longer back-off.
_BUSY_WAIT_PER_ATTEMPT_S = 0.2

_SELECT = "SELECT id, pipeline_type, updated_at, updated_by, metadata FROM pipeline_config"
_T = TypeVar("_T")


class PipelineController:
    """The pipeline_config log in one SQLite file. Safe to use from many processes."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        valid_scenarios: Collection[str] | None = None,
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
        read_only: bool = False,
    ) -> None:
        self.db_path = Path(db_path)
        self.read_only = read_only
        # Resolved once: a later chdir of the process must not move the database.
        self._uri = self.db_path.absolute().as_uri()
        if not 0 < lock_timeout_s <= 3600:
            raise InvalidLimitError(
                f"lock timeout {lock_timeout_s} s is outside (0, 3600]", db_path=self.db_path
            )
        self._lock_timeout_s = lock_timeout_s
        extra = frozenset(valid_scenarios or ())
        for name in extra:
            validate_scenario_name(name, db_path=self.db_path)
        self.allowed_scenarios: frozenset[str] = frozenset(BUILTIN_SCENARIOS) | extra
        self._check_location()
        if read_only:
            self._run(self._check_usable)
        else:
            self._run(self._prepare, create=True)

    @classmethod
    def open_existing(
        cls,
        db_path: str | os.PathLike[str],
        valid_scenarios: Collection[str] | None = None,
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> PipelineController:
        """Open an existing, current controller read-only; never create or change it.

        Raises ``DatabaseUnavailableError`` when the file is missing, not SQLite or not
        in the current layout, ``EmptyConfigError`` when it holds no row, and
        ``DatabaseLockedError`` when it stays locked beyond ``lock_timeout_s``.
        """
        return cls(db_path, valid_scenarios, lock_timeout_s=lock_timeout_s, read_only=True)

    # -- public API -------------------------------------------------------------------

    def validate_scenario(self, scenario: str) -> str:
        """Return ``scenario`` if it may be set; raise before any SQL runs otherwise."""
        return validate_scenario_name(scenario, self.allowed_scenarios, db_path=self.db_path)

    def active(self) -> ActiveScenario:
        row = self._run(_fetch_newest)
        if row is None:
            raise EmptyConfigError(
                "pipeline_config has no rows, so no scenario is active",
                db_path=self.db_path,
                hint="record one with `pipeline-controller set SCENARIO --by WHO`",
            )
        return parse_row(self.db_path, row)

    def set(
        self,
        scenario: str,
        by: str,
        reason: str | None = None,
        extra_metadata: Mapping[str, Any] | None = None,
    ) -> SetResult:
        """Make ``scenario`` active; records nothing when it already is."""
        if self.read_only:
            raise DatabaseUnavailableError(
                "opened read-only, so no scenario can be set through it",
                db_path=self.db_path,
                hint="use `pipeline-controller set SCENARIO --by WHO`",
            )
        self.validate_scenario(scenario)
        operator = validate_operator(by, db_path=self.db_path)
        metadata = metadata_json(reason, extra_metadata, db_path=self.db_path)

        def append_if_changed(conn: sqlite3.Connection) -> tuple[Any, Any]:
            with _write_transaction(conn):
                previous = _fetch_newest(conn)
                if previous is not None and previous[1] == scenario:
                    return previous, None
                # Timestamp taken under the write lock, so time order follows id order.
                cursor = conn.execute(INSERT_ROW, (scenario, utc_now_iso(), operator, metadata))
                return previous, conn.execute(
                    f"{_SELECT} WHERE id = ?", (cursor.lastrowid,)
                ).fetchone()

        previous_row, new_row = self._run(append_if_changed)
        previous = parse_row(self.db_path, previous_row) if previous_row is not None else None
        if new_row is None:
            assert previous is not None
            return SetResult(changed=False, previous=previous, current=previous)
        return SetResult(changed=True, previous=previous, current=parse_row(self.db_path, new_row))

    def history(self, limit: int = 20) -> list[ActiveScenario]:
        """The newest ``limit`` rows, newest first."""
        if isinstance(limit, bool) or not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise InvalidLimitError(
                f"history limit {limit!r} is outside 1..{MAX_HISTORY_LIMIT}",
                db_path=self.db_path,
            )
        rows = self._run(
            lambda conn: conn.execute(f"{_SELECT} ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        )
        return [parse_row(self.db_path, row) for row in rows]

    def watch(
        self, poll_interval_s: float = 1.0, stop_event: threading.Event | None = None
    ) -> Iterator[Change]:
        """Every change after this call, in order, until ``stop_event`` is set.

        The starting point is taken now, not at the first ``next()``. Changes are found by
        row id once PRAGMA data_version says another connection committed, never by
        comparing timestamps, so several changes within one second are all reported.
        """
        if not 0.01 <= poll_interval_s <= 3600:
            raise InvalidLimitError(
                f"poll interval {poll_interval_s} s is outside 0.01..3600", db_path=self.db_path
            )
        # The stream may be consumed by another thread; a generator never runs twice at once.
        conn = self._connect(any_thread=True)
        try:
            # data_version first: a commit between the two reads is then seen as a change.
            seen_data_version = self._data_version(conn)
            newest = self._retrying(conn, _fetch_newest)
        except BaseException:
            conn.close()
            raise
        start = parse_row(self.db_path, newest) if newest is not None else None
        stop = stop_event if stop_event is not None else threading.Event()
        return self._follow(conn, start, seen_data_version, poll_interval_s, stop)

    def _follow(
        self,
        conn: sqlite3.Connection,
        last: ActiveScenario | None,
        seen_data_version: int,
        poll_interval_s: float,
        stop: threading.Event,
    ) -> Iterator[Change]:
        with closing(conn):
            while not stop.is_set():
                data_version = self._data_version(conn)
                if data_version != seen_data_version:
                    seen_data_version = data_version
                    after_id = last.config_version if last is not None else 0
                    for row in self._retrying(conn, _rows_after(after_id)):
                        current = parse_row(self.db_path, row)
                        yield Change(previous=last, current=current)
                        last = current
                stop.wait(poll_interval_s)

    # -- connections, retries, errors -------------------------------------------------

    def _check_location(self) -> None:
        directory = self.db_path.parent
        if not directory.is_dir():
            raise DatabaseUnavailableError(
                f"directory {directory} does not exist",
                db_path=self.db_path,
                hint=f"create it (mkdir -p {directory}) or point --db / PIPELINE_CONTROLLER_DB "
                "at an existing directory",
            )
        if self.read_only and not self.db_path.exists():
            raise DatabaseUnavailableError(
                "does not exist (opened read-only, so it is not created)",
                db_path=self.db_path,
                hint="create it with `pipeline-controller set SCENARIO --by WHO`, or point "
                "--controller-db / pipeline.controller_db at the existing file",
            )
        if self.db_path.exists() and not self.db_path.is_file():
            raise DatabaseUnavailableError(
                "is not a regular file", db_path=self.db_path, hint="pass the database file path"
            )

    def _connect(self, *, create: bool = False, any_thread: bool = False) -> sqlite3.Connection:
        # mode=rw after the first open: a file deleted under us is an error, not silently
        # replaced by an empty database.
        # mode=ro for a reader: SQLite then cannot create the file either.
        mode = "ro" if self.read_only else ("rwc" if create else "rw")
        uri = f"{self._uri}?mode={mode}"
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), not implicit.
            return sqlite3.connect(
                uri,
                uri=True,
                timeout=_BUSY_WAIT_PER_ATTEMPT_S,
                isolation_level=None,
                check_same_thread=not any_thread,
            )
        except sqlite3.Error as exc:
            raise _unavailable(exc, self.db_path) from exc

    def _run(self, work: Callable[[sqlite3.Connection], _T], *, create: bool = False) -> _T:
        with closing(self._connect(create=create)) as conn:
            return self._retrying(conn, work)

    def _retrying(self, conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
        started = time.monotonic()
        retrying = Retrying(
            retry=retry_if_exception(_is_busy),
            # Jitter keeps competing writers from retrying in lockstep.
            wait=wait_exponential(multiplier=0.01, max=0.5) + wait_random(0, 0.02),
            stop=stop_after_delay(self._lock_timeout_s),
            reraise=True,
        )
        try:
            return retrying(work, conn)
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # misuse of the API is a bug here, not a database problem
        except sqlite3.Error as exc:
            if _is_busy(exc):
                raise DatabaseLockedError(
                    db_path=self.db_path,
                    waited_s=time.monotonic() - started,
                    attempts=int(retrying.statistics.get("attempt_number", 1)),
                ) from exc
            raise _unavailable(exc, self.db_path) from exc

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # Inspect first: a file we cannot use (unknown layout) must not even become WAL.
        state = inspect_schema(conn, str(self.db_path))
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if _primary_code(exc) != sqlite3.SQLITE_READONLY:
                raise
            # A read-only file can still be read if its table is current; writes will
            # then fail with a clear read-only error.
        if state.ready:
            return  # the common case takes no write lock
        with _write_transaction(conn):
            bring_up_to_date(conn, str(self.db_path))

    def _check_usable(self, conn: sqlite3.Connection) -> None:
        state = inspect_schema(conn, str(self.db_path))
        if state.layout is not Layout.CURRENT:
            raise DatabaseUnavailableError(
                f"pipeline_config is {state.layout.value}, not the current layout, and a "
                "read-only reader may not create or migrate it",
                db_path=self.db_path,
                hint="run any `pipeline-controller` command once to bring it up to date",
            )
        if not state.has_rows:
            raise EmptyConfigError(
                "pipeline_config has no rows, so no scenario is active",
                db_path=self.db_path,
                hint="record one with `pipeline-controller set SCENARIO --by WHO`",
            )

    def _data_version(self, conn: sqlite3.Connection) -> int:
        row = self._retrying(conn, lambda c: c.execute("PRAGMA data_version").fetchone())
        return int(row[0])


def _fetch_newest(conn: sqlite3.Connection) -> Any:
    return conn.execute(f"{_SELECT} ORDER BY id DESC LIMIT 1").fetchone()


def _rows_after(config_version: int) -> Callable[[sqlite3.Connection], list[Any]]:
    def fetch(conn: sqlite3.Connection) -> list[Any]:
        return conn.execute(f"{_SELECT} WHERE id > ? ORDER BY id", (config_version,)).fetchall()

    return fetch


@contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _is_busy(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    if _primary_code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return True
    message = str(exc).lower()
    return "database is locked" in message or "busy" in message


def _unavailable(exc: sqlite3.Error, db_path: Path) -> DatabaseUnavailableError:
    code = _primary_code(exc)
    if code == sqlite3.SQLITE_READONLY or "readonly" in str(exc):
        return DatabaseUnavailableError(
            f"the database is read-only ({exc})",
            db_path=db_path,
            hint="make the file and its directory writable (check chmod, `lsattr` for the "
            "immutable flag, read-only mounts); the file was not modified",
        )
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return DatabaseUnavailableError(
            f"is not a usable SQLite database ({exc})",
            db_path=db_path,
            hint="point --db at the right file or restore it from a backup; "
            "the file was not modified",
        )
    if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
        return DatabaseUnavailableError(
            f"cannot open the database ({exc})",
            db_path=db_path,
            hint="check the path and that this user may read and write it and its directory",
        )
    return DatabaseUnavailableError(
        f"SQLite error: {exc}", db_path=db_path, hint="check disk space and file permissions"
    )
