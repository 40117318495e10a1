"""Sending (E1-E3): compose, reply, templates, drafts and the outbox.

The one call most callers need::

    item = send_email(store, settings, EmailRequest(user_id="u-1", mailbox="ann@x.test",
                                                    customer_id="c-7", subject="Offer",
                                                    body_text="..."))

``prepare`` (checks E1, builds the message, fixes its Message-ID) -> ``queue`` (outbox row)
-> ``deliver`` (SMTP, Sent copy, activities). The CLI, the compose widget and the demo all
go through these same functions.
"""

from __future__ import annotations

from typing import Any

from mailops.config import Settings
from mailops.send.compose import Attachment, Recipient, build_message
from mailops.send.outbox import deliver, queue, retry
from mailops.send.prepare import EmailRequest, Prepared, check_sender, prepare, preview
from mailops.store import Store
from mailops.store.outbox import OutboxItem

__all__ = [
    "Attachment",
    "EmailRequest",
    "Prepared",
    "Recipient",
    "build_message",
    "check_sender",
    "deliver",
    "prepare",
    "preview",
    "queue",
    "retry",
    "send_email",
]


def send_email(
    store: Store, settings: Settings, request: EmailRequest, *, secrets: Any = None
) -> OutboxItem:
    """Check, queue and deliver one email; returns its outbox entry (``state`` sent, failed or
    delivery_unknown, E3)."""
    prepared = prepare(store, settings, request)
    item = queue(store, prepared)
    return deliver(store, settings, item.id, secrets=secrets)
