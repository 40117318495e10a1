"""Delivery through the outbox (E3): queued -> sending -> sent | failed | delivery_unknown.

One attempt, in order, each SMTP phase recorded in ``outbox.phase`` *before* its step goes
on the wire (``mailops.send.phases``)::

    queued --start_attempt--> connect --> mail_from --> rcpt --> data_started (354, body)
           --> data_terminator_sent (the final dot) --250--> accepted
           --APPEND to Sent (generic IMAP only)--> activities + sent --> done

A crash can stop the process anywhere. ``deliver`` of an entry that is still ``sending``
(or failed mid-transaction) first *reconciles*: it searches the mailbox's Sent folder for the
fixed Message-ID (``SEARCH HEADER Message-ID``).

* found -> the email went out: mark it sent (``sent_copy='found'``), record the activities;
* phase ``accepted`` -> the server said 250: file the copy, record the activities, sent;
* phase up to ``data_started`` -> the server never read the final dot and discarded the
  transaction: nothing was delivered, so it is sent (again);
* phase ``data_terminator_sent`` -> the server may have delivered it and we did not hear:
  the entry becomes ``delivery_unknown`` -- never shown as sent, no Sent copy, no activity --
  until a person decides: ``mailops outbox resend ID`` (send it again) or ``mailops outbox
  mark-sent ID`` (it arrived: file the copy, record the activity).

Microsoft 365 and Gmail file the sent copy themselves; for generic IMAP servers mailops
APPENDs it (``PROVIDER_FILES_SENT``).
"""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from mailops.config import Settings
from mailops.errors import ConnectionProblem, MailopsError
from mailops.faults import crash_point
from mailops.send.compose import wire_message
from mailops.send.prepare import Prepared
from mailops.store import Store
from mailops.store import directory as dirstore
from mailops.store import mailboxes as mbstore
from mailops.store import outbox as obstore
from mailops.store.mailboxes import Mailbox
from mailops.store.outbox import OutboxItem

log = logging.getLogger(__name__)

__all__ = [
    "PROVIDER_FILES_SENT",
    "activity_plan",
    "deliver",
    "find_in_sent",
    "mark_sent",
    "queue",
    "resend",
    "retry",
]

#: Providers whose SMTP service stores the sent copy in the Sent folder by itself.
PROVIDER_FILES_SENT: dict[str, bool] = {"microsoft": True, "google": True, "generic": False}


def files_sent_itself(mailbox: Mailbox) -> bool:
    """Microsoft / Google file the copy themselves -- on their own SMTP service. The same
    provider pointed at another server (the local devserver in tests and the demo) does not."""
    if not PROVIDER_FILES_SENT.get(mailbox.provider, False):
        return False
    try:
        from mailops.providers import PROVIDERS
    except ImportError:  # pragma: no cover
        return True
    known = PROVIDERS.get(mailbox.provider)
    return known is None or not mailbox.smtp_host or mailbox.smtp_host == known.smtp_host


# -- activities ---------------------------------------------------------------------------
def activity_plan(store: Store, prepared: Prepared) -> list[list[Any]]:
    """``[customer_id, match_kind, deal_id]`` for every customer addressed.

    The same ``decide()`` as the sync, on the message as it will sit in the Sent folder, so
    the later sync of the Sent copy finds nothing new to add. Bcc customers are not in any
    header; they get their activity from the request. A decision skipped as never-log (S9)
    records nothing; any other skip (e.g. a colleague's mailbox on Cc, S5) falls back to the
    customers the user chose to write to (E3: recorded at once).
    """
    from mailops.match import Directory, FolderInfo, decide
    from mailops.parse import parse_headers_fast, split_header

    try:
        directory = Directory.load(store)
    except (ImportError, AttributeError):  # pragma: no cover - sync store not there
        directory = None
    plan: dict[str, list[Any]] = {}
    if directory is not None:
        headers = parse_headers_fast(split_header(prepared.raw))
        d = decide(
            headers,
            FolderInfo("Sent", "\\Sent"),
            [],
            directory,
            prepared.mailbox.address,
            None,
            user_id=prepared.mailbox.owner_user_id,
        )
        if d.reason == "never_log":
            return []
        if d.stored:
            for cid, kind, deal in d.customers:
                plan[cid] = [cid, kind, deal]
    for cid in prepared.customer_ids:
        plan.setdefault(cid, [cid, "primary", None])
    if prepared.deal_id:  # the deal the offer was about wins for that deal's members
        members = dirstore.deal_member_ids(store, prepared.deal_id)
        for cid, entry in plan.items():
            if cid in members:
                entry[2] = prepared.deal_id
    return [plan[c] for c in sorted(plan)]


def _record_activities(store: Store, item: OutboxItem, mailbox: Mailbox) -> str | None:
    from mailops.store.messages import record_message

    if not item.activity_plan:
        return None
    return record_message(
        store,
        item.raw,
        direction="outbound",
        mailbox=mailbox,
        customers=[(c, k, d) for c, k, d in item.activity_plan],
        deal_id=item.deal_id,
    )


# -- queue --------------------------------------------------------------------------------
def queue(store: Store, prepared: Prepared, *, draft_id: int | None = None) -> OutboxItem:
    """Write the prepared email to the outbox (``queued``): raw bytes and Message-ID fixed."""
    msg = prepared.message
    return obstore.enqueue(
        store,
        user_id=prepared.request.user_id,
        mailbox_id=prepared.mailbox.id,
        message_id_header=str(msg["Message-ID"]),
        raw=prepared.raw,
        envelope_from=prepared.mailbox.address,
        recipients=[r.address for r in prepared.recipients],
        customer_ids=prepared.customer_ids,
        activity_plan=activity_plan(store, prepared),
        subject=str(msg["Subject"]),
        deal_id=prepared.deal_id,
        draft_id=draft_id if draft_id is not None else prepared.request.draft_id,
    )


# -- IMAP: the Sent folder ------------------------------------------------------------------
def _sent_folder(client: Any) -> str:
    """The Sent folder as the sync sees it (the one finder, ``imap.special``); created as
    "Sent" only when the server has none by flag or by name."""
    from mailops.imap import find_special_folder

    return find_special_folder(client, "\\Sent", create="Sent") or "Sent"


def _search_sent(client: Any, folder: str, message_id: str) -> list[int]:
    from mailops.imap import commands

    commands.select(client, folder, readonly=True)
    return commands.search(client, ["HEADER", "Message-ID", message_id])


def find_in_sent(
    mailbox: Mailbox, settings: Settings, message_id: str, secrets: Any = None
) -> list[int]:
    """UIDs of the messages in MAILBOX's Sent folder carrying MESSAGE_ID."""
    from mailops.imap import session_for

    with session_for(mailbox, settings, _sent_folder, secrets=secrets) as session:
        return _search_sent(session.client, session.first, message_id)


def _file_in_sent(
    mailbox: Mailbox, settings: Settings, raw: bytes, message_id: str, secrets: Any = None
) -> str:
    """APPEND the copy to Sent unless it is there already; returns how the copy exists."""
    from mailops.imap import IMAPError, commands, session_for

    try:
        with session_for(mailbox, settings, _sent_folder, secrets=secrets) as session:
            folder = session.first
            if _search_sent(session.client, folder, message_id):
                return "found"
            commands.append(session.client, folder, raw, flags=[b"\\Seen"])
            return "appended"
    except ConnectionProblem as e:
        log.warning("sent copy of %s not filed: %s", message_id, e)
        return "missing"
    except (IMAPError, OSError) as e:
        log.warning("sent copy of %s not filed: %s", message_id, e)
        return "missing"


# -- delivery -----------------------------------------------------------------------------
def _finish(
    store: Store,
    item: OutboxItem,
    mailbox: Mailbox,
    *,
    sent_copy: str,
    note: str | None = None,
    code: str | None = None,
) -> OutboxItem:
    with store.transaction():
        _record_activities(store, item, mailbox)
        obstore.mark_sent(store, item.id, sent_copy=sent_copy, note=note)
        if code:
            obstore.set_error_code(store, item.id, code)
        if item.draft_id is not None:
            obstore.mark_draft_sent(store, item.draft_id, item.id)
    return obstore.get_item(store, item.id)


def _fail(store: Store, item: OutboxItem, code: str, message: str, phase: str) -> OutboxItem:
    obstore.mark_failed(store, item.id, code=code, message=message, phase=phase)
    return obstore.get_item(store, item.id)


UNKNOWN_NOTE = (
    "the whole message reached the server but its answer did not come back: it may or may"
    " not have been delivered. Ask the recipient, then `mailops outbox resend {id}` or"
    " `mailops outbox mark-sent {id}`"
)


def _unknown(store: Store, item: OutboxItem, detail: str = "") -> OutboxItem:
    note = UNKNOWN_NOTE.format(id=item.id) + (f" [{detail}]" if detail else "")
    obstore.mark_unknown(store, item.id, message=note)
    return obstore.get_item(store, item.id)


def _copy(mailbox: Mailbox, settings: Settings, item: OutboxItem, secrets: Any) -> str:
    if files_sent_itself(mailbox):
        return "provider"
    return _file_in_sent(mailbox, settings, item.raw, item.message_id_header, secrets)


def _reconcile(
    store: Store, settings: Settings, item: OutboxItem, mailbox: Mailbox, secrets: Any
) -> OutboxItem | None:
    """After a crash or an unclear failure: the outcome if it is known, else None (send)."""
    from mailops.send.phases import AMBIGUOUS, DELIVERED

    try:
        found = find_in_sent(mailbox, settings, item.message_id_header, secrets)
    except ConnectionProblem as e:
        # cannot look: do not guess, do not send; the entry stays for the next retry
        return _fail(
            store,
            item,
            e.code,
            f"cannot check the Sent folder: {e.message}",
            item.phase or "connect",
        )
    if found:
        return _finish(
            store,
            item,
            mailbox,
            sent_copy="found",
            note="found in the Sent folder after an interrupted attempt; not resent",
        )
    if item.phase in DELIVERED:  # the server said 250 before the crash
        return _finish(store, item, mailbox, sent_copy=_copy(mailbox, settings, item, secrets))
    if item.phase in AMBIGUOUS:
        return _unknown(store, item)
    return None  # the final dot never went out: the server discarded it; send it


def deliver(
    store: Store, settings: Settings, outbox_id: int, *, secrets: Any = None, force: bool = False
) -> OutboxItem:
    """Send one outbox entry (idempotent: a sent entry is returned as it is)."""
    from mailops.auth import credentials_for
    from mailops.send.phases import AMBIGUOUS, DELIVERED, send_data
    from mailops.smtp import open_smtp

    item = obstore.get_item(store, outbox_id)
    if item.state in ("sent", "delivery_unknown") and not force:
        return item  # delivery_unknown waits for a person: resend or mark-sent
    mailbox = mbstore.get(store, item.mailbox_id)
    interrupted = item.state == "sending" or (
        item.state == "failed" and item.phase in AMBIGUOUS | DELIVERED
    )
    if interrupted and not force:
        done = _reconcile(store, settings, item, mailbox, secrets)
        if done is not None:
            return done
        item = obstore.get_item(store, outbox_id)
    if mailbox.state != "connected":
        code = "mailbox_problematic" if mailbox.state == "problematic" else "mailbox_not_connected"
        return _fail(store, item, code, f"mailbox {mailbox.address} is {mailbox.state}", "queued")

    obstore.start_attempt(store, item.id)
    crash_point("outbox.before_smtp")
    try:
        creds = credentials_for(mailbox, settings, secrets)
        smtp = open_smtp(
            mailbox, creds, timeout=settings.socket_timeout, ca_file=settings.ca_file or None
        )
    except ConnectionProblem as e:
        _record_problem(store, mailbox, e)
        return _fail(store, item, e.code, e.message, "connect")
    except MailopsError as e:  # secrets missing, OAuth refused ...
        return _fail(store, item, e.code, e.message, "connect")

    def phase(name: str) -> None:
        obstore.set_phase(store, item.id, name)

    try:
        reply_code: int
        # the Sent copy keeps Bcc, the wire never; 8-bit only with BODY=8BITMIME (RFC 6152)
        wire, mail_options = wire_message(item.raw, offers_8bitmime=smtp.has_extn("8bitmime"))
        phase("mail_from")
        crash_point("outbox.smtp_mail_from")
        reply_code, resp = smtp.mail(item.envelope_from or mailbox.address, mail_options)
        if reply_code != 250:
            return _fail(store, item, "sender_refused", _resp(reply_code, resp), "refused")
        phase("rcpt")
        crash_point("outbox.smtp_rcpt")
        refused = []
        for rcpt in item.recipients:
            reply_code, resp = smtp.rcpt(rcpt)
            if reply_code not in (250, 251):
                refused.append(f"{rcpt}: {_resp(reply_code, resp)}")
        if refused:
            smtp.rset()
            return _fail(store, item, "recipient_refused", "; ".join(refused), "refused")
        try:
            reply_code, resp = send_data(smtp, wire, phase, crash_point)
        except smtplib.SMTPDataError as e:
            return _fail(store, item, "data_refused", _resp(e.smtp_code, e.smtp_error), "refused")
        if reply_code != 250:  # the server read it all and said no: nothing delivered
            return _fail(store, item, "data_refused", _resp(reply_code, resp), "refused")
        phase("accepted")  # the 250 came: delivered, whatever happens next
    except (smtplib.SMTPException, OSError) as e:
        # lost during the transaction: before the final dot the server discards it (a retry
        # sends it); after it the outcome is unknown and a person decides (E3)
        now = obstore.get_item(store, item.id).phase or "connect"
        if now in AMBIGUOUS:
            return _unknown(store, item, str(e) or type(e).__name__)
        return _fail(store, item, "smtp_error", str(e) or type(e).__name__, now)
    finally:
        try:
            smtp.quit()
        except Exception:  # noqa: BLE001
            smtp.close()
    crash_point("outbox.after_smtp_accept")
    copy = _copy(mailbox, settings, item, secrets)
    crash_point("outbox.after_sent_copy")
    return _finish(store, obstore.get_item(store, item.id), mailbox, sent_copy=copy)


def _resp(code: int | str, resp: bytes | str) -> str:
    text = resp.decode(errors="replace") if isinstance(resp, bytes) else str(resp)
    return f"{code} {' '.join(text.split())}"


def _record_problem(store: Store, mailbox: Mailbox, err: ConnectionProblem) -> None:
    try:
        from mailops.problems import record_failure
    except ImportError:  # pragma: no cover
        return
    record_failure(store, mailbox, err)


def _decision(store: Store, outbox_id: int) -> OutboxItem:
    from mailops.errors import SendRefused

    item = obstore.get_item(store, outbox_id)
    if item.state != "delivery_unknown":
        raise SendRefused(
            f"outbox {item.id} is {item.state}, not delivery_unknown",
            code="not_delivery_unknown",
            guidance="resend / mark-sent are the choice for an ambiguous delivery only;"
            " use `mailops outbox retry` for failed ones",
        )
    return item


def resend(store: Store, settings: Settings, outbox_id: int, *, secrets: Any = None) -> OutboxItem:
    """A person decided a ``delivery_unknown`` email did not arrive: send it again."""
    _decision(store, outbox_id)
    return deliver(store, settings, outbox_id, secrets=secrets, force=True)


def mark_sent(
    store: Store, settings: Settings, outbox_id: int, *, secrets: Any = None
) -> OutboxItem:
    """A person decided a ``delivery_unknown`` email arrived: file the Sent copy, record the
    activity, mark it sent (``error_code='marked_sent'``)."""
    item = _decision(store, outbox_id)
    mailbox = mbstore.get(store, item.mailbox_id)
    return _finish(
        store,
        item,
        mailbox,
        sent_copy=_copy(mailbox, settings, item, secrets),
        code="marked_sent",
        note="delivery was unknown; marked sent by a person (mailops outbox mark-sent)",
    )


def retry(
    store: Store,
    settings: Settings,
    outbox_id: int | None = None,
    *,
    secrets: Any = None,
    force: bool = False,
) -> list[OutboxItem]:
    """Deliver one entry, or every queued / sending / failed one."""
    if outbox_id is not None:
        return [deliver(store, settings, outbox_id, secrets=secrets, force=force)]
    return [
        deliver(store, settings, it.id, secrets=secrets)
        for it in obstore.items(store, ("queued", "sending", "failed"))
    ]
