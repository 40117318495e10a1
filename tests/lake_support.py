"""D1 test helpers: a company with mail on the devserver, synced into any store, and the
comparison of what two stores hold."""

from __future__ import annotations

from mailops.store import Store
from tests.sync_support import add_customer, append, days_ago, make_msg


def seed_company(store: Store, customers: int) -> None:
    store.execute("INSERT INTO users (id, email, name) VALUES ('user-1', 'sales@corp.test', 'S')")
    for i in range(customers):
        add_customer(store, f"c{i}", f"cust{i}@buyer.test")


def deliver(mailserver, accounts: list[tuple[str, str]], customers: int, per_box: int) -> None:
    """Mail as in the wild, per mailbox: customer mail (some shared by two mailboxes: the
    same Message-ID reaches both), a reused Message-ID with other content, mail from
    strangers, a message with no Message-ID."""
    for n, (address, password) in enumerate(accounts):
        msgs = []
        for k in range(per_box):
            c = (n * 7 + k) % customers
            msgs.append(
                make_msg(
                    f"cust{c}@buyer.test",
                    address,
                    subject=f"unit {k} for box {n}",
                    date=days_ago(1 + k % 20),
                    msgid=f"<box{n}-{k}@buyer.test>",
                )
            )
        msgs.append(
            make_msg("cust0@buyer.test", address, subject="to all", msgid="<shared@b.test>")
        )
        msgs.append(
            make_msg("cust1@buyer.test", address, subject=f"reused {n}", msgid="<reused@b.test>")
        )
        msgs.append(make_msg("stranger@else.test", address, subject="newsletter"))
        msgs.append(
            make_msg("cust2@buyer.test", address, subject="no id", msgid="").replace(
                b"Message-ID: \r\n", b""
            )
        )
        append(mailserver, address, password, msgs)


def holdings(store: Store) -> dict[str, list[tuple]]:
    """What a store holds, independent of ids, times and arrival order: messages, places,
    activities, the final ledger decision per message. (S13: of two messages reusing one
    Message-ID, the first to arrive keeps the bare id and the other becomes ``id#fp``;
    which one is first depends on which mailbox synced first, so a message is named by its
    Message-ID and its subject here.)"""
    mid = "split_part(m.id, '#', 1) || ' / ' || coalesce(m.subject, '')"
    q = {
        "messages": f"SELECT {mid} FROM messages m ORDER BY ALL",
        "places": f"SELECT mb.address, {mid} FROM message_places p"
        " JOIN mailboxes mb ON mb.id = p.mailbox_id JOIN messages m ON m.id = p.message_id"
        " ORDER BY ALL",
        "activities": f"SELECT {mid}, a.customer_id, a.direction FROM activities a"
        " JOIN messages m ON m.id = a.message_id ORDER BY ALL",
        "ledger": "SELECT DISTINCT mb.address, l.folder, l.uid, l.decision, l.reason"
        " FROM audit_ledger l JOIN mailboxes mb ON mb.id = l.mailbox_id ORDER BY ALL",
    }
    return {k: store.rows(sql) for k, sql in q.items()}
