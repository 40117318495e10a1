"""N1: notifications of new inbound customer mail -- who, never backfill, list, read, digest."""

from __future__ import annotations

import json
import time

import pytest
from sync_support import append, days_ago, make_msg
from timeline_support import Team, make_team

from mailops.cli import main
from mailops.sync import sync_mailbox

pytestmark = pytest.mark.server


@pytest.fixture
def team(store, settings, mailserver, password_mailbox) -> Team:
    return make_team(store, settings, mailserver, password_mailbox)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _wait_delivered(team: Team, n: int) -> None:
    from sync_support import imap

    c = imap(team.mailserver, team.mailbox.address, team.password)
    try:
        for _ in range(100):
            if c.folder_status("INBOX", [b"MESSAGES"])[b"MESSAGES"] >= n:
                return
            time.sleep(0.05)
    finally:
        c.logout()
    raise AssertionError("mail not delivered")


def test_N1_mailbox_owner_and_deal_owner_notified_never_of_backfill(team, capsys):
    c1, mb = team.address("c-1"), team.mailbox.address
    append(  # backfilled: arrived (INTERNALDATE) before the mailbox was connected
        team.mailserver,
        mb,
        team.password,
        [(make_msg(c1, mb, subject="old news", date=days_ago(5)), [], days_ago(5))],
    )
    team.deliver("c-1", "New question about B-204")
    team.deliver("c-2", "Dora writes")
    append(
        team.mailserver, mb, team.password, [make_msg(mb, c1, subject="our answer")], folder="Sent"
    )
    _wait_delivered(team, 3)
    sync_mailbox(team.store, team.settings, team.mailbox)
    rows = team.store.rows(
        "SELECT n.user_id, n.reason, n.customer_id, m.subject FROM notifications n"
        " JOIN messages m ON m.id = n.message_id ORDER BY 1, 4"
    )
    assert rows == [
        ("u-anna", "mailbox_owner", "c-2", "Dora writes"),
        ("u-anna", "mailbox_owner", "c-1", "New question about B-204"),
        ("u-bob", "deal_owner", "c-1", "New question about B-204"),
    ]
    # the same message seen again in another folder notifies nobody twice
    mid_raw = make_msg(c1, mb, subject="filed twice")
    append(team.mailserver, mb, team.password, [mid_raw])
    sync_mailbox(team.store, team.settings, team.mailbox)
    append(team.mailserver, mb, team.password, [mid_raw], folder="Archive")
    sync_mailbox(team.store, team.settings, team.mailbox)
    n = team.store.scalar(
        "SELECT count(*) FROM notifications n JOIN messages m ON m.id = n.message_id"
        " WHERE m.subject = 'filed twice'"
    )
    assert n == 2  # Anna (mailbox) and Bob (deal), once each


def test_N1_list_unread_first_read_ids_and_all(team, capsys):
    team.deliver("c-1", "one")
    team.deliver("c-1", "two")
    _wait_delivered(team, 2)
    sync_mailbox(team.store, team.settings, team.mailbox)
    code, out, _ = run(capsys, "notifications", "list", "--as", "u-anna", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["subject"] for r in rows} == {"one", "two"}
    assert all(r["unread"] and r["user_id"] == "u-anna" for r in rows)
    first = min(r["id"] for r in rows)
    code, out, _ = run(capsys, "notifications", "read", str(first), "--as", "u-anna")
    assert code == 0 and "marked 1" in out
    code, out, _ = run(capsys, "notifications", "list", "--as", "u-anna", "--json")
    rows = json.loads(out)
    assert [r["unread"] for r in rows] == [True, False]  # unread first
    code, out, _ = run(capsys, "notifications", "list", "--unread", "--as", "u-anna", "--json")
    assert len(json.loads(out)) == 1
    # Bob cannot mark Anna's notifications; he has his own (deal owner)
    code, _, err = run(capsys, "notifications", "read", str(rows[0]["id"]), "--as", "u-bob")
    assert code != 0 and "unknown_notification" in err
    code, out, _ = run(capsys, "notifications", "read", "--all", "--as", "u-bob")
    assert "marked 2" in out
    code, out, _ = run(capsys, "notifications", "read", "--all", "--as", "u-anna")
    assert "marked 1" in out
    code, out, _ = run(capsys, "notifications", "list", "--unread", "--as", "u-anna")
    assert "(no notifications)" in out
    code, _, err = run(capsys, "notifications", "read", "--as", "u-anna")
    assert code != 0 and "usage" in err
    # the timeline marks the unread ones
    team.deliver("c-1", "three")
    _wait_delivered(team, 3)
    sync_mailbox(team.store, team.settings, team.mailbox)
    code, out, _ = run(capsys, "activities", "c-1", "--as", "u-anna", "--json", "--no-sync")
    assert [r["subject"] for r in json.loads(out) if r["unread"]] == ["three"]


def test_N1_digest_goes_through_the_users_own_mailbox_once(team, capsys, mailserver):
    team.deliver("c-1", "digest me")
    _wait_delivered(team, 1)
    sync_mailbox(team.store, team.settings, team.mailbox)
    code, out, _ = run(capsys, "notifications", "digest", "--user", "u-anna", "--dry-run")
    assert code == 0 and "digest me" in out and "Carla Buyer" in out
    before = len(mailserver.smtp_messages)
    code, out, err = run(capsys, "notifications", "digest", "--user", "u-anna")
    assert code == 0, err
    assert "sent" in out
    sent = mailserver.smtp_messages[before:]
    assert len(sent) == 1
    mail_from, rcpts, data = sent[0]
    assert mail_from == team.mailbox.address and rcpts == [team.mailbox.address]
    assert b"digest me" in data and b"Dear customer" not in data
    assert team.store.scalar("SELECT state FROM outbox ORDER BY id DESC LIMIT 1") == "sent"
    code, out, _ = run(capsys, "notifications", "digest", "--user", "u-anna")
    assert "nothing new" in out and len(mailserver.smtp_messages) == before + 1


def test_N1_opening_the_message_reads_its_notification(team, capsys):
    team.deliver("c-1", "open me")
    _wait_delivered(team, 1)
    sync_mailbox(team.store, team.settings, team.mailbox)
    mid = team.store.scalar("SELECT id FROM messages WHERE subject = 'open me'")
    unread = "SELECT user_id FROM notifications WHERE read_at IS NULL ORDER BY 1"
    code, _, _ = run(capsys, "message", "show", mid, "--as", "u-anna", "--keep-unread")
    assert code == 0 and team.store.rows(unread) == [("u-anna",), ("u-bob",)]
    code, out, _ = run(capsys, "message", "show", mid, "--as", "u-anna")
    assert code == 0 and "open me" in out
    assert team.store.rows(unread) == [("u-bob",)]  # Bob's (deal owner) stays his to read
