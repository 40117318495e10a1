"""X1 explain against the real devserver: stored (where, for whom, since which run),
skipped (rule, reason, run) and, with --server, not examined (folder not synced, before
the window, arrived after the last sync, erased), by Message-ID, address + date, subject."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sync_support import add_customer, append, make_msg, utcnow

from mailops.cli import main
from mailops.errors import MailopsError
from mailops.explain import explain
from mailops.permissions import SYSTEM, scope_for
from mailops.sync import sync_mailbox


@pytest.fixture
def synced(store, settings, password_mailbox, mailserver):
    store.execute(
        "INSERT INTO users (id, email, name, role) VALUES ('u-1', 'one@corp.test', 'One', 'sales'),"
        " ('u-2', 'two@corp.test', 'Two', 'sales'), ('u-adm', 'adm@corp.test', 'Adm', 'admin')"
    )
    mb, pw = password_mailbox(owner="u-1", connected_at=utcnow(), sync_folders='["INBOX", "Junk"]')
    add_customer(store, "c-a", "a@cust.test")
    add_customer(store, "c-gone", "gone@cust.test")
    old = utcnow() - timedelta(days=60)
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg(
                "a@cust.test", mb.address, subject="Offer for B-204", msgid="<offer-1@cust.test>"
            ),
            make_msg(
                "news@shop.test", mb.address, subject="Weekly deals", msgid="<news-1@shop.test>"
            ),
            (
                make_msg(
                    "a@cust.test",
                    mb.address,
                    subject="very old",
                    msgid="<old-1@cust.test>",
                    date=old,
                ),
                [],
                old,
            ),
        ],
    )
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, subject="in junk", msgid="<junk-1@cust.test>")],
        folder="Junk",
    )
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, subject="filed", msgid="<filed-1@cust.test>")],
        folder="Archive",
    )
    r = sync_mailbox(store, settings, mb)
    assert r.status == "ok"
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, subject="just now", msgid="<new-1@cust.test>")],
    )
    return mb, r.run_id


def test_X1_explain_stored_and_skipped_from_the_ledger(synced, store, settings):
    mb, run = synced
    (f,) = explain(store, settings, SYSTEM, message_id="<Offer-1@cust.test>")
    assert f.state == "stored" and f.run == run
    assert f"since run {run}" in f.paragraph and f"{mb.address} / INBOX" in f.paragraph
    assert "c-a (primary)" in f.paragraph
    (f,) = explain(store, settings, SYSTEM, address="news@shop.test", on=utcnow().date())
    assert f.state == "skipped" and f.reason == "no_customer" and f.rule == "S3"
    assert f"run {run}" in f.paragraph and "no customer address" in f.paragraph
    (f,) = explain(store, settings, SYSTEM, subject="weekly DEALS")
    assert f.message_id == "news-1@shop.test"
    nothing = explain(store, settings, SYSTEM, message_id="<junk-1@cust.test>")
    assert [x.state for x in nothing] == ["not_found"] and "--server" in nothing[0].paragraph
    # P1: another sales person's view knows nothing of it
    assert [
        x.state
        for x in explain(store, settings, scope_for(store, "u-2"), message_id="<offer-1@cust.test>")
    ] == ["not_found"]
    with pytest.raises(MailopsError):
        explain(store, settings, SYSTEM)


def test_X1_explain_on_the_server_says_why_not_examined(synced, store, settings):
    mb, _ = synced
    by_id = {}
    for ref in ("junk-1", "filed-1", "old-1", "new-1"):
        found = explain(store, settings, SYSTEM, message_id=f"<{ref}@cust.test>", server=True)
        by_id[ref] = [f for f in found if f.state == "not_examined"]
        assert len(by_id[ref]) == 1, (ref, [f.paragraph for f in found])
    assert "Junk is Drafts, Junk or Trash" in by_id["junk-1"][0].paragraph
    assert "not among the folders its owner chose" in by_id["filed-1"][0].paragraph
    assert "before the window" in by_id["old-1"][0].paragraph
    assert "arrived after the last sync" in by_id["new-1"][0].paragraph
    # the stored one is not repeated as "not examined"
    found = explain(store, settings, SYSTEM, message_id="<offer-1@cust.test>", server=True)
    assert [f.state for f in found] == ["stored"]
    # any date, by address: every message of a@ that the sync never examined
    found = explain(store, settings, SYSTEM, address="a@cust.test", server=True)
    states = sorted(f.state for f in found)
    assert states.count("not_examined") == 4 and "stored" in states


def test_X1_explain_an_erased_address_and_the_cli(synced, store, settings, capsys):
    from mailops.erasure import erase

    erase(store, "u-adm", address="gone@cust.test", compact_file=False)
    (f,) = explain(store, settings, SYSTEM, address="gone@cust.test")
    assert f.state == "erased" and "erased on request" in f.paragraph
    store.close()
    assert main(["explain", "--message-id", "offer-1@cust.test"]) == 0
    assert "In the CRM" in capsys.readouterr().out
    assert main(["explain", "--subject", "in junk", "--server", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["state"] == "not_examined" and data[0]["places"][0].endswith("/ Junk")
    assert main(["explain", "--address", "a@cust.test", "--date", "not-a-date"]) != 0
