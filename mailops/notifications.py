"""N1: notifications of new inbound customer mail -- list, mark read, digest email.

The sync writes them (``store.notifications.notify_new_inbound``, inside each batch's
transaction): the mailbox owner and, when different, the deal owner, never for backfilled
mail older than the connection. A user sees and marks his own; a manager his team's, an
admin all (the same P1 viewer as every other read). The digest is an ordinary email
through the user's own mailbox and the outbox (E1 sender checks, E3 never twice), to the
user's own address; it lists customers and subjects, never bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mailops.config import Settings
from mailops.errors import MailopsError, SendRefused
from mailops.permissions import Viewer, scope_for
from mailops.store import Store
from mailops.store import notifications as nstore

__all__ = ["DigestResult", "list_notifications", "mark_read", "send_digest"]


def _viewer(store: Store, who: Viewer | str | None) -> Viewer:
    return who if isinstance(who, Viewer) else scope_for(store, who)


def list_notifications(
    store: Store, who: Viewer | str | None, *, unread: bool = False, limit: int | None = None
) -> pd.DataFrame:
    """Unread first, then newest first."""
    return nstore.notification_frame(store, viewer=_viewer(store, who), unread=unread, limit=limit)


def mark_read(store: Store, who: Viewer | str | None, ids: Sequence[int] | None) -> int:
    """Mark IDS (None = all) of the viewer's own notifications read."""
    viewer = _viewer(store, who)
    if ids is not None:
        mine = nstore.visible_ids(store, ids, viewer=viewer)
        others = [i for i in ids if int(i) not in mine]
        if others:
            raise MailopsError(
                f"notification(s) {', '.join(map(str, others))} are not {viewer.user_id}'s",
                code="unknown_notification",
            )
    return nstore.mark_read(store, viewer, ids)


@dataclass
class DigestResult:
    count: int
    outbox_id: int | None = None
    state: str | None = None
    to: str | None = None
    text: str = ""


def _digest_text(rows: pd.DataFrame) -> str:
    lines = [f"{len(rows)} new customer email(s) since your last digest:", ""]
    for r in rows.itertuples():
        when = f"{pd.Timestamp(r.sent_at):%Y-%m-%d %H:%M}" if pd.notna(r.sent_at) else ""
        lines.append(
            f"- {when}  {r.customer}  <{r.from_addr or ''}>: {r.subject or '(no subject)'}  [{r.mailbox}]"
        )
    lines += [
        "",
        "Open them with `mailops activities CUSTOMER` or notebooks/customer_activity.ipynb;",
        "mark them read with `mailops notifications read --all`.",
    ]
    return "\n".join(lines) + "\n"


def send_digest(
    store: Store,
    settings: Settings,
    user_id: str,
    *,
    mailbox: str | int | None = None,
    dry_run: bool = False,
    secrets: Any = None,
) -> DigestResult:
    """Email USER_ID the unread notifications not yet in a digest, from his own mailbox."""
    from mailops.send import compose
    from mailops.send.outbox import deliver, queue
    from mailops.send.prepare import EmailRequest, Prepared, check_sender
    from mailops.store import directory as dirstore

    viewer = _viewer(store, user_id)
    uid = viewer.user_id
    rows = nstore.digest_rows(store, viewer)
    text = _digest_text(rows) if not rows.empty else ""
    if rows.empty or dry_run:
        return DigestResult(len(rows), text=text)
    if mailbox is None:
        from mailops.store.mailboxes import connected_choices

        mine = sorted(i for _, i in connected_choices(store, uid))
        if not mine:
            raise SendRefused(
                f"user {uid} has no connected mailbox to send the digest from",
                code="mailbox_not_found",
            )
        mailbox = mine[0]
    mb = check_sender(store, uid, mailbox)
    user = dirstore.find_user(store, uid)
    to_addr = (user.email if user and user.email else None) or mb.address
    msg = compose.build_message(
        sender=compose.Recipient(mb.address, "mailops"),
        to=[compose.Recipient(to_addr, user.name if user else None)],
        cc=[],
        bcc=[],
        subject=f"mailops: {len(rows)} new customer email(s)",
        body_text=text,
        body_html=None,
        attachments=[],
        message_id=compose.new_message_id(mb.address),
        date=datetime.now(UTC),
        max_bytes=settings.send_max_bytes,
    )
    prepared = Prepared(
        request=EmailRequest(user_id=uid, mailbox=mb.id, subject=str(msg["Subject"])),
        mailbox=mb,
        message=msg,
        recipients=[compose.Recipient(to_addr)],
        customer_ids=[],
    )
    with store.transaction():
        item = queue(store, prepared)
        nstore.mark_digested(store, [int(i) for i in rows["id"]])  # once queued: never twice
    item = deliver(store, settings, item.id, secrets=secrets)
    return DigestResult(len(rows), item.id, item.state, to_addr, text)
