"""``mailops demo inbound``: demo customers write to a sales person *now* (N1, S1 in the demo).

The seeded mail is backfill (older than the connection), so it notifies nobody (N1). This
sends fresh emails through the devserver's SMTP submission port, each logged in as the
customer (the demo account's password), to the sales mailbox holding most of that
customer's mail; with `--wait` it then waits for the notification rows a running
`mailops sync --watch` writes (IMAP IDLE) and prints how long each took.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from mailops.config import Settings
from mailops.dev.demo.seed import demo_password, load_manifest, running_devserver
from mailops.errors import MailopsError
from mailops.store import Store

__all__ = ["Delivered", "deliver_inbound", "wait_for_notifications"]


@dataclass
class Delivered:
    customer_id: str
    customer: str
    sender: str
    to: str
    subject: str
    message_id: str
    at: float  # time.monotonic() when the SMTP server accepted it


def _targets(
    store: Store, count: int, user: str | None
) -> list[tuple[str, str, str, str, str | None]]:
    """(customer id, name, address, mailbox address, unit) of the customers with the most
    stored mail in one connected mailbox, one per customer."""
    return [
        (r[0], r[1], r[2], r[3], r[4])
        for r in store.rows(
            "SELECT a.customer_id, c.name, ca.address, mb.address, min(d.unit), count(*) AS n"
            " FROM activities a JOIN customers c ON c.id = a.customer_id"
            " JOIN customer_addresses ca ON ca.customer_id = c.id AND ca.is_primary AND ca.valid_to IS NULL"
            " JOIN mailboxes mb ON mb.id = a.mailbox_id AND mb.state = 'connected'"
            " LEFT JOIN deal_customers dc ON dc.customer_id = c.id LEFT JOIN deals d ON d.id = dc.deal_id"
            " WHERE NOT c.never_log AND a.unlinked_at IS NULL AND (? IS NULL OR mb.owner_user_id = ?)"
            " GROUP BY ALL ORDER BY n DESC, a.customer_id LIMIT ?",
            [user, user, count],
        )
    ]


def deliver_inbound(
    store: Store,
    settings: Settings,
    *,
    count: int = 2,
    user: str | None = None,
    echo: Callable[[str], Any] = print,
) -> list[Delivered]:
    root = settings.devserver_dir
    manifest = load_manifest(root)
    if manifest is None:
        raise MailopsError(
            f"no demo manifest in {root}",
            code="demo_not_seeded",
            guidance="run `mailops demo seed`",
        )
    state = running_devserver(root)
    targets = _targets(store, count, user)
    if not targets:
        raise MailopsError(
            "no synced customer mail yet",
            code="demo_not_synced",
            guidance="run `mailops sync --all`",
        )
    import ssl

    ctx = ssl.create_default_context(cafile=state.ca_file)
    out: list[Delivered] = []
    stamp = datetime.now(UTC)
    for cid, name, address, mailbox, unit in targets:
        msg = EmailMessage()
        msg["From"] = f"{name} <{address}>" if name else address
        msg["To"] = mailbox
        msg["Subject"] = f"Viewing this Saturday? ({unit or 'the flat'}, {stamp:%H:%M})"
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain=address.split("@")[-1])
        msg.set_content(
            f"Hello,\n\ncould we see {('unit ' + unit) if unit else 'the flat'} again this Saturday"
            " morning? My partner would like to measure the living room.\n\nThank you,\n"
            f"{(name or '').split(' ')[0]}\n"
        )
        with smtplib.SMTP("127.0.0.1", state.smtp_port, timeout=30) as smtp:
            smtp.starttls(context=ctx)
            smtp.login(address, demo_password(int(manifest["seed"]), address))
            smtp.send_message(msg)
        d = Delivered(
            cid,
            name or cid,
            address,
            mailbox,
            str(msg["Subject"]),
            str(msg["Message-ID"]),
            time.monotonic(),
        )
        echo(f"{d.customer} <{d.sender}> -> {d.to}: {d.subject}")
        out.append(d)
    return out


def wait_for_notifications(
    db: str,
    delivered: list[Delivered],
    *,
    timeout: float = 30.0,
    echo: Callable[[str], Any] = print,
) -> dict[str, float]:
    """Seconds from SMTP acceptance to the first notification row of each delivered email
    (read-only polling, so a running `sync --watch` keeps the file)."""
    from mailops.parse import normalize_message_id
    from mailops.reports import open_reader

    left = {normalize_message_id(d.message_id) or d.message_id: d for d in delivered}
    took: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        reader = open_reader(db)
        rows = reader.rows(
            "SELECT DISTINCT message_id, list(user_id ORDER BY user_id) FROM notifications"
            " WHERE list_contains(?, message_id) GROUP BY 1",
            [list(left)],
        )
        reader.close()
        for mid, users in rows:
            d = left.pop(mid)
            took[mid] = time.monotonic() - d.at
            echo(
                f"notified {', '.join(users)} of {d.customer}'s email {took[mid]:.1f} s after delivery"
            )
        time.sleep(0.1)
    for d in left.values():
        echo(
            f"no notification for {d.customer}'s email within {timeout:.0f} s (is `mailops sync --watch` running?)"
        )
    return took
