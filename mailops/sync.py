"""The sync engine: customer email from IMAP into the store, incremental, headers first.

The wire (sessions, commands, the FETCH parser, special folders) is ``mailops.imap``; this
module is the engine. Per mailbox (``sync_mailbox``, ``sync_all`` for many at once, each
under its lease, S14):

``_run_mailbox``  one session (``imap.session_for``: pooled, LIST-STATUS as first command),
                  ``folders.plan_folders`` -> folders to sync and the others with why they
                  are not examined (``_account_not_examined``, S11); then per folder:
``_plan_folder``  STATUS counters vs the checkpoint (unchanged -> nothing to do, S1), else
                  SELECT read-only, COUNT what is older than the window (S11) and ``UID
                  SEARCH`` for the UIDs to examine (after the checkpoint, or ``SINCE`` the
                  backfill window on a first sync or after a UIDVALIDITY change, S2/S7),
                  plus poison messages due for another try (S15) -> ``FolderPlan``.
``_sync_batch``   per ``sync_batch`` UIDs:
  ``_examine``        FETCH (UID FLAGS INTERNALDATE RFC822.SIZE header fields) + ``decide()``
  ``_units``          cut into commit units whose bodies fit ``BODY_BUDGET_BYTES``
  per unit:
  ``_fetch_bodies``   BODY.PEEK[] for the stored decisions (in memory up to 4 MB, larger
                      ones spooled to the blob folder, ``mailops.spool``, S12), parsed
  ``_commit``         ``_rows`` (places, activities, ledger rows) and ``_write``: contents,
                      places, activities, notifications, ledger, poison bookkeeping and the
                      checkpoint in ONE transaction (S11, S12): a kill loses or duplicates
                      nothing. A store that refuses the unit gets its messages one by one.

One message never blocks the others (S15): what cannot be fetched (``_fetch_isolated``),
parsed (``_parse_into``) or stored (``_commit``) becomes an error row and is retried by later
runs; a folder that fails is skipped for the run (``_folder_failed``); ``_settle`` records
how the run ended and turns a mailbox that fails run after run problematic.

A UIDVALIDITY change is handled like a first sync of the folder: known messages are
re-linked by Message-ID (a new place), nothing is deleted or stored twice (S7, S8).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb

from mailops import poison
from mailops.config import Settings
from mailops.errors import ConnectionProblem, MailopsError, StoreError
from mailops.faults import crash_point
from mailops.folders import plan_folders
from mailops.imap import (
    Client,
    IMAPAbort,
    IMAPError,
    Session,
    SessionPool,
    is_dropped,
    is_imap_error,
    session_for,
)
from mailops.imap import commands as imap
from mailops.match import Decision, Directory, FolderInfo, decide
from mailops.outcomes import SyncResult
from mailops.poison import MessageError
from mailops.store import Store
from mailops.store import mailboxes as mailbox_store
from mailops.store import sync as state
from mailops.store.mailboxes import Mailbox

if TYPE_CHECKING:
    from mailops import spool
    from mailops.lease import Leases
    from mailops.parse import HeaderInfo, ParsedMessage, parse_headers_fast, parse_message
    from mailops.store.blobs import BlobRef
    from mailops.store.messages import (
        ActivityRow,
        PlaceRow,
        add_activities,
        add_places,
        refresh_identities,
        resolve_identities,
        save_messages,
    )
    from mailops.store.notifications import notify_new_inbound

    Content = bytes | BlobRef

# The message side -- header and MIME parsing, the message tables, the blob spool -- is
# imported when a folder has something to examine (``_message_side``): a no-change run,
# most runs, never needs it (issue 14). ``mailops.sync.save_messages`` & co. still resolve
# (and can be patched) from outside: module ``__getattr__`` below.
_MESSAGE_SIDE = {
    "spool": ("mailops.spool", None),
    "HeaderInfo": ("mailops.parse", "HeaderInfo"),
    "ParsedMessage": ("mailops.parse", "ParsedMessage"),
    "parse_headers_fast": ("mailops.parse", "parse_headers_fast"),
    "parse_message": ("mailops.parse", "parse_message"),
    "BlobRef": ("mailops.store.blobs", "BlobRef"),
    "ActivityRow": ("mailops.store.messages", "ActivityRow"),
    "PlaceRow": ("mailops.store.messages", "PlaceRow"),
    "add_activities": ("mailops.store.messages", "add_activities"),
    "add_places": ("mailops.store.messages", "add_places"),
    "refresh_identities": ("mailops.store.messages", "refresh_identities"),
    "resolve_identities": ("mailops.store.messages", "resolve_identities"),
    "save_messages": ("mailops.store.messages", "save_messages"),
    "notify_new_inbound": ("mailops.store.notifications", "notify_new_inbound"),
}
_message_side_loaded = False


def _message_side() -> None:
    """Import the message side into this module (once; a name patched already stays)."""
    global _message_side_loaded
    if _message_side_loaded:
        return
    g = globals()
    for name, (module, attr) in _MESSAGE_SIDE.items():
        if name not in g:
            mod = __import__(module, fromlist=["_"])
            g[name] = mod if attr is None else getattr(mod, attr)
    _message_side_loaded = True


def __getattr__(name: str) -> Any:
    if name in _MESSAGE_SIDE:
        _message_side()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SessionPool", "SyncResult", "summarize", "sync_all", "sync_mailbox", "window_start"]

log = logging.getLogger(__name__)

HEADER_FIELDS = "MESSAGE-ID FROM TO CC DATE SUBJECT IN-REPLY-TO REFERENCES"
HEADER_ITEM = f"BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})]".encode()
FETCH_HEADERS = [b"UID", b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", HEADER_ITEM]
FETCH_BODY = [b"BODY.PEEK[]"]
BODY_KEY = imap.BODY_KEY

# one commit unit holds at most this many body bytes (and one BODY.PEEK[] FETCH asks for
# no more): memory stays flat however many customer mails a batch holds (S12)
BODY_BUDGET_BYTES = 16 * 1024 * 1024

# a run logs in again at most this many times to go past messages that drop the session
MAX_POISON_DROPS = 10

ProgressFn = Callable[[int], None]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    if dt.tzinfo is not None:
        return dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def window_start(settings: Settings, mailbox: Mailbox) -> datetime:
    """S2: the backfill window is fixed at connection: connected_at - backfill days."""
    days = mailbox.backfill_days if mailbox.backfill_days is not None else settings.backfill_days
    anchor = mailbox.connected_at or mailbox.created_at or _now()
    return anchor - timedelta(days=int(days))


class _DirectoryOnce:
    """The run's directory (customers, addresses, policies: ``match.Directory``), read from
    the store when the first message is decided -- a run whose folders are all unchanged
    never reads it (issue 14: six queries fewer). Shared by a run's mailbox threads."""

    def __init__(
        self, store: Store, settings: Settings, gate: _Gate, value: Directory | None = None
    ) -> None:
        self._store, self._policy, self._gate, self._value = (
            store,
            settings.internal_policy,
            gate,
            value,
        )

    def get(self) -> Directory:
        if self._value is None:
            with self._gate:
                if self._value is None:
                    self._value = Directory.load(self._store, internal_policy=self._policy)
        return self._value


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
    directory: _DirectoryOnce
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
    retries: dict[tuple[str, int], dict[int, int]] = field(default_factory=dict)  # S15
    failing: dict[str, int] = field(default_factory=dict)  # folder -> consecutive failed runs
    failed_folders: list[tuple[str, str]] = field(default_factory=list)  # this run (S15)
    # (folder, uidvalidity, uid): fetched one per command / dropped the session (S15)
    suspects: set[tuple[str, int, int]] = field(default_factory=set)
    poisoned: dict[tuple[str, int, int], MessageError] = field(default_factory=dict)


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
    retries: dict[int, int] = field(default_factory=dict)  # poison messages again: uid -> tries
    before_window: int | None = None  # server messages older than the window (S11)

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
            self.before_window,
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
    parsed: dict[int, tuple[ParsedMessage, Content]] = field(default_factory=dict)
    errors: dict[int, MessageError] = field(default_factory=dict)  # S15: uid -> what failed
    new: set[str] = field(default_factory=set)  # message ids this unit stored for the first time

    def needs_body(self, e: Examined) -> bool:
        return e.decision.stored and (not e.message_id or e.message_id not in self.known)


def _plan_folder(
    ctx: _Ctx,
    session: Session[Any],
    folder: FolderInfo,
    cp: state.Checkpoint | None,
    status: dict[bytes, int] | None,
) -> FolderPlan | None:
    """STATUS against the checkpoint; SELECT + SEARCH when something changed or a poison
    message is due for another try (else None: nothing to do)."""
    client = session.client
    st = (
        status
        if status and b"UIDVALIDITY" in status
        else imap.folder_status(client, folder.name, ctx.condstore)
    )
    uidvalidity, uidnext = st[b"UIDVALIDITY"], st[b"UIDNEXT"]
    modseq = st.get(b"HIGHESTMODSEQ")
    report = _report(ctx, folder, "examined", st)
    ctx.reports.append(report)
    ctx.result.folders += 1
    same_uv = cp is not None and cp.uidvalidity == uidvalidity
    retries = ctx.retries.get((folder.name, uidvalidity), {}) if same_uv else {}
    if (
        same_uv
        and cp is not None
        and cp.uidnext == uidnext
        and (modseq is None or cp.highestmodseq == modseq)
        and not retries
    ):
        report["state"] = "unchanged"  # S1: nothing new; one round trip
        report["before_window"] = cp.before_window  # unchanged too: nothing added or expunged
        return None
    ctx.result.folders_changed += 1
    imap.select(client, folder.name, readonly=True)
    session.selected = folder.name
    since = (ctx.window - timedelta(days=1)).date()
    before = imap.count(client, ["BEFORE", since])  # S11: what the window leaves out
    report["before_window"] = before
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
    ctx.suspects.update((folder.name, uidvalidity, u) for u in retries)  # one per command
    todo = sorted(set(uids) | set(retries))
    return FolderPlan(folder, uidvalidity, todo, last, st, report, retries, before)


def _report(
    ctx: _Ctx, folder: FolderInfo, state_: str, st: dict[bytes, int] | None
) -> dict[str, Any]:
    st = st or {}
    return {
        "folder": folder.name,
        "special_use": folder.special_use,
        "state": state_,
        "not_examined_reason": None,
        "uidvalidity": st.get(b"UIDVALIDITY"),
        "server_messages": st.get(b"MESSAGES"),
        "server_uidnext": st.get(b"UIDNEXT"),
        "highestmodseq": st.get(b"HIGHESTMODSEQ"),
        "window_start": ctx.window,
        "before_window": None,
        "examined": 0,
        "stored": 0,
        "skipped": 0,
        "errors": 0,
        "error": None,
    }


def _account_not_examined(
    ctx: _Ctx,
    client: Client,
    skipped: Sequence[tuple[FolderInfo, str]],
    statuses: dict[str, dict[bytes, int]],
) -> None:
    """S11: each folder the run does not examine, with why and how much the server holds
    there (from the LIST-STATUS answer; on servers without it a STATUS each, only in runs
    that found something new, so a no-change round stays one round trip per mailbox)."""
    ask = [f.name for f, why in skipped if not statuses.get(f.name) and why != "no_select"]
    if len(ask) > 1 and (ctx.result.folders_changed or not ctx.checkpoints):
        statuses = {**statuses, **imap.statuses(client, ask, ctx.condstore)}  # pipelined
    for folder, why in skipped:
        st = statuses.get(folder.name)
        if not st and why == "no_select":
            st = {}  # holds no messages: nothing to ask
        elif not st:
            if not ctx.result.folders_changed and ctx.checkpoints:
                continue  # no LIST-STATUS and nothing new: the last listed count stands
            try:
                st = imap.folder_status(client, folder.name, ctx.condstore)
            except Exception as e:  # noqa: BLE001 - a count we cannot get is left empty
                if is_dropped(e):
                    raise
                st = {}
        rep = _report(ctx, folder, "not_examined", st)
        rep["not_examined_reason"] = why
        ctx.reports.append(rep)


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
    _message_side()
    examined, errors = _examine(ctx, client, plan, uids)
    for unit in _units(ctx, plan, uids, examined, errors, final=final):
        _fetch_bodies(ctx, client, plan, unit)
        _commit(ctx, plan, unit)


def _is_refusal(e: BaseException) -> bool:
    """The server answered NO/BAD to a command (the session is still usable)."""
    return isinstance(e, IMAPError) and not isinstance(e, IMAPAbort)


class PoisonDrop(Exception):
    """The server dropped the session while sending one message: that message is poison
    (S15); the run logs in again and goes on without it."""


def _fetch_isolated(
    ctx: _Ctx, plan: FolderPlan, client: Client, uids: Sequence[int], items: Sequence[bytes]
) -> tuple[dict[int, dict[bytes, Any]], dict[int, MessageError]]:
    """FETCH UIDS so that one message the server cannot send never blocks the others (S15).

    A refusal (NO/BAD) of the whole command: once per UID, the refused ones are errors. A
    dropped session: the run logs in again (``_attempts``) and fetches these UIDs one per
    command; the one that drops it again is poison, recorded and skipped from then on."""
    folder, uv = plan.folder.name, plan.uidvalidity
    errors = {u: ctx.poisoned[(folder, uv, u)] for u in uids if (folder, uv, u) in ctx.poisoned}
    live = [u for u in uids if u not in errors]
    alone = [u for u in live if (folder, uv, u) in ctx.suspects]
    together = [u for u in live if (folder, uv, u) not in ctx.suspects]
    out: dict[int, dict[bytes, Any]] = {}
    if together:
        try:
            out.update(imap.fetch(client, together, items))
        except Exception as e:
            if is_dropped(e):
                ctx.suspects.update((folder, uv, u) for u in together)
                raise
            if not _is_refusal(e):
                raise
            alone += together
            if len(together) == 1:
                alone = [u for u in alone if u != together[0]]
                errors[together[0]] = MessageError("fetch_failed", poison.one_line(e))
    for uid in alone:
        try:
            out.update(imap.fetch(client, [uid], items))
        except Exception as e:
            if is_dropped(e):
                ctx.poisoned[(folder, uv, uid)] = MessageError(
                    "fetch_failed",
                    "the server dropped the connection sending it: " + poison.one_line(e),
                )
                raise PoisonDrop(uid) from e
            if not _is_refusal(e):
                raise
            errors[uid] = MessageError("fetch_failed", poison.one_line(e))
    return out, errors


def _examine(
    ctx: _Ctx, client: Client, plan: FolderPlan, uids: Sequence[int]
) -> tuple[list[Examined], dict[int, MessageError]]:
    """Header FETCH and ``decide()`` for UIDS (expunged ones simply drop out)."""
    mb, folder = ctx.mailbox, plan.folder
    fetched, errors = _fetch_isolated(ctx, plan, client, uids, FETCH_HEADERS)
    out: list[Examined] = []
    for uid in uids:
        data = fetched.get(uid)
        if uid in errors:
            out.append(Examined(uid, HeaderInfo(), Decision(False, "fetch_failed"), "", None, 0))
            continue
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
            ctx.directory.get(),
            mb.address,
            ctx.window,
            user_id=mb.owner_user_id,
            internaldate=internaldate,
            size=size or None,
            max_message_bytes=ctx.settings.max_message_bytes,
        )
        flag_text = " ".join(f.decode() if isinstance(f, bytes) else str(f) for f in flags)
        out.append(Examined(uid, headers, d, flag_text, internaldate, size))
    return out, errors


def _units(
    ctx: _Ctx,
    plan: FolderPlan,
    uids: Sequence[int],
    examined: list[Examined],
    errors: dict[int, MessageError],
    *,
    final: bool,
) -> Iterator[Unit]:
    """Cut a batch where the bodies to fetch would pass ``BODY_BUDGET_BYTES``: each unit is
    committed with the checkpoint of its last UID, so memory never holds more than one
    budget of bodies (plus one message larger than it, itself spooled to disk when big)."""
    known: set[str] = set()  # S13: a stored Message-ID may be another message: every body
    probe = Unit([], plan.checkpoint(0, False), known)
    units: list[list[Examined]] = [[]]
    budget = 0
    for e in examined:
        size = min(e.size, spool.SPOOL_BYTES) if probe.needs_body(e) else 0
        if size and units[-1] and budget + size > BODY_BUDGET_BYTES:
            units.append([])
            budget = 0
        units[-1].append(e)
        budget += size
    for n, members in enumerate(units):
        last = n == len(units) - 1
        # the last unit of a batch covers the UIDs after its last examined one (expunged)
        upto = uids[-1] if last else members[-1].uid
        mine = {e.uid for e in members}
        yield Unit(
            members,
            plan.checkpoint(upto, final=final and last),
            known,
            errors={u: err for u, err in errors.items() if u in mine},
        )


def _fetch_bodies(ctx: _Ctx, client: Client, plan: FolderPlan, unit: Unit) -> None:
    """BODY.PEEK[] for the unit's stored decisions not already in the store (S8), parsed;
    a message over ``spool.SPOOL_BYTES`` is spooled to the blob folder instead of memory."""
    need = [e for e in unit.examined if unit.needs_body(e) and e.uid not in unit.errors]
    small = [e for e in need if e.size <= spool.SPOOL_BYTES]
    if small:
        bodies, errors = _fetch_isolated(ctx, plan, client, [e.uid for e in small], FETCH_BODY)
        unit.errors.update(errors)
        for e in small:
            raw = (bodies.get(e.uid) or {}).get(BODY_KEY)
            if raw is None:  # expunged before the body fetch (or an error row)
                continue
            _parse_into(unit, e, functools.partial(_parse_bytes, bytes(raw), e.headers))
        del bodies
    for e in need:
        if e.size > spool.SPOOL_BYTES:
            _fetch_spooled(ctx, client, plan, unit, e)
    with ctx.gate:  # S13: new, linked to the stored copy, or another message with that id
        resolve_identities(ctx.store, [p for p, _ in unit.parsed.values()])


def _parse_bytes(raw: bytes, headers: HeaderInfo) -> tuple[ParsedMessage, Content]:
    return parse_message(raw, headers), raw


def _parse_into(
    unit: Unit, e: Examined, parse: Callable[[], tuple[ParsedMessage, Content]]
) -> None:
    try:
        unit.parsed[e.uid] = parse()
    except Exception as err:  # noqa: BLE001 - S15: one message, not the run
        unit.errors[e.uid] = MessageError("parse_failed", poison.one_line(err))


def _fetch_spooled(ctx: _Ctx, client: Client, plan: FolderPlan, unit: Unit, e: Examined) -> None:
    """One big message: partial fetches into the blob folder (its raw blob), then parsed
    from a skeleton whose large leaves are blobs too (S12: bounded memory)."""
    blobs = ctx.store.blobs
    key = (plan.folder.name, plan.uidvalidity, e.uid)
    if key in ctx.poisoned:
        unit.errors[e.uid] = ctx.poisoned[key]
        return
    try:
        raw = spool.spool_message(
            lambda write: imap.fetch_body_to(client, e.uid, write, e.size), blobs
        )
    except LookupError:
        return  # expunged before the body fetch
    except Exception as err:
        if is_dropped(err):
            ctx.poisoned[key] = MessageError(
                "fetch_failed",
                "the server dropped the connection sending it: " + poison.one_line(err),
            )
            raise PoisonDrop(e.uid) from err
        if not _is_refusal(err):
            raise
        unit.errors[e.uid] = MessageError("fetch_failed", poison.one_line(err))
        return
    _parse_into(
        unit,
        e,
        lambda: (spool.parse_file(blobs.path(raw.sha256), raw, blobs, e.headers), raw),
    )


def _rows(
    ctx: _Ctx, plan: FolderPlan, unit: Unit
) -> tuple[list[PlaceRow], list[ActivityRow], list[state.LedgerRow]]:
    mb, folder = ctx.mailbox, plan.folder
    places: list[PlaceRow] = []
    acts: list[ActivityRow] = []
    ledger: list[state.LedgerRow] = []
    for e in unit.examined:
        d, key = e.decision, e.message_id
        decision, reason = d.decision, d.reason
        if e.uid in unit.errors:
            decision, reason = "error", unit.errors[e.uid].reason
        elif d.stored:
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
                decision,
                reason,
                [c for c, _, _ in d.customers] if decision != "error" else [],
                d.msg_date,
                e.headers.from_addr,
                (e.headers.subject or "")[:300] or None,
                identity=unit.parsed[e.uid][0].identity if e.uid in unit.parsed else None,
                to_addrs=e.headers.to_addrs,  # X1: a rule change can be replayed on them
                cc_addrs=e.headers.cc_addrs,
                internaldate=e.internaldate,
                flags=e.flags,
            )
        )
    return places, acts, ledger


def _commit(ctx: _Ctx, plan: FolderPlan, unit: Unit) -> None:
    """One transaction per unit. When the store refuses it (a message DuckDB cannot take),
    each message is saved on its own; the ones refused become error rows, the rest and the
    checkpoint are committed (S15: one message never blocks the ones after it)."""
    try:
        _write(ctx, plan, unit, contents=True)
    except (duckdb.Error, StoreError, OSError) as e:
        if not unit.parsed:
            raise
        log.warning(
            "%s %s: a unit was refused by the store (%s); saving its messages one by one",
            ctx.mailbox.address,
            plan.folder.name,
            poison.one_line(e, 160),
        )
        for uid, item in list(unit.parsed.items()):
            try:
                with ctx.gate:
                    unit.new |= save_messages(
                        ctx.store, [item], attachment_max_bytes=ctx.settings.attachment_max_bytes
                    )
            except (duckdb.Error, StoreError, OSError) as err:
                del unit.parsed[uid]
                unit.errors[uid] = MessageError("store_failed", poison.one_line(err))
        unit.known |= {p.key for p, _ in unit.parsed.values()}
        _write(ctx, plan, unit, contents=False)


def _write(ctx: _Ctx, plan: FolderPlan, unit: Unit, *, contents: bool) -> None:
    """Contents, places, activities, notifications, ledger, poison bookkeeping, checkpoint."""
    mb = ctx.mailbox
    connected = (mb.connected_at or ctx.window).replace(microsecond=0)  # INTERNALDATE has seconds
    errors = {u: (err.reason, err.error) for u, err in unit.errors.items()}
    retried_ok = [
        u for u in plan.retries if u not in unit.errors and u in {e.uid for e in unit.examined}
    ]
    with ctx.gate, ctx.store.transaction():
        if contents:  # S13: what other syncs stored since the bodies came (a reused id)
            refresh_identities(ctx.store, [p for p, _ in unit.parsed.values()])
        places, acts, ledger = _rows(ctx, plan, unit)
        arrived = {p.message_id: p.internaldate for p in places if p.internaldate is not None}
        if not ctx.run_written:  # the run row joins the first unit's transaction (S12)
            state.insert_run(ctx.store, ctx.run_id, mb.id, ctx.trigger, ctx.started_at)
        if contents:
            unit.new = save_messages(
                ctx.store,
                list(unit.parsed.values()),
                attachment_max_bytes=ctx.settings.attachment_max_bytes,
            )
        add_places(ctx.store, places)
        add_activities(ctx.store, acts)
        notify_new_inbound(ctx.store, mb, acts, arrived, connected)  # N1
        state.add_ledger(ctx.store, ledger)
        bound = max(1, int(ctx.settings.sync_error_retries))
        state.record_errors(
            ctx.store, mb.id, ctx.run_id, plan.folder.name, plan.uidvalidity, errors, bound=bound
        )
        state.resolve_errors(ctx.store, mb.id, plan.folder.name, plan.uidvalidity, retried_ok)
        state.save_checkpoint(ctx.store, mb.id, unit.checkpoint)
        ctx.batches += 1
        crash_point("sync.batch_written", n=ctx.batches)  # S12 kill test: before COMMIT
    ctx.run_written = True
    with ctx.gate:  # a long first sync must not lock reports out for its whole run (R2)
        ctx.store.yield_to_readers()
    _tally(ctx, plan.report, unit, ledger)


def _tally(ctx: _Ctx, report: dict[str, Any], unit: Unit, ledger: list[state.LedgerRow]) -> None:
    r = ctx.result
    stored = sum(row.decision == "stored" for row in ledger)
    errors = sum(row.decision == "error" for row in ledger)
    skipped = len(ledger) - stored - errors
    r.examined += len(ledger)
    r.stored += len(unit.new)
    r.linked += stored - len(unit.new)
    r.skipped += skipped
    r.errors += errors
    r.by_reason.update(row.reason for row in ledger)
    report["examined"] += len(ledger)
    report["stored"] += stored
    report["skipped"] += skipped
    report["errors"] += errors
    if ctx.progress:
        ctx.progress(len(ledger))


def _folder_failed(ctx: _Ctx, folder: FolderInfo, err: BaseException) -> None:
    """S15: a folder the server will not let us read this run; the others go on."""
    line = poison.one_line(err)
    log.warning("%s %s: folder failed: %s", ctx.mailbox.address, folder.name, line)
    rep = next((r for r in ctx.reports if r["folder"] == folder.name), None)
    if rep is None:
        rep = _report(ctx, folder, "failed", None)
        ctx.reports.append(rep)
    rep["state"], rep["error"] = "failed", line
    ctx.failed_folders.append((folder.name, line))


def _run_mailbox(ctx: _Ctx, pool: SessionPool | None = None) -> None:
    """One session: plan the folders, account for those not examined, sync the others."""

    def listing(client: Client) -> tuple[Any, dict[str, dict[bytes, int]]]:
        ctx.condstore = b"CONDSTORE" in imap.capabilities(client)
        return imap.list_with_status(client, ctx.condstore)

    with session_for(ctx.mailbox, ctx.settings, listing, pool=pool) as session:
        folders_listed, statuses = session.first
        folders, not_examined = plan_folders(folders_listed, ctx.mailbox.folders)
        ask = [f.name for f in folders if b"UIDVALIDITY" not in statuses.get(f.name, {})]
        if len(ask) > 1:  # no LIST-STATUS: one pipelined round trip, not a STATUS each
            statuses = {**statuses, **imap.statuses(session.client, ask, ctx.condstore)}
        if ctx.batches:  # a retry: re-read what the committed units checkpointed
            with ctx.gate:
                ctx.checkpoints = state.checkpoints(ctx.store, ctx.mailbox.id)
        ctx.failed_folders = []
        # a folder that failed before and is now listed \Noselect (Dovecot does so once it
        # cannot open it) is tried again: it must not drop out of the books silently (S15)
        again = [f for f, why in not_examined if why == "no_select" and f.name in ctx.failing]
        not_examined = [(f, why) for f, why in not_examined if f not in again]
        for folder in [*folders, *(FolderInfo(f.name) for f in again)]:
            try:
                _sync_folder(
                    ctx,
                    session,
                    folder,
                    ctx.checkpoints.get(folder.name),
                    statuses.get(folder.name),
                )
            except Exception as e:
                if not _is_refusal(e):
                    raise  # the session is gone, or the store failed: the whole run
                _folder_failed(ctx, folder, e)
                if session.selected == folder.name:
                    session.selected = None if _unselect(session) else folder.name
        _account_not_examined(ctx, session.client, not_examined, statuses)


def _unselect(session: Session[Any]) -> bool:
    try:
        imap.unselect(session.client)
        return True
    except Exception:  # noqa: BLE001 - the pool will not keep it then
        return False


class _Book:
    """Run bookkeeping for a set of mailboxes, written in bulk (one transaction) at the end.

    A no-change resync of many mailboxes thus costs a handful of statements in all, not
    several per mailbox. Runs that committed batches already have their row (written with
    the first batch, so a kill leaves an 'interrupted' run behind); they are updated.
    """

    def __init__(self, store: Store, gate: _Gate, mailbox_ids: Sequence[int]) -> None:
        self.store, self.gate = store, gate
        with gate:
            if state.replay_pending_runs(store):  # S15: failed runs a full disk kept out
                log.warning("recorded failed sync runs that could not be written at the time")
            state.mark_stale_runs(store, mailbox_ids)
            self.run_ids = state.allocate_run_ids(store, len(mailbox_ids))
            self.checkpoints = state.checkpoints_for(store, mailbox_ids)
            self.retries = state.retries_for(store, mailbox_ids)
            self.failing = state.failing_folders_for(store, mailbox_ids)
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
            "errors": r.errors,
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
        try:
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
                        errors=row["errors"],
                        duration_s=row["duration_s"],
                        error_code=row["error_code"],
                        error_message=row["error_message"],
                    )
                state.add_folder_reports(self.store, reps)
                state.mark_synced(self.store, ok, _now())
        except (duckdb.Error, StoreError, OSError) as e:
            # S15: the store cannot take even the run rows (full disk): keep the failed ones
            # beside it; the next start records them
            rows = new + upd
            if state.save_pending_runs(self.store, rows, poison.one_line(e, 200)):
                log.error("could not record %d sync run(s); kept for the next start", len(rows))
            raise


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
    with _leased(store, [mb], wait=wait, gate=gate) as (leased, busy):
        if busy:
            return busy[0]
        return _sync_one(
            store, settings, mb, trigger=trigger, progress=progress, directory=directory,
            gate=gate, sleep=sleep, pool=pool,
        )  # fmt: skip


@contextlib.contextmanager
def _leased(
    store: Store,
    mailboxes: Sequence[Mailbox],
    *,
    wait: float = 0.0,
    gate: _Gate | None = None,
    leases: Leases | None = None,
) -> Iterator[tuple[list[Mailbox], list[SyncResult]]]:
    """S14: take the lease of each mailbox (before any server work); yield (leased, busy
    results) and give the leases back afterwards (after the runs are recorded)."""
    from mailops.lease import MailboxBusy, leases_for

    leases = leases or leases_for(store)
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
                    with gate or _Gate():  # never wait holding the store: the holder needs it
                        store.release()
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
    directory: Directory | _DirectoryOnce | None = None,
    gate: _Gate | None = None,
    sleep: Callable[[float], None] = time.sleep,
    pool: SessionPool | None = None,
    _book: _Book | None = None,
) -> SyncResult:
    """Sync one mailbox whose lease this process holds; never raises for mailbox problems.

    Every run ends with a run row (S15): ok, or failed with its error code and message,
    whether the cause is the connection (C4), a folder the server will not read, or the
    sync itself (a full disk, a defect)."""
    from mailops.healing import heals_itself, record_recovery

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
    if not isinstance(directory, _DirectoryOnce):
        directory = _DirectoryOnce(store, settings, gate, directory)
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
        retries=dict(book.retries.get(mb.id, {})),
        failing=dict(book.failing.get(mb.id, {})),
    )
    problem: ConnectionProblem | None = None
    crash: BaseException | None = None
    try:
        problem = _attempts(ctx, pool, sleep, 1 if result.probed else int(settings.sync_retries))
    except Exception as e:  # noqa: BLE001 - S15: recorded as a failed run, never lost
        crash = e
        log.debug("sync of %s failed", mb.address, exc_info=True)
    result.duration_s = time.monotonic() - t0
    ok = problem is None and crash is None and not ctx.failed_folders
    try:
        _settle(ctx, problem, crash)
        if ok and result.probed:  # C4: the server answered: connected again
            with gate, store.transaction():
                record_recovery(store, mb)
            result.recovered = True
    except (duckdb.Error, StoreError, OSError) as e:  # the store refuses even this
        log.error("%s: could not record the failure: %s", mb.address, poison.one_line(e))
    book.finish(ctx, ok=ok)
    if _book is None:
        book.flush()
    return result


def _attempts(
    ctx: _Ctx, pool: SessionPool | None, sleep: Callable[[float], None], attempts: int
) -> ConnectionProblem | None:
    """Run the mailbox, retrying transient connection problems with backoff (C4)."""
    from mailops.problems import backoff_delay, classify

    settings, mb = ctx.settings, ctx.mailbox
    attempts = max(1, attempts)
    problem: ConnectionProblem | None = None
    attempt = drops = 0
    while attempt < attempts:
        attempt += 1
        ctx.reports = []
        ctx.result.folders = ctx.result.folders_changed = 0
        try:
            _run_mailbox(ctx, pool)
            return None
        except PoisonDrop:
            drops += 1
            if drops <= MAX_POISON_DROPS:  # found the message that drops it: log in again
                attempt -= 1
                continue
            problem = classify(
                ConnectionResetError("too many messages drop the session"), mb.address
            )
            break
        except ConnectionProblem as p:
            problem = p
        except MailopsError:
            raise
        except Exception as e:
            if not is_imap_error(e):
                raise
            problem = classify(e, mailbox=mb.address)
        if not problem.transient or attempt == attempts:
            break
        delay = backoff_delay(attempt, problem, base=settings.sync_retry_base, cap=60.0)
        log.info("%s: %s; retry %d in %.1fs", mb.address, problem.code, attempt, delay)
        sleep(delay)
    return problem


def _settle(ctx: _Ctx, problem: ConnectionProblem | None, crash: BaseException | None) -> None:
    """The run's outcome in the result and the mailbox: connection problems count against
    the C4 budget; a folder or the whole sync failing run after run turns the mailbox
    problematic with its own reason (S15)."""
    from mailops.healing import first_probe_at, record_probe_failure
    from mailops.problems import problem as make_problem
    from mailops.problems import record_failure

    store, mb, result = ctx.store, ctx.mailbox, ctx.result
    budget = max(1, int(ctx.settings.sync_failure_budget))
    if problem is not None:
        result.status = "failed"
        result.error_code = problem.code
        result.error_message = problem.message
        result.retry_after = problem.retry_after
        with ctx.gate, store.transaction():
            result.problematic = record_failure(
                store, mb, problem, budget=int(ctx.settings.connect_retry_budget)
            )
            mailbox_store.update(store, mb.id, last_sync_at=_now())
            if result.probed:  # C4: when is it tried again
                result.next_probe_at = record_probe_failure(store, ctx.settings, mb, problem)
            elif result.problematic:
                result.next_probe_at = first_probe_at(store, ctx.settings, mb)
        return
    if crash is not None:
        result.status = "failed"
        result.error_code = crash.code if isinstance(crash, MailopsError) else "sync_error"
        result.error_message = poison.one_line(crash)
        with ctx.gate, store.transaction():
            n = state.count_failed_run(store, mb.id)
            if n >= budget:
                result.problematic = record_failure(
                    store,
                    mb,
                    make_problem(
                        "sync_failing",
                        mailbox=mb.address,
                        detail=f"{n} runs in a row; last: {result.error_message}",
                    ),
                )
            mailbox_store.update(store, mb.id, last_sync_at=_now())
        return
    healed = [f for f in ctx.failing if f not in {name for name, _ in ctx.failed_folders}]
    if not ctx.failed_folders and not healed:
        return
    with ctx.gate, store.transaction():
        state.folders_ok(store, mb.id, healed)
        if not ctx.failed_folders:
            return
        name, line = ctx.failed_folders[0]
        result.status = "failed"
        result.error_code = "folder_failed"
        result.error_message = f"folder {name!r}: {line}" + (
            f" (and {len(ctx.failed_folders) - 1} more)" if len(ctx.failed_folders) > 1 else ""
        )
        worst = 0
        for name, line in ctx.failed_folders:
            n = state.folder_failed(store, mb.id, name, "folder_failed", line, ctx.run_id)
            if n >= budget and n > worst:
                worst, detail = n, f"folder {name!r} failed {n} runs in a row: {line}"
        state.count_failed_run(store, mb.id)
        if worst:
            result.problematic = record_failure(
                store, mb, make_problem("folder_failing", mailbox=mb.address, detail=detail)
            )
        mailbox_store.update(store, mb.id, last_sync_at=_now())


def sync_all(
    store: Store,
    settings: Settings,
    *,
    mailboxes: Iterable[Mailbox] | None = None,
    trigger: str = "manual",
    progress: ProgressFn | None = None,
    parallel: int | None = None,
    pool: SessionPool | None = None,
    leases: Leases | None = None,
    directory: Directory | None = None,
) -> list[SyncResult]:
    """Sync every connected mailbox (or MAILBOXES), several at once, one connection each.

    POOL keeps the sessions open for the next call (the scheduler); without it each
    mailbox logs in and out. LEASES: where the S14 leases are taken (default: the store's,
    ``lease.leases_for``; ``mailops worker`` passes the ones it claimed already).
    DIRECTORY: the CRM directory as loaded for this pass (default: read from the store when
    the first message is decided -- never, when every folder is unchanged)."""
    from mailops.healing import plan

    gate = _Gate()
    with gate:
        if mailboxes is not None:  # read again, in one query (D1: a lake query costs ~20 ms)
            wanted = [m.id for m in mailboxes]
            found = mailbox_store.many(store, wanted)
            missing = [i for i in wanted if i not in found]
            if missing:
                raise MailopsError(f"no mailbox with id {missing[0]}", code="mailbox_not_found")
            asked = [found[i] for i in wanted]
        else:
            asked = mailbox_store.all_mailboxes(store, states=("connected", "problematic"))
        todo, skips = plan(store, settings, asked)  # C4: problematic ones only when probed
        _limit_memory(store, settings)
    once = _DirectoryOnce(store, settings, gate, directory)  # read at the first decision
    skipped = [s.as_result() for s in skips]
    if not todo:
        return skipped
    with _leased(store, todo, leases=leases) as (leased, busy):  # S14, before any server work
        results = _sync_leased(
            store, settings, leased, once, gate, trigger, progress, parallel, pool
        )
    if busy and settings.sync_lease_wait > 0:  # S14: wait briefly for the other sync
        again = [mailbox_store.get(store, r.mailbox_id) for r in busy]
        with _leased(store, again, wait=settings.sync_lease_wait, gate=gate, leases=leases) as (
            leased,
            busy,
        ):
            results += _sync_leased(
                store, settings, leased, once, gate, trigger, progress, parallel, pool
            )
    order = {mb.id: i for i, mb in enumerate(asked)}
    return sorted(results + busy + skipped, key=lambda r: order.get(r.mailbox_id, 0))


def _sync_leased(
    store: Store,
    settings: Settings,
    todo: list[Mailbox],
    directory: _DirectoryOnce,
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
        "errors": sum(r.errors for r in results),
        "by_reason": dict(reasons.most_common()),
    }
