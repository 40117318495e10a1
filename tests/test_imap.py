"""The IMAP layer (mailops.imap) against the real local Dovecot: sessions, commands, the
fast FETCH parser, the special-folder finder that sync and send share."""

from __future__ import annotations

import io
import re
import time
import types
from pathlib import Path

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
    store, settings, password_mailbox, mailserver, monkeypatch
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
        # Python 3.14's imaplib keeps its own read buffer: then the reader goes through it
        whole = commands.fetch(c, uids, FETCH_BODY)
        monkeypatch.setattr(commands, "sys", types.SimpleNamespace(version_info=(3, 14)))
        assert commands._socket_file(c._imap)[1] == c._imap.read
        assert commands.fetch(c, uids, FETCH_BODY) == whole
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


def test_S1_list_status_of_odd_folder_names_as_imapclient_reads_them(
    store, settings, password_mailbox, mailserver, monkeypatch
):
    """The one-regex LIST/STATUS reader on the names users make: spaces, quotes,
    backslashes, umlauts (modified UTF-7), digits only, children; the same as imapclient's
    LIST and a STATUS each."""
    mb, pw = password_mailbox()
    names = [
        "Ordner mit Leerzeichen",
        'Quote"d',
        "Back\\slash",
        "Grüße",
        "2026",
        "Kunden/Müller & Co",
    ]
    c = imap(mailserver, mb.address, pw)
    try:
        for name in names:
            c.create_folder(name)
        c.append("Grüße", make_msg("a@cust.test", mb.address))
        with monkeypatch.context() as m:  # the regexes read every line themselves
            m.setattr(c, "_proc_folder_list", None)
            m.setattr("imapclient.response_parser.parse_response", None)
            listing, statuses = commands.list_with_status(c, condstore=True)
        with monkeypatch.context() as m:  # the same answer through imapclient's parser
            m.setattr(commands, "_fast_listing", lambda client, data: None)
            m.setattr(commands, "_STATUS_LINE_RE", re.compile(rb"(?!)"))
            theirs, their_statuses = commands.list_with_status(c, condstore=True)
        assert sorted(theirs) == sorted(listing) and their_statuses == statuses
        assert set(names) <= {n for _, _, n in listing}
        for flags, _, name in listing:
            if b"\\Noselect" not in flags:
                assert statuses[name] == c.folder_status(name, list(statuses[name])), name
        assert statuses["Grüße"][b"MESSAGES"] == 1
        piped = commands.statuses(c, names, condstore=True)
        assert piped == {n: statuses[n] for n in names}
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


class _Wire:
    """Records what imaplib sends and when a command's completion is read."""

    def __init__(self, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        import imaplib

        self.events: list[tuple[str, bytes]] = []
        send, complete = imaplib.IMAP4.send, imaplib.IMAP4._command_complete

        def spy_send(imap, data):  # type: ignore[no-untyped-def]
            words = bytes(data).split(b" ", 2)
            self.events.append(("send", words[1].strip().upper() if len(words) > 1 else b""))
            return send(imap, data)

        def spy_complete(imap, name, tag):  # type: ignore[no-untyped-def]
            self.events.append(("done", name.encode().upper()))
            return complete(imap, name, tag)

        monkeypatch.setattr(imaplib.IMAP4, "send", spy_send)
        monkeypatch.setattr(imaplib.IMAP4, "_command_complete", spy_complete)

    def sent(self) -> list[bytes]:
        return [name for what, name in self.events if what == "send"]


def test_S1_login_takes_capabilities_from_the_greeting_and_logs_out_without_waiting(
    store, settings, password_mailbox, mailserver, monkeypatch
):
    """No CAPABILITY round trip before LOGIN (Dovecot's greeting has them), the session's
    capabilities are the post-login ones, and a finished session sends LOGOUT without
    waiting for the BYE; Dovecot still logs it as a logout."""
    from mailops.imap.sessions import login

    mb, _ = password_mailbox()
    wire = _Wire(monkeypatch)
    with session_for(mb, settings, lambda c: commands.capabilities(c)) as s:
        assert b"LIST-STATUS" in s.first and b"CONDSTORE" in s.first  # post-login
    assert wire.sent() == [b"LOGIN", b"LOGOUT"]
    assert wire.events[-1] == ("send", b"LOGOUT")  # not waited for
    c = login(mb, settings)
    try:
        commands.select(c, "INBOX")  # the session works on
    finally:
        c.logout()
    log = Path(mailserver.root) / "log" / "dovecot.log"
    mine = f"imap({mb.address})"
    for _ in range(50):
        lines = [x for x in log.read_text(errors="replace").splitlines() if mine in x]
        if len([x for x in lines if "Disconnected" in x]) >= 2:
            break
        time.sleep(0.05)
    ends = [x.split(": Info: ", 1)[-1] for x in lines if "Disconnected" in x]
    assert ends and all(x.startswith("Disconnected: Logged out") for x in ends), ends


def test_S1_status_is_pipelined_without_list_status(
    store, settings, password_mailbox, mailserver, monkeypatch
):
    """A server without LIST-STATUS: the STATUS of every folder to sync goes out before the
    first answer is read (one round trip), and the sync sees the same counters."""
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject="in")])
    append(mailserver, mb.address, pw, [make_msg(mb.address, "a@cust.test")], folder="Sent")
    c = imap(mailserver, mb.address, pw)
    try:
        _, with_list_status = commands.list_with_status(c, condstore=True)
        piped = commands.statuses(c, ["INBOX", "Sent", "No such folder", "Drafts"], True)
        assert piped == {k: with_list_status[k] for k in ("INBOX", "Sent", "Drafts")}
    finally:
        c.logout()
    real = commands.capabilities
    monkeypatch.setattr(commands, "capabilities", lambda client: real(client) - {b"LIST-STATUS"})
    wire = _Wire(monkeypatch)
    r = sync_mailbox(store, settings, mb)
    assert (r.status, r.stored) == ("ok", 2), r.one_line()
    sent = wire.sent()
    assert b"LIST" in sent and sent.count(b"STATUS") >= 2
    # every STATUS goes out in groups: all of a group before the first answer is read
    groups, waiting = [], 0
    for what, name in wire.events:
        if (what, name) == ("send", b"STATUS"):
            waiting += 1
        elif (what, name) == ("done", b"STATUS") and waiting:
            groups.append(waiting)
            waiting = 0
    assert groups[0] >= 2 and len(groups) <= 2, groups  # folders to sync; those not examined
    assert sum(groups) == sent.count(b"STATUS")
    wire.events.clear()
    r2 = sync_mailbox(store, settings, mb)  # unchanged: no SELECT, counters from STATUS
    assert (r2.status, r2.folders_changed) == ("ok", 0)
    assert b"SELECT" not in wire.sent() and b"EXAMINE" not in wire.sent()


def test_S1_C4_logins_in_parallel_are_bounded_and_one_refused_stops_no_other(
    store, settings, password_mailbox, mailserver, monkeypatch
):
    """sync_all logs in to several mailboxes at once, at most ``sync_login_parallel`` at a
    time per server; a refused login fails its own mailbox only (O1: the exit code says so)."""
    import dataclasses
    import threading

    from mailops.auth import password_ref
    from mailops.imap import sessions
    from mailops.secrets import SecretStore
    from mailops.sync import summarize, sync_all

    add_customer(store, "c-a", "a@cust.test")
    boxes = []
    for i in range(6):
        mb, pw = password_mailbox(owner=f"user-{i}")
        append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject=f"{i}")])
        boxes.append(mb)
    SecretStore(settings).put(password_ref(boxes[2].id), "wrong-password")
    now, peak, lock = [0], [0], threading.Lock()
    real = sessions._Client

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            try:
                time.sleep(0.05)
                super().__init__(*a, **kw)
            finally:
                with lock:
                    now[0] -= 1

    monkeypatch.setattr(sessions, "_Client", Counting)
    bounded = dataclasses.replace(settings, sync_login_parallel=2, sync_retries=1)
    results = sync_all(store, bounded, parallel=6)
    assert peak[0] == 2
    by_id = {r.mailbox_id: r for r in results}
    assert by_id[boxes[2].id].error_code == "auth_failed"
    assert sorted(r.stored for r in results if r.mailbox_id != boxes[2].id) == [1] * 5
    assert summarize(results)["exit_code"] != 0  # O1


def test_S1_next_login_offers_the_last_tls_session(
    store, settings, password_mailbox, mailserver, monkeypatch
):
    """A login offers the TLS session of the last login to that server for resumption
    (Dovecot's default login mode answers with a full handshake: the login works as ever)."""
    import ssl

    from mailops.imap import sessions

    offered: list[object] = []
    real = ssl.SSLContext.wrap_socket

    def spy(ctx, sock, *a, **kw):  # type: ignore[no-untyped-def]
        offered.append(kw.get("session"))
        return real(ctx, sock, *a, **kw)

    monkeypatch.setattr(ssl.SSLContext, "wrap_socket", spy)
    monkeypatch.setattr(sessions, "_TLS_SESSIONS", {})
    mb, _ = password_mailbox()
    first = sessions.login(mb, settings)
    kept = sessions._TLS_SESSIONS[("127.0.0.1", mailserver.imaps_port)]
    assert kept[1].id == first._imap.sock.session.id and kept[0] is first._imap.ssl_context
    sessions.close_imap(first, wait=False)
    second = sessions.login(mb, settings)
    try:
        assert offered == [None, kept[1]]
        assert commands.capabilities(second)  # a working session either way
    finally:
        sessions.close_imap(second)


def test_C2_starttls_login_asks_the_capabilities_again_after_tls(
    store, settings, password_mailbox, mailserver, monkeypatch
):
    """STARTTLS: the greeting's capabilities serve only until TLS is up; imaplib's are asked
    fresh on the encrypted connection (RFC 2595), and the sync works."""
    from mailops.store import mailboxes

    mb, pw = password_mailbox()
    mailboxes.update(store, mb.id, imap_port=mailserver.imap_port, imap_security="starttls")
    mb = mailboxes.get(store, mb.id)
    add_customer(store, "c-a", "a@cust.test")
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address)])
    wire = _Wire(monkeypatch)
    r = sync_mailbox(store, settings, mb)
    assert (r.status, r.stored) == ("ok", 1), r.one_line()
    assert wire.sent()[:3] == [b"STARTTLS", b"CAPABILITY", b"LOGIN"]
