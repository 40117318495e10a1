"""The peers of the sync benchmark, each run by ``sync_bench`` in a fresh process.

    python bench/peers.py imap-tools SPEC.json   # a sync written with imap-tools into SQLite
    python bench/peers.py floor SPEC.json        # IMAPClient BODY.PEEK[] of every message

SPEC is a JSON file: ``{"host", "port", "ca_file", "users": [[address, password], ...],
"db"}``. Each prints one JSON line: messages fetched, bytes, ``import_s`` and ``sync_s``
(the part after the imports, as mailops' worker reports it).

imap-tools is what a developer would write with it in an afternoon: per mailbox, STATUS
INBOX (UIDVALIDITY, UIDNEXT) against the state kept from the last run; when it moved,
``MailBox.fetch(uid range, mark_seen=False, bulk=500)`` (BODY.PEEK[], parsed by the email
package) and one SQLite row per message (Message-ID, From, To, Cc, Subject, Date, text and
HTML body, size) committed per mailbox. It keeps every message (it has no customer
directory to decide by), as mbsync does. The floor reads the same bytes with IMAPClient and
keeps nothing: no client can fetch and store them faster than that.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()


def _ssl(ca_file: str) -> Any:
    import ssl

    return ssl.create_default_context(cafile=ca_file)


def imap_tools_sync(spec: dict[str, Any]) -> dict[str, Any]:
    import sqlite3

    from imap_tools import AND, MailBox, U

    import_s = time.perf_counter() - T0
    t = time.perf_counter()
    db = sqlite3.connect(spec["db"])
    db.execute(
        "CREATE TABLE IF NOT EXISTS state (mailbox TEXT PRIMARY KEY, uidvalidity INTEGER,"
        " uidnext INTEGER)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS messages (mailbox TEXT, uid INTEGER, message_id TEXT,"
        " sender TEXT, recipients TEXT, cc TEXT, subject TEXT, sent_at TEXT, text TEXT,"
        " html TEXT, size INTEGER, PRIMARY KEY (mailbox, uid))"
    )
    ctx = _ssl(spec["ca_file"])
    fetched = size = 0
    for address, password in spec["users"]:
        with MailBox(spec["host"], port=spec["port"], ssl_context=ctx).login(
            address, password, initial_folder=None
        ) as mb:
            st = mb.folder.status("INBOX", ["UIDVALIDITY", "UIDNEXT"])
            row = db.execute(
                "SELECT uidvalidity, uidnext FROM state WHERE mailbox = ?", [address]
            ).fetchone()
            if row == (st["UIDVALIDITY"], st["UIDNEXT"]):
                continue  # nothing new
            mb.folder.set("INBOX", readonly=True)
            if row is None or row[0] != st["UIDVALIDITY"]:
                db.execute("DELETE FROM messages WHERE mailbox = ?", [address])
                criteria: Any = "ALL"
            else:
                criteria = AND(uid=U(str(row[1]), "*"))
            rows = []
            for msg in mb.fetch(criteria, mark_seen=False, bulk=500):
                rows.append(
                    (
                        address,
                        int(msg.uid or 0),
                        (msg.headers.get("message-id") or ("",))[0],
                        msg.from_,
                        ", ".join(msg.to),
                        ", ".join(msg.cc),
                        msg.subject,
                        msg.date.isoformat(),
                        msg.text,
                        msg.html,
                        msg.size,
                    )
                )
                size += msg.size
            db.executemany("INSERT OR REPLACE INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.execute(
                "INSERT OR REPLACE INTO state VALUES (?, ?, ?)",
                [address, st["UIDVALIDITY"], st["UIDNEXT"]],
            )
            db.commit()
            fetched += len(rows)
    db.close()
    return {
        "fetched": fetched,
        "bytes": size,
        "import_s": import_s,
        "sync_s": time.perf_counter() - t,
    }


def floor(spec: dict[str, Any]) -> dict[str, Any]:
    import imapclient

    import_s = time.perf_counter() - T0
    t = time.perf_counter()
    ctx = _ssl(spec["ca_file"])
    fetched = size = 0
    for address, password in spec["users"]:
        c = imapclient.IMAPClient(spec["host"], port=spec["port"], ssl=True, ssl_context=ctx)
        c.login(address, password)
        c.select_folder("INBOX", readonly=True)
        uids = c.search("ALL")
        for i in range(0, len(uids), 1000):
            for data in c.fetch(uids[i : i + 1000], ["BODY.PEEK[]"]).values():
                size += len(data[b"BODY[]"])
                fetched += 1
        c.logout()
    return {
        "fetched": fetched,
        "bytes": size,
        "import_s": import_s,
        "sync_s": time.perf_counter() - t,
    }


def main() -> None:
    kind, spec_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    out = {"imap-tools": imap_tools_sync, "floor": floor}[kind](spec)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
