"""S9 against the real devserver: folder choice (CLI and the connect widget), never-log
addresses / domains / customers, company-wide and per user, applied before any body is
fetched with the reason in the ledger; unlink (recorded) and an admin's relink."""

from __future__ import annotations

import pytest
from sync_support import add_customer, append, make_msg

from mailops.cli import main
from mailops.errors import PermissionDenied
from mailops.permissions import SYSTEM
from mailops.selective import add_never_log, relink, unlink
from mailops.store import Store
from mailops.store.messages import customer_activities, link_changes
from mailops.sync import sync_mailbox


def _users(store: Store) -> None:
    store.execute(
        "INSERT INTO users (id, email, name, role) VALUES"
        " ('u-1', 'one@corp.test', 'One', 'sales'), ('u-2', 'two@corp.test', 'Two', 'sales'),"
        " ('u-adm', 'adm@corp.test', 'Adm', 'admin')"
    )


def _ledger(store: Store, run_id: int) -> list[tuple[str, str, str]]:
    return [
        (r[0], r[1], r[2])
        for r in store.rows(
            "SELECT folder, subject, reason FROM audit_ledger WHERE run_id = ? ORDER BY folder, subject",
            [run_id],
        )
    ]


class BodySpy:
    """Records the UIDs whose bodies the sync fetched (wraps the real IMAP fetch)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import mailops.sync as sync_module

        self.uids: list[int] = []
        real = sync_module.imap.fetch

        def fetch(client, uids, items, *a, **kw):  # type: ignore[no-untyped-def]
            if any(b"BODY.PEEK[]" in bytes(i) and b"HEADER" not in bytes(i) for i in items):
                self.uids += list(uids)
            return real(client, uids, items, *a, **kw)

        monkeypatch.setattr(sync_module.imap, "fetch", fetch)


def test_S9_never_log_address_domain_customer_before_any_body_is_fetched(
    store, settings, password_mailbox, mailserver, monkeypatch
):
    _users(store)
    mb, pw = password_mailbox(owner="u-1")
    add_customer(store, "c-a", "a@cust.test")
    add_customer(store, "c-b", "b@cust.test")
    add_customer(store, "c-law", "counsel@lawyers.test")
    add_customer(store, "c-mine", "mine@cust.test")
    add_never_log(store, "u-adm", "address", "Secret@Cust.test", company=True)
    add_never_log(store, "u-adm", "domain", "lawyers.test", company=True)
    add_never_log(store, "u-1", "customer", "c-b")  # u-1's own list
    add_never_log(store, "u-2", "customer", "c-mine")  # someone else's: not for u-1
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg("a@cust.test", mb.address, subject="kept"),
            make_msg("a@cust.test", mb.address, cc=["secret@cust.test"], subject="address"),
            make_msg("counsel@mail.lawyers.test", mb.address, subject="domain"),
            make_msg("b@cust.test", mb.address, subject="customer"),
            make_msg("mine@cust.test", mb.address, subject="other user's list"),
        ],
    )
    spy = BodySpy(monkeypatch)
    r = sync_mailbox(store, settings, mb)
    got = {s: reason for _, s, reason in _ledger(store, r.run_id)}
    assert got == {
        "kept": "stored_customer",
        "address": "never_log_address",
        "domain": "never_log_domain",
        "customer": "never_log_customer",
        "other user's list": "stored_customer",
    }
    uids = dict(store.rows("SELECT subject, uid FROM audit_ledger WHERE run_id = ?", [r.run_id]))
    assert sorted(spy.uids) == sorted([uids["kept"], uids["other user's list"]])
    assert store.scalar("SELECT count(*) FROM message_raw") == 2
    subjects = {s for (s,) in store.rows("SELECT subject FROM messages")}
    assert subjects == {"kept", "other user's list"}


def test_S9_never_log_permissions_and_cli(store, settings, capsys):
    _users(store)
    store.close()
    with pytest.raises(PermissionDenied), Store(settings.db) as s:
        add_never_log(s, "u-1", "domain", "x.test", company=True)  # not an admin
    with pytest.raises(PermissionDenied), Store(settings.db) as s:
        add_never_log(s, "u-1", "address", "x@x.test", user="u-2")  # not his list
    args = ["never-log", "add", "--domain", "@Lawyers.Test", "--company", "--as", "u-adm"]
    assert main(args) == 0
    assert main(["never-log", "add", "--address", "me@home.test", "--as", "u-1"]) == 0
    assert main(["never-log", "add", "--address", "not an address", "--as", "u-1"]) != 0
    assert main(["never-log", "add", "--domain", "x.test", "--company", "--as", "u-1"]) == 6
    capsys.readouterr()
    assert main(["never-log", "list", "--user", "u-1"]) == 0
    out = capsys.readouterr().out
    assert "lawyers.test" in out and "(company)" in out and "me@home.test" in out
    assert main(["never-log", "remove", "--address", "me@home.test", "--as", "u-1"]) == 0
    assert "removed never-log address me@home.test" in capsys.readouterr().out


def test_S9_folder_choice_from_the_cli(store, settings, password_mailbox, mailserver, capsys):
    _users(store)
    mb, pw = password_mailbox(owner="u-1")
    add_customer(store, "c-a", "a@cust.test")
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject="inbox")])
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, subject="project")],
        folder="Projects",
    )
    store.close()
    ref = str(mb.id)
    assert main(["mailbox", "folders", ref, "--only", "Projects", "--as", "u-2"]) == 6
    assert main(["mailbox", "folders", ref, "--only", "Projects", "--as", "u-1"]) == 0
    assert "Projects" in capsys.readouterr().out
    assert main(["mailbox", "folders", ref, "--server"]) == 0
    listing = capsys.readouterr().out
    assert "not synced (not_selected)" in listing.split("INBOX", 1)[1].splitlines()[0]
    with Store(settings.db) as s:
        r = sync_mailbox(s, settings, ref)
        assert [subj for _, subj, _ in _ledger(s, r.run_id)] == ["project"]
    assert main(["mailbox", "folders", ref, "--default", "--as", "u-1"]) == 0
    with Store(settings.db) as s:
        r = sync_mailbox(s, settings, ref)
        assert [subj for _, subj, _ in _ledger(s, r.run_id)] == ["inbox"]


def test_S9_folder_choice_from_the_connect_widget(store, settings, password_mailbox, mailserver):
    from mailops.widgets import ConnectPanel

    _users(store)
    mb, pw = password_mailbox(owner="u-1")
    append(mailserver, mb.address, pw, [make_msg("x@y.test", mb.address)], folder="Deals")
    store.close()
    panel = ConnectPanel(settings, user_id="u-1", provider="generic")
    panel.selected.value = mb.id
    assert panel.on_load_folders().ok
    names = [v for _, v in panel.folders.options]
    assert "INBOX" in names and "Deals" in names
    assert "INBOX" in panel.folders.value  # synced by default
    panel.folders.value = ("Deals",)
    assert panel.on_save_folders().ok
    with Store(settings.db) as s:
        from mailops.store import mailboxes

        assert mailboxes.get(s, mb.id).folders == ["Deals"]
    other = ConnectPanel(settings, user_id="u-2", provider="generic")
    other.selected.options = [("theirs", mb.id)]
    other.selected.value = mb.id
    assert not other.on_save_folders().ok  # only the owner chooses


def test_S9_unlink_is_recorded_survives_a_resync_and_only_an_admin_relinks(
    store, settings, password_mailbox, mailserver, capsys
):
    _users(store)
    mb, pw = password_mailbox(owner="u-1")
    add_customer(store, "c-a", "a@cust.test")
    raw = make_msg("a@cust.test", mb.address, subject="wrong customer", msgid="<w1@cust.test>")
    append(mailserver, mb.address, pw, [raw])
    sync_mailbox(store, settings, mb)
    store.close()
    assert main(["unlink", "<w1@cust.test>", "--customer", "c-a", "--as", "u-2"]) == 6  # not his
    assert (
        main(["unlink", "<W1@cust.test>", "--customer", "c-a", "--as", "u-1", "--reason", "x"]) == 0
    )
    with Store(settings.db) as s:
        assert customer_activities(s, "c-a", viewer=SYSTEM).empty
        append(
            mailserver,
            mb.address,
            pw,
            [raw],  # the same message filed elsewhere (S8: one message, a new place)
            folder="Archive",
        )
        sync_mailbox(s, settings, mb)
        assert customer_activities(s, "c-a", viewer=SYSTEM).empty  # not linked again
        with pytest.raises(PermissionDenied):
            relink(s, "u-1", "<w1@cust.test>", "c-a")
        assert relink(s, "u-adm", "<w1@cust.test>", "c-a", reason="was right")
        assert len(customer_activities(s, "c-a", viewer=SYSTEM)) == 1
        changes = link_changes(s, "w1@cust.test")
        assert list(changes["action"]) == ["unlink", "relink"]
        assert list(changes["by_user_id"]) == ["u-1", "u-adm"]
        assert unlink(s, "u-1", "w1@cust.test", "c-a")  # and unlinked again, recorded
        assert len(link_changes(s, "w1@cust.test")) == 3
