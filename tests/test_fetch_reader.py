"""The lean FETCH reader (mailops.imap.fetch_parser) on hand-made server replies: literals
holding CRLF, braces, parentheses, fake responses and 8-bit bytes; NIL; quoted strings with
escapes; replies a broken or hostile server sends. Pure units (a BytesIO stands in for the
socket buffer); tests/test_imap.py runs the same reader against the real Dovecot."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, ProtocolError
from imapclient.response_parser import parse_fetch_response

from mailops.imap.fetch_parser import (
    _imaplib_shape,
    _read_response,
    internaldate,
    parse_record,
    read_fetch,
)


def reply(*parts: bytes, tag: bytes = b"A7") -> io.BytesIO:
    return io.BytesIO(b"".join(parts) + tag + b" OK Fetch completed.\r\n")


def lit(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def read(buf: io.BytesIO, **kw):  # type: ignore[no-untyped-def]
    return read_fetch(buf.readline, buf.read, b"A7", **kw)


HOSTILE = (
    b"Subject: {5}\r\nX: A7 OK Fetch completed.\r\n* 9 FETCH (UID 99 FLAGS ())\r\n"
    b"From: =?utf-8?q?J=C3=B6rg?= <j@x.test>\r\nX-8bit: \xc3\xa4\xff\x00\r\n"
    b'Unbalanced: ((( ] [ " \\ \r\n\r\n'
)


def test_S12_literals_are_data_whatever_they_hold() -> None:
    buf = reply(
        b'* 1 FETCH (UID 10 FLAGS (\\Seen $Forwarded) INTERNALDATE "01-Jan-2026 10:00:00 +0000"'
        b" RFC822.SIZE 1234 BODY[HEADER.FIELDS (FROM SUBJECT)] " + lit(HOSTILE) + b")\r\n",
        b"* 2 FETCH (UID 11 BODY[] " + lit(b"{3}\r\nabc)\r\n") + b" FLAGS ())\r\n",
    )
    got = read(buf)
    assert got == {
        10: {
            b"FLAGS": (b"\\Seen", b"$Forwarded"),
            b"INTERNALDATE": datetime(2026, 1, 1, 10, 0, tzinfo=UTC),
            b"RFC822.SIZE": 1234,
            b"BODY[HEADER.FIELDS (FROM SUBJECT)]": HOSTILE,
        },
        11: {b"BODY[]": b"{3}\r\nabc)\r\n", b"FLAGS": ()},
    }
    assert buf.read() == b""  # read exactly to the tagged completion


def test_S12_literal_in_literal_and_two_literals_in_one_response() -> None:
    inner = b"* 5 FETCH (UID 5 BODY[] " + lit(b"nested") + b")\r\nA7 OK done\r\n"
    buf = reply(
        b"* 3 FETCH (UID 30 BODY[HEADER] " + lit(inner) + b" BODY[TEXT] " + lit(b"") + b")\r\n"
    )
    assert read(buf) == {30: {b"BODY[HEADER]": inner, b"BODY[TEXT]": b""}}


def test_S12_nil_quoted_escapes_partial_and_literal8() -> None:
    buf = reply(
        b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (X)] NIL)\r\n",
        b'* 2 FETCH (UID 2 BODY[] "say \\"hi\\" \\\\ {4}")\r\n',
        b"* 3 FETCH (UID 3 BODY[]<0> " + lit(b"part") + b")\r\n",
        b"* 4 FETCH (UID 4 BINARY[1] ~" + lit(b"\x00\x01") + b")\r\n",
    )
    assert read(buf) == {
        1: {b"BODY[HEADER.FIELDS (X)]": None},
        2: {b"BODY[]": b'say "hi" \\ {4}'},
        3: {b"BODY[]<0>": b"part"},
        4: {b"BINARY[1]": b"\x00\x01"},
    }


def test_S12_unsolicited_responses_go_where_imaplib_keeps_them() -> None:
    seen: list[tuple[str, bytes]] = []
    buf = reply(
        b"* 4 EXISTS\r\n",
        b"* 2 FETCH (FLAGS (\\Deleted))\r\n",  # a flag change, no UID: not ours
        b"* 1 FETCH (UID 7 RFC822.SIZE 5)\r\n",
        b"* 3 EXPUNGE\r\n",
        b"* OK [HIGHESTMODSEQ 9] noted\r\n",
    )
    assert read(buf, untagged=lambda t, d: seen.append((t, d))) == {7: {b"RFC822.SIZE": 5}}
    assert seen == [("EXISTS", b"4"), ("EXPUNGE", b"3"), ("OK", b"[HIGHESTMODSEQ 9] noted")]


def test_S12_keywords_in_any_case() -> None:
    buf = reply(b"* 1 fetch (uid 4 rfc822.size 9 body[] " + lit(b"x") + b")\r\n")
    assert read(buf) == {4: {b"RFC822.SIZE": 9, b"BODY[]": b"x"}}


def test_S15_refusal_is_an_imap_error_not_a_dropped_session() -> None:
    buf = io.BytesIO(
        b"* 1 FETCH (UID 1 RFC822.SIZE 3)\r\nA7 NO Internal error occurred.\r\nnext\r\n"
    )
    with pytest.raises(IMAPClientError) as e:
        read(buf)
    assert not isinstance(e.value, IMAPClientAbortError)
    assert "Internal error" in str(e.value)
    assert buf.readline() == b"next\r\n"  # the session is still in step


@pytest.mark.parametrize(
    "wire",
    [
        b"",  # EOF
        b"* 1 FETCH (UID 1 BODY[] {10}\r\nshort",  # EOF inside a literal
        b"* BYE shutting down\r\n",
        b"garbage\r\n",
        b"A6 OK someone else's\r\n",
        b"* 1 FETCH (UID 1 BODY[] " + b"x" * 1_000_100 + b")\r\n",  # a line past the bound
    ],
)
def test_S15_a_broken_reply_is_a_dropped_session(wire: bytes) -> None:
    with pytest.raises(IMAPClientAbortError):
        read(io.BytesIO(wire))


def test_S15_one_unreadable_response_is_reported_after_the_whole_reply() -> None:
    buf = reply(
        b"* 1 FETCH (UID 1 RFC822.SIZE 3)\r\n",
        b"* 2 FETCH (UID (((( ]]\r\n",
        b"* 3 FETCH (UID 3 BODY[] " + lit(b"ok") + b")\r\n",
    )
    with pytest.raises(ProtocolError):
        read(buf)
    assert buf.read() == b""  # in step: the sync fetches these one per command


def test_S12_nested_lists_go_to_imapclients_parser() -> None:
    env = (
        b'ENVELOPE ("Mon, 1 Jan 2026 10:00:00 +0000" "subj" (("A" NIL "a" "x.test")) NIL NIL'
        b' NIL NIL NIL NIL "<id@x>")'
    )
    buf = reply(b"* 1 FETCH (UID 8 " + env + b" BODY[] " + lit(b"b") + b")\r\n")
    got = read(buf)
    assert got[8][b"BODY[]"] == b"b" and got[8][b"ENVELOPE"].subject == b"subj"
    assert b"SEQ" not in got[8]


def _random_response(rng: random.Random, seq: int) -> tuple[list[bytes], bytes]:
    items: list[bytes] = [b"UID %d" % (seq * 3)]
    if rng.random() < 0.8:
        items.append(b"FLAGS (" + b" ".join(rng.sample([b"\\Seen", b"\\Draft", b"$X"], 2)) + b")")
    if rng.random() < 0.8:
        d = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(10**9))
        items.append(b'INTERNALDATE "' + d.strftime("%d-%b-%Y %H:%M:%S +0000").encode() + b'"')
    if rng.random() < 0.8:
        items.append(b"RFC822.SIZE %d" % rng.randrange(10**7))
    body = bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
    items.append(b"BODY[HEADER.FIELDS (FROM TO)] " + lit(body))
    rng.shuffle(items)
    return items, b"* %d FETCH (" % seq + b" ".join(items) + b")\r\n"


def test_S12_agrees_with_imapclient_on_random_replies() -> None:
    rng = random.Random(14)
    for seq in range(1, 300):
        _, wire = _random_response(rng, seq)
        buf = reply(wire)
        ours = read(buf)
        raw = io.BytesIO(wire)
        texts, literals = _read_response(raw.readline, raw.read)
        theirs = parse_fetch_response(_imaplib_shape(texts, literals), False, True)
        expected = {k: {n: v for n, v in r.items() if n != b"SEQ"} for k, r in theirs.items()}
        assert ours == expected, wire
        assert parse_record(texts, literals)[0] == seq * 3


def test_S13_internaldate_without_strptime() -> None:
    rng = random.Random(13)
    for _ in range(500):
        d = datetime(1970, 1, 1) + timedelta(seconds=rng.randrange(4 * 10**9))
        off = rng.randrange(-14 * 60, 14 * 60 + 1, 15)
        sign, a = ("+" if off >= 0 else "-"), abs(off)
        text = d.strftime("%d-%b-%Y %H:%M:%S ") + f"{sign}{a // 60:02d}{a % 60:02d}"
        expected = datetime.strptime(text, "%d-%b-%Y %H:%M:%S %z")
        got = internaldate(text.encode())
        assert got == expected and got.utcoffset() == expected.utcoffset(), text
    assert internaldate(b" 1-Feb-2026 23:59:59 -0130") == datetime(
        2026, 2, 1, 23, 59, 59, tzinfo=timezone(-timedelta(hours=1, minutes=30))
    )
    assert internaldate("07-jan-2026 01:02:03 +0100") == datetime(2026, 1, 7, 0, 2, 3, tzinfo=UTC)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"31-Feb-2026 10:00:00 +0000",
        b"01-Foo-2026 10:00:00 +0000",
        b"01-Jan-2026 25:00:00 +0000",
        b"01-Jan-2026 10:00:00 +9999",
        b"01-Jan-2026 10:00:00 0000",
        b"01-Jan-2026T10:00:00 +0000",
        b"01-Jan-+026 10:00:00 +0000",
        b"Mon, 01 Jan 2026 10:00:00 +0000",
        b"\xff\xfe-Jan-2026 10:00:00 +0000",
    ],
)
def test_S13_an_internaldate_that_is_not_one_is_none(bad: bytes) -> None:
    assert internaldate(bad) is None
    buf = reply(b'* 1 FETCH (UID 1 INTERNALDATE "' + bad + b'")\r\n')
    assert read(buf) == {1: {b"INTERNALDATE": None}}
