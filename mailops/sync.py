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
import re
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
from mailops.imap import close_imap
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
from mailops.store.notifications import notify_new_inbound

__all__ = ["SessionPool", "SyncResult", "sync_all", "sync_mailbox", "window_start"]

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
    trigger: str = "manual"
    started_at: datetime = field(default_factory=_now)
    checkpoints: dict[str, state.Checkpoint] = field(default_factory=dict)
    condstore: bool = False
    batches: int = 0
    run_written: bool = False  # the sync_runs row exists (written with the first batch)
    reports: list[dict[str, Any]] = field(default_factory=list)


_SECRETS: dict[tuple[str, str], Any] = {}


def _secret_store(settings: Settings) -> Any:
    """One SecretStore per secrets folder (its key lookup may ask the OS keyring)."""
    from mailops.secrets import SecretStore

    key = (str(settings.secrets_path), settings.secret_key_file)
    found = _SECRETS.get(key)
    if found is None:
        found = _SECRETS[key] = SecretStore(settings)
    return found


def _open(mailbox: Mailbox, settings: Settings, force_refresh: bool) -> Any:
    from mailops.auth import credentials_for
    from mailops.imap import open_imap

    creds = credentials_for(mailbox, settings, _secret_store(settings), force_refresh=force_refresh)
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


_UID_RE = re.compile(rb"UID (\d+)")
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
_DATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_SIZE_RE = re.compile(rb"RFC822\.SIZE (\d+)")


def _uid_set(uids: Sequence[int]) -> str:
    """[1,2,3,7] -> "1:3,7" (short commands for large batches)."""
    out: list[str] = []
    start = prev = uids[0]
    for u in uids[1:]:
        if u == prev + 1:
            prev = u
            continue
        out.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = u
    out.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(out)


def _parse_fetch_fast(data: list[Any]) -> dict[int, dict[bytes, Any]]:
    """FETCH responses as imaplib returns them -> imapclient's shape, for the few items we ask.

    imapclient's general response parser tokenises every byte of the metadata and costs more
    than everything else in a headers-first sync; our items need four regexes. Anything
    unexpected raises ValueError and the caller falls back to imapclient's parser.
    """
    out: dict[int, dict[bytes, Any]] = {}
    i, n = 0, len(data)
    while i < n:
        item = data[i]
        i += 1
        literal: bytes | None = None
        if isinstance(item, tuple):
            meta, literal = item[0], item[1]
            if i < n and isinstance(data[i], bytes):  # the rest of the line after the literal
                meta = meta + b" " + data[i]
                i += 1
        elif isinstance(item, bytes):
            if item == b")":
                continue
            meta = item
        else:
            raise ValueError("unexpected FETCH item")
        m = _UID_RE.search(meta)
        if m is None:
            raise ValueError("FETCH without UID")
        rec: dict[bytes, Any] = {}
        if (f := _FLAGS_RE.search(meta)) is not None:
            rec[b"FLAGS"] = tuple(f.group(1).split())
        if (d := _DATE_RE.search(meta)) is not None:
            rec[b"INTERNALDATE"] = datetime.strptime(
                d.group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z"
            )
        if (z := _SIZE_RE.search(meta)) is not None:
            rec[b"RFC822.SIZE"] = int(z.group(1))
        if literal is not None:
            if b"BODY[]" in meta:
                rec[BODY_KEY] = literal
            elif b"BODY[HEADER" in meta:
                rec[HEADER_KEY] = literal
            else:
                raise ValueError("unexpected literal in FETCH")
        out.setdefault(int(m.group(1)), {}).update(rec)
    return out


def _fetch(client: Any, uids: Sequence[int], items: Sequence[bytes]) -> dict[int, dict[bytes, Any]]:
    """``UID FETCH`` with the fast parser; imapclient's own parser when it cannot cope."""
    imap = getattr(client, "_imap", None)
    if imap is None or not uids:
        return dict(client.fetch(list(uids), list(items)))
    from imapclient.response_parser import parse_fetch_response

    spec = "(" + " ".join(i.decode() for i in items) + ")"
    tag = imap._command("UID", "FETCH", _uid_set(sorted(uids)), spec)
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    data = [d for d in data if d is not None]
    try:
        return _parse_fetch_fast(data)
    except (ValueError, IndexError, TypeError) as e:
        log.debug("fast FETCH parse fell back to imapclient: %s", e)
        return dict(parse_fetch_response(data, False, True))


def _status_items(condstore: bool) -> list[bytes]:
    return [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"] + ([b"HIGHESTMODSEQ"] if condstore else [])


def _list_with_status(
    client: Any, condstore: bool
) -> tuple[list[tuple[Any, Any, str]], dict[str, dict[bytes, int]]]:
    """``LIST ... RETURN (SPECIAL-USE STATUS (...))`` (RFC 5819): every folder and its
    counters in ONE round trip, when the server has LIST-STATUS; else LIST (+ STATUS later)."""
    caps = {c.upper() for c in client.capabilities()}
    imap = getattr(client, "_imap", None)
    if b"LIST-STATUS" not in caps or imap is None:
        return list(client.list_folders()), {}
    from imapclient.imap_utf7 import decode as decode_utf7
    from imapclient.response_parser import parse_response

    items = " ".join(i.decode() for i in _status_items(condstore))
    ret = (
        "(SPECIAL-USE STATUS (" + items + "))" if b"SPECIAL-USE" in caps else f"(STATUS ({items}))"
    )
    tag = imap._command("LIST", '""', '"*"', "RETURN", ret)
    typ, data = imap._command_complete("LIST", tag)
    client._checkok("list", typ, data)
    status_lines = imap.untagged_responses.pop("STATUS", [])
    typ, data = imap._untagged_response(typ, data, "LIST")
    listing = client._proc_folder_list(data)
    statuses: dict[str, dict[bytes, int]] = {}
    for line in status_lines:
        try:
            name, values = parse_response([line])
        except (ValueError, TypeError):
            continue  # that folder gets its own STATUS
        if isinstance(name, bytes):
            name = decode_utf7(name) if client.folder_encode else name.decode()
        it = iter(values)
        statuses[str(name)] = {bytes(k).upper(): int(v) for k, v in zip(it, it, strict=False)}
    return listing, statuses


def _status(client: Any, name: str, condstore: bool) -> dict[bytes, int]:
    return {k: int(v) for k, v in client.folder_status(name, _status_items(condstore)).items()}


def _sync_folder(
    ctx: _Ctx,
    client: Any,
    folder: FolderInfo,
    cp: state.Checkpoint | None,
    status: dict[bytes, int] | None = None,
) -> None:
    st = (
        status
        if status and b"UIDVALIDITY" in status
        else _status(client, folder.name, ctx.condstore)
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


BODY_CHUNK_BYTES = 32 * 1024 * 1024  # one BODY.PEEK[] FETCH asks for at most this much


def _by_bytes(uids: Sequence[int], sizes: dict[int, int], limit: int) -> Iterable[list[int]]:
    """UIDs in runs whose summed RFC822.SIZE stays under LIMIT (at least one per run)."""
    chunk: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if chunk and total + size > limit:
            yield chunk
            chunk, total = [], 0
        chunk.append(uid)
        total += size
    if chunk:
        yield chunk


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
    fetched = _fetch(client, uids, FETCH_HEADERS)
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
    header_of = {s[0]: s[1] for s in wanted}
    parsed: dict[int, tuple[ParsedMessage, bytes]] = {}
    sizes = {uid: int((fetched.get(uid) or {}).get(b"RFC822.SIZE") or 0) for uid in need_body}
    for chunk in _by_bytes(need_body, sizes, BODY_CHUNK_BYTES):
        bodies = _fetch(client, chunk, FETCH_BODY)
        for uid in chunk:
            raw = (bodies.get(uid) or {}).get(BODY_KEY)
            if raw is None:
                continue
            p = parse_message(bytes(raw), header_of.get(uid))
            parsed[uid] = (p, bytes(raw))
        del bodies

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
    connected = (mb.connected_at or ctx.window).replace(microsecond=0)  # INTERNALDATE has seconds
    arrived = {p.message_id: p.internaldate for p in places if p.internaldate is not None}
    with ctx.gate, ctx.store.transaction():
        if not ctx.run_written:  # the run row joins the first batch's transaction (S12)
            state.insert_run(ctx.store, ctx.run_id, mb.id, ctx.trigger, ctx.started_at)
        new = save_messages(
            ctx.store,
            list(parsed.values()),
            attachment_max_bytes=ctx.settings.attachment_max_bytes,
        )
        add_places(ctx.store, places)
        add_activities(ctx.store, acts)
        notify_new_inbound(ctx.store, mb, acts, arrived, connected)  # N1
        state.add_ledger(ctx.store, ledger)
        state.save_checkpoint(ctx.store, mb.id, checkpoint)
        if os.environ.get(FAULT_ENV) == str(ctx.batches):
            os.kill(os.getpid(), signal.SIGKILL)
    ctx.run_written = True
    with ctx.gate:  # a long first sync must not lock reports out for its whole run (R2)
        ctx.store.yield_to_readers()

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


class SessionPool:
    """Logged-in IMAP sessions kept between scheduler rounds (one per mailbox, S1).

    A login costs the server far more than a LIST-STATUS; the ``--watch`` scheduler keeps
    each mailbox's session open, so a round with no new mail is one round trip per mailbox.
    A session the server has dropped meanwhile is replaced transparently.
    """

    def __init__(self) -> None:
        self._clients: dict[int, Any] = {}
        self._lock = threading.Lock()

    def take(self, mailbox_id: int) -> Any | None:
        with self._lock:
            return self._clients.pop(mailbox_id, None)

    def give(self, mailbox_id: int, client: Any) -> None:
        with self._lock:
            old = self._clients.pop(mailbox_id, None)
            self._clients[mailbox_id] = client
        if old is not None and old is not client:
            close_imap(old)

    def close_one(self, mailbox_id: int) -> None:
        client = self.take(mailbox_id)
        if client is not None:
            close_imap(client)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            close_imap(c)

    def __len__(self) -> int:
        return len(self._clients)


_DROPPED = (OSError, EOFError)


def _start_session(ctx: _Ctx, pool: SessionPool | None) -> tuple[Any, list[Any], dict[str, Any]]:
    """A logged-in client (pooled when possible) and its folder listing with counters."""
    client = pool.take(ctx.mailbox.id) if pool is not None else None
    if client is not None:
        try:
            ctx.condstore = b"CONDSTORE" in {c.upper() for c in client.capabilities()}
            listing, statuses = _list_with_status(client, ctx.condstore)
            return client, listing, statuses
        except Exception as e:  # noqa: BLE001 - a stale pooled session: log in again
            if not isinstance(e, _DROPPED) and "imap" not in type(e).__module__.lower():
                raise
            log.debug("%s: pooled session dropped (%s); logging in", ctx.mailbox.address, e)
            close_imap(client)
    client = _connect(ctx.mailbox, ctx.settings)
    caps = {c.upper() for c in client.capabilities()}
    ctx.condstore = b"CONDSTORE" in caps
    try:
        listing, statuses = _list_with_status(client, ctx.condstore)
        return client, listing, statuses
    except BaseException:
        close_imap(client)
        raise


def _run_folders(ctx: _Ctx, pool: SessionPool | None = None) -> None:
    client, listing, statuses = _start_session(ctx, pool)
    ok = False
    try:
        folders = choose_folders(listing, ctx.mailbox.folders)
        if ctx.batches:  # a retry: re-read what the committed batches checkpointed
            with ctx.gate:
                ctx.checkpoints = state.checkpoints(ctx.store, ctx.mailbox.id)
        for folder in folders:
            _sync_folder(
                ctx, client, folder, ctx.checkpoints.get(folder.name), statuses.get(folder.name)
            )
        ok = True
    finally:
        if ok and pool is not None:
            if ctx.result.folders_changed:  # leave no folder selected (fresh STATUS next time)
                try:
                    client.unselect_folder()
                except Exception:  # noqa: BLE001 - then the session is not worth keeping
                    close_imap(client)
                    return
            pool.give(ctx.mailbox.id, client)
        else:
            close_imap(client)


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
    _book: _Book | None = None,
) -> SyncResult:
    """Sync one connected mailbox; never raises for mailbox problems (they are in the result)."""
    from mailops.problems import backoff_delay, record_failure

    gate = gate or _Gate()
    if isinstance(mailbox, Mailbox) and _book is not None:
        mb = mailbox  # sync_all read it fresh a moment ago
    else:
        with gate:
            ref = mailbox.id if isinstance(mailbox, Mailbox) else mailbox
            mb = mailbox_store.find(store, ref, include_disconnected=True)
    result = SyncResult(mb.id, mb.address)
    if mb.state != "connected":
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
    attempts = max(1, int(settings.sync_retries))
    problem: ConnectionProblem | None = None
    for attempt in range(1, attempts + 1):
        ctx.reports = []
        result.folders = result.folders_changed = 0
        try:
            _run_folders(ctx, pool)
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
    gate = _Gate()
    with gate:
        todo = (
            [mailbox_store.get(store, m.id) for m in mailboxes]
            if mailboxes is not None
            else mailbox_store.all_mailboxes(store, states=("connected",))
        )
        directory = Directory.load(store, internal_policy=settings.internal_policy)
        _limit_memory(store, settings)
    if not todo:
        return []
    book = _Book(store, gate, [mb.id for mb in todo if mb.state == "connected"])
    workers = max(1, min(int(parallel or settings.sync_parallel), len(todo)))

    def one(mb: Mailbox) -> SyncResult:
        return sync_mailbox(
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
