"""The IMAP layer (mailops.imap) against the real local Dovecot: sessions, commands, the
fast FETCH parser, the special-folder finder that sync and send share."""

from __future__ import annotations

import io

import pytest
from send_support import make_party
from sync_support import (
    add_customer,
    append,
    days_ago,
    imap,
    make_msg,
    without_special_use,
)

from mailops.imap import SessionPool, commands, session_for, special_folders
from mailops.sync import FETCH_BODY, FETCH_HEADERS, sync_mailbox

pytestmark = pytest.mark.server


def test_S12_fast_fetch_parser_matches_imapclient(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox()
    append(
        mailserver,
        mb.address,
        pw,
        [
            (
                make_msg("a@cust.test", mb.address, subject="flags"),
                [b"\\Seen", b"\\Flagged"],
                days_ago(3),
            ),
            make_msg("b@cust.test", mb.address, subject="Hällo {literal} (parens)"),
            make_msg("c@cust.test", mb.address, subject="third"),
        ],
    )
    c = imap(mailserver, mb.address, pw)
    try:
        c.normalise_times = False
        c.select_folder("INBOX", readonly=True)
        uids = c.search(["ALL"])
        for items in (FETCH_HEADERS, FETCH_BODY):
            ours = commands.fetch(c, uids, items)
            theirs = c.fetch(uids, items)
            for uid in uids:
                expected = {k: v for k, v in theirs[uid].items() if k not in (b"SEQ", b"UID")}
                assert ours[uid] == expected
        # PEEK: nothing was marked read
        assert b"\\Seen" not in c.get_flags(uids[1:])[uids[1]]
    finally:
        c.logout()


def test_S12_lean_fetch_reader_reads_the_hostile_corpus_as_imapclient_does(
    store, settings, password_mailbox, mailserver
):
    """The lean reader against Dovecot on mail as it is in the wild (8-bit headers, braces
    and CRLF inside literals, empty and huge headers), whole and in partial fetches; an
    expunged UID simply is not in the answer."""
    from hostile_corpus import corpus

    mb, pw = password_mailbox()
    items = corpus(mb.address, "a@cust.test")
    trick = b'Subject: {12}\r\nX: "q\\" (\r\n\r\n* 1 FETCH (UID 1)\r\nA1 OK\r\n{3}\r\nabc'
    append(mailserver, mb.address, pw, [it.raw for it in items] + [trick])
    c = imap(mailserver, mb.address, pw)
    try:
        c.normalise_times = False
        c.select_folder("INBOX", readonly=True)
        uids = c.search(["ALL"])
        assert len(uids) == len(items) + 1
        for spec in (FETCH_HEADERS, FETCH_BODY, [b"BODY.PEEK[]<10.50>", b"FLAGS"]):
            # Dovecot's first answer for a header without its blank line differs from the
            # cached later ones ("\r\n\r\n" vs "\r\n"): compare two later answers
            c.fetch(uids, spec)
            ours = commands.fetch(c, [*uids, uids[-1] + 50], spec)
            theirs = c.fetch(uids, spec)
            assert set(ours) == set(uids)
            for uid in uids:
                expected = {k: v for k, v in theirs[uid].items() if k not in (b"SEQ", b"UID")}
                assert ours[uid] == expected, uid
        assert commands.fetch(c, [uids[-1]], FETCH_BODY)[uids[-1]][b"BODY[]"] == trick
    finally:
        c.logout()


def test_S1_one_round_trip_lists_folders_with_their_status(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox()
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address)])
    c = imap(mailserver, mb.address, pw)
    try:
        listing, statuses = commands.list_with_status(c, condstore=True)
        assert {"INBOX", "Sent", "Drafts"} <= {name for _, _, name in listing}
        assert statuses["INBOX"][b"MESSAGES"] == 1
        assert statuses["INBOX"] == c.folder_status("INBOX", list(statuses["INBOX"]))
    finally:
        c.logout()


def test_S11_count_and_partial_fetch(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox()
    msgs = [make_msg("a@cust.test", mb.address, subject=f"m{i}", body="x" * 3000) for i in range(5)]
    append(
        mailserver,
        mb.address,
        pw,
        [(m, (), days_ago(40 if i < 2 else 1)) for i, m in enumerate(msgs)],
    )
    c = imap(mailserver, mb.address, pw)
    try:
        c.select_folder("INBOX", readonly=True)
        since = days_ago(10).date()
        assert commands.count(c, ["BEFORE", since]) == 2  # ESEARCH RETURN (COUNT)
        assert commands.count(c, ["SINCE", since]) == len(commands.search(c, ["SINCE", since]))
        uid = commands.search(c, ["ALL"])[-1]
        whole = commands.fetch(c, [uid], FETCH_BODY)[uid][b"BODY[]"]
        out = io.BytesIO()
        assert commands.fetch_body_to(c, uid, out.write, len(whole), chunk=1000) == len(whole)
        assert out.getvalue() == whole
        with pytest.raises(LookupError):
            commands.fetch_body_to(c, uid + 100, io.BytesIO().write, 0)
    finally:
        c.logout()


def test_S6_special_folders_flags_beat_names():
    listing = [
        ((b"\\HasNoChildren",), b"/", "Gesendete Elemente"),
        ((b"\\HasNoChildren", b"\\Sent"), b"/", "Sent"),
        ((b"\\HasNoChildren",), b"/", "Papierkorb"),
        ((b"\\Noselect",), b"/", "Junk"),
        ((), b"/", "Projekte/Gesendet"),
    ]
    assert special_folders(listing) == {"\\Sent": "Sent", "\\Trash": "Papierkorb"}
    assert special_folders(listing[:1] + listing[4:]) == {"\\Sent": "Gesendete Elemente"}


def test_S1_session_pool_reuses_and_replaces_a_dropped_session(
    store, settings, password_mailbox, mailserver
):
    mb, _ = password_mailbox()
    pool = SessionPool()
    with session_for(mb, settings, commands.list_folders, pool=pool) as s1:
        commands.select(s1.client, "INBOX")
        s1.selected = "INBOX"
    assert len(pool) == 1
    with session_for(mb, settings, commands.list_folders, pool=pool) as s2:
        assert s2.reused and s2.client is s1.client
        s2.client.shutdown()  # the server "drops" it while it waits in the pool
    with session_for(mb, settings, commands.list_folders, pool=pool) as s3:
        assert not s3.reused and {"INBOX"} <= {n for _, _, n in s3.first}
    pool.close()
    assert len(pool) == 0


def test_E3_S8_localized_sent_without_special_use_is_where_sync_reads(
    store, settings, mailserver, password_mailbox
):
    """Item 8: a "Gesendete Elemente" mailbox without SPECIAL-USE: the copy of a sent email
    is filed there (not in a new "Sent"), and the sync finds it there and only links it."""
    from mailops.send import EmailRequest, send_email

    party = make_party(store, settings, mailserver, password_mailbox)
    without_special_use(mailserver, party.mailbox.address)
    c = imap(mailserver, party.mailbox.address, party.password)
    try:
        c.create_folder("Gesendete Elemente")
        names = {name: flags for flags, _, name in c.list_folders()}
        assert "Sent" not in names and b"\\Sent" not in names["Gesendete Elemente"]
    finally:
        c.logout()
    party.customer("c-1", "Carla Buyer")
    item = send_email(
        store,
        settings,
        EmailRequest(
            user_id=party.user_id,
            mailbox=party.mailbox.address,
            customer_id="c-1",
            subject="Ihre Wohnung",
            body_text="Guten Tag,\n\ndie Schlüssel sind bereit.\n",
        ),
    )
    assert (item.state, item.sent_copy) == ("sent", "appended")
    assert len(party.own("Gesendete Elemente")) == 1
    c = imap(mailserver, party.mailbox.address, party.password)
    try:
        assert "Sent" not in {name for _, _, name in c.list_folders()}
    finally:
        c.logout()
    r = sync_mailbox(store, settings, party.mailbox)
    assert (r.status, r.stored, r.linked) == ("ok", 0, 1)
    place = store.query("SELECT folder FROM message_places")
    assert place["folder"].tolist() == ["Gesendete Elemente"]
    assert store.scalar("SELECT count(*) FROM activities") == 1


def test_E3_sent_folder_created_only_when_none_exists(
    store, settings, mailserver, password_mailbox
):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    without_special_use(mailserver, mb.address)
    from mailops.send.outbox import _sent_folder

    with session_for(mb, settings, _sent_folder) as s:
        assert s.first == "Sent"
        assert "Sent" in {n for _, _, n in commands.list_folders(s.client)}
