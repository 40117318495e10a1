"""A small synthetic company for report tests: rows written straight into the store, with
the figures a person computes by hand (response times, counts by reason, waiting customers).

Times are relative to a Monday two weeks before NOW so the data never ages out of a period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mailops.store import Store


def monday_before(now: datetime, weeks: int = 2) -> datetime:
    day = (now - timedelta(weeks=weeks)).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


@dataclass
class Synthetic:
    now: datetime
    base: datetime
    mailboxes: dict[str, int] = field(default_factory=dict)  # address -> id
    runs: dict[str, int] = field(default_factory=dict)  # address -> run id
    expected: dict[str, Any] = field(default_factory=dict)


USERS = [
    # id, email, name, role, team, can_send
    ("s1", "sara@corp.test", "Sara Sales", "sales", "north", True),
    ("s2", "sam@corp.test", "Sam Sales", "sales", "north", True),
    ("s3", "sue@corp.test", "Sue Sales", "sales", "south", True),
    ("m1", "mia@corp.test", "Mia Manager", "manager", "north", True),
    ("it1", "ian@corp.test", "Ian IT", "it", None, True),
    ("a1", "ada@corp.test", "Ada Admin", "admin", None, True),
    ("x1", "gone@corp.test", "Xavier Gone", "sales", "north", True),
]
CUSTOMERS = [
    ("c1", "Carla Buyer", "s1", "carla@buyer.test"),
    ("c2", "Colin Buyer", "s1", "colin@buyer.test"),
    ("c3", "Cora South", "s3", "cora@south.test"),
    ("c4", "Cid North", "s2", "cid@north.test"),
]


def seed(store: Store, now: datetime) -> Synthetic:
    base = monday_before(now)
    syn = Synthetic(now=now, base=base)

    def at(days: float, hours: float = 0) -> datetime:
        return base + timedelta(days=days, hours=hours)

    with store.transaction():
        store.executemany(
            "INSERT INTO users (id, email, name, role, team, can_send) VALUES (?,?,?,?,?,?)", USERS
        )
        store.execute("UPDATE users SET active = FALSE WHERE id = 'x1'")
        for cid, name, owner, addr in CUSTOMERS:
            store.execute(
                "INSERT INTO customers (id, name, owner_user_id) VALUES (?,?,?)", [cid, name, owner]
            )
            store.execute(
                "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
                " VALUES (?,?,TRUE,?)",
                [cid, addr, base - timedelta(days=365)],
            )
        store.execute(
            "INSERT INTO deals (id, name, owner_user_id, project, unit, stage) VALUES"
            " ('d1', 'Harbour 4B', 's1', 'Harbour', '4B', 'offer'),"
            " ('d2', 'Hill 12', 's3', 'Hill', '12', 'lead')"
        )
        store.execute(
            "INSERT INTO deal_customers (deal_id, customer_id) VALUES ('d1','c1'),('d1','c2'),('d2','c3')"
        )
        boxes = [
            ("s1", "sara@corp.test", "connected"),
            ("s2", "sam@corp.test", "connected"),
            ("s3", "sue@corp.test", "problematic"),
        ]
        for owner, addr, _state in boxes:
            syn.mailboxes[addr] = int(
                store.scalar(
                    "INSERT INTO mailboxes (owner_user_id, address, provider, auth_kind, state,"
                    " connected_at, last_sync_at, last_good_sync_at) VALUES (?,?,'generic','password',"
                    " 'connected', ?, ?, ?) RETURNING id",
                    [owner, addr, at(-1), now - timedelta(hours=1), now - timedelta(hours=1)],
                )
            )
            store.execute(
                "INSERT INTO mailbox_events (mailbox_id, changed_at, from_state, to_state, actor_user_id)"
                " VALUES (?, ?, NULL, 'connected', ?)",
                [syn.mailboxes[addr], at(-1), owner],
            )
        sue = syn.mailboxes["sue@corp.test"]
        store.execute(
            "UPDATE mailboxes SET state = 'problematic', problem_code = 'token_revoked',"
            " problem_message = 'The sign-in has expired or was revoked.', problem_since = ?,"
            " last_good_sync_at = ?, last_sync_at = ? WHERE id = ?",
            [
                now - timedelta(days=3),
                now - timedelta(days=3, hours=1),
                now - timedelta(hours=2),
                sue,
            ],
        )
        store.execute(
            "INSERT INTO mailbox_events (mailbox_id, changed_at, from_state, to_state, code, message)"
            " VALUES (?, ?, 'connected', 'problematic', 'token_revoked', 'The sign-in has expired or was revoked.')",
            [sue, now - timedelta(days=3)],
        )

        # messages: (id, mailbox, customer, direction, when, subject, refs, deal)
        sara, sam = syn.mailboxes["sara@corp.test"], syn.mailboxes["sam@corp.test"]
        msgs = [
            ("a1@buyer.test", sara, "c1", "inbound", at(0, 10), "Unit 4B?", [], "d1"),
            (
                "a2@buyer.test",
                sara,
                "c1",
                "inbound",
                at(0, 11),
                "Unit 4B? (2)",
                ["a1@buyer.test"],
                "d1",
            ),
            (
                "a3@corp.test",
                sara,
                "c1",
                "outbound",
                at(0, 13.5),
                "Re: Unit 4B?",
                ["a1@buyer.test"],
                "d1",
            ),
            (
                "a4@buyer.test",
                sara,
                "c1",
                "inbound",
                at(1, 9),
                "Re: Unit 4B?",
                ["a1@buyer.test"],
                "d1",
            ),
            (
                "a5@corp.test",
                sara,
                "c1",
                "outbound",
                at(2, 9),
                "Re: Unit 4B?",
                ["a1@buyer.test"],
                "d1",
            ),
            ("b1@corp.test", sara, "c2", "outbound", at(2, 10), "Offer Harbour", [], "d1"),
            (
                "b2@buyer.test",
                sara,
                "c2",
                "inbound",
                at(3, 8),
                "Re: Offer <script>alert(1)</script>",  # untrusted text
                ["b1@corp.test"],
                "d1",
            ),
            ("c1@south.test", sue, "c3", "inbound", at(4, 12), "Hill 12", [], "d2"),
            (
                "c2@corp.test",
                sue,
                "c3",
                "outbound",
                at(4, 12.5),
                "Re: Hill 12",
                ["c1@south.test"],
                "d2",
            ),
            ("d1@north.test", sam, "c4", "inbound", now - timedelta(days=1), "Hello", [], None),
        ]
        for mid, box, cust, direction, when, subject, refs, deal in msgs:
            user = store.scalar("SELECT owner_user_id FROM mailboxes WHERE id = ?", [box])
            cust_addr = next(c[3] for c in CUSTOMERS if c[0] == cust)
            box_addr = next(a for a, i in syn.mailboxes.items() if i == box)
            frm, to = (cust_addr, box_addr) if direction == "inbound" else (box_addr, cust_addr)
            store.execute(
                "INSERT INTO messages (id, message_id_header, subject, from_addr, to_addrs, cc_addrs,"
                ' sent_at, in_reply_to, "references", body_text) VALUES (?,?,?,?,?,?,?,?,?,?)',
                [
                    mid,
                    f"<{mid}>",
                    subject,
                    frm,
                    [to],
                    [],
                    when,
                    refs[-1] if refs else None,
                    refs,
                    "secret body",
                ],
            )
            store.execute(
                "INSERT INTO message_places (message_id, mailbox_id, folder, uidvalidity, uid)"
                " VALUES (?, ?, ?, 1, ?)",
                [mid, box, "INBOX" if direction == "inbound" else "Sent", abs(hash(mid)) % 100000],
            )
            store.execute(
                "INSERT INTO activities (message_id, customer_id, mailbox_id, user_id, direction,"
                " occurred_at, match_kind, deal_id) VALUES (?,?,?,?,?,?,'primary',?)",
                [mid, cust, box, user, direction, when, deal],
            )
        # co-customer (S4): the offer to Colin also shows for Carla, same deal
        store.execute(
            "INSERT INTO activities (message_id, customer_id, mailbox_id, user_id, direction,"
            " occurred_at, match_kind, deal_id) VALUES ('b1@corp.test','c1',?, 's1','outbound',?,'co_customer','d1')",
            [sara, at(2, 10)],
        )

        # sync runs, folder reports and the ledger. Yesterday Sara's INBOX listing held 2
        # messages (the baseline: before the window); today it holds 10, but the ledger
        # examined only 7 in between: one message is unexplained (flagged).
        yesterday = now - timedelta(days=1, hours=2)
        sara0 = store.scalar(
            "INSERT INTO sync_runs (mailbox_id, trigger, started_at, finished_at, status,"
            " examined, duration_s) VALUES (?, 'schedule', ?, ?, 'ok', 0, 1.0) RETURNING id",
            [syn.mailboxes["sara@corp.test"], yesterday, yesterday + timedelta(seconds=1)],
        )
        store.execute(
            "INSERT INTO sync_folder_reports (run_id, mailbox_id, folder, uidvalidity, server_messages,"
            " reported_at) VALUES (?, ?, 'INBOX', 1, 2, ?)",
            [sara0, syn.mailboxes["sara@corp.test"], yesterday],
        )
        for addr, status, examined, stored, skipped, err in [
            ("sara@corp.test", "ok", 10, 7, 3, None),
            ("sam@corp.test", "ok", 2, 1, 1, None),
            ("sue@corp.test", "failed", 0, 0, 0, "token_revoked"),
        ]:
            box = syn.mailboxes[addr]
            syn.runs[addr] = int(
                store.scalar(
                    "INSERT INTO sync_runs (mailbox_id, trigger, started_at, finished_at, status,"
                    " examined, stored, skipped, duration_s, error_code) VALUES (?,?,?,?,?,?,?,?,?,?)"
                    " RETURNING id",
                    [
                        box,
                        "schedule",
                        now - timedelta(hours=2),
                        now - timedelta(hours=2) + timedelta(seconds=3),
                        status,
                        examined,
                        stored,
                        skipped,
                        3.0,
                        err,
                    ],
                )
            )
        ledger = []
        sara_run, sam_run = syn.runs["sara@corp.test"], syn.runs["sam@corp.test"]
        uid = 0
        for mid, box, cust, direction, _when, subject, _refs, _deal in msgs:
            if box == sue:
                continue
            uid += 1
            run = sara_run if box == sara else sam_run
            folder = "INBOX" if direction == "inbound" else "Sent"
            ledger.append(
                (run, box, folder, 1, uid, mid, "stored", "stored_customer", [cust], subject)
            )
        for reason, subject in [
            ("no_customer", "Newsletter"),
            ("internal", "Lunch?"),
            ("draft", "Draft offer"),
        ]:
            uid += 1
            ledger.append(
                (
                    sara_run,
                    sara,
                    "INBOX",
                    1,
                    uid,
                    f"skip{uid}@x.test",
                    "skipped",
                    reason,
                    [],
                    subject,
                )
            )
        uid += 1
        ledger.append(
            (sam_run, sam, "INBOX", 1, uid, "skipsam@x.test", "skipped", "no_customer", [], "Ad")
        )
        store.executemany(
            "INSERT INTO audit_ledger (run_id, mailbox_id, folder, uidvalidity, uid, message_id, decision,"
            " reason, customers, subject, from_addr, examined_at) VALUES (?,?,?,?,?,?,?,?,?,?, 'x@y.test', ?)",
            [(*row, now - timedelta(hours=2)) for row in ledger],
        )
        store.execute(
            "UPDATE audit_ledger SET from_addr = m.from_addr FROM messages m WHERE m.id = audit_ledger.message_id"
        )
        store.executemany(
            "INSERT INTO sync_folder_reports (run_id, mailbox_id, folder, uidvalidity, server_messages,"
            " examined, stored, skipped, reported_at) VALUES (?,?,?,1,?,?,?,?,?)",
            [
                (sara_run, sara, "INBOX", 10, 7, 4, 3, now - timedelta(hours=2)),
                (sara_run, sara, "Sent", 3, 3, 3, 0, now - timedelta(hours=2)),
                (sam_run, sam, "INBOX", 2, 2, 1, 1, now - timedelta(hours=2)),
            ],
        )
    syn.expected = {
        "counts_by_reason": {"stored_customer": 8, "no_customer": 2, "internal": 1, "draft": 1},
        # distinct messages through each sales person's mailbox
        "emails_per_sales_person": {"s1": 7, "s3": 2, "s2": 1},
        # thread a1 for c1: asked 10:00 answered 13:30 (3.5 h, first); asked day+1 09:00
        # answered day+2 09:00 (24 h, 8 business hours); thread c1 for c3: 0.5 h
        "responses": {("c1", "a1@buyer.test"): [3.5, 24.0], ("c3", "c1@south.test"): [0.5]},
        "waiting": ["c2"],  # c4 waits only 1 day
        "problematic": {"sue@corp.test": "token_revoked"},
        "flagged_days": 2,  # Sara today (1 unexplained), Sue (failed run, no listing)
    }
    return syn


def synthetic_store(path) -> tuple[Store, Synthetic]:  # type: ignore[no-untyped-def]
    """A store file at PATH seeded with the synthetic company (now = the current UTC time)."""
    from mailops.reports import utcnow

    store = Store(str(path))
    return store, seed(store, utcnow())


# -- executed report notebooks, shared by the notebook and HTML tests (one run per session) --
_EXECUTED: dict[str, Any] = {}


def executed_reports(root) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Seed a synthetic store under ROOT and run every report notebook on it once per test
    session. Returns {"store_path", "syn", "reports_dir", "settings", name: ReportResult}."""
    import os
    from pathlib import Path

    from mailops.config import Settings
    from mailops.notebook import run_report

    if _EXECUTED:
        return _EXECUTED
    root = Path(root)
    db = root / "reports.duckdb"
    store, syn = synthetic_store(db)
    store.close()  # the kernels are other processes: never hold the file while they run
    settings = Settings.load(
        db=str(db), reports_dir=str(root / "reports"), notebooks_dir=str(notebooks_path())
    )
    saved = os.environ.get("MAILOPS_DB")
    try:
        _EXECUTED.update(
            store_path=str(db), syn=syn, settings=settings, reports_dir=root / "reports"
        )
        params = {"DAYS": 0}
        _EXECUTED["sync_audit"] = run_report(
            "sync_audit", {**params, "CUSTOMER": "c1"}, settings=settings
        )
        _EXECUTED["activity_report"] = run_report("activity_report", params, settings=settings)
        _EXECUTED["problematic_accounts"] = run_report(
            "problematic_accounts", params, settings=settings
        )
    finally:
        if saved is None:
            os.environ.pop("MAILOPS_DB", None)
        else:
            os.environ["MAILOPS_DB"] = saved
    return _EXECUTED


def notebooks_path():  # type: ignore[no-untyped-def]
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "notebooks"


def scraps(path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The values a notebook glued with scrapbook, read back from the executed notebook."""
    import scrapbook as sb

    return {name: scrap.data for name, scrap in sb.read_notebook(str(path)).scraps.items()}
