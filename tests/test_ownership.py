"""C6 / C1: one owner per mailbox address, against the real devserver; admin transfer;
migration 0040 finds links made to several users before the rule."""

from __future__ import annotations

import pytest
from connect_support import Approver, local_endpoints

from mailops.cli import main
from mailops.connect import connect_mailbox, reconnect_mailbox, remove_mailbox, transfer_mailbox
from mailops.errors import MailopsError, PermissionDenied
from mailops.secrets import SecretStore
from mailops.store import Store, mailboxes, ownership
from mailops.store.migrations import MIGRATIONS


def _users(store: Store) -> None:
    store.execute(
        "INSERT INTO users (id, email, name, role) VALUES"
        " ('u-alice', 'alice@corp.test', 'Alice Liddell', 'sales'),"
        " ('u-bob', 'bob@corp.test', 'Bob Stone', 'sales'),"
        " ('u-carol', 'carol@corp.test', 'Carol Ng', 'sales'),"
        " ('u-root', 'root@corp.test', 'Root Admin', 'admin')"
    )


def _connect(store, settings, mailserver, user, address, password):
    return connect_mailbox(
        store,
        settings,
        user_id=user,
        provider="generic",
        address=address,
        password=password,
        endpoints=local_endpoints(mailserver, settings, "generic"),
    )


def _refused_without_naming_owner(err: MailopsError) -> None:
    assert err.code == "already_linked"
    text = err.one_line()
    for leak in ("u-alice", "Alice", "alice@corp.test"):
        assert leak not in text


def test_C6_second_user_with_the_right_password_is_refused(store, settings, mailserver):
    _users(store)
    address, password = mailserver.new_user()
    mine = _connect(store, settings, mailserver, "u-alice", address, password)
    with pytest.raises(MailopsError) as e:  # Bob knows Alice's password: still refused
        _connect(store, settings, mailserver, "u-bob", address, password)
    _refused_without_naming_owner(e.value)
    rows = mailboxes.all_mailboxes(store)
    assert [(m.id, m.owner_user_id) for m in rows] == [(mine.id, "u-alice")]
    # in other letters, too
    with pytest.raises(MailopsError) as e:
        _connect(store, settings, mailserver, "u-bob", address.upper(), password)
    assert e.value.code == "already_linked"


def test_C6_second_user_with_a_valid_oauth_token_is_refused(store, settings, mailserver):
    _users(store)
    address, password = mailserver.new_user()
    _connect(store, settings, mailserver, "u-alice", address, password)
    approver = Approver(mailserver)
    approver.address = address  # Bob could sign in as the address: refused before sign-in
    with pytest.raises(MailopsError) as e:
        connect_mailbox(
            store,
            settings,
            user_id="u-bob",
            provider="microsoft",
            address=address,
            endpoints=local_endpoints(mailserver, settings, "microsoft"),
            device_code_callback=approver,
        )
    _refused_without_naming_owner(e.value)
    assert approver.prompts == []  # nothing was even asked of the token service


def test_C6_a_disconnected_mailbox_keeps_its_owner(store, settings, mailserver):
    _users(store)
    address, password = mailserver.new_user()
    mb = _connect(store, settings, mailserver, "u-alice", address, password)
    remove_mailbox(store, settings, mb.id)
    with pytest.raises(MailopsError) as e:
        _connect(store, settings, mailserver, "u-bob", address, password)
    assert e.value.code == "already_linked"
    again = reconnect_mailbox(store, settings, mb.id, password=password)  # the owner may
    assert again.id == mb.id and again.state == "connected"


def test_C6_the_race_is_settled_by_the_store(store, settings, mailserver):
    """Both users passed the early check; the claim inside the connect transaction lets only
    the first one in."""
    _users(store)
    address, _ = mailserver.new_user()
    with store.transaction():
        assert ownership.claim(store, address, "u-alice")
    with store.transaction():
        assert not ownership.claim(store, address, "u-bob")
    assert ownership.owner_of(store, address) == "u-alice"


def test_C6_admin_transfer_is_recorded_and_the_new_owner_signs_in_himself(
    store, settings, mailserver
):
    _users(store)
    address, password = mailserver.new_user()
    old = _connect(store, settings, mailserver, "u-alice", address, password)
    with pytest.raises(PermissionDenied):
        transfer_mailbox(store, settings, address, to_user_id="u-bob", actor_user_id="u-carol")
    t = transfer_mailbox(
        store,
        settings,
        address,
        to_user_id="u-bob",
        actor_user_id="u-root",
        reason="Alice left the team",
    )
    assert t.disconnected == [old.id]
    gone = mailboxes.get(store, old.id)
    assert gone.state == "disconnected" and gone.owner_user_id == "u-alice"  # history stays hers
    assert not SecretStore(settings).has(old.secret_ref)
    rec = ownership.transfers(store, address).iloc[0]
    assert (rec.from_user_id, rec.to_user_id, rec.by_user_id) == ("u-alice", "u-bob", "u-root")
    assert rec.reason == "Alice left the team"
    assert store.scalar(
        "SELECT count(*) FROM mailbox_events WHERE mailbox_id = ? AND code = 'transferred'",
        [old.id],
    )
    # Alice may no longer reconnect; Bob connects with his own login
    with pytest.raises(MailopsError) as e:
        reconnect_mailbox(store, settings, old.id, password=password)
    assert e.value.code == "already_linked"
    new = _connect(store, settings, mailserver, "u-bob", address, password)
    assert new.id != old.id and new.owner_user_id == "u-bob" and new.state == "connected"


def test_C6_migration_0040_finds_and_reports_double_links(settings, capsys):
    """A store from before C6 where Bob linked Alice's address: the migration records the
    conflict, `db migrate` reports it, connects are refused until an admin transfers it."""
    before = [m for m in MIGRATIONS if m.name < "0040"]
    with Store(settings.db, migrate=False) as s:
        s.migrate(before)
        _users(s)
        for owner, address in (
            ("u-alice", "shared@x.test"),
            ("u-bob", "shared@x.test"),
            ("u-carol", "carol@x.test"),
        ):  # rows as an older mailops wrote them
            s.execute(
                "INSERT INTO mailboxes (owner_user_id, address, provider, auth_kind)"
                " VALUES (?, ?, 'generic', 'password')",
                [owner, address],
            )
    assert main(["db", "migrate"]) == 0
    out = capsys.readouterr().out
    assert "0040_address_owners" in out and "1 address(es) are linked to more than one user" in out
    assert main(["mailbox", "conflicts"]) == 0
    out = capsys.readouterr().out
    assert "shared@x.test: users u-alice, u-bob" in out and "open" in out
    with Store(settings.db) as s:
        assert ownership.owner_of(s, "carol@x.test") == "u-carol"
        assert ownership.owner_of(s, "shared@x.test") == ownership.CONFLICT
        from mailops.connect import require_linkable

        for user in ("u-alice", "u-bob"):
            with pytest.raises(MailopsError):
                require_linkable(s, "shared@x.test", user)
    assert main(["mailbox", "transfer", "shared@x.test", "--to", "u-alice", "--as", "u-root"]) == 0
    assert "transferred shared@x.test to u-alice" in capsys.readouterr().out
    assert main(["mailbox", "conflicts"]) == 0
    assert "no address is linked to more than one user" in capsys.readouterr().out
    with Store(settings.db) as s:
        assert ownership.owner_of(s, "shared@x.test") == "u-alice"
        assert [m.owner_user_id for m in mailboxes.live_with_address(s, "shared@x.test")] == [
            "u-alice"
        ]


def test_C6_cli_connect_by_another_user_exits_non_zero_in_one_line(
    settings, mailserver, monkeypatch, capsys
):
    address, password = mailserver.new_user()
    monkeypatch.setenv("MAILOPS_DEVSERVER_DIR", mailserver.root)
    mailserver.state.save()
    monkeypatch.setenv("PW", password)
    args = ["mailbox", "connect", address, "--provider", "generic", "--devserver"]
    assert main([*args, "--user", "u-alice", "--password-env", "PW"]) == 0
    capsys.readouterr()
    assert main([*args, "--user", "u-bob", "--password-env", "PW"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already_linked" in err[0] and "u-alice" not in err[0]
