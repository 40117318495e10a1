"""``mailops demo send``: a few real emails from demo mailboxes to demo customers.

One offer from a template (deal and unit fields merged), one reply to a synced customer
email, one plain note with a co-customer on Cc; then each customer's activities are printed.
Re-running sends nothing new (an email already sent with the same subject from the same
mailbox is skipped). Runs after the demo seed, connect and sync steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailops.config import Settings
from mailops.errors import MailopsError
from mailops.permissions import SYSTEM
from mailops.send import EmailRequest
from mailops.store import Store
from mailops.store import directory as dirstore
from mailops.store import mailboxes as mbstore
from mailops.store import outbox as obstore
from mailops.store.messages import customer_activities

OFFER_NAME = "offer"
OFFER_SUBJECT = "Your offer for unit {{ deal.unit }} at {{ unit.project }}"
OFFER_TEXT = """Dear {{ customer.name }},

thank you for your interest in {{ unit.project }}. As promised, here is our offer for
unit {{ deal.unit }}: {{ deal.price | money(deal.currency) }}.

The offer is valid for 14 days from {{ today | date }}.

Kind regards,
{{ sales.name }}
"""
OFFER_HTML = """<p>Dear {{ customer.name }},</p>
<p>thank you for your interest in <b>{{ unit.project }}</b>. As promised, here is our offer for
unit <b>{{ deal.unit }}</b>: <b>{{ deal.price | money(deal.currency) }}</b>.</p>
<p>The offer is valid for 14 days from {{ today | date }}.</p>
<p>Kind regards,<br>{{ sales.name }}</p>
"""


def ensure_offer_template(store: Store) -> obstore.Template:
    tpl = obstore.find_template(store, OFFER_NAME)
    if tpl is not None:
        return tpl
    return obstore.save_template(
        store,
        OFFER_NAME,
        OFFER_SUBJECT,
        body_text=OFFER_TEXT,
        body_html=OFFER_HTML,
        created_by="demo",
    )


def _can_send(store: Store, user_id: str) -> bool:
    from mailops.send.prepare import _may_send

    return _may_send(store, user_id)


def _deliverable(settings: Settings, addresses: list[str]) -> None:
    """On the local devserver, give demo customers a mail account so the mail is delivered."""
    from pathlib import Path

    from mailops.dev.devserver import add_users, read_users

    root = settings.devserver_dir
    if not Path(root, "users").exists():
        return
    known = read_users(root)
    missing = {a: f"demo-{a.split('@')[0]}" for a in addresses if a not in known}
    if missing:
        add_users(root, missing)


def _already(store: Store, mailbox_id: int, subject: str) -> obstore.OutboxItem | None:
    oid = obstore.sent_with_subject(store, mailbox_id, subject)
    return obstore.get_item(store, oid) if oid is not None else None


def _offer_target(store: Store, owner: str) -> tuple[str, str] | None:
    """A customer of OWNER with an address and a deal that has a unit and a price."""
    return dirstore.customer_with_priced_deal(store, owner)


def _reply_target(store: Store, mailbox_id: int, owner: str) -> tuple[str, str] | None:
    """The newest synced inbound customer email of the mailbox: (message id, customer id)."""
    from mailops.permissions import scope_for
    from mailops.store.messages import newest_inbound_from_customer

    return newest_inbound_from_customer(store, mailbox_id, viewer=scope_for(store, owner))


def run_demo(
    store: Store, settings: Settings, echo: Callable[[str], Any] = print
) -> list[obstore.OutboxItem]:
    ensure_offer_template(store)
    mailboxes = [
        m
        for m in mbstore.all_mailboxes(store, states=("connected",))
        if _can_send(store, m.owner_user_id)
    ]
    if not mailboxes:
        raise MailopsError(
            "no connected demo mailbox may send",
            code="demo_not_ready",
            guidance="run `mailops demo seed` and connect the demo mailboxes first",
        )
    sent: list[obstore.OutboxItem] = []
    touched: list[str] = []

    def go(
        mb: mbstore.Mailbox, label: str, request: EmailRequest, subject_probe: str | None = None
    ) -> None:
        from mailops.send.prepare import prepare

        try:
            prepared = prepare(store, settings, request)
        except MailopsError as e:
            echo(f"  {label}: refused - {e.one_line()}")
            return
        done = _already(store, mb.id, subject_probe or prepared.subject)
        if done is not None:
            echo(f"  {label}: already sent (outbox {done.id}) {done.subject!r}")
            sent.append(done)
            touched.extend(done.customer_ids)
            return
        _deliverable(settings, [r.address for r in prepared.recipients])
        from mailops.send.outbox import deliver, queue

        item = deliver(store, settings, queue(store, prepared).id)
        state = (
            item.state
            if item.state == "sent"
            else f"{item.state} [{item.error_code}] {item.last_error}"
        )
        echo(f"  {label}: {state} - {mb.address} -> {', '.join(item.recipients)}: {item.subject!r}")
        sent.append(item)
        touched.extend(item.customer_ids)

    for mb in mailboxes[:3]:
        offer = _offer_target(store, mb.owner_user_id)
        if offer is not None:
            go(
                mb,
                "offer (template)",
                EmailRequest(
                    user_id=mb.owner_user_id,
                    mailbox=mb.id,
                    customer_id=offer[0],
                    template=OFFER_NAME,
                    deal_id=offer[1],
                ),
            )
            break
    for mb in mailboxes:
        target = _reply_target(store, mb.id, mb.owner_user_id)
        if target is not None:
            go(
                mb,
                "reply",
                EmailRequest(
                    user_id=mb.owner_user_id,
                    mailbox=mb.id,
                    reply_to=target[0],
                    body_text="Thank you for your message - I will come back to you with the details by tomorrow.",
                ),
            )
            break
    mb = mailboxes[-1]
    plain = dirstore.first_customer_with_address(store, mb.owner_user_id)
    if plain:
        cid = plain
        co = sorted(
            c
            for c in dirstore.co_customers(store, cid)
            if dirstore.customer_primary_address(store, c)
        )
        go(
            mb,
            "plain note",
            EmailRequest(
                user_id=mb.owner_user_id,
                mailbox=mb.id,
                customer_id=cid,
                cc_customers=co[:1],
                subject="Viewing appointment confirmed",
                body_text="Hello,\n\nyour viewing is confirmed for Saturday at 11:00.\n\nBest regards\n",
            ),
        )

    for cid in dict.fromkeys(touched):
        cust = dirstore.get_customer(store, cid) or {}
        acts = customer_activities(store, cid, viewer=SYSTEM).head(4)
        echo(f"  activities of {cid} ({cust.get('name')}):")
        for row in acts.itertuples():
            when = str(row.occurred_at)[:16]
            echo(f"    {when}  {row.direction:8} {row.subject}")
    return sent
