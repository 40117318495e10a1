"""parse.py, message side of issue 10: identity (S13), dates and addresses (S13), warnings
from the whole MIME tree (S12), safe HTML (A1). Pure units, table-tested by rule id."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from mailops.parse import (
    NOISE_DEFECTS,
    normalize_message_id,
    parse_headers_fast,
    parse_message,
    usable_message_id,
)

ARRIVED = datetime(2026, 11, 30, 12, 0, 0)  # the server's INTERNALDATE in these tests


def _msg(headers: str, body: str = "hello\r\n") -> bytes:
    return (headers.replace("\n", "\r\n") + "\r\n" + body).encode()


BASE = "From: a@cust.test\nTo: me@x.test\nSubject: s\nMessage-ID: <m1@x>\n"


# -- Message-IDs --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value,normalized,usable",
    [
        ("<svg/onload=x@e.test>", "svg/onload=x@e.test", "svg/onload=x@e.test"),
        ("<ABC@Example.COM>", "abc@example.com", "abc@example.com"),
        ("<no-at-sign>", "no-at-sign", None),
        ("<@x>", "@x", None),
        ("<a@>", "a@", None),
        ("<>", None, None),
        ("<a\x01b@x>", "a\x01b@x", None),
        ("<" + "a" * 600 + "@x>", "a" * 600 + "@x", None),
        ('<a"b@x>', 'a"b@x', None),
        ("<caf\ufffd@x>", "caf\ufffd@x", None),
        ("<a@b> (comment)", "a@b", "a@b"),
    ],
    ids=[
        "S13-not-truncated",
        "S13-case-folded",
        "S13-garbage-no-at",
        "S13-garbage-empty-left",
        "S13-garbage-empty-right",
        "S13-empty",
        "S13-garbage-control",
        "S13-garbage-too-long",
        "S13-garbage-quote",
        "S13-garbage-undecodable",
        "S13-comment",
    ],
)
def test_S13_message_id_normalized_and_usable(value, normalized, usable):
    assert normalize_message_id(value) == normalized
    assert usable_message_id(value) == usable


def test_S13_garbage_message_id_is_keyed_by_content():
    a = parse_message(_msg(BASE.replace("<m1@x>", "<null>")))
    b = parse_message(_msg(BASE.replace("<m1@x>", "<null>"), "another body\r\n"))
    assert a.key.startswith("sha256:") and b.key.startswith("sha256:") and a.key != b.key
    assert any("garbage Message-ID" in w for w in a.warnings)


# -- identity fingerprint --------------------------------------------------------------------
SAME = _msg(BASE + "Date: Mon, 30 Nov 2026 10:00:00 +0000\n")


@pytest.mark.parametrize(
    "other,same",
    [
        (_msg("Received: from relay\nBcc: boss@x.test\n" + BASE + "Date: Mon, 30 Nov 2026 10:00:00 +0000\n"), True),
        (_msg(BASE + "Date: Mon, 30 Nov 2026 11:00:00 +0100\n"), True),  # same instant
        (_msg(BASE + "Date: Mon, 30 Nov 2026 10:00:00 +0000\nContent-Transfer-Encoding: base64\n", "aGVsbG8=\r\n"), True),
        (_msg(BASE.replace("<m1@x>", "<M1@X>") + "Date: Mon, 30 Nov 2026 10:00:00 +0000\n"), True),
        (_msg(BASE + "Date: Mon, 30 Nov 2026 10:00:01 +0000\n"), False),
        (_msg(BASE.replace("Subject: s", "Subject: t") + "Date: Mon, 30 Nov 2026 10:00:00 +0000\n"), False),
        (_msg(BASE.replace("a@cust.test", "b@cust.test") + "Date: Mon, 30 Nov 2026 10:00:00 +0000\n"), False),
        (_msg(BASE + "Date: Mon, 30 Nov 2026 10:00:00 +0000\n", "hello again\r\n"), False),
    ],
    ids=[
        "S13-received-bcc-same",
        "S13-date-same-instant",
        "S13-transfer-encoding-same",
        "S13-id-case-same",
        "S13-other-date",
        "S13-other-subject",
        "S13-other-from",
        "S13-other-body",
    ],
)  # fmt: skip
def test_S13_content_fingerprint(other, same):
    assert (parse_message(SAME).content_fp == parse_message(other).content_fp) is same


# -- dates ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "date_header,expected,warned",
    [
        ("Date: Mon, 30 Nov 2026 10:00:00 +0000\n", datetime(2026, 11, 30, 10), False),
        ("Date: Mon, 1 Jan 1900 10:00:00 +0000\n", ARRIVED, True),
        ("Date: Wed, 31 Dec 1969 23:59:59 +0000\n", ARRIVED, True),
        ("Date: Fri, 31 Dec 9999 23:00:00 -1200\n", ARRIVED, True),
        ("Date: Sat, 1 Jan 2050 00:00:00 +0000\n", ARRIVED, True),
        ("Date: yesterday-ish\n", ARRIVED, True),
        ("", ARRIVED, True),
        ("Date: Mon, 30 Nov 2026 23:00:00 +0000\n", datetime(2026, 11, 30, 23), False),  # skew
    ],
    ids=[
        "S13-good",
        "S13-1900",
        "S13-before-1970",
        "S13-overflow-9999",
        "S13-far-future",
        "S13-unparseable",
        "S13-missing",
        "S13-small-clock-skew-kept",
    ],
)
def test_S13_date_falls_back_to_internaldate(date_header, expected, warned):
    h = parse_headers_fast(_msg(BASE + date_header).split(b"\r\n\r\n")[0] + b"\r\n\r\n", ARRIVED)
    assert h.date == expected
    assert any("INTERNALDATE" in w for w in h.warnings) is warned
    assert (h.date_source == "internaldate") is warned


def test_S13_overflowing_date_keeps_every_other_field():
    h = parse_headers_fast(
        b"Message-ID: <k@x>\r\nFrom: a@cust.test\r\nTo: me@x.test\r\nCc: c@cust.test\r\n"
        b"Subject: still here\r\nDate: 31 Dec 9999 23:00:00 -1200\r\n\r\n",
        ARRIVED,
    )
    assert (h.message_id, h.from_addr, h.to_addrs, h.cc_addrs, h.subject) == (
        "k@x",
        "a@cust.test",
        ["me@x.test"],
        ["c@cust.test"],
        "still here",
    )
    assert h.date == ARRIVED
    assert not any("unparseable:" in w and "headers" in w for w in h.warnings)


def test_S13_every_from_address_counts():
    h = parse_headers_fast(
        b"From: Alice <a@x.test>, Bob <b@cust.test>\r\nFrom: c@y.test\r\nTo: me@x.test\r\n\r\n"
    )
    assert h.from_addr == "a@x.test"
    assert h.from_addrs == ["a@x.test", "b@cust.test", "c@y.test"]
    assert h.participants[:3] == ["a@x.test", "b@cust.test", "c@y.test"]


def test_S13_hundreds_of_from_addresses_parse_quickly():
    many = ", ".join(f"p{i}@spam.test" for i in range(800)).encode()
    t0 = time.perf_counter()
    h = parse_headers_fast(b"From: " + many + b"\r\nTo: me@x.test\r\n\r\n")
    assert len(h.from_addrs) == 800 and time.perf_counter() - t0 < 1.0


def test_S12_eight_bit_headers_are_decoded_with_a_warning():
    h = parse_headers_fast("Subject: Rückfrage\r\nFrom: Jörg <j@x.test>\r\n\r\n".encode("latin-1"))
    assert h.subject == "Rückfrage" and h.from_name == "Jörg"
    assert any("8-bit" in w for w in h.warnings)
    h = parse_headers_fast("Subject: Grüße\r\n\r\n".encode())
    assert h.subject == "Grüße"


# -- warnings from the whole MIME tree -------------------------------------------------------
NESTED_BAD_B64 = _msg(
    BASE + 'Content-Type: multipart/mixed; boundary="o"\n',
    "--o\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    '--o\r\nContent-Type: multipart/mixed; boundary="i"\r\n\r\n'
    "--i\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment; filename=x.pdf\r\n\r\n!!!not*base64\r\n--i--\r\n--o--\r\n",
)


@pytest.mark.parametrize(
    "raw,expected",
    [
        (NESTED_BAD_B64, "defect in part 2.1: InvalidBase64"),
        (
            _msg(BASE + "Content-Type: text/plain; charset=x-klingon\n", "qapla'\r\n"),
            "unknown charset 'x-klingon'",
        ),
        (
            _msg(BASE + "Content-Type: text/plain; charset=utf-8\n", "caf\xe9\r\n").replace(
                b"caf\xc3\xa9", b"caf\xe9"
            ),
            "is not valid utf-8",
        ),
        (_msg(BASE.replace("Subject: s", "Subject: =?utf-8?b?!!!?=")), "invalid encoded word in Subject"),
        (_msg(BASE.replace("Subject: s", "Subject: =?x-unknown?q?abc?=")), "unknown charset 'x-unknown'"),
        (_msg(BASE.replace("Subject: s", "Subject: =?utf-8?b?/w==?=")), "not valid B/utf-8"),
        (
            _msg(
                BASE + 'Content-Type: multipart/mixed; boundary="o"\n',
                "--o\r\nContent-Type: text/plain\r\n\r\nhi\r\n--o\r\nContent-Type: application/pdf\r\n"
                'Content-Disposition: attachment; filename="a\x00b.pdf"\r\n\r\nPDF\r\n--o--\r\n',
            ),
            "NUL in the file name in part 2",
        ),
        (_msg(BASE + "Content-Transfer-Encoding: x-rot13\n"), "unknown transfer encoding 'x-rot13'"),
        (
            _msg(BASE + 'Content-Type: multipart/mixed; boundary="o"\n', "--o\r\nContent-Type: text/plain\r\n\r\nhi\r\n"),
            "defect: CloseBoundaryNotFoundDefect",
        ),
    ],
    ids=[
        "S12-nested-part-invalid-base64",
        "S12-unknown-charset",
        "S12-wrong-charset",
        "S12-invalid-encoded-word",
        "S12-encoded-word-unknown-charset",
        "S12-encoded-word-undecodable",
        "S12-nul-in-file-name",
        "S12-unknown-transfer-encoding",
        "S12-unterminated-multipart",
    ],
)  # fmt: skip
def test_S12_warnings_from_the_whole_mime_tree(raw, expected):
    p = parse_message(raw)
    assert any(expected in w for w in p.warnings), p.warnings


def test_S12_noise_defects_are_not_warnings():
    raw = _msg(
        BASE + 'Content-Type: multipart/mixed; boundary="o"\nContent-Transfer-Encoding: base64\n',
        "--o\r\nContent-Type: text/plain\r\n\r\nhi\r\n--o--\r\n",
    )
    p = parse_message(raw)
    assert "InvalidMultipartContentTransferEncodingDefect" in NOISE_DEFECTS
    assert not any("Defect" in w for w in p.warnings), p.warnings


def test_S12_deep_nesting_never_raises():
    depth = 3000
    inner = "".join(
        f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'
        for i in range(depth)
    )
    raw = _msg(BASE + 'Content-Type: multipart/mixed; boundary="b0"\n', inner)
    p = parse_message(raw + f"--b{depth}\r\nContent-Type: text/plain\r\n\r\ndeep\r\n".encode())
    assert p.key == "m1@x" and p.warnings


# -- HTML and inline images ----------------------------------------------------------------
RELATED = _msg(
    BASE + 'Content-Type: multipart/mixed; boundary="a"\n',
    '--a\r\nContent-Type: multipart/related; boundary="b"\r\n\r\n'
    '--b\r\nContent-Type: multipart/alternative; boundary="c"\r\n\r\n'
    "--c\r\nContent-Type: text/plain\r\n\r\nsee plan\r\n"
    '--c\r\nContent-Type: text/html\r\n\r\n<p>plan <img src="cid:Plan1@x"> <img src="https://t.example/p.gif" width=1 height=1></p>\r\n--c--\r\n'
    "--b\r\nContent-Type: image/png\r\nContent-ID: <Plan1@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n"
    "--a\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=offer.pdf\r\n\r\nPDF\r\n--a--\r\n",
)


def test_A1_inline_cid_image_is_an_attachment_and_remote_pixel_a_placeholder():
    p = parse_message(RELATED)
    assert sorted((a.content_type, a.content_id) for a in p.attachments) == [
        ("application/pdf", None),
        ("image/png", "Plan1@x"),
    ]
    html = p.body_html or ""
    assert 'src="cid:Plan1@x"' in html
    assert "t.example" in html and "https://t.example" not in html
    assert "tracking image blocked: t.example" in html
