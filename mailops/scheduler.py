"""S1: sync every connected mailbox every 10-30 minutes, jittered, backing off when needed.

Each mailbox has its own next-due time. After a sync the next one is a random interval in
``[sync_interval_min, sync_interval_max]`` minutes; a throttled mailbox waits at least what
the server suggested; failures double the wait (capped at 4 h); mailboxes with no new mail
for several runs in a row stretch it by half each time (capped at 2x the maximum). Due
mailboxes are synced together (``sync_all``: bounded parallelism, one connection each) and
their logged-in sessions are kept for the next round (``SessionPool``); the store is
released between rounds so reports can read. Mailboxes problematic for a transient reason
join a round when their probe is due (C4, ``mailops.healing``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailops.config import Settings
from mailops.store import Store
from mailops.store import mailboxes as mailbox_store
from mailops.sync import SessionPool, SyncResult, sync_all

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)
FAILURE_CAP_S = 4 * 3600.0
POLL_S = 30.0  # how often new mailboxes are noticed while waiting


@dataclass
class _State:
    due: float
    failures: int = 0
    idle_runs: int = 0


@dataclass
class Scheduler:
    store: Store
    settings: Settings
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    states: dict[int, _State] = field(default_factory=dict)
    pool: SessionPool = field(default_factory=SessionPool)  # sessions kept between rounds

    def interval(self, result: SyncResult) -> float:
        """Seconds until MAILBOX's next sync, given its last result."""
        lo, hi = self.settings.sync_interval_min * 60.0, self.settings.sync_interval_max * 60.0
        st = self.states.setdefault(result.mailbox_id, _State(0.0))
        base = self.rng.uniform(lo, hi)
        if result.status == "failed":
            st.failures += 1
            wait = min(FAILURE_CAP_S, base * 2 ** (st.failures - 1))
            return max(wait, result.retry_after or 0.0)
        st.failures = 0
        st.idle_runs = st.idle_runs + 1 if result.examined == 0 else 0
        return min(2 * hi, base * 1.5 ** min(st.idle_runs, 4)) if st.idle_runs >= 3 else base

    def due(self) -> list[int]:
        now = self.clock()
        live = {mb.id for mb in mailbox_store.all_mailboxes(self.store, states=("connected",))}
        for gone in set(self.states) - live:
            del self.states[gone]
            self.pool.close_one(gone)
        for mb_id in live:
            self.states.setdefault(mb_id, _State(now))  # new mailboxes are due at once
        due = {i for i in live if self.states[i].due <= now}
        from mailops.healing import due_probes  # C4: transient problems are probed

        return sorted(due | {mb.id for mb in due_probes(self.store, self.settings)})

    def run_once(self, on_result: Callable[[SyncResult], None] | None = None) -> list[SyncResult]:
        ids = self.due()
        if not ids:
            return []
        todo = [mailbox_store.get(self.store, i) for i in ids]
        results = sync_all(
            self.store, self.settings, mailboxes=todo, trigger="schedule", pool=self.pool
        )
        now = self.clock()
        for r in results:
            self.states.setdefault(r.mailbox_id, _State(now)).due = now + self.interval(r)
            if on_result:
                on_result(r)
        self.store.release()
        return results

    def run(
        self,
        *,
        max_rounds: int | None = None,
        on_result: Callable[[SyncResult], None] | None = None,
    ) -> None:
        """Sync due mailboxes forever (or MAX_ROUNDS rounds); Ctrl-C stops it."""
        rounds = 0
        try:
            while max_rounds is None or rounds < max_rounds:
                self.run_once(on_result)
                rounds += 1
                if max_rounds is not None and rounds >= max_rounds:
                    break
                upcoming = [s.due for s in self.states.values()]
                wait = min(upcoming) - self.clock() if upcoming else POLL_S
                self.sleep(max(0.5, min(POLL_S, wait)))
        finally:
            self.pool.close()
