"""The sync engine: customer email from IMAP into the store, incremental, headers first.

The wire (sessions, commands, the FETCH parser, special folders) is ``mailops.imap``; this
module is the engine. Per mailbox (``sync_mailbox``, ``sync_all`` for many at once):

``_run_mailbox``  one session (``imap.session_for``: pooled, LIST-STATUS as first command),
                  ``folders.plan_folders`` -> folders to sync, then per folder:
``_plan_folder``  STATUS counters vs the checkpoint (unchanged -> nothing to do, S1), else
                  SELECT read-only and ``UID SEARCH`` for the UIDs to examine (after the
                  checkpoint, or ``SINCE`` the backfill window on a first sync or after a
                  UIDVALIDITY change, S2/S7) -> ``FolderPlan``.
``_sync_batch``   per ``sync_batch`` UIDs:
  ``_examine``        FETCH (UID FLAGS INTERNALDATE RFC822.SIZE header fields) + ``decide()``
  ``_units``          split into commit units whose bodies fit ``BODY_BUDGET_BYTES``
  per unit:
  ``_fetch_bodies``   BODY.PEEK[] only for stored decisions not yet in the store (S8)
  ``_rows``           places, activities, ledger rows
  ``_commit``         messages, places, activities, notifications, ledger and the checkpoint
                      in ONE transaction (S11, S12): a kill loses or duplicates nothing.

A UIDVALIDITY change is handled like a first sync of the folder: known messages are
re-linked by Message-ID (a new place), nothing is deleted or stored twice (S7, S8).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mailops.config import Settings
from mailops.errors import ConnectionProblem, MailopsError
from mailops.faults import crash_point
from mailops.folders import plan_folders
from mailops.imap import Client, Session, SessionPool, is_dropped, session_for
from mailops.imap import commands as imap
from mailops.match import Decision, Directory, FolderInfo, decide
from mailops.parse import HeaderInfo, ParsedMessage, parse_headers_fast, parse_message
from mailops.store import Store
from mailops.store import mailboxes as mailbox_store
from mailops.store import sync as state
from mailops.store.mailboxes import Mailbox
from mailops.store.messages import (
    ActivityRow,
    PlaceRow,
    add_activities,
    add_places,
    resolve_identities,
    save_messages,
)
from mailops.store.notifications import notify_new_inbound

__all__ = ["SessionPool", "SyncResult", "summarize", "sync_all", "sync_mailbox", "window_start"]

log = logging.getLogger(__name__)

HEADER_FIELDS = "MESSAGE-ID FROM TO CC DATE SUBJECT IN-REPLY-TO REFERENCES"
HEADER_ITEM = f"BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]".encode()
FETCH_HEADERS = [b"UID", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", HEADER_ITEM]
FETCH_BODY = [b"BODY.PEEK[]"]
BODY_KEY = imap.BODY_KEY

# one commit unit holds at most this many body bytes (and one BODY.PEEK[] FETCH asks for
# no more): memory stays flat however many customer mails a batch holds (S12)
BODY_BUDGET_BYTES = 32 * 1024 * 1024

ProgressFn = Callable[[int], None]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    if dt.tzinfo is not None:
        return dt.astimezone(UTC).replace(tzinfo=None)
    return dt


@dataclass
class SyncResult:
    mailbox_id: int
    address: str
    run_id: int | None = None
    status: str = "ok"  # ok | failed | skipped | not_connected (see mailops.outcomes)
    examined: int = 0
    stored: int = 0  # new messages stored
    linked: int = 0  # stored decisions for messages already in the store (new place)
    skipped: int = 0
    errors: int = 0  # messages that could not be fetched, parsed or stored (S15)
    by_reason: Counter[str] = field(default_factory=Counter)
    folders: int = 0
    folders_changed: int = 0
    duration_s: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    retry_after: float | None = None
    problematic: bool = False
    # O1/C4/S14: why a mailbox was skipped, and what happens next (mailops.outcomes)
    skip_reason: str | None = None  # already_syncing | problematic | probe_not_due
    holder: dict[str, Any] | None = None  # already_syncing: pid, host, since
    problem_since: datetime | None = None
    next_probe_at: datetime | None = None
    probed: bool = False  # a transient-problematic mailbox was tried (C4)
    recovered: bool = False  # ... and the server answered: connected again

    def as_dict(self) -> dict[str, Any]:
        from mailops.outcomes import outcome_of

        d = asdict(self)
        d["by_reason"] = dict(self.by_reason)
        d["outcome"] = outcome_of(self)
        return d

    def one_line(self) -> str:
        if self.status != "ok":
            from mailops.outcomes import describe

            return describe(self)
        reasons = ", ".join(
            f"{k} {v}" for k, v in self.by_reason.most_common() if k != "stored_customer"
        )
        errors = f", errors {self.errors}" if self.errors else ""
        return (
            f"{self.address}: examined {self.examined}, stored {self.stored}, linked {self.linked},"
            f" skipped {self.skipped}{errors}{' (' + reasons + ')' if reasons else ''}"
            f" in {self.duration_s:.2f}s"
        )


def window_start(settings: Settings, mailbox: Mailbox) -> datetime:
    """S2: the backfill window is fixed at connection: connected_at - backfill days."""
    days = mailbox.backfill_days if mailbox.backfill_days is not None else settings.backfill_days
    anchor = mailbox.connected_at or mailbox.created_at or _now()
    return anchor - timedelta(days=int(days))


class _Gate:
    """Serialises store access between mailbox threads (one DuckDB connection)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


@dataclass
class _Ctx:
    store: Store
    settings: Settings
    mailbox: Mailbox
    run_id: int
    directory: Directory
    window: datetime
    gate: _Gate
    result: SyncResult
    progress: ProgressFn | None
    trigger: str = "manual"
    started_at: datetime = field(default_factory=_now)
    checkpoints: dict[str, state.Checkpoint] = field(default_factory=dict)
    condstore: bool = False
    batches: int = 0  # commit units written by this run
    run_written: bool = False  # the sync_runs row exists (written with the first unit)
    reports: list[dict[str, Any]] = field(default_factory=list)


# -- the steps -----------------------------------------------------------------------------
@dataclass
class FolderPlan:
    """What ``_plan_folder`` decided for one folder: the UIDs to examine, in order."""

    folder: FolderInfo
    uidvalidity: int
    uids: list[int]
    last_uid: int  # checkpoint before this run (0 on a first sync)
    status: dict[bytes, int]
    report: dict[str, Any]

    def checkpoint(self, last_uid: int, final: bool) -> state.Checkpoint:
        """The checkpoint after examining up to LAST_UID; FINAL (read to the end) also
        records UIDNEXT/HIGHESTMODSEQ, so a run killed half-way never looks unchanged."""
        st = self.status
        return state.Checkpoint(
            self.folder.name,
            self.uidvalidity,
            max(last_uid, self.last_uid),
            st.get(b"HIGHESTMODSEQ") if final else None,
            st.get(b"UIDNEXT") if final else None,
            st.get(b"MESSAGES") if final else None,
        )


@dataclass
class Examined:
    """One message after its header FETCH and ``decide()``."""

    uid: int
    headers: HeaderInfo
    decision: Decision
    flags: str
    internaldate: datetime | None
    size: int

    @property
    def message_id(self) -> str | None:
        return self.headers.message_id


@dataclass
class Unit:
    """Examined messages committed together, with the checkpoint that follows them."""

    examined: list[Examined]
    checkpoint: state.Checkpoint
    known: set[str] = field(default_factory=set)  # Message-IDs already in the store (S8)
    parsed: dict[int, tuple[ParsedMessage, bytes]] = field(default_factory=dict)
    new: set[str] = field(default_factory=set)  # message ids this unit stored for the first time


def _plan_folder(
    ctx: _Ctx,
    session: Session[Any],
    folder: FolderInfo,
    cp: state.Checkpoint | None,
    status: dict[bytes, int] | None,
) -> FolderPlan | None:
    """STATUS against the checkpoint; SELECT + SEARCH when something changed (else None)."""
    client = session.client
    st = (
        status
        if status and b"UIDVALIDITY" in status
        else imap.folder_status(client, folder.name, ctx.condstore)
    )
    uidvalidity, uidnext = st[b"UIDVALIDITY"], st[b"UIDNEXT"]
    modseq = st.get(b"HIGHESTMODSEQ")
    report = {
        "folder": folder.name,
        "uidvalidity": uidvalidity,
        "server_messages": st.get(b"MESSAGES"),
        "server_uidnext": uidnext,
        "highestmodseq": modseq,
        "examined": 0,
        "stored": 0,
        "skipped": 0,
    }
    ctx.reports.append(report)
    ctx.result.folders += 1
    same_uv = cp is not None and cp.uidvalidity == uidvalidity
    if (
        same_uv
        and cp is not None
        and cp.uidnext == uidnext
        and (modseq is None or cp.highestmodseq == modseq)
    ):
        return None  # S1: nothing new; one round trip
    ctx.result.folders_changed += 1
    imap.select(client, folder.name, readonly=True)
    session.selected = folder.name
    since = (ctx.window - timedelta(days=1)).date()
    if same_uv and cp is not None:
        last = cp.last_uid
        uids = [
            u for u in imap.search(client, ["UID", f"{last + 1}:*", "SINCE", since]) if u > last
        ]
    else:
        if cp is not None:
            log.warning(
                "%s %s: UIDVALIDITY %s -> %s; re-linking by Message-ID",
                ctx.mailbox.address,
                folder.name,
                cp.uidvalidity,
                uidvalidity,
            )
        last = 0
        uids = imap.search(client, ["SINCE", since])
    return FolderPlan(folder, uidvalidity, sorted(uids), last, st, report)


def _sync_folder(
    ctx: _Ctx,
    session: Session[Any],
    folder: FolderInfo,
    cp: state.Checkpoint | None,
    status: dict[bytes, int] | None = None,
) -> None:
    plan = _plan_folder(ctx, session, folder, cp, status)
    if plan is None:
        return
    if not plan.uids:
        with ctx.gate:
            state.save_checkpoint(ctx.store, ctx.mailbox.id, plan.checkpoint(0, final=True))
        return
    size = max(1, int(ctx.settings.sync_batch))
    for i in range(0, len(plan.uids), size):
        batch = plan.uids[i : i + size]
        _sync_batch(ctx, session.client, plan, batch, final=i + size >= len(plan.uids))


def _sync_batch(
    ctx: _Ctx, client: Client, plan: FolderPlan, uids: Sequence[int], *, final: bool
) -> None:
    """examine headers -> decide -> (per unit) fetch bodies -> rows -> commit."""
    examined = _examine(ctx, client, plan.folder, uids)
    for unit in _units(ctx, plan, uids, examined, final=final):
        _fetch_bodies(ctx, client, unit)
        _commit(ctx, plan, unit, *_rows(ctx, plan, unit))


def _examine(ctx: _Ctx, client: Client, folder: FolderInfo, uids: Sequence[int]) -> list[Examined]:
    """Header FETCH and ``decide()`` for UIDS (expunged ones simply drop out)."""
    mb = ctx.mailbox
    fetched = imap.fetch(client, uids, FETCH_HEADERS)
    out: list[Examined] = []
    for uid in uids:
        data = fetched.get(uid)
        if data is None:  # expunged between SEARCH and FETCH
            continue
        internaldate = _utc(data.get(b"INTERNALDATE"))
        headers = parse_headers_fast(imap.header_block(data), internaldate)  # S13 dates
        flags = data.get(b"FLAGS") or ()
        size = int(data.get(b"RFC822.SIZE") or 0)
        d = decide(
            headers,
            folder,
            flags,
            ctx.directory,
            mb.address,
            ctx.window,
            user_id=mb.owner_user_id,
            internaldate=internaldate,
            size=size or None,
            max_message_bytes=ctx.settings.max_message_bytes,
        )
        flag_text = " ".join(f.decode() if isinstance(f, bytes) else str(f) for f in flags)
        out.append(Examined(uid, headers, d, flag_text, internaldate, size))
    return out


def _units(
    ctx: _Ctx,
    plan: FolderPlan,
    uids: Sequence[int],
    examined: list[Examined],
    *,
    final: bool,
) -> Iterator[Unit]:
    """Cut a batch where the bodies to fetch would pass ``BODY_BUDGET_BYTES``: each unit is
    committed with the checkpoint of its last UID, so memory never holds more than one
    budget of bodies (plus one message larger than it)."""
    known: set[str] = set()  # S13: a stored Message-ID may be another message: every body
    units: list[list[Examined]] = [[]]
    budget = 0
    for e in examined:
        needs_body = e.decision.stored and (not e.message_id or e.message_id not in known)
        if needs_body and units[-1] and budget + e.size > BODY_BUDGET_BYTES:
            units.append([])
            budget = 0
        units[-1].append(e)
        budget += e.size if needs_body else 0
    for n, members in enumerate(units):
        last = n == len(units) - 1
        # the last unit of a batch covers the UIDs after its last examined one (expunged)
        upto = uids[-1] if last else members[-1].uid
        yield Unit(members, plan.checkpoint(upto, final=final and last), known)


def _fetch_bodies(ctx: _Ctx, client: Client, unit: Unit) -> None:
    """BODY.PEEK[] for the unit's stored decisions not already in the store, parsed."""
    need = [
        e
        for e in unit.examined
        if e.decision.stored and (not e.message_id or e.message_id not in unit.known)
    ]
    if not need:
        return
    header_of = {e.uid: e.headers for e in need}
    bodies = imap.fetch(client, [e.uid for e in need], FETCH_BODY)
    for e in need:
        raw = (bodies.get(e.uid) or {}).get(BODY_KEY)
        if raw is None:  # expunged before the body fetch
            continue
        raw = bytes(raw)
        unit.parsed[e.uid] = (parse_message(raw, header_of.get(e.uid)), raw)
    del bodies
    with ctx.gate:  # S13: new, linked to the stored copy, or another message with that id
        resolve_identities(ctx.store, [p for p, _ in unit.parsed.values()])


def _rows(
    ctx: _Ctx, plan: FolderPlan, unit: Unit
) -> tuple[list[PlaceRow], list[ActivityRow], list[state.LedgerRow]]:
    mb, folder = ctx.mailbox, plan.folder
    places: list[PlaceRow] = []
    acts: list[ActivityRow] = []
    ledger: list[state.LedgerRow] = []
    for e in unit.examined:
        d, key = e.decision, e.message_id
        if d.stored:
            if e.uid in unit.parsed:
                key = unit.parsed[e.uid][0].key
            elif not key or key not in unit.known:  # vanished before the body fetch
                continue
            places.append(
                PlaceRow(key, mb.id, folder.name, plan.uidvalidity, e.uid, e.flags, e.internaldate)
            )
            when = d.msg_date or e.internaldate
            for customer, kind, deal in d.customers:
                acts.append(
                    ActivityRow(
                        key, customer, mb.id, mb.owner_user_id, d.direction, when, kind, deal
                    )
                )
        ledger.append(
            state.LedgerRow(
                ctx.run_id,
                mb.id,
                folder.name,
                plan.uidvalidity,
                e.uid,
                key,
                d.decision,
                d.reason,
                [c for c, _, _ in d.customers],
                d.msg_date,
                e.headers.from_addr,
                (e.headers.subject or "")[:300] or None,
                identity=unit.parsed[e.uid][0].identity if e.uid in unit.parsed else None,
            )
        )
    return places, acts, ledger


def _commit(
    ctx: _Ctx,
    plan: FolderPlan,
    unit: Unit,
    places: list[PlaceRow],
    acts: list[ActivityRow],
    ledger: list[state.LedgerRow],
) -> None:
    """One transaction: contents, places, activities, notifications, ledger, checkpoint."""
    mb = ctx.mailbox
    ctx.batches += 1
    connected = (mb.connected_at or ctx.window).replace(microsecond=0)  # INTERNALDATE has seconds
    arrived = {p.message_id: p.internaldate for p in places if p.internaldate is not None}
    with ctx.gate, ctx.store.transaction():
        if not ctx.run_written:  # the run row joins the first unit's transaction (S12)
            state.insert_run(ctx.store, ctx.run_id, mb.id, ctx.trigger, ctx.started_at)
        unit.new = save_messages(
            ctx.store,
            list(unit.parsed.values()),
            attachment_max_bytes=ctx.settings.attachment_max_bytes,
        )
        add_places(ctx.store, places)
        add_activities(ctx.store, acts)
        notify_new_inbound(ctx.store, mb, acts, arrived, connected)  # N1
        state.add_ledger(ctx.store, ledger)
        state.save_checkpoint(ctx.store, mb.id, unit.checkpoint)
        crash_point("sync.batch_written", n=ctx.batches)  # S12 kill test: before COMMIT
    ctx.run_written = True
    with ctx.gate:  # a long first sync must not lock reports out for its whole run (R2)
        ctx.store.yield_to_readers()
    _tally(ctx, plan.report, unit, ledger)


def _tally(ctx: _Ctx, report: dict[str, Any], unit: Unit, ledger: list[state.LedgerRow]) -> None:
    r = ctx.result
    stored = sum(row.decision == "stored" for row in ledger)
    errors = sum(row.decision == "error" for row in ledger)
    r.examined += len(ledger)
    r.stored += len(unit.new)
    r.linked += stored - len(unit.new)
    r.skipped += len(ledger) - stored - errors
    r.errors += errors
    r.by_reason.update(row.reason for row in ledger)
    report["examined"] += len(ledger)
    report["stored"] += stored
    report["skipped"] += len(ledger) - stored - errors
    if ctx.progress:
        ctx.progress(len(ledger))


def _run_mailbox(ctx: _Ctx, pool: SessionPool | None = None) -> None:
    """One session: plan the folders, then sync each one."""

    def listing(client: Client) -> tuple[Any, dict[str, dict[bytes, int]]]:
        ctx.condstore = b"CONDSTORE" in imap.capabilities(client)
        return imap.list_with_status(client, ctx.condstore)

    with session_for(ctx.mailbox, ctx.settings, listing, pool=pool) as session:
        folders_listed, statuses = session.first
        folders, _not_examined = plan_folders(folders_listed, ctx.mailbox.folders)
        if ctx.batches:  # a retry: re-read what the committed units checkpointed
            with ctx.gate:
                ctx.checkpoints = state.checkpoints(ctx.store, ctx.mailbox.id)
        for folder in folders:
            _sync_folder(
                ctx, session, folder, ctx.checkpoints.get(folder.name), statuses.get(folder.name)
            )


class _Book:
    """Run bookkeeping for a set of mailboxes, written in bulk (one transaction) at the end.

    A no-change resync of many mailboxes thus costs a handful of statements in all, not
    several per mailbox. Runs that committed batches already have their row (written with
    the first batch, so a kill leaves an 'interrupted' run behind); they are updated.
    """

    def __init__(self, store: Store, gate: _Gate, mailbox_ids: Sequence[int]) -> None:
        self.store, self.gate = store, gate
        with gate:
            state.mark_stale_runs(store, mailbox_ids)
            self.run_ids = state.allocate_run_ids(store, len(mailbox_ids))
            self.checkpoints = state.checkpoints_for(store, mailbox_ids)
        self.new_runs: list[dict[str, Any]] = []
        self.updated_runs: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self.ok: list[int] = []
        self.lock = threading.Lock()

    def run_id(self) -> int:
        with self.lock:
            if self.run_ids:
                return self.run_ids.pop(0)
        with self.gate:
            return state.allocate_run_ids(self.store, 1)[0]

    def finish(self, ctx: _Ctx, ok: bool) -> None:
        r = ctx.result
        row = {
            "id": ctx.run_id,
            "mailbox_id": ctx.mailbox.id,
            "trigger": ctx.trigger,
            "started_at": ctx.started_at,
            "finished_at": _now(),
            "status": r.status,
            "examined": r.examined,
            "stored": r.stored,
            "skipped": r.skipped,
            "linked": r.linked,
            "error_code": r.error_code,
            "error_message": r.error_message,
            "duration_s": r.duration_s,
        }
        with self.lock:
            (self.updated_runs if ctx.run_written else self.new_runs).append(row)
            self.reports.extend(
                {**rep, "run_id": ctx.run_id, "mailbox_id": ctx.mailbox.id} for rep in ctx.reports
            )
            if ok:
                self.ok.append(ctx.mailbox.id)

    def flush(self) -> None:
        with self.lock:
            new, upd, reps, ok = self.new_runs, self.updated_runs, self.reports, self.ok
            self.new_runs, self.updated_runs, self.reports, self.ok = [], [], [], []
        if not (new or upd or reps or ok):
            return
        with self.gate, self.store.transaction():
            state.insert_finished_runs(self.store, new)
            for row in upd:
                state.finish_run(
                    self.store,
                    row["id"],
                    status=row["status"],
                    examined=row["examined"],
                    stored=row["stored"],
                    skipped=row["skipped"],
                    linked=row["linked"],
                    duration_s=row["duration_s"],
                    error_code=row["error_code"],
                    error_message=row["error_message"],
                )
            state.add_folder_reports(self.store, reps)
            state.mark_synced(self.store, ok, _now())


def _limit_memory(store: Store, settings: Settings) -> None:
    """DuckDB caches every block it wrote (up to 80% of RAM by default); a sync writes a lot
    once and reads little, so cap it: peak RSS stays flat in mailbox size."""
    limit = (settings.sync_memory_limit or "").strip()
    if limit:
        try:
            store.on_open(f"SET memory_limit = '{limit.replace(chr(39), '')}'")
        except Exception as e:  # noqa: BLE001 - a bad value must not stop a sync
            log.warning("ignoring sync_memory_limit=%r: %s", limit, e)


def sync_mailbox(
    store: Store,
    settings: Settings,
    mailbox: Mailbox | int | str,
    *,
    trigger: str = "manual",
    progress: ProgressFn | None = None,
    directory: Directory | None = None,
    gate: _Gate | None = None,
    sleep: Callable[[float], None] = time.sleep,
    pool: SessionPool | None = None,
    lease_wait: float | None = None,
) -> SyncResult:
    """Sync one connected mailbox; never raises for mailbox problems (they are in the result).

    S14: the mailbox's lease is taken first (waiting up to LEASE_WAIT, default
    ``sync_lease_wait`` seconds); when another sync holds it the result says
    ``already_syncing``. A transient-problematic mailbox is probed at once (C4)."""
    gate = gate or _Gate()
    with gate:
        ref = mailbox.id if isinstance(mailbox, Mailbox) else mailbox
        mb = mailbox_store.find(store, ref, include_disconnected=True)
    wait = settings.sync_lease_wait if lease_wait is None else lease_wait
    with _leased(store, [mb], wait=wait) as (leased, busy):
        if busy:
            return busy[0]
        return _sync_one(
            store, settings, mb, trigger=trigger, progress=progress, directory=directory,
            gate=gate, sleep=sleep, pool=pool,
        )  # fmt: skip


@contextlib.contextmanager
def _leased(
    store: Store, mailboxes: Sequence[Mailbox], *, wait: float = 0.0
) -> Iterator[tuple[list[Mailbox], list[SyncResult]]]:
    """S14: take the lease of each mailbox (before any server work); yield (leased, busy
    results) and give the leases back afterwards (after the runs are recorded)."""
    from mailops.lease import MailboxBusy, leases_for

    leases = leases_for(store.path)
    held: list[Any] = []
    leased: list[Mailbox] = []
    busy: list[SyncResult] = []
    deadline = time.monotonic() + wait
    try:
        for mb in mailboxes:
            try:
                try:
                    held.append(leases.acquire(mb.id))
                except MailboxBusy:
                    if wait <= 0:
                        raise
                    store.release()  # never wait while holding the store: the holder needs it
                    held.append(leases.acquire(mb.id, wait=max(0.0, deadline - time.monotonic())))
                leased.append(mb)
            except MailboxBusy as e:
                r = SyncResult(mb.id, mb.address, status="skipped", skip_reason="already_syncing")
                r.holder = e.holder.as_dict() if e.holder else None
                r.error_code, r.error_message = e.code, e.message
                busy.append(r)
        yield leased, busy
    finally:
        for lease in held:
            lease.release()


def _sync_one(
    store: Store,
    settings: Settings,
    mb: Mailbox,
    *,
    trigger: str = "manual",
    progress: ProgressFn | None = None,
    directory: Directory | None = None,
    gate: _Gate | None = None,
    sleep: Callable[[float], None] = time.sleep,
    pool: SessionPool | None = None,
    _book: _Book | None = None,
) -> SyncResult:
    """Sync one mailbox whose lease this process holds."""
    from mailops.healing import first_probe_at, heals_itself, record_probe_failure, record_recovery
    from mailops.problems import backoff_delay, record_failure

    gate = gate or _Gate()
    result = SyncResult(mb.id, mb.address)
    result.probed = mb.state == "problematic" and heals_itself(mb.problem_code)  # C4
    result.problem_since = mb.problem_since if result.probed else None
    if mb.state != "connected" and not result.probed:
        result.status = "not_connected"
        result.error_code = mb.problem_code or mb.state
        result.error_message = f"mailbox is {mb.state}; only connected mailboxes are synced"
        return result
    t0 = time.monotonic()
    if _book is None:
        with gate:
            _limit_memory(store, settings)
    book = _book or _Book(store, gate, [mb.id])
    if directory is None:
        with gate:
            directory = Directory.load(store, internal_policy=settings.internal_policy)
    run_id = book.run_id()
    result.run_id = run_id
    ctx = _Ctx(
        store,
        settings,
        mb,
        run_id,
        directory,
        window_start(settings, mb),
        gate,
        result,
        progress,
        trigger=trigger,
        checkpoints=dict(book.checkpoints.get(mb.id, {})),
    )
    attempts = 1 if result.probed else max(1, int(settings.sync_retries))
    problem: ConnectionProblem | None = None
    for attempt in range(1, attempts + 1):
        ctx.reports = []
        result.folders = result.folders_changed = 0
        try:
            _run_mailbox(ctx, pool)
            problem = None
            break
        except ConnectionProblem as p:
            problem = p
        except MailopsError:
            raise
        except Exception as e:  # noqa: BLE001 - network / protocol errors from the IMAP layer
            if not is_dropped(e):
                raise
            from mailops.problems import classify

            problem = classify(e, mailbox=mb.address)
        if not problem.transient or attempt == attempts:
            break
        delay = backoff_delay(attempt, problem, base=settings.sync_retry_base, cap=60.0)
        log.info("%s: %s; retry %d in %.1fs", mb.address, problem.code, attempt, delay)
        sleep(delay)

    result.duration_s = time.monotonic() - t0
    if problem is not None:
        result.status = "failed"
        result.error_code = problem.code
        result.error_message = problem.message
        result.retry_after = problem.retry_after
        with gate, store.transaction():
            result.problematic = record_failure(
                store, mb, problem, budget=int(getattr(settings, "connect_retry_budget", 3))
            )
            mailbox_store.update(store, mb.id, last_sync_at=_now())
            if result.probed:  # C4: when is it tried again
                result.next_probe_at = record_probe_failure(store, settings, mb, problem)
            elif result.problematic:
                result.next_probe_at = first_probe_at(store, settings, mb)
    elif result.probed:
        with gate, store.transaction():
            record_recovery(store, mb)
        result.recovered = True
    book.finish(ctx, ok=problem is None)
    if _book is None:
        book.flush()
    return result


def sync_all(
    store: Store,
    settings: Settings,
    *,
    mailboxes: Iterable[Mailbox] | None = None,
    trigger: str = "manual",
    progress: ProgressFn | None = None,
    parallel: int | None = None,
    pool: SessionPool | None = None,
) -> list[SyncResult]:
    """Sync every connected mailbox (or MAILBOXES), several at once, one connection each.

    POOL keeps the sessions open for the next call (the scheduler); without it each
    mailbox logs in and out."""
    from mailops.healing import plan

    gate = _Gate()
    with gate:
        asked = (
            [mailbox_store.get(store, m.id) for m in mailboxes]
            if mailboxes is not None
            else mailbox_store.all_mailboxes(store, states=("connected", "problematic"))
        )
        todo, skips = plan(store, settings, asked)  # C4: problematic ones only when probed
        directory = Directory.load(store, internal_policy=settings.internal_policy)
        _limit_memory(store, settings)
    skipped = [s.as_result() for s in skips]
    if not todo:
        return skipped
    with _leased(store, todo) as (leased, busy):  # S14, before any server work
        results = _sync_leased(
            store, settings, leased, directory, gate, trigger, progress, parallel, pool
        )
    if busy and settings.sync_lease_wait > 0:  # S14: wait briefly for the other sync
        again = [mailbox_store.get(store, r.mailbox_id) for r in busy]
        with _leased(store, again, wait=settings.sync_lease_wait) as (leased, busy):
            results += _sync_leased(
                store, settings, leased, directory, gate, trigger, progress, parallel, pool
            )
    order = {mb.id: i for i, mb in enumerate(asked)}
    return sorted(results + busy + skipped, key=lambda r: order.get(r.mailbox_id, 0))


def _sync_leased(
    store: Store,
    settings: Settings,
    todo: list[Mailbox],
    directory: Directory,
    gate: _Gate,
    trigger: str,
    progress: ProgressFn | None,
    parallel: int | None,
    pool: SessionPool | None,
) -> list[SyncResult]:
    if not todo:
        return []
    book = _Book(store, gate, [mb.id for mb in todo])  # stale runs: only of leased mailboxes
    workers = max(1, min(int(parallel or settings.sync_parallel), len(todo)))

    def one(mb: Mailbox) -> SyncResult:
        return _sync_one(
            store,
            settings,
            mb,
            trigger=trigger,
            progress=progress,
            directory=directory,
            gate=gate,
            pool=pool,
            _book=book,
        )

    try:
        if workers == 1:
            return [one(mb) for mb in todo]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync") as threads:
            return list(threads.map(one, todo))
    finally:
        book.flush()


def summarize(results: Sequence[SyncResult]) -> dict[str, Any]:
    from mailops.outcomes import outcome_of, worst

    reasons: Counter[str] = Counter()
    for r in results:
        reasons.update(r.by_reason)
    code, meaning = worst(results)
    return {
        "mailboxes": sum(r.status in ("ok", "failed") for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "mailboxes_skipped": sum(r.status == "skipped" for r in results),
        "recovered": sum(r.recovered for r in results),
        "outcomes": dict(Counter(outcome_of(r) for r in results)),
        "exit_code": code,
        "exit_meaning": meaning,
        "not_connected": sum(r.status == "not_connected" for r in results),
        "examined": sum(r.examined for r in results),
        "stored": sum(r.stored for r in results),
        "linked": sum(r.linked for r in results),
        "skipped": sum(r.skipped for r in results),
        "by_reason": dict(reasons.most_common()),
    }
