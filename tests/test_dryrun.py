"""X1 dry run against a real sync: a proposed rule change (never-log entries, window,
folder choice, internal-mail policy) lists the examined messages whose decision would
change, from the ledger and stored headers, without the server and without a write."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sync_support import add_customer, append, make_msg, utcnow

from mailops.cli import main
from mailops.dryrun import RuleChange, dry_run, parse_entry
from mailops.permissions import SYSTEM, scope_for
from mailops.store import Store
from mailops.store.sync import add_never_log
from mailops.sync import sync_mailbox


@pytest.fixture
def synced(store, settings, password_mailbox, mailserver):
    store.execute(
        "INSERT INTO users (id, email, name, role) VALUES ('u-1', 'one@corp.test', 'One', 'sales'),"
        " ('u-2', 'two@corp.test', 'Two', 'sales')"
    )
    colleague, _ = mailserver.new_user()
    other, _ = password_mailbox(owner="u-2")
    mb, pw = password_mailbox(owner="u-1", connected_at=utcnow())
    store.execute("UPDATE mailboxes SET address = ? WHERE id = ?", [colleague, other.id])
    add_customer(store, "c-a", "a@cust.test")
    add_customer(store, "c-law", "firm@lawyers.test")
    add_never_log(store, "address", "secret@cust.test")
    old = utcnow() - timedelta(days=10)
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg("a@cust.test", mb.address, subject="plain"),
            make_msg("firm@lawyers.test", mb.address, subject="from counsel"),
            make_msg("a@cust.test", mb.address, cc=["secret@cust.test"], subject="secret cc"),
            make_msg("a@cust.test", [mb.address, colleague], subject="with colleague"),
            (make_msg("a@cust.test", mb.address, subject="ten days old", date=old), [], old),
        ],
    )
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, subject="filed")],
        folder="Archive",
    )
    r = sync_mailbox(store, settings, mb)
    assert r.status == "ok"
    return mb


def _moves(result) -> dict[str, tuple[str, str]]:
    return {r.subject: (r.now, r.would) for r in result.changed.itertuples()}


def test_X1_dry_run_each_kind_of_rule_change(synced, store, settings):
    run = lambda change: dry_run(store, settings, change, viewer=SYSTEM)  # noqa: E731
    assert run(RuleChange()).changed.empty
    assert _moves(run(RuleChange(add_never_log=[parse_entry("domain:Lawyers.test")]))) == {
        "from counsel": ("stored_customer", "never_log_domain")
    }
    assert _moves(run(RuleChange(add_never_log=[parse_entry("customer:c-a", "u-1")]))) == {
        s: ("stored_customer", "never_log_customer") for s in ("plain", "ten days old", "filed")
    }
    assert _moves(run(RuleChange(add_never_log=[parse_entry("customer:c-a", "u-2")]))) == {}
    assert _moves(run(RuleChange(drop_never_log=[parse_entry("address:secret@cust.test")]))) == {
        "secret cc": ("never_log_address", "stored_customer")
    }
    assert _moves(run(RuleChange(internal_policy="off"))) == {
        "with colleague": ("internal", "stored_customer")
    }
    assert _moves(run(RuleChange(backfill_days=5))) == {
        "ten days old": ("stored_customer", "before_window")
    }
    folders = run(RuleChange(folders={synced.id: ["INBOX"]}))
    assert _moves(folders) == {"filed": ("stored_customer", "not_selected")}
    assert folders.changed.iloc[0]["certain"]
    more = run(RuleChange(folders={synced.id: ["INBOX", "Archive", "Projects"]}))
    assert more.changed.empty and "Projects never examined yet" in more.summary()


def test_X1_dry_run_writes_nothing_and_asks_no_server(synced, store, settings, monkeypatch, capsys):
    import mailops.imap

    store.close()
    db = Path(settings.db)
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    def no_server(*a, **k):  # the dry run must not log in anywhere
        raise AssertionError("the dry run talked to a server")

    monkeypatch.setattr(mailops.imap, "login", no_server)
    monkeypatch.setattr(mailops.imap, "open_imap", no_server)
    args = ["dry-run", "--never-log", "domain:lawyers.test", "--internal-policy", "off"]
    assert main([*args, "--folders", f"{synced.address}=INBOX"]) == 0
    out = capsys.readouterr().out
    assert "would change decision" in out and "stored_customer -> never_log_domain" in out
    assert "internal -> stored_customer" in out and "stored_customer -> not_selected" in out
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 2 and {m["would"] for m in data} == {
        "never_log_domain",
        "stored_customer",
    }
    assert main(["dry-run", "--never-log", "phone:123"]) == 1  # one clear line
    assert "bad_never_log" in capsys.readouterr().err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not Path(str(db) + ".wal").exists()
    with Store(settings.db) as s:  # the proposal was not applied
        assert s.scalar("SELECT count(*) FROM never_log") == 1


def test_X1_dry_run_shows_only_what_the_viewer_may_see(synced, store, settings):
    change = RuleChange(add_never_log=[parse_entry("domain:lawyers.test")])
    assert len(dry_run(store, settings, change, viewer=scope_for(store, "u-1")).changed) == 1
    assert dry_run(store, settings, change, viewer=scope_for(store, "u-2")).changed.empty
