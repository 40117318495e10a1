"""The sync engine against the real local Dovecot, one test per rule (S1-S12)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sync_support import (
    add_customer,
    add_deal,
    append,
    days_ago,
    imap,
    make_msg,
    utcnow,
)

from mailops.faults import FAULT_ENV
from mailops.permissions import SYSTEM
from mailops.store import mailboxes
from mailops.store.messages import customer_activities, message_places
from mailops.sync import sync_all, sync_mailbox

pytestmark = pytest.mark.server


def ledger(store, **where):
    df = store.query("SELECT * FROM audit_ledger ORDER BY run_id, folder, uid")
    for k, v in where.items():
        df = df[df[k] == v]
    return df


def reasons(store, run_id):
    df = ledger(store, run_id=run_id)
    return sorted(zip(df["subject"], df["reason"], strict=True))


def count(store, table):
    return store.scalar(f"SELECT count(*) FROM {table}")


def test_S3_primary_address_stored_additional_skipped(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox()
    add_customer(store, "c-anna", "anna@cust.test", additional=["anna.work@cust.test"])
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg("anna@cust.test", mb.address, subject="primary"),
            make_msg("anna.work@cust.test", mb.address, subject="additional"),
            make_msg("news@shop.test", mb.address, subject="nobody"),
        ],
    )
    r = sync_mailbox(store, settings, mb)
    assert (r.status, r.examined, r.stored, r.skipped) == ("ok", 3, 1, 2)
    assert reasons(store, r.run_id) == [
        ("additional", "additional_address"),
        ("nobody", "no_customer"),
        ("primary", "stored_customer"),
    ]
    acts = customer_activities(store, "c-anna", viewer=SYSTEM)
    assert list(acts["subject"]) == ["primary"]
    assert list(acts["direction"]) == ["inbound"]
    assert acts["user_id"].iloc[0] == mb.owner_user_id


def test_S3_address_changed_mid_period(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox()
    change = days_ago(5)
    add_customer(store, "c-ben", "ben.old@cust.test", until=change)
    add_customer(store, "c-ben", "ben.new@cust.test", since=change)
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg("ben.old@cust.test", mb.address, subject="old-before", date=days_ago(10)),
            make_msg("ben.old@cust.test", mb.address, subject="old-after", date=days_ago(2)),
            make_msg("ben.new@cust.test", mb.address, subject="new-before", date=days_ago(10)),
            make_msg("ben.new@cust.test", mb.address, subject="new-after", date=days_ago(2)),
        ],
    )
    r = sync_mailbox(store, settings, mb)
    assert reasons(store, r.run_id) == [
        ("new-after", "stored_customer"),
        ("new-before", "before_address_valid"),
        ("old-after", "after_address_valid"),
        ("old-before", "stored_customer"),
    ]
    assert sorted(customer_activities(store, "c-ben", viewer=SYSTEM)["subject"]) == [
        "new-after",
        "old-before",
    ]


def test_S3_primary_change_keeps_already_stored(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox()
    add_customer(store, "c-cy", "cy.old@cust.test")
    append(mailserver, mb.address, pw, [make_msg("cy.old@cust.test", mb.address, subject="first")])
    sync_mailbox(store, settings, mb)
    # the CRM changes the primary address now: close the old period, open the new one
    now = utcnow()
    store.execute("UPDATE customer_addresses SET valid_to = ? WHERE customer_id = 'c-cy'", [now])
    add_customer(store, "c-cy", "cy.new@cust.test", since=now)
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg(
                "cy.old@cust.test", mb.address, subject="old later", date=now + timedelta(minutes=1)
            ),
            make_msg(
                "cy.new@cust.test", mb.address, subject="new later", date=now + timedelta(minutes=1)
            ),
        ],
    )
    r = sync_mailbox(store, settings, mb)
    assert reasons(store, r.run_id) == [
        ("new later", "stored_customer"),
        ("old later", "after_address_valid"),
    ]
    assert sorted(customer_activities(store, "c-cy", viewer=SYSTEM)["subject"]) == [
        "first",
        "new later",
    ]


def test_S4_co_customer_on_cc_gets_the_activity(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    add_customer(store, "c-b", "b@cust.test", additional=["b.alt@cust.test"])
    add_customer(store, "c-x", "x@cust.test", additional=["x.alt@cust.test"])  # not in the deal
    add_deal(store, "d-1", ["c-a", "c-b"])
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg(
                "a@cust.test",
                mb.address,
                cc=["b.alt@cust.test", "x.alt@cust.test"],
                subject="deal talk",
            ),
        ],
    )
    r = sync_mailbox(store, settings, mb)
    assert r.stored == 1
    acts = store.query(
        "SELECT customer_id, match_kind, deal_id FROM activities ORDER BY customer_id"
    )
    assert acts.values.tolist() == [["c-a", "primary", "d-1"], ["c-b", "co_customer", "d-1"]]


@pytest.mark.parametrize("colleague_state", ["connected", "problematic", "disconnected"])
def test_S5_internal_colleague_on_cc_is_skipped(
    store, settings, password_mailbox, mailserver, colleague_state
):
    mb, pw = password_mailbox()
    colleague, _ = password_mailbox(owner="user-2")
    if colleague_state != "connected":
        mailboxes.set_state(store, colleague.id, colleague_state, code="auth_failed", message="x")
    add_customer(store, "c-a", "a@cust.test")
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg("a@cust.test", mb.address, cc=[colleague.address], subject="with colleague"),
            make_msg("a@cust.test", mb.address, subject="alone"),
        ],
    )
    r = sync_mailbox(store, settings, mb)
    assert reasons(store, r.run_id) == [
        ("alone", "stored_customer"),
        ("with colleague", "internal"),
    ]


def test_S6_draft_flag_and_drafts_folder_are_skipped(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox(sync_folders='["INBOX", "Drafts", "Sent"]')  # even when chosen
    add_customer(store, "c-a", "a@cust.test")
    append(
        mailserver,
        mb.address,
        pw,
        [(make_msg(mb.address, "a@cust.test", subject="flagged"), [b"\\Draft"], None)],
    )
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg(mb.address, "a@cust.test", subject="in drafts")],
        folder="Drafts",
    )
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, subject="junk")],
        folder="Junk",
    )
    r = sync_mailbox(store, settings, mb)
    assert reasons(store, r.run_id) == [("flagged", "draft")]
    assert set(ledger(store)["folder"]) == {"INBOX"}
    assert count(store, "messages") == 0


def test_S2_backfill_window(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    msgs = [
        (
            make_msg("a@cust.test", mb.address, subject="40 days", date=days_ago(40)),
            [],
            days_ago(40),
        ),
        (
            make_msg("a@cust.test", mb.address, subject="30.5 days", date=days_ago(30.5)),
            [],
            days_ago(30.5),
        ),
        (
            make_msg("a@cust.test", mb.address, subject="10 days", date=days_ago(10)),
            [],
            days_ago(10),
        ),
    ]
    append(mailserver, mb.address, pw, msgs)
    r = sync_mailbox(store, settings, mb)
    # 40 days is not even fetched (SEARCH SINCE); 30.5 days is fetched and skipped precisely
    assert reasons(store, r.run_id) == [
        ("10 days", "stored_customer"),
        ("30.5 days", "before_window"),
    ]

    other, pw2 = password_mailbox(backfill_days=5)  # the mailbox's own window wins
    append(mailserver, other.address, pw2, msgs)
    r2 = sync_mailbox(store, settings, other)
    assert r2.stored == 0 and r2.linked == 0


def test_S7_message_deleted_after_sync_stays(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject="to delete")])
    assert sync_mailbox(store, settings, mb).stored == 1
    c = imap(mailserver, mb.address, pw)
    c.select_folder("INBOX")
    c.delete_messages(c.search(["ALL"]))
    c.expunge()
    c.logout()
    r = sync_mailbox(store, settings, mb)
    assert r.status == "ok"
    assert count(store, "messages") == 1
    assert list(customer_activities(store, "c-a", viewer=SYSTEM)["subject"]) == ["to delete"]


def test_S8_same_message_in_inbox_and_sent_stored_once(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    raw = make_msg(mb.address, ["a@cust.test", mb.address], subject="to myself too")
    append(mailserver, mb.address, pw, [raw])
    append(mailserver, mb.address, pw, [raw], folder="Sent")
    r = sync_mailbox(store, settings, mb)
    assert (r.stored, r.linked) == (1, 1)
    assert count(store, "messages") == 1
    mid = store.scalar("SELECT id FROM messages")
    assert sorted(message_places(store, mid, viewer=SYSTEM)["folder"]) == ["INBOX", "Sent"]
    acts = customer_activities(store, "c-a", viewer=SYSTEM)
    assert len(acts) == 1 and acts["direction"].iloc[0] == "outbound"


def test_S7_S8_uidvalidity_change_relinks_without_duplicates(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, subject=f"m{i}") for i in range(3)],
    )
    assert sync_mailbox(store, settings, mb).stored == 3
    old_uv = store.scalar("SELECT uidvalidity FROM folder_checkpoints WHERE folder = 'INBOX'")
    mailserver.doveadm(
        "mailbox", "update", "-u", mb.address, "--uid-validity", str(old_uv + 1000), "INBOX"
    )
    r = sync_mailbox(store, settings, mb)
    assert (r.stored, r.linked, r.examined) == (0, 3, 3)
    assert count(store, "messages") == 3
    assert count(store, "activities") == 3
    uvs = store.query("SELECT uidvalidity, count(*) n FROM message_places GROUP BY 1 ORDER BY 1")
    assert uvs.values.tolist() == [[old_uv, 3], [old_uv + 1000, 3]]  # old places kept (S7)
    assert (
        store.scalar("SELECT uidvalidity FROM folder_checkpoints WHERE folder = 'INBOX'")
        == old_uv + 1000
    )


def test_S11_extract_twice_stores_nothing_new(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address), make_msg("z@z.test", mb.address)],
    )
    first = sync_mailbox(store, settings, mb)
    before = {
        t: count(store, t)
        for t in ("messages", "message_places", "activities", "audit_ledger", "message_raw")
    }
    second = sync_mailbox(store, settings, mb)
    after = {t: count(store, t) for t in before}
    assert (first.stored, first.skipped) == (1, 1)
    assert (second.examined, second.stored, second.folders_changed) == (0, 0, 0)
    assert before == after
    runs = store.query("SELECT status, examined, stored, skipped FROM sync_runs ORDER BY id")
    assert runs.values.tolist() == [["ok", 2, 1, 1], ["ok", 0, 0, 0]]
    rep = store.query(
        "SELECT folder, server_messages, server_uidnext FROM sync_folder_reports WHERE run_id = ? AND folder = 'INBOX'",
        [second.run_id],
    )
    assert rep.values.tolist() == [["INBOX", 2, 3]]


def test_S12_kill_during_a_batch_resumes_exactly(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    msgs = [
        make_msg("a@cust.test" if i % 2 else "n@n.test", mb.address, subject=f"m{i:02d}")
        for i in range(23)
    ]
    append(mailserver, mb.address, pw, msgs)
    store.close()  # let the child process open the DuckDB file
    env = dict(os.environ, MAILOPS_SYNC_BATCH="5", **{FAULT_ENV: "sync.batch_written:3"})
    script = (
        "import sys; from mailops.config import Settings; from mailops.store import Store;"
        "from mailops.sync import sync_mailbox; s = Settings.load();"
        "r = sync_mailbox(Store(s.db), s, sys.argv[1]); sys.exit(r.status != 'ok')"
    )
    cmd = [sys.executable, "-c", script, mb.address]
    killed = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    # batches 1-2 committed, batch 3 died inside its transaction
    assert count(store, "audit_ledger") == 10
    store.close()
    env.pop(FAULT_ENV)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert count(store, "messages") == 11
    assert count(store, "activities") == 11
    assert count(store, "message_places") == 11
    per_uid = store.query("SELECT uid, count(*) n FROM audit_ledger GROUP BY uid")
    assert len(per_uid) == 23 and set(per_uid["n"]) == {1}
    assert store.query("SELECT status FROM sync_runs ORDER BY id")["status"].tolist() == [
        "interrupted",
        "ok",
    ]


def test_S12_malformed_message_is_stored_with_a_warning(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    bad = (
        b"From: a@cust.test\r\nTo: " + mb.address.encode() + b"\r\nSubject: broken\r\n"
        b"Date: someday\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n"
        b"--zz\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\n\xe9\xe8 caf\xe9\r\n"
    )
    append(mailserver, mb.address, pw, [bad])
    r = sync_mailbox(store, settings, mb)
    assert (r.status, r.stored) == ("ok", 1)
    row = store.query("SELECT id, parse_warnings, raw_size FROM messages")
    assert row["id"].iloc[0].startswith("sha256:")  # no Message-ID: content hash
    assert len(row["parse_warnings"].iloc[0]) >= 1
    assert count(store, "message_raw") == 1


def test_S10_attachment_over_the_cap_is_skipped_with_reason(
    store, settings, password_mailbox, mailserver
):
    from email.message import EmailMessage

    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = (
        "a@cust.test",
        mb.address,
        "files",
        "<files@t>",
    )
    m.set_content("see attached")
    m.add_attachment(b"x" * 5000, maintype="application", subtype="pdf", filename="big.pdf")
    m.add_attachment(b"small", maintype="text", subtype="plain", filename="small.txt")
    append(mailserver, mb.address, pw, [m.as_bytes()])
    small = dataclasses.replace(settings, attachment_max_bytes=1000)
    assert sync_mailbox(store, small, mb).stored == 1
    att = store.query(
        "SELECT filename, size, sha256 IS NOT NULL AS kept, coalesce(skipped_reason, '') FROM attachments ORDER BY part_index"
    )
    assert att.values.tolist() == [
        ["big.pdf", 5000, False, "too_large"],
        ["small.txt", 5, True, ""],
    ]
    assert count(store, "attachment_blobs") == 1


def test_S9_folder_selection_and_never_log(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox(sync_folders='["INBOX"]')
    add_customer(store, "c-a", "a@cust.test")
    add_customer(store, "c-n", "n@cust.test")
    store.execute("UPDATE customers SET never_log = TRUE WHERE id = 'c-n'")
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, subject="archived")],
        folder="Archive",
    )
    append(mailserver, mb.address, pw, [make_msg("n@cust.test", mb.address, subject="private")])
    r = sync_mailbox(store, settings, mb)
    assert reasons(store, r.run_id) == [("private", "never_log_customer")]
    assert r.folders == 1


def test_C4_refused_login_makes_the_mailbox_problematic(
    store, settings, password_mailbox, mailserver
):
    from mailops.auth import password_ref
    from mailops.secrets import SecretStore

    mb, _ = password_mailbox()
    SecretStore(settings).put(password_ref(mb.id), "wrong-password")
    r = sync_mailbox(store, settings, mb)
    assert (r.status, r.error_code, r.problematic) == ("failed", "auth_failed", True)
    assert mailboxes.get(store, mb.id).state == "problematic"
    assert store.scalar("SELECT status FROM sync_runs WHERE id = ?", [r.run_id]) == "failed"
    # S1: only connected mailboxes are synced
    assert sync_mailbox(store, settings, mb).status == "not_connected"


def test_S1_sync_all_in_parallel(store, settings, password_mailbox, mailserver):
    add_customer(store, "c-a", "a@cust.test")
    boxes = []
    for i in range(3):
        mb, pw = password_mailbox(owner=f"user-{i}")
        append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject=f"to {i}")])
        boxes.append(mb)
    results = sync_all(store, settings, parallel=3)
    assert sorted(r.stored for r in results) == [1, 1, 1]
    assert count(store, "activities") == 3


def test_S1_scheduler_jitters_and_backs_off(store, settings):
    import random

    from mailops.scheduler import Scheduler
    from mailops.sync import SyncResult

    clock = [0.0]
    sch = Scheduler(store, settings, rng=random.Random(7), clock=lambda: clock[0])
    ok = [sch.interval(SyncResult(1, "a", examined=5)) for _ in range(50)]
    assert all(600 <= s <= 1800 for s in ok) and len(set(ok)) > 40  # 10-30 min, jittered
    failed = [sch.interval(SyncResult(2, "b", status="failed")) for _ in range(4)]
    assert failed[3] > 1800  # doubling after repeated failures
    throttled = sch.interval(SyncResult(3, "c", status="failed", retry_after=7200))
    assert throttled >= 7200  # the server's suggested backoff is honoured
    idle = [sch.interval(SyncResult(4, "d", examined=0)) for _ in range(6)]
    assert max(idle) > 1800 and max(idle) <= 3600  # idle mailboxes stretch, capped


def test_S1_scheduler_round_syncs_due_mailboxes(store, settings, password_mailbox, mailserver):
    from mailops.scheduler import Scheduler

    add_customer(store, "c-a", "a@cust.test")
    mb, pw = password_mailbox()
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address)])
    clock = [1000.0]
    sch = Scheduler(store, settings, clock=lambda: clock[0], sleep=lambda s: None)
    first = sch.run_once()
    assert [r.stored for r in first] == [1]
    assert sch.run_once() == []  # not due again yet
    clock[0] += 31 * 60
    again = sch.run_once()
    assert [r.examined for r in again] == [0]
    assert store.scalar("SELECT trigger FROM sync_runs ORDER BY id DESC LIMIT 1") == "schedule"
    assert len(sch.pool) == 1  # the session is kept between rounds
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject="later")])
    clock[0] += 31 * 60
    assert [r.stored for r in sch.run_once()] == [1]  # on the pooled session
    mailserver.doveadm("kick", mb.address)  # the server drops the session
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject="after kick")])
    clock[0] += 31 * 60
    assert [(r.status, r.stored) for r in sch.run_once()] == [("ok", 1)]
    sch.pool.close()


def test_N1_new_inbound_customer_mail_notifies_the_owner(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox(owner="u-sales")
    add_customer(store, "c-a", "a@cust.test")
    append(
        mailserver,
        mb.address,
        pw,
        [
            (
                make_msg("a@cust.test", mb.address, subject="backfilled", date=days_ago(3)),
                [],
                days_ago(3),
            ),
            make_msg("a@cust.test", mb.address, subject="new"),
            make_msg(mb.address, "a@cust.test", subject="outbound"),
        ],
    )
    assert sync_mailbox(store, settings, mb).stored == 3
    rows = store.query(
        "SELECT n.user_id, n.customer_id, m.subject FROM notifications n JOIN messages m ON m.id = n.message_id"
    )
    assert rows.values.tolist() == [["u-sales", "c-a", "new"]]


def test_S9_unlinked_activity_stays_unlinked_and_never_log_address(
    store, settings, password_mailbox, mailserver
):
    from mailops.store.messages import unlink_activity
    from mailops.store.sync import add_never_log

    mb, pw = password_mailbox(owner="u-1")
    add_customer(store, "c-a", "a@cust.test")
    raw = make_msg("a@cust.test", mb.address, subject="unlink me")
    append(mailserver, mb.address, pw, [raw])
    sync_mailbox(store, settings, mb)
    mid = store.scalar("SELECT id FROM messages")
    assert unlink_activity(store, mid, "c-a", by="u-1")
    append(mailserver, mb.address, pw, [raw], folder="Archive")  # seen again elsewhere
    add_never_log(store, "address", "Private@Cust.test", user_id="u-1")
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, cc=["private@cust.test"], subject="p")],
    )
    r = sync_mailbox(store, settings, mb)
    assert reasons(store, r.run_id) == [
        ("p", "never_log_address"),
        ("unlink me", "stored_customer"),
    ]
    assert customer_activities(store, "c-a", viewer=SYSTEM).empty
    assert len(customer_activities(store, "c-a", include_unlinked=True, viewer=SYSTEM)) == 1


def test_C4_network_failures_are_retried_with_backoff_then_counted(
    store, settings, password_mailbox
):
    from mailops.dev.devserver import free_port

    mb, _ = password_mailbox()
    mailboxes.update(store, mb.id, imap_port=free_port())  # nothing listens there
    waits: list[float] = []
    quick = dataclasses.replace(settings, sync_retries=3, sync_retry_base=0.01)
    r = sync_mailbox(store, quick, mb, sleep=waits.append)
    assert (r.status, r.error_code, r.problematic) == ("failed", "network", False)
    assert len(waits) == 2 and all(0 <= w <= 0.02 for w in waits)  # jittered exponential
    assert mailboxes.get(store, mb.id).state == "connected"  # transient: not at once (C4)
    for _ in range(2):
        r = sync_mailbox(store, quick, mb, sleep=waits.append)
    assert r.problematic and mailboxes.get(store, mb.id).state == "problematic"


def test_S12_huge_message_is_skipped_without_fetching_its_body(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg("a@cust.test", mb.address, subject="huge", body="x" * 20_000),
            make_msg("a@cust.test", mb.address, subject="small"),
        ],
    )
    capped = dataclasses.replace(settings, max_message_bytes=10_000)
    r = sync_mailbox(store, capped, mb)
    assert reasons(store, r.run_id) == [("huge", "too_large"), ("small", "stored_customer")]
    assert count(store, "message_raw") == 1
