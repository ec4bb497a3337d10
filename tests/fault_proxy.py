"""A TCP proxy in front of LocalStack that breaks the network on demand (the chaos tests'
one hand-made part: a few dozen lines instead of installing toxiproxy).

Modes:
- ``healthy``: bytes pass both ways;
- ``flaky``: a lossy, slow network: every chunk is delayed ``latency_s``, and every
  ``tick_s`` each open connection is reset with probability ``reset_probability``, often
  mid-request or mid-response (a write may have happened on the server while its client
  saw an error);
- ``down``: every open connection is reset and new ones are reset on arrival (an outage);
- ``slow``: a congested network: every chunk is delayed ``slow_latency_s``, no resets.

With ``cut_probability`` above 0 (off by default), ``flaky`` also cuts connections in the
middle of a message: a chunk is forwarded only halfway, then both sides are reset: a
request the server got half of (``cuts_request``), a response the client got half of
(``cuts_response``: headers without their body, or a body that stops). Other resets also
count as ``resets_mid_request`` when the last bytes were the client's (it is
waiting for the answer to a request the server may have carried out).

Clients pool connections (botocore keeps them alive), so faults are applied to open
connections over time, not only when one is made.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


@dataclass
class FaultProxy:
    upstream_port: int
    reset_probability: float = 0.1
    latency_s: float = 0.02
    tick_s: float = 0.2
    seed: int = 7
    mode: str = "healthy"
    resets: int = 0  # connections broken on purpose
    slow_latency_s: float = 0.3
    cut_probability: float = 0.0
    cuts_request: int = 0
    cuts_response: int = 0
    resets_mid_request: int = 0
    _last: dict[tuple[socket.socket, socket.socket], socket.socket] = field(
        default_factory=dict, repr=False
    )  # pair -> the side that sent its last bytes
    _pairs: set[tuple[socket.socket, socket.socket]] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(128)
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()
        threading.Thread(target=self._chaos, name="fault-proxy-chaos", daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def set_mode(self, mode: str) -> None:
        assert mode in ("healthy", "flaky", "down", "slow"), mode
        self.mode = mode
        if mode == "down":
            with self._lock:
                doomed = list(self._pairs)
            for pair in doomed:
                self._reset(pair)

    def close(self) -> None:
        self._closed.set()
        self._server.close()

    # -- plumbing ------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.mode == "down":
                self._reset((client, client))
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            for source, target in (pair, (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, target, pair), daemon=True
                ).start()

    def _pump(
        self,
        source: socket.socket,
        target: socket.socket,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        with suppress(OSError):
            while chunk := source.recv(65536):
                if self.mode == "flaky":
                    time.sleep(self.latency_s)
                    if self.cut_probability and self._random.random() < self.cut_probability:
                        self._cut(source, target, pair, chunk)
                        return
                elif self.mode == "slow":
                    time.sleep(self.slow_latency_s)
                target.sendall(chunk)
                self._last[pair] = source
        for sock in pair:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._pairs.discard(pair)
            self._last.pop(pair, None)

    def _cut(
        self,
        source: socket.socket,
        target: socket.socket,
        pair: tuple[socket.socket, socket.socket],
        chunk: bytes,
    ) -> None:
        """Forward half of a chunk, then reset both sides: a message cut in the middle."""
        target.sendall(chunk[: max(1, len(chunk) // 2)])
        if source is pair[0]:
            self.cuts_request += 1
        else:
            self.cuts_response += 1
        self._last.pop(pair, None)  # counted as a cut, not as a reset awaiting an answer
        self._reset(pair)

    def _chaos(self) -> None:
        while not self._closed.wait(self.tick_s):
            if self.mode != "flaky":
                continue
            with self._lock:
                doomed = [p for p in self._pairs if self._random.random() < self.reset_probability]
            for pair in doomed:
                self._reset(pair)

    def _reset(self, pair: tuple[socket.socket, socket.socket]) -> None:
        self.resets += 1
        if self._last.get(pair) is pair[0] and pair[0] is not pair[1]:
            self.resets_mid_request += 1
        for sock in pair:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            # Wakes the pump blocked in recv() on it: the kernel closes a socket (here
            # with RST) only once no call holds it, so without this the peer would
            # only notice at its next byte or its read timeout.
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RD)
            with suppress(OSError):
                sock.close()
        with self._lock:
            self._pairs.discard(pair)
            self._last.pop(pair, None)
