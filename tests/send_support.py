"""Helpers for the send tests: a sales user with a mailbox, customers on the devserver."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import imapclient

from mailops.store import Store

SINCE = datetime(2020, 1, 1)


def add_user(
    store: Store,
    uid: str,
    email: str,
    name: str = "Sam Seller",
    *,
    can_send: bool = True,
    role: str = "sales",
) -> None:
    store.execute(
        "INSERT INTO users (id, email, name, role, can_send) VALUES (?, ?, ?, ?, ?)",
        [uid, email.lower(), name, role, can_send],
    )


def add_customer(
    store: Store, cid: str, name: str, address: str | None, owner: str = "user-1"
) -> None:
    store.execute(
        "INSERT INTO customers (id, name, owner_user_id) VALUES (?, ?, ?)", [cid, name, owner]
    )
    if address:
        store.execute(
            "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
            " VALUES (?, ?, TRUE, ?)",
            [cid, address.lower(), SINCE],
        )


def add_deal(store: Store, did: str, customers: list[str], **values: Any) -> None:
    cols = {"id": did, "name": f"Deal {did}", **values}
    store.execute(
        f"INSERT INTO deals ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        list(cols.values()),
    )
    for i, c in enumerate(customers):
        store.execute(
            "INSERT INTO deal_customers (deal_id, customer_id, role) VALUES (?, ?, ?)",
            [did, c, "buyer" if i == 0 else "co_buyer"],
        )


def imap_for(mailserver: Any, address: str, password: str) -> imapclient.IMAPClient:
    ctx = ssl.create_default_context(cafile=mailserver.ca_file)
    client = imapclient.IMAPClient(
        "127.0.0.1", port=mailserver.imaps_port, ssl=True, ssl_context=ctx
    )
    client.login(address, password)
    return client


def fetch(
    mailserver: Any, address: str, password: str, folder: str = "INBOX"
) -> list[EmailMessage]:
    """Every message of FOLDER, parsed with the stdlib."""
    client = imap_for(mailserver, address, password)
    try:
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        data = client.fetch(uids, [b"RFC822"]) if uids else {}
        out = []
        for uid in sorted(data):
            msg = message_from_bytes(
                data[uid][b"RFC822"], _class=EmailMessage, policy=policy.default
            )
            out.append(msg)
        return out
    finally:
        client.logout()


@dataclass
class Party:
    """A sales user (user-1) with a connected mailbox, and customers with real accounts."""

    store: Store
    settings: Any
    mailserver: Any
    mailbox: Any
    password: str
    user_id: str = "user-1"
    customers: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (address, pw)

    def customer(self, cid: str, name: str, *, with_email: bool = True) -> str:
        address, pw = self.mailserver.new_user()
        add_customer(self.store, cid, name, address if with_email else None, owner=self.user_id)
        self.customers[cid] = (address, pw)
        return address

    def inbox(self, cid: str, folder: str = "INBOX") -> list[EmailMessage]:
        address, pw = self.customers[cid]
        return fetch(self.mailserver, address, pw, folder)

    def sent(self) -> list[EmailMessage]:
        return fetch(self.mailserver, self.mailbox.address, self.password, "Sent")

    def own(self, folder: str) -> list[EmailMessage]:
        return fetch(self.mailserver, self.mailbox.address, self.password, folder)


def make_party(
    store: Store,
    settings: Any,
    mailserver: Any,
    password_mailbox: Any,
    *,
    user_id: str = "user-1",
    can_send: bool = True,
) -> Party:
    mb, pw = password_mailbox(owner=user_id)
    add_user(store, user_id, mb.address, "Sam Seller", can_send=can_send)
    return Party(store, settings, mailserver, mb, pw, user_id)
