"""A fault-injecting TCP proxy on 127.0.0.1, between mailops and the devserver (tests, soak).

``FaultProxy(target_port).start()`` listens on ``.port`` and relays every connection to
127.0.0.1:TARGET. Faults, set at any time from the test:

* ``refuse()`` / ``accept()``   new connections are refused (the port is closed) / relayed;
* ``reset_after(n, direction)`` the next connection that carries N bytes in DIRECTION
  (``"down"``: server -> client, e.g. mid-FETCH; ``"up"``: client -> server, e.g. mid-DATA)
  is reset (RST) at that point;
* ``stall(seconds)``            live and new connections stop relaying for SECONDS;
* ``stall_after(n, seconds)``   the next connection stalls for SECONDS once N bytes went down;
* ``cut_all()``                 reset every live connection now.

TLS passes through untouched (the proxy sees only bytes), so IMAPS and STARTTLS work.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

__all__ = ["FaultProxy"]


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class _Plan:
    after: int
    direction: str  # up | down
    stall: float = 0.0  # 0: reset at that point; else stall that long, then go on


@dataclass
class FaultProxy:
    target_port: int
    target_host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0
    resets: int = 0
    stalls: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    refused: bool = False
    _stall_until: float = 0.0
    _pending: list[_Plan] = field(default_factory=list)
    _live: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _listener: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._listen()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.cut_all()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        if self._thread is not None:
            self._thread.join(5)

    def refuse(self) -> None:
        """Close the port: new connections get ECONNREFUSED; live ones are cut."""
        self.refused = True
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        self.cut_all()

    def accept(self) -> None:
        self.refused = False
        if self._listener is None:
            self._listen()

    def reset_after(self, nbytes: int, direction: str = "down") -> None:
        with self._lock:
            self._pending.append(_Plan(max(0, int(nbytes)), direction))

    def stall_after(self, nbytes: int, seconds: float, direction: str = "down") -> None:
        with self._lock:
            self._pending.append(_Plan(max(0, int(nbytes)), direction, float(seconds)))

    def stall(self, seconds: float) -> None:
        self._stall_until = time.monotonic() + seconds

    def cut_all(self) -> None:
        with self._lock:
            live, self._live = list(self._live), set()
        for s in live:
            _reset(s)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- relay --------------------------------------------------------------------------
    def _listen(self) -> None:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        ls.settimeout(0.2)
        self.port = ls.getsockname()[1]
        self._listener = ls

    def _serve(self) -> None:
        while not self._stop.is_set():
            ls = self._listener
            if ls is None:
                time.sleep(0.05)
                continue
            try:
                client, _ = ls.accept()
            except TimeoutError:
                continue
            except OSError:
                time.sleep(0.05)
                continue
            try:
                upstream = socket.create_connection((self.target_host, self.target_port), 5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self.connections += 1
                self._live.update((client, upstream))
                plan = self._pending.pop(0) if self._pending else None
            threading.Thread(
                target=self._pipe, args=(client, upstream, plan), daemon=True, name="proxy-conn"
            ).start()

    def _pipe(self, client: socket.socket, upstream: socket.socket, plan: _Plan | None) -> None:
        moved = {"up": 0, "down": 0}
        peers = {client: (upstream, "up"), upstream: (client, "down")}
        try:
            while not self._stop.is_set():
                if time.monotonic() < self._stall_until:
                    time.sleep(0.05)
                    continue
                try:
                    ready, _, _ = select.select(list(peers), [], [], 0.2)
                except (OSError, ValueError):
                    return
                for src in ready:
                    dst, direction = peers[src]
                    try:
                        data = src.recv(65536)
                    except OSError:
                        return
                    if not data:  # half-close: the other direction still flows
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)
                        del peers[src]
                        if not peers:
                            return
                        continue
                    if plan is not None and plan.direction == direction:
                        room = plan.after - moved[direction]
                        if len(data) >= room and plan.stall:
                            with self._lock:
                                self.stalls += 1
                            time.sleep(plan.stall)  # this connection only
                            plan = None
                        elif len(data) >= room:
                            with contextlib.suppress(OSError):
                                if room > 0:
                                    dst.sendall(data[:room])
                            with self._lock:
                                self.resets += 1
                            return
                    moved[direction] += len(data)
                    with self._lock:
                        if direction == "down":
                            self.bytes_down += len(data)
                        else:
                            self.bytes_up += len(data)
                    try:
                        dst.sendall(data)
                    except OSError:
                        return
        finally:
            with self._lock:
                self._live.discard(client)
                self._live.discard(upstream)
            _reset(client)
            _reset(upstream)
