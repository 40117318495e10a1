"""D1: ``mailops worker`` -- a long-running sync process; several of them split the mailboxes.

One pass (``Worker.run_once``):

1. the due mailboxes: connected ones whose last sync is older than the cadence
   (``worker_cadence``, 15 min) or that were never synced, oldest first, and the
   transient-problematic ones whose C4 probe is due; minus those whose lease another worker
   holds right now (``PgLeases.held_ids``: one query instead of a refused claim each);
2. in batches of CONCURRENCY: claim each by lease (S14/D1: compare-and-swap on its
   PostgreSQL row for the lake, a lock file for the embedded store) and read it again under
   the lease -- another worker may have synced it between step 1 and the claim (its last
   sync moved); then it is given back untouched. One another worker claimed first is skipped;
3. the engine syncs the batch (``sync.sync_all`` with the leases already held: the same
   code path as ``mailops sync``, runs, ledger and checkpoints included), the leases are
   given back (after the runs are recorded) and the store is released for other processes.

Then it sleeps until the next mailbox is due (at most ``POLL_S``, so new mailboxes are
noticed; at least ``MIN_WAIT_S``). A pass that fails as a whole (the store or the lease
database unreachable) is logged and tried again, backing off from 5 s to ``POLL_S``. SIGTERM/SIGINT (``stop()``) lets the current batch finish,
gives its leases back and ends the loop; a second one interrupts. A worker killed outright
(``kill -9``) leaves its lease rows; they expire after ``lease_ttl`` and the next pass of
another worker takes the mailboxes over. Every write of a sync is idempotent (D1), so a batch
cut short and synced again stores nothing twice.

Sessions are not pooled between passes: at a 10-30 minute cadence a kept IMAP session is
dropped by most servers anyway, and the mailbox may well be synced by another worker next.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb

from mailops.config import Settings
from mailops.errors import MailopsError
from mailops.lease import Holder, Lease, Leases, MailboxBusy, leases_for, pg_leases
from mailops.outcomes import SyncResult, worst
from mailops.poison import one_line
from mailops.store import Store
from mailops.store import mailboxes as mailbox_store
from mailops.store.mailboxes import Mailbox

if TYPE_CHECKING:
    from mailops.match import Directory

__all__ = ["Pass", "Worker"]

log = logging.getLogger(__name__)

POLL_S = 30.0  # the longest sleep: new mailboxes (and freed ones) are noticed this often
MIN_WAIT_S = 5.0  # the shortest: a due mailbox another worker holds is not polled hot


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Pass:
    """What one pass over the due mailboxes did."""

    results: list[SyncResult] = field(default_factory=list)
    due: int = 0  # due when the pass began (not held by another worker)
    claimed: int = 0
    busy: int = 0  # another worker claimed it first
    fresh: int = 0  # another worker synced it meanwhile: given back untouched
    lost: int = 0  # leases lost while syncing (not renewed in time; D1 writes are idempotent)
    more: bool = False  # stopped at --max-mailboxes (or by stop()) with more due

    @property
    def exit_code(self) -> int:
        """O1: the exit code of the worst outcome of the pass (0 when nothing was due)."""
        return worst(self.results)[0]


class _Kept:
    """A lease the worker holds, handed to the engine: its release is the worker's."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.mailbox_id = lease.mailbox_id
        self.holder = lease.holder

    def renew(self) -> None:
        self.lease.renew()

    def release(self) -> None:
        return None


class _Claimed:
    """The worker's claimed leases as the engine's ``Leases``: ``acquire`` returns the one
    held; any other mailbox is busy (the worker did not claim it)."""

    def __init__(self, held: dict[int, Lease]) -> None:
        self.held = held

    def acquire(self, mailbox_id: int, *, wait: float = 0.0) -> Lease:
        lease = self.held.get(mailbox_id)
        if lease is None:
            raise MailboxBusy(mailbox_id, None)
        return _Kept(lease)

    def holder(self, mailbox_id: int) -> Holder | None:
        lease = self.held.get(mailbox_id)
        return lease.holder if lease else None


#: mailboxes claimed and handed to the engine at once, per mailbox synced at once: each
#: engine call has fixed costs (reading its batch, its run bookkeeping), tens of ms each on
#: a lake (D1), so a batch is larger than what runs at once
BATCH_PER_CONCURRENCY = 4


class Worker:
    """Sync the due mailboxes of STORE, pass after pass, under their leases.

    CADENCE (minutes; default ``worker_cadence``), CONCURRENCY (mailboxes synced at once,
    one connection each; default ``sync_parallel``), BATCH (claimed and synced together;
    default 4 x concurrency), MAX_MAILBOXES (per pass; None: all due). LEASES defaults to the store's (``PgLeases`` with ``lease_ttl`` on the lake)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        cadence: float | None = None,
        concurrency: int | None = None,
        batch: int | None = None,
        max_mailboxes: int | None = None,
        leases: Leases | None = None,
        on_result: Callable[[SyncResult], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        trigger: str = "worker",
    ) -> None:
        self.store = store
        self.settings = settings
        minutes = settings.worker_cadence if cadence is None else cadence
        if minutes < 0:
            raise ValueError("cadence must not be negative")
        self.cadence = timedelta(minutes=float(minutes))
        self.concurrency = max(1, int(concurrency or settings.sync_parallel))
        self.batch = max(1, int(batch or self.concurrency * BATCH_PER_CONCURRENCY))
        self.max_mailboxes = max_mailboxes if max_mailboxes is None else max(1, max_mailboxes)
        if leases is None:
            dsn = getattr(store, "lake_dsn", None)
            lake = getattr(store, "backend", "file") == "lake" and dsn
            leases = pg_leases(str(dsn), settings.lease_ttl) if lake else leases_for(store)
        self.leases = leases
        self.on_result = on_result
        self.on_error = on_error
        self.trigger = trigger
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Finish the current batch, give its leases back, run no other."""
        self.stopping.set()

    # -- what is due -------------------------------------------------------------------
    def _is_due(self, mb: Mailbox, now: datetime) -> bool:
        return mb.last_sync_at is None or mb.last_sync_at <= now - self.cadence

    def _still_due(self, listed: Mailbox, mb: Mailbox) -> bool:
        """Under the lease: is MB (read again; LISTED as the pass found it) still due?
        Another worker may have synced or probed it since the pass began: then its last
        sync moved (which also keeps ``--cadence 0`` from syncing a mailbox twice a pass)."""
        from mailops.healing import plan

        if mb.last_sync_at != listed.last_sync_at or mb.state != listed.state:
            return False
        if mb.state == "connected":
            return self._is_due(mb, _now())
        return mb.state == "problematic" and bool(plan(self.store, self.settings, [mb])[0])

    def _held_elsewhere(self) -> set[int]:
        held_ids = getattr(self.leases, "held_ids", None)
        if held_ids is None:
            return set()
        try:
            return set(held_ids())
        except Exception as e:  # noqa: BLE001 - only an optimisation; the claim decides
            log.debug("could not list held leases: %s", e)
            return set()

    def due(self) -> list[Mailbox]:
        """Due mailboxes, oldest last sync first (never synced first of all)."""
        from mailops.healing import due_probes

        now = _now()
        connected = mailbox_store.all_mailboxes(self.store, states=("connected",))
        due = [mb for mb in connected if self._is_due(mb, now)]
        due += due_probes(self.store, self.settings, now=now)  # C4
        held = self._held_elsewhere()
        due = [mb for mb in due if mb.id not in held]
        return sorted(due, key=lambda mb: (mb.last_sync_at is not None, mb.last_sync_at, mb.id))

    def seconds_until_due(self) -> float:
        """How long until the next mailbox is due (connected, or a C4 probe); POLL_S when
        there is none."""
        from mailops.healing import plan

        now = _now()
        held = self._held_elsewhere()  # its holder syncs it: due a cadence after that
        upcoming: list[datetime] = []
        for mb in mailbox_store.all_mailboxes(self.store, states=("connected",)):
            if mb.id in held:
                upcoming.append(now + self.cadence)
            else:
                upcoming.append(mb.last_sync_at + self.cadence if mb.last_sync_at else now)
        problematic = mailbox_store.all_mailboxes(self.store, states=("problematic",))
        _, skips = plan(self.store, self.settings, problematic, now=now)
        upcoming += [s.next_probe_at for s in skips if s.next_probe_at is not None]
        if not upcoming:
            return POLL_S
        return (min(upcoming) - now).total_seconds()

    # -- a pass ------------------------------------------------------------------------
    def _claim(self, candidates: deque[Mailbox], n: int, report: Pass) -> dict[int, Lease]:
        """Claim up to N of CANDIDATES (consumed from the front) by lease; each is read again
        under its lease and given back if another worker synced it meanwhile. Stopped
        meanwhile: the claims are given back, nothing is returned."""
        held: dict[int, Lease] = {}
        while candidates and len(held) < n and not self.stopping.is_set():
            claimed: dict[int, tuple[Mailbox, Lease]] = {}
            while candidates and len(held) + len(claimed) < n and not self.stopping.is_set():
                mb = candidates.popleft()
                try:
                    claimed[mb.id] = (mb, self.leases.acquire(mb.id))
                except MailboxBusy:
                    report.busy += 1
            try:  # read again under the leases, all in one query (D1: lake queries cost)
                fresh = mailbox_store.many(self.store, list(claimed))
                due = {
                    i: i in fresh and self._still_due(listed, fresh[i])
                    for i, (listed, _) in claimed.items()
                }
            except BaseException:
                for _, lease in claimed.values():
                    lease.release()
                raise
            for i, (_, lease) in claimed.items():
                if due[i]:
                    held[i] = lease
                else:
                    lease.release()
                    report.fresh += 1
        if self.stopping.is_set():
            for lease in held.values():
                lease.release()
            return {}
        return held

    def _sync(self, held: dict[int, Lease], directory: Directory | None) -> list[SyncResult]:
        from mailops.sync import sync_all

        todo = list(mailbox_store.many(self.store, list(held)).values())
        return sync_all(
            self.store,
            self.settings,
            mailboxes=todo,
            trigger=self.trigger,
            parallel=self.concurrency,
            leases=_Claimed(held),
            directory=directory,
        )

    def run_once(self) -> Pass:
        """One pass over the due mailboxes (up to MAX_MAILBOXES), batch by batch."""
        report = Pass()
        candidates = deque(self.due())
        report.due = len(candidates)
        budget = self.max_mailboxes if self.max_mailboxes is not None else len(candidates)
        directory: Directory | None = None  # loaded once a pass (as one `mailops sync` does)
        try:
            while candidates and budget > 0 and not self.stopping.is_set():
                held = self._claim(candidates, min(self.batch, budget), report)
                if not held:
                    continue
                report.claimed += len(held)
                budget -= len(held)
                try:
                    if directory is None:
                        from mailops.match import Directory

                        directory = Directory.load(
                            self.store, internal_policy=self.settings.internal_policy
                        )
                    results = self._sync(held, directory)
                finally:
                    for lease in held.values():
                        if getattr(lease, "lost", False):
                            report.lost += 1
                            log.warning(
                                "mailbox %s: lease lost while syncing (another worker may"
                                " have synced it too; nothing is stored twice)",
                                lease.mailbox_id,
                            )
                        lease.release()
                    if getattr(self.store, "backend", "file") == "file":
                        self.store.release()  # the file's lock: readers, other workers get in
                report.results += results
                if self.on_result is not None:
                    for r in results:
                        self.on_result(r)
        finally:
            if getattr(self.store, "backend", "file") == "file":
                self.store.release()  # a lake's session (extensions, catalog) is kept
        report.more = bool(candidates)
        return report

    def run(
        self,
        *,
        passes: int | None = None,
        seconds: float | None = None,
        on_pass: Callable[[Pass], None] | None = None,
        sleep: Callable[[float], Any] | None = None,
    ) -> list[Pass]:
        """Pass after pass until ``stop()`` (or PASSES passes, or SECONDS seconds); between
        passes sleep until the next mailbox is due. Returns the passes' reports (their
        results dropped after on_pass, so a long run holds no history)."""
        wait = sleep or self.stopping.wait
        deadline = time.monotonic() + seconds if seconds is not None else None
        done: list[Pass] = []
        failures = 0
        while not self.stopping.is_set():
            try:
                p = self.run_once()
                failures = 0
            except (MailopsError, duckdb.Error, OSError) as e:
                # the store or the lease database is away: not the mailboxes' fault; the
                # leases are given back already -- try again, backing off up to POLL_S
                failures += 1
                self.store.release()
                log.error("worker pass failed (%d in a row): %s", failures, one_line(e))
                if self.on_error is not None:
                    self.on_error(e)
                wait(min(POLL_S, MIN_WAIT_S * 2 ** (failures - 1)))
                continue
            if on_pass is not None:
                on_pass(p)
            if passes is None:
                p.results = []
            done.append(p)
            if passes is not None and len(done) >= passes:
                break
            if self.stopping.is_set():
                break
            pause = 0.0 if p.more else min(POLL_S, max(MIN_WAIT_S, self.seconds_until_due()))
            self.store.release()
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                pause = min(pause, left)
            wait(pause)
            if deadline is not None and time.monotonic() >= deadline:
                break
        return done


def summarize_passes(passes: Sequence[Pass]) -> dict[str, int]:
    return {
        "passes": len(passes),
        "claimed": sum(p.claimed for p in passes),
        "busy": sum(p.busy for p in passes),
        "fresh": sum(p.fresh for p in passes),
        "lost": sum(p.lost for p in passes),
    }
