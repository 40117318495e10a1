"""Drafts (E2, S6): kept in the store only, edited, sent later through the outbox.

Drafts are never written to the server's Drafts folder, so the sync can never take one for a
customer email; the sync skips ``\\Draft`` / ``\\Drafts`` anyway (S6). Attachments are kept by
path, or content-addressed in ``attachment_blobs`` when given as bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mailops.config import Settings
from mailops.errors import SendRefused
from mailops.send.compose import Attachment
from mailops.send.prepare import EmailRequest
from mailops.store import Store
from mailops.store import mailboxes as mbstore
from mailops.store import outbox as obstore
from mailops.store.outbox import Draft, OutboxItem

__all__ = ["create", "edit", "request_of", "send_draft"]


def _attachment_refs(
    store: Store, items: Sequence[str | Path | Attachment]
) -> list[dict[str, Any]]:
    refs: list[dict[str, Any]] = []
    for a in items:
        if isinstance(a, Attachment):
            from mailops.store.blobs import add_attachment

            digest = add_attachment(store, a.content)  # a large one goes to the blob folder
            refs.append({"sha256": digest, "filename": a.filename, "content_type": a.content_type})
        else:
            p = Path(a).resolve()
            if not p.is_file():
                raise SendRefused(
                    f"attachment {p} is not a readable file", code="attachment_missing"
                )
            refs.append({"path": str(p), "filename": p.name})
    return refs


def _attachments_of(store: Store, draft: Draft) -> list[str | Path | Attachment]:
    out: list[str | Path | Attachment] = []
    for ref in draft.attachments:
        if "sha256" in ref:
            from mailops.store.blobs import attachment_bytes

            content = attachment_bytes(store, ref["sha256"])
            if content is None:
                raise SendRefused(
                    f"attachment {ref['filename']} is gone from the store",
                    code="attachment_missing",
                )
            out.append(
                Attachment(
                    ref["filename"],
                    bytes(content),
                    ref.get("content_type") or "application/octet-stream",
                )
            )
        else:
            out.append(Path(ref["path"]))
    return out


def _mailbox_id(store: Store, mailbox: str | int | None) -> int | None:
    if mailbox is None:
        return None
    return mbstore.find(store, mailbox, include_disconnected=True).id


def create(
    store: Store,
    user_id: str,
    *,
    mailbox: str | int | None = None,
    customer_id: str | None = None,
    subject: str | None = None,
    body_text: str | None = None,
    body_html: str | None = None,
    deal_id: str | None = None,
    cc_customers: Sequence[str] = (),
    bcc_customers: Sequence[str] = (),
    template: str | int | None = None,
    reply_to: str | None = None,
    reply_all: bool = False,
    attachments: Sequence[str | Path | Attachment] = (),
) -> Draft:
    """A draft may be incomplete; the E1 checks run when it is sent."""
    template_id = obstore.get_template(store, template).id if template is not None else None
    return obstore.insert_draft(
        store,
        user_id,
        mailbox_id=_mailbox_id(store, mailbox),
        customer_id=customer_id,
        deal_id=deal_id,
        cc_customer_ids=list(cc_customers),
        bcc_customer_ids=list(bcc_customers),
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        template_id=template_id,
        reply_to_message_id=reply_to,
        reply_all=reply_all,
        attachments=_attachment_refs(store, attachments),
    )


def edit(store: Store, draft_id: int, **changes: Any) -> Draft:
    draft = obstore.get_draft(store, draft_id)
    if draft.sent_outbox_id is not None:
        raise SendRefused(f"draft {draft_id} was sent already", code="draft_sent")
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None:
            continue
        if key == "mailbox":
            values["mailbox_id"] = _mailbox_id(store, value)
        elif key == "attachments":
            values["attachments"] = _attachment_refs(store, value)
        elif key == "template":
            values["template_id"] = obstore.get_template(store, value).id
        elif key == "cc_customers":
            values["cc_customer_ids"] = list(value)
        elif key == "bcc_customers":
            values["bcc_customer_ids"] = list(value)
        elif key == "reply_to":
            values["reply_to_message_id"] = value
        else:
            values[key] = value
    return obstore.update_draft(store, draft_id, **values)


def request_of(store: Store, draft: Draft) -> EmailRequest:
    if draft.mailbox_id is None:
        raise SendRefused(f"draft {draft.id} has no sending mailbox", code="mailbox_not_found")
    return EmailRequest(
        user_id=draft.user_id,
        mailbox=draft.mailbox_id,
        customer_id=draft.customer_id,
        subject=draft.subject,
        body_text=draft.body_text,
        body_html=draft.body_html,
        template=draft.template_id,
        deal_id=draft.deal_id,
        cc_customers=draft.cc_customer_ids,
        bcc_customers=draft.bcc_customer_ids,
        attachments=_attachments_of(store, draft),
        reply_to=draft.reply_to_message_id,
        reply_all=draft.reply_all,
        draft_id=draft.id,
    )


def send_draft(
    store: Store,
    settings: Settings,
    draft_id: int,
    *,
    user_id: str | None = None,
    secrets: Any = None,
) -> OutboxItem:
    """Check (E1), queue and deliver a draft; the draft remembers its outbox entry."""
    from mailops.send.outbox import deliver, queue
    from mailops.send.prepare import prepare

    draft = obstore.get_draft(store, draft_id)
    if user_id is not None and draft.user_id != user_id:
        raise SendRefused(f"draft {draft_id} belongs to another user", code="draft_not_owned")
    if draft.sent_outbox_id is not None:
        return obstore.get_item(store, draft.sent_outbox_id)  # sending twice is not sending twice
    prepared = prepare(store, settings, request_of(store, draft))
    item = queue(store, prepared, draft_id=draft.id)
    obstore.mark_draft_sent(store, draft.id, item.id)
    return deliver(store, settings, item.id, secrets=secrets)
