"""The sync engine: customer email from IMAP into the store, incremental, headers first (S1-S12).

Per folder (``folders.choose_folders``):

1. ``STATUS`` (one round trip): unchanged UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ against
   the checkpoint means nothing to do.
2. ``SELECT`` read-only, ``UID SEARCH`` for UIDs after the checkpoint (or ``SINCE`` the
   backfill window on a folder's first sync or after a UIDVALIDITY change, S2/S7).
3. Per batch of ``sync_batch`` UIDs: ``FETCH (UID FLAGS INTERNALDATE RFC822.SIZE
   BODY.PEEK[HEADER.FIELDS (...)])``, ``decide()`` from cheap headers, then
   ``BODY.PEEK[]`` only for messages that are stored and not already known (S8), parse
   them (``policy.default``), and commit messages, places, activities, ledger rows and the
   checkpoint in ONE transaction (S11, S12): a kill at any point loses or duplicates nothing.

A UIDVALIDITY change is handled like a first sync of the folder: known messages are
re-linked by Message-ID (a new place), nothing is deleted or stored twice (S7, S8).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mailops.config import Settings
from mailops.errors import ConnectionProblem, MailopsError
from mailops.folders import choose_folders
from mailops.match import Decision, Directory, FolderInfo, decide
from mailops.parse import ParsedMessage, parse_headers_fast, parse_message
from mailops.store import Store
from mailops.store import mailboxes as mailbox_store
from mailops.store import sync as state
from mailops.store.mailboxes import Mailbox
from mailops.store.messages import (
    ActivityRow,
    PlaceRow,
    add_activities,
    add_places,
    existing_ids,
    save_messages,
)

__all__ = ["SyncResult", "sync_all", "sync_mailbox", "window_start"]

log = logging.getLogger(__name__)

HEADER_FIELDS = "MESSAGE-ID FROM TO CC DATE SUBJECT IN-REPLY-TO REFERENCES"
HEADER_ITEM = f"BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]".encode()
HEADER_KEY = f"BODY[HEADER.FIELDS ({HEADER_FIELDS})]".encode()
FETCH_HEADERS = [b"UID", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", HEADER_ITEM]
FETCH_BODY = [b"BODY.PEEK[]"]
BODY_KEY = b"BODY[]"

# Fault injection for the S12 kill test: SIGKILL this process inside the transaction of
# batch N (after its writes, before COMMIT). Never set outside tests.
FAULT_ENV = "MAILOPS_FAULT_SYNC_KILL_AT_BATCH"

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
    status: str = "ok"  # ok | failed | not_connected
    examined: int = 0
    stored: int = 0  # new messages stored
    linked: int = 0  # stored decisions for messages already in the store (new place)
    skipped: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    folders: int = 0
    folders_changed: int = 0
    duration_s: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    retry_after: float | None = None
    problematic: bool = False

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["by_reason"] = dict(self.by_reason)
        return d

    def one_line(self) -> str:
        if self.status != "ok":
            return f"{self.address}: {self.status} [{self.error_code}] {self.error_message or ''}".strip()
        reasons = ", ".join(
            f"{k} {v}" for k, v in self.by_reason.most_common() if k != "stored_customer"
        )
        return (
            f"{self.address}: examined {self.examined}, stored {self.stored}, linked {self.linked},"
            f" skipped {self.skipped}{' (' + reasons + ')' if reasons else ''} in {self.duration_s:.2f}s"
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
    condstore: bool = False
    batches: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)


def _open(mailbox: Mailbox, settings: Settings, force_refresh: bool) -> Any:
    from mailops.auth import credentials_for
    from mailops.imap import open_imap

    creds = credentials_for(mailbox, settings, force_refresh=force_refresh)
    client = open_imap(
        mailbox, creds, timeout=settings.socket_timeout, ca_file=settings.ca_file or None
    )
    client.normalise_times = False
    return client


def _connect(mailbox: Mailbox, settings: Settings) -> Any:
    """Log in; on a refused login refresh the credentials once (C4) before giving up."""
    try:
        return _open(mailbox, settings, False)
    except ConnectionProblem as p:
        if p.transient:
            raise
        log.info("login refused for %s (%s); refreshing credentials once", mailbox.address, p.code)
        return _open(mailbox, settings, True)


def _problem(err: BaseException, address: str) -> ConnectionProblem:
    from mailops.problems import classify

    return classify(err, mailbox=address)


def _close(client: Any) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - the server may already be gone
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass


def _status(client: Any, name: str, condstore: bool) -> dict[bytes, int]:
    items = [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"] + ([b"HIGHESTMODSEQ"] if condstore else [])
    return {k: int(v) for k, v in client.folder_status(name, items).items()}


def _sync_folder(ctx: _Ctx, client: Any, folder: FolderInfo, cp: state.Checkpoint | None) -> None:
    st = _status(client, folder.name, ctx.condstore)
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
        return  # S1: nothing new; one round trip
    ctx.result.folders_changed += 1
    client.select_folder(folder.name, readonly=True)
    since = (ctx.window - timedelta(days=1)).date()
    if same_uv and cp is not None:
        last = cp.last_uid
        uids = [u for u in client.search(["UID", f"{last + 1}:*", "SINCE", since]) if u > last]
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
        uids = list(client.search(["SINCE", since]))
    uids.sort()
    batch_size = max(1, int(ctx.settings.sync_batch))
    final = state.Checkpoint(folder.name, uidvalidity, last, modseq, uidnext, st.get(b"MESSAGES"))
    if not uids:
        with ctx.gate:
            state.save_checkpoint(ctx.store, ctx.mailbox.id, final)
        return
    for i in range(0, len(uids), batch_size):
        batch = uids[i : i + batch_size]
        is_last = i + batch_size >= len(uids)
        cp_now = state.Checkpoint(
            folder.name,
            uidvalidity,
            max(batch[-1], last),
            modseq if is_last else None,
            uidnext if is_last else None,
            st.get(b"MESSAGES") if is_last else None,
        )
        _sync_batch(ctx, client, folder, uidvalidity, batch, cp_now, report)


def _sync_batch(
    ctx: _Ctx,
    client: Any,
    folder: FolderInfo,
    uidvalidity: int,
    uids: Sequence[int],
    checkpoint: state.Checkpoint,
    report: dict[str, Any],
) -> None:
    mb = ctx.mailbox
    fetched = client.fetch(uids, FETCH_HEADERS)
    seen: list[tuple[int, Any, Decision, str | None, str, datetime | None]] = []
    max_bytes = ctx.settings.max_message_bytes
    for uid in uids:
        data = fetched.get(uid)
        if data is None:  # expunged between SEARCH and FETCH
            continue
        headers = parse_headers_fast(data.get(HEADER_KEY) or b"")
        flags = data.get(b"FLAGS") or ()
        internaldate = _utc(data.get(b"INTERNALDATE"))
        d = decide(
            headers,
            folder,
            flags,
            ctx.directory,
            mb.address,
            ctx.window,
            user_id=mb.owner_user_id,
            internaldate=internaldate,
            size=data.get(b"RFC822.SIZE"),
            max_message_bytes=max_bytes,
        )
        flag_text = " ".join(f.decode() if isinstance(f, bytes) else str(f) for f in flags)
        seen.append((uid, headers, d, headers.message_id, flag_text, internaldate))

    wanted = [s for s in seen if s[2].stored]
    with ctx.gate:
        known = existing_ids(ctx.store, [s[3] for s in wanted if s[3]])
    need_body = [s[0] for s in wanted if not s[3] or s[3] not in known]
    parsed: dict[int, tuple[ParsedMessage, bytes]] = {}
    if need_body:
        bodies = client.fetch(need_body, FETCH_BODY)
        for uid in need_body:
            raw = (bodies.get(uid) or {}).get(BODY_KEY)
            if raw is None:
                continue
            p = parse_message(bytes(raw))
            parsed[uid] = (p, bytes(raw))

    places: list[PlaceRow] = []
    acts: list[ActivityRow] = []
    ledger: list[state.LedgerRow] = []
    for uid, headers, d, mid, flag_text, internaldate in seen:
        key = mid
        if d.stored:
            if uid in parsed:
                key = parsed[uid][0].key
            elif not mid or mid not in known:  # vanished before the body fetch
                continue
            assert key is not None
            places.append(
                PlaceRow(key, mb.id, folder.name, uidvalidity, uid, flag_text, internaldate)
            )
            when = d.msg_date or internaldate
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
                uidvalidity,
                uid,
                key,
                d.decision,
                d.reason,
                [c for c, _, _ in d.customers],
                d.msg_date,
                headers.from_addr,
                (headers.subject or "")[:300] or None,
            )
        )

    ctx.batches += 1
    with ctx.gate, ctx.store.transaction():
        new = save_messages(
            ctx.store,
            list(parsed.values()),
            attachment_max_bytes=ctx.settings.attachment_max_bytes,
        )
        add_places(ctx.store, places)
        add_activities(ctx.store, acts)
        state.add_ledger(ctx.store, ledger)
        state.save_checkpoint(ctx.store, mb.id, checkpoint)
        if os.environ.get(FAULT_ENV) == str(ctx.batches):
            os.kill(os.getpid(), signal.SIGKILL)

    r = ctx.result
    stored_rows = [row for row in ledger if row.decision == "stored"]
    r.examined += len(ledger)
    r.stored += len(new)
    r.linked += len(stored_rows) - len(new)
    r.skipped += len(ledger) - len(stored_rows)
    r.by_reason.update(row.reason for row in ledger)
    report["examined"] += len(ledger)
    report["stored"] += len(stored_rows)
    report["skipped"] += len(ledger) - len(stored_rows)
    if ctx.progress:
        ctx.progress(len(ledger))


def _run_folders(ctx: _Ctx) -> None:
    client = _connect(ctx.mailbox, ctx.settings)
    try:
        caps = {c.upper() for c in client.capabilities()}
        ctx.condstore = b"CONDSTORE" in caps
        folders = choose_folders(client.list_folders(), ctx.mailbox.folders)
        with ctx.gate:
            cps = state.checkpoints(ctx.store, ctx.mailbox.id)
        for folder in folders:
            _sync_folder(ctx, client, folder, cps.get(folder.name))
    finally:
        _close(client)


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
) -> SyncResult:
    """Sync one connected mailbox; never raises for mailbox problems (they are in the result)."""
    from mailops.problems import backoff_delay, record_failure, record_success

    gate = gate or _Gate()
    with gate:
        mb = (
            mailbox_store.get(store, mailbox.id)
            if isinstance(mailbox, Mailbox)
            else mailbox_store.find(store, mailbox)
        )
    result = SyncResult(mb.id, mb.address)
    if mb.state != "connected":
        result.status = "not_connected"
        result.error_code = mb.problem_code or mb.state
        result.error_message = f"mailbox is {mb.state}; only connected mailboxes are synced"
        return result
    t0 = time.monotonic()
    with gate:
        state.mark_stale_runs(store, mb.id)
        run_id = state.start_run(store, mb.id, trigger)
        if directory is None:
            directory = Directory.load(store, internal_policy=settings.internal_policy)
    result.run_id = run_id
    ctx = _Ctx(
        store, settings, mb, run_id, directory, window_start(settings, mb), gate, result, progress
    )
    attempts = max(1, int(settings.sync_retries))
    problem: ConnectionProblem | None = None
    for attempt in range(1, attempts + 1):
        ctx.reports = []
        result.folders = result.folders_changed = 0
        try:
            _run_folders(ctx)
            problem = None
            break
        except ConnectionProblem as p:
            problem = p
        except MailopsError:
            raise
        except Exception as e:  # noqa: BLE001 - network / protocol errors from imapclient
            if not isinstance(e, OSError | EOFError) and "imap" not in type(e).__module__.lower():
                raise
            problem = _problem(e, mb.address)
        if not problem.transient or attempt == attempts:
            break
        delay = backoff_delay(attempt, problem, base=settings.sync_retry_base, cap=60.0)
        log.info("%s: %s; retry %d in %.1fs", mb.address, problem.code, attempt, delay)
        sleep(delay)

    result.duration_s = time.monotonic() - t0
    with gate, store.transaction():
        for rep in ctx.reports:
            state.folder_report(store, run_id, mb.id, **rep)
        if problem is None:
            record_success(store, mb)
            mailbox_store.update(store, mb.id, last_sync_at=_now(), last_good_sync_at=_now())
        else:
            result.status = "failed"
            result.error_code = problem.code
            result.error_message = problem.message
            result.retry_after = problem.retry_after
            result.problematic = record_failure(store, mb, problem)
            mailbox_store.update(store, mb.id, last_sync_at=_now())
        state.finish_run(
            store,
            run_id,
            status=result.status,
            examined=result.examined,
            stored=result.stored,
            skipped=result.skipped,
            linked=result.linked,
            duration_s=result.duration_s,
            error_code=result.error_code,
            error_message=result.error_message,
        )
    return result


def sync_all(
    store: Store,
    settings: Settings,
    *,
    mailboxes: Iterable[Mailbox] | None = None,
    trigger: str = "manual",
    progress: ProgressFn | None = None,
    parallel: int | None = None,
) -> list[SyncResult]:
    """Sync every connected mailbox (or MAILBOXES), several at once, one connection each."""
    gate = _Gate()
    with gate:
        todo = (
            list(mailboxes)
            if mailboxes is not None
            else mailbox_store.all_mailboxes(store, states=("connected",))
        )
        directory = Directory.load(store, internal_policy=settings.internal_policy)
    if not todo:
        return []
    workers = max(1, min(int(parallel or settings.sync_parallel), len(todo)))

    def one(mb: Mailbox) -> SyncResult:
        return sync_mailbox(
            store, settings, mb, trigger=trigger, progress=progress, directory=directory, gate=gate
        )

    if workers == 1:
        return [one(mb) for mb in todo]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync") as pool:
        return list(pool.map(one, todo))


def summarize(results: Sequence[SyncResult]) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    for r in results:
        reasons.update(r.by_reason)
    return {
        "mailboxes": len(results),
        "failed": sum(r.status == "failed" for r in results),
        "not_connected": sum(r.status == "not_connected" for r in results),
        "examined": sum(r.examined for r in results),
        "stored": sum(r.stored for r in results),
        "linked": sum(r.linked for r in results),
        "skipped": sum(r.skipped for r in results),
        "by_reason": dict(reasons.most_common()),
    }
