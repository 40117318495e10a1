"""parse.py: Message-ID normalisation, fast headers, robust full parse (S8, S12)."""

from __future__ import annotations

from datetime import datetime

import pytest

from mailops.parse import (
    message_key,
    normalize_message_id,
    parse_headers_fast,
    parse_message,
    split_header,
)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("<ABC@Example.COM>", "abc@example.com"),
        ("  <abc@x>  ", "abc@x"),
        ("abc@x", "abc@x"),
        ("<a b@x>", "ab@x"),
        ("", None),
        (None, None),
        ("<>", None),
    ],
    ids=[
        "S8-case",
        "S8-space",
        "S8-no-brackets",
        "S8-inner-space",
        "empty",
        "none",
        "brackets-only",
    ],
)
def test_S8_normalize_message_id(value, expected):
    assert normalize_message_id(value) == expected


def test_S8_message_key_falls_back_to_content_hash():
    assert message_key("<X@y>", b"raw") == "x@y"
    assert message_key(None, b"raw").startswith("sha256:")
    assert message_key(None, b"raw") == message_key("", b"raw")


def test_parse_headers_fast_addresses_and_date():
    raw = (
        b"Message-ID: <Id1@Host>\r\nFrom: =?utf-8?q?J=C3=B6rg?= <Joerg@X.com>\r\n"
        b'To: a@b.test, "Doe, Q" <Q@R.test>\r\nCc: undisclosed-recipients:;\r\n'
        b"Date: Mon, 2 Nov 2026 10:00:00 +0100\r\nSubject: =?utf-8?b?SMOkbGxv?=\r\n"
        b"In-Reply-To: <Parent@h>\r\nReferences: <a@h> <Parent@h>\r\n\r\nbody"
    )
    h = parse_headers_fast(split_header(raw))
    assert h.message_id == "id1@host"
    assert (h.from_addr, h.from_name) == ("joerg@x.com", "Jörg")
    assert h.to_addrs == ["a@b.test", "q@r.test"]
    assert h.cc_addrs == []
    assert h.date == datetime(2026, 11, 2, 9, 0)
    assert h.subject == "Hällo"
    assert h.in_reply_to == "parent@h"
    assert h.references == ["a@h", "parent@h"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe\x00garbage",
        b"From: \xe9\xe8 <bad@x>\r\nDate: not a date\r\nContent-Type: text/plain; charset=x-nonsense\r\n\r\n\xe9t\xe9",
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/html\r\n\r\n<b>unterminated",
        b"Content-Transfer-Encoding: base64\r\nContent-Type: text/plain\r\n\r\n!!!not base64!!!",
    ],
    ids=[
        "S12-empty",
        "S12-binary",
        "S12-bad-charset-and-date",
        "S12-unterminated-multipart",
        "S12-bad-base64",
    ],
)
def test_S12_parse_message_never_raises(raw):
    p = parse_message(raw)
    assert p.key
    assert p.raw_size == len(raw)
    assert isinstance(p.warnings, list)


def test_S12_bad_date_is_a_warning():
    p = parse_message(b"From: a@b\r\nDate: yesterday-ish\r\n\r\nx")
    assert p.headers.date is None
    assert any("Date" in w for w in p.warnings)


def test_html_is_sanitized_and_attachments_listed():
    raw = (
        b"Message-ID: <m@x>\r\nContent-Type: multipart/mixed; boundary=xx\r\n\r\n"
        b"--xx\r\nContent-Type: text/html\r\n\r\n<p onclick='x()'>hi<script>alert(1)</script></p>\r\n"
        b"--xx\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=offer.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--xx--\r\n"
    )
    p = parse_message(raw)
    assert "script" not in (p.body_html or "") and "onclick" not in (p.body_html or "")
    assert "hi" in (p.body_text or "")
    assert [(a.filename, a.content_type, a.content) for a in p.attachments] == [
        ("offer.pdf", "application/pdf", b"%PDF-")
    ]


HEADER_EDGE_CASES = [
    b"Subject: a\r\n folded\r\nFrom: x@y.test\r\n\r\n",
    b"From: a@b.test\nTo: c@d.test,\n\te@f.test\n\n",
    b" leading continuation\r\nFrom: a@b.test\r\n\r\n",
    b"NoColonLine\r\nFrom: a@b.test\r\n\r\n",
    b"From: a@b.test",
    b"",
    b"Subject: R\xfcckfrage\r\n\r\n",
    b"Subject : spaced name\r\nFrom: a@b.test\r\n\r\n",
    b"From: a@b.test\rTo: c@d.test\r\r",
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nDate: Mon, 2 Nov 2026 10:00:00 +0100\r\n\r\nbody: not a header\r\n",
]


def test_S12_fast_header_split_equals_the_stdlib_parser():
    """parse_headers_fast splits header blocks itself (speed); the items must be exactly
    what BytesHeaderParser(policy=compat32) gives, on the demo corpus and malformed input."""
    from email import policy
    from email.parser import BytesHeaderParser

    from mailops.dev.demo import build_company, build_messages
    from mailops.parse import _header_items

    stdlib = BytesHeaderParser(policy=policy.compat32)
    blocks = [m.raw for m in build_messages(build_company(7, 40), 400)] + HEADER_EDGE_CASES
    for block in blocks:
        ours, _ = _header_items(block)
        theirs = [(k, str(v)) for k, v in stdlib.parsebytes(block).items()]
        if block.isascii():
            assert ours == theirs, block[:80]
        else:  # 8-bit headers: same split, text decoded where the stdlib leaves U+FFFD
            assert [k for k, _ in ours] == [k for k, _ in theirs], block[:80]
            for (_, mine), (_, std) in zip(ours, theirs, strict=True):
                assert len(mine) <= len(std) and "\ufffd" not in mine or mine == std
