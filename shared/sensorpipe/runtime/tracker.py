"""Thread-safe record of the messages this process holds in flight."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sensorpipe.runtime.message import Message


@dataclass(slots=True)
class _Entry:
    message: Message
    visible_at: float  # monotonic time at which SQS would hand it to someone else


class InFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def add(self, messages: list[Message], visibility_s: float) -> None:
        deadline = time.monotonic() + visibility_s
        with self._lock:
            for m in messages:
                self._entries[m.receipt_handle] = _Entry(m, deadline)

    def remove(self, messages: list[Message]) -> None:
        with self._lock:
            for m in messages:
                self._entries.pop(m.receipt_handle, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def due(self, within_s: float) -> list[Message]:
        """Messages whose visibility ends within ``within_s`` seconds."""
        limit = time.monotonic() + within_s
        with self._lock:
            return [e.message for e in self._entries.values() if e.visible_at <= limit]

    def extended(self, messages: list[Message], visibility_s: float) -> None:
        deadline = time.monotonic() + visibility_s
        with self._lock:
            for m in messages:
                entry = self._entries.get(m.receipt_handle)
                if entry is not None:
                    entry.visible_at = deadline

    def all(self) -> list[Message]:
        with self._lock:
            return [e.message for e in self._entries.values()]
