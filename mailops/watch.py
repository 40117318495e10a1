"""S1 push: ``mailops sync --watch`` keeps an IMAP IDLE on each mailbox's INBOX.

One thread per connected mailbox holds its own logged-in session in IDLE on INBOX (read
only) and only listens: when the server reports a change (``EXISTS``, ``RECENT``,
``FETCH``, ``EXPUNGE``) it puts the mailbox id on a queue. The main thread owns the store:
it syncs the mailboxes named on the queue at once (new customer mail stored and its
notifications written within seconds of delivery) and every mailbox on the 10-30 minute
schedule (``Scheduler``) as before, so a mailbox whose server offers no IDLE, or whose IDLE
dropped, is still polled. A watcher re-issues IDLE every ``renew_s`` (25 min), before the
29-minute limit of RFC 2177 and servers' inactivity timers; after a drop it logs in again
with backoff and asks for one catch-up sync. The store is released whenever the loop
waits, so reports and the CLI can read it meanwhile.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailops.config import Settings
from mailops.scheduler import POLL_S, Scheduler
from mailops.store import Store
from mailops.store import mailboxes as mailbox_store
from mailops.store.mailboxes import Mailbox
from mailops.sync import SyncResult, sync_all

__all__ = ["IdleWatcher", "Watch", "RENEW_S"]

log = logging.getLogger(__name__)

RENEW_S = 25 * 60.0  # re-IDLE before the 29 min of RFC 2177
CHECK_S = 1.0  # how long one idle_check waits (so stop() is prompt)
BACKOFF_S = (5.0, 15.0, 60.0, 300.0)  # reconnect waits after a drop
DEBOUNCE_S = 0.2  # a burst of deliveries becomes one sync
_CHANGES = (b"EXISTS", b"RECENT", b"FETCH", b"EXPUNGE")


def _changed(responses: Any) -> bool:
    return any(isinstance(r, tuple) and len(r) > 1 and r[1] in _CHANGES for r in responses or ())


def _connect(mailbox: Mailbox, settings: Settings) -> Any:
    from mailops.imap import login

    return login(mailbox, settings)


@dataclass
class IdleWatcher:
    """IDLE on MAILBOX's INBOX in a thread; mailbox ids go on EVENTS when it changes."""

    mailbox: Mailbox
    settings: Settings
    events: queue.Queue[int]
    renew_s: float = RENEW_S
    check_s: float = CHECK_S
    connect: Callable[[Mailbox, Settings], Any] = _connect
    backoff: tuple[float, ...] = BACKOFF_S
    on_state: Callable[[Mailbox, str], None] | None = None
    state: str = "starting"  # starting | idle | unsupported | dropped | stopped
    renewals: int = 0
    drops: int = 0
    last_error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> IdleWatcher:
        self._thread = threading.Thread(
            target=self._run, name=f"idle-{self.mailbox.id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.state = "stopped"

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _set(self, state: str) -> None:
        changed = state != self.state
        self.state = state
        if changed and self.on_state is not None:
            self.on_state(self.mailbox, state)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            client = None
            try:
                client = self.connect(self.mailbox, self.settings)
                caps = {c.upper() for c in client.capabilities()}
                if b"IDLE" not in caps:
                    self._set("unsupported")  # the scheduler's polling covers it
                    log.info("%s: no IDLE; polling only", self.mailbox.address)
                    return
                client.select_folder("INBOX", readonly=True)
                failures = 0
                self.events.put(self.mailbox.id)  # catch up on what came while not idling
                self._idle_loop(client)
            except Exception as e:  # noqa: BLE001 - any drop: fall back to polling, retry
                if self._stop.is_set():
                    break
                failures += 1
                self.drops += 1
                self.last_error = f"{type(e).__name__}: {e}"[:200]
                self._set("dropped")
                log.info("%s: IDLE dropped (%s)", self.mailbox.address, self.last_error)
            finally:
                if client is not None:
                    from mailops.imap import close_imap

                    close_imap(client)
            wait = self.backoff[min(failures, len(self.backoff)) - 1] if failures else 0.0
            self._stop.wait(wait * random.uniform(0.8, 1.2))
        self.state = "stopped"

    def _idle_loop(self, client: Any) -> None:
        while not self._stop.is_set():
            client.idle()
            self._set("idle")
            started = time.monotonic()
            changed = False
            while not self._stop.is_set() and time.monotonic() - started < self.renew_s:
                responses = client.idle_check(timeout=self.check_s)
                if _changed(responses):
                    changed = True
                    break
                if any(r and r[0] == b"BYE" for r in responses):
                    raise ConnectionError("server said BYE during IDLE")
            _, late = client.idle_done()  # what arrived while ending IDLE counts too
            changed = changed or _changed(late)
            if changed:
                self.events.put(self.mailbox.id)
            else:
                self.renewals += 1  # renew_s passed (or stopping): IDLE again


@dataclass
class Watch:
    """The scheduler plus an IDLE watcher per connected mailbox (when IDLE is enabled)."""

    store: Store
    settings: Settings
    idle: bool = True
    renew_s: float = RENEW_S
    on_result: Callable[[SyncResult], None] | None = None
    on_state: Callable[[Mailbox, str], None] | None = None  # a watcher's state changed
    connect: Callable[[Mailbox, Settings], Any] = _connect
    backoff: tuple[float, ...] = BACKOFF_S
    scheduler: Scheduler | None = None
    watchers: dict[int, IdleWatcher] = field(default_factory=dict)
    events: queue.Queue[int] = field(default_factory=queue.Queue)
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if self.scheduler is None:
            self.scheduler = Scheduler(self.store, self.settings)

    def _refresh_watchers(self) -> None:
        live = {mb.id: mb for mb in mailbox_store.all_mailboxes(self.store, states=("connected",))}
        for gone in set(self.watchers) - set(live):
            self.watchers.pop(gone).stop(timeout=0.1)
        if not self.idle:
            return
        for mb_id, mb in live.items():
            w = self.watchers.get(mb_id)
            if w is None or (not w.alive and w.state not in ("unsupported",)):
                self.watchers[mb_id] = IdleWatcher(
                    mb,
                    self.settings,
                    self.events,
                    renew_s=self.renew_s,
                    connect=self.connect,
                    backoff=self.backoff,
                    on_state=self.on_state,
                ).start()

    def _drain(self, timeout: float) -> set[int]:
        ids: set[int] = set()
        try:
            ids.add(self.events.get(timeout=max(0.0, timeout)))
        except queue.Empty:
            return ids
        deadline = self.clock() + DEBOUNCE_S
        while True:
            try:
                ids.add(self.events.get(timeout=max(0.0, deadline - self.clock())))
            except queue.Empty:
                return ids

    def sync_now(self, ids: set[int]) -> list[SyncResult]:
        """Sync the mailboxes IDLE named; their next scheduled sync moves out accordingly."""
        sched = self.scheduler
        assert sched is not None
        todo = []
        for i in sorted(ids):
            try:
                mb = mailbox_store.get(self.store, i)
            except Exception:  # noqa: BLE001 - removed meanwhile
                continue
            if mb.state == "connected":
                todo.append(mb)
        if not todo:
            return []
        results = sync_all(
            self.store, self.settings, mailboxes=todo, trigger="idle", pool=sched.pool
        )
        now = self.clock()
        from mailops.scheduler import _State

        for r in results:
            sched.states.setdefault(r.mailbox_id, _State(now)).due = now + sched.interval(r)
            if self.on_result:
                self.on_result(r)
        return results

    def run(self, *, seconds: float | None = None, max_rounds: int | None = None) -> None:
        """Until Ctrl-C (or SECONDS / MAX_ROUNDS loop turns, for tests and benchmarks)."""
        sched = self.scheduler
        assert sched is not None
        end = None if seconds is None else self.clock() + seconds
        rounds = 0
        try:
            while end is None or self.clock() < end:
                if max_rounds is not None and rounds >= max_rounds:
                    break
                rounds += 1
                sched.run_once(self.on_result)
                self._refresh_watchers()
                self.store.release()
                upcoming = [s.due for s in sched.states.values()]
                wait = min(upcoming) - self.clock() if upcoming else POLL_S
                wait = max(0.5, min(POLL_S, wait))
                if end is not None:
                    wait = min(wait, max(0.0, end - self.clock()))
                ids = self._drain(wait)
                if ids:
                    self.sync_now(ids)
                    self.store.release()
        finally:
            for w in self.watchers.values():
                w._stop.set()
            for w in self.watchers.values():
                w.stop(timeout=2.0)
            sched.pool.close()
            self.store.release()

    def status(self) -> dict[int, str]:
        return {i: w.state for i, w in self.watchers.items()}
