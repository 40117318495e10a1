"""Helpers for the sync tests: directory rows by direct insert, messages, IMAP APPEND."""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, make_msgid

import imapclient

ALWAYS = datetime(2000, 1, 1)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def add_customer(store, cid, primary=None, *, since=ALWAYS, until=None, additional=(), name=None):
    store.execute(
        "INSERT INTO customers (id, name) VALUES (?, ?) ON CONFLICT DO NOTHING", [cid, name or cid]
    )
    if primary:
        store.execute(
            "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from, valid_to)"
            " VALUES (?, ?, TRUE, ?, ?)",
            [cid, primary.lower(), since, until],
        )
    for a in additional:
        store.execute(
            "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
            " VALUES (?, ?, FALSE, ?)",
            [cid, a.lower(), ALWAYS],
        )


def add_deal(store, deal, customers):
    store.execute("INSERT INTO deals (id, name) VALUES (?, ?)", [deal, deal])
    for c in customers:
        store.execute("INSERT INTO deal_customers (deal_id, customer_id) VALUES (?, ?)", [deal, c])


def make_msg(
    frm: str,
    to: Sequence[str] | str,
    *,
    cc: Sequence[str] = (),
    subject: str = "hello",
    date: datetime | None = None,
    msgid: str | None = None,
    body: str = "Dear customer,\nthe unit is available.\n",
    extra_headers: str = "",
) -> bytes:
    to = [to] if isinstance(to, str) else list(to)
    date = date or utcnow()
    lines = [
        f"From: {frm}",
        f"To: {', '.join(to)}",
        *([f"Cc: {', '.join(cc)}"] if cc else []),
        f"Subject: {subject}",
        f"Date: {format_datetime(date.replace(tzinfo=UTC))}",
        f"Message-ID: {msgid or make_msgid(domain='test.example')}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    if extra_headers:
        lines.append(extra_headers.rstrip("\r\n"))
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


def imap(mailserver, address: str, password: str) -> imapclient.IMAPClient:
    ctx = ssl.create_default_context(cafile=mailserver.ca_file)
    c = imapclient.IMAPClient(
        "127.0.0.1", port=mailserver.imaps_port, ssl=True, ssl_context=ctx, timeout=30
    )
    c.login(address, password)
    return c


def append(
    mailserver,
    address: str,
    password: str,
    messages: Iterable[bytes | tuple[bytes, Sequence[bytes], datetime | None]],
    folder: str = "INBOX",
) -> None:
    items = []
    for m in messages:
        raw, flags, when = (m, (), None) if isinstance(m, bytes) else m
        item: dict = {"msg": raw, "flags": list(flags)}
        if when is not None:
            item["date"] = when.replace(tzinfo=UTC)
        items.append(item)
    c = imap(mailserver, address, password)
    try:
        if not c.folder_exists(folder):
            c.create_folder(folder)
        c.multiappend(folder, items)
    finally:
        c.logout()


def days_ago(n: float) -> datetime:
    return utcnow() - timedelta(days=n)


def without_special_use(mailserver, address: str, folders=("Sent",)) -> None:
    """Make the real Dovecot treat ADDRESS like a server without SPECIAL-USE for FOLDERS
    (the folders are not auto-created, so no folder carries their flag), through a userdb
    override in the passwd-file. Call it before the account's first login. Dovecot re-reads
    the file at most once a second. (An empty ``special_use=`` override makes Dovecot 2.3
    fail CREATE with an internal error.)"""
    import time
    from pathlib import Path

    from mailops.dev.devserver import private_users_file

    path = Path(mailserver.root, "users")
    extra = " ".join(f"userdb_namespace/inbox/mailbox/{f}/auto=no" for f in folders)
    lines = []
    for line in path.read_text().splitlines():
        if line.split(":", 1)[0] == address.lower():
            line = ":".join(line.split(":")[:7]) + ":" + extra
        lines.append(line)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    private_users_file(tmp)
    tmp.replace(path)
    time.sleep(1.1)


def big_message(
    frm: str, to: str, attachment_bytes: int, *, subject: str = "signed contract", seed: int = 7
) -> bytes:
    """A customer email with one PDF-like attachment of ATTACHMENT_BYTES (base64 on the
    wire: the message is about 4/3 of that), generated at test time."""
    import base64
    import random

    rnd = random.Random(seed)
    payload = rnd.randbytes(attachment_bytes)
    b64 = base64.encodebytes(payload)  # 76-char lines
    head = make_msg(frm, to, subject=subject, body="")
    header, _, _ = head.partition(b"\r\n\r\n")
    header = header.replace(
        b"Content-Type: text/plain; charset=utf-8",
        b'Content-Type: multipart/mixed; boundary="b1"',
    )
    return b"".join(
        [
            header,
            b"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
            b"Dear Sam,\r\nplease find the signed contract and the floor plans attached.\r\n",
            b'--b1\r\nContent-Type: application/pdf; name="contract.pdf"\r\n',
            b'Content-Disposition: attachment; filename="contract.pdf"\r\n',
            b"Content-Transfer-Encoding: base64\r\n\r\n",
            b64.replace(b"\n", b"\r\n"),
            b"--b1--\r\n",
        ]
    )


def maildir_file(mailserver, address: str, needle: bytes, folder: str = "INBOX"):
    """The Maildir file of ADDRESS's message containing NEEDLE (LAYOUT=fs)."""
    from pathlib import Path

    local, domain = address.split("@")
    base = Path(mailserver.root, "mail", domain, local, "Maildir")
    if folder != "INBOX":
        base = base / folder
    lf = needle.replace(b"\r\n", b"\n")  # Dovecot keeps Maildir files with LF line ends
    for sub in ("new", "cur"):
        for f in (base / sub).glob("*"):
            data = f.read_bytes()
            if needle in data or lf in data:
                return f
    raise FileNotFoundError(needle)
