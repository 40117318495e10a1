"""Pure units of composing (E2): reply subjects, threading, header checks, attachment types."""

from __future__ import annotations

import pytest

from mailops.errors import SendRefused
from mailops.send.compose import Attachment, Recipient, build_message, check_header, wire_bytes
from mailops.send.reply import Original, quote_html, quote_text, reply_subject, thread_headers


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Balcony", "Re: Balcony"),
        ("Re: Balcony", "Re: Balcony"),
        ("RE: Balcony", "Re: Balcony"),
        ("Re: Re: Balcony", "Re: Balcony"),
        ("AW: Balcony", "Re: Balcony"),
        ("Re[2]: Balcony", "Re: Balcony"),
        ("Re: AW: SV: Balcony", "Re: Balcony"),
        ("Fwd: Balcony", "Re: Balcony"),
        ("Regarding the balcony", "Re: Regarding the balcony"),
        ("", "Re:"),
        (None, "Re:"),
    ],
)
def test_E2_reply_subject_not_doubled(subject: str | None, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_E2_thread_headers_chain() -> None:
    o = Original(key="b@x", message_id="<B@X>", references=["<root@x>", "<a@x>"])
    assert thread_headers(o) == ("<B@X>", ["<root@x>", "<a@x>", "<B@X>"])
    long = Original(key="z@x", message_id="<z@x>", references=[f"<{i}@x>" for i in range(40)])
    _, refs = thread_headers(long)
    assert len(refs) == 20 and refs[0] == "<0@x>" and refs[-1] == "<z@x>"


def test_E2_quotes() -> None:
    o = Original(
        key="k",
        message_id="<k>",
        from_name="Carla",
        from_addr="c@x.test",
        body_text="line 1\n\nline 3",
        body_html="<p>hi<script>x()</script></p>",
    )
    assert quote_text(o).splitlines()[1:] == ["> line 1", ">", "> line 3"]
    html = quote_html(o)
    assert "<blockquote><p>hi</p></blockquote>" in html and "script" not in html


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nBcc: x@y"])
def test_E2_crlf_refused(value: str) -> None:
    with pytest.raises(SendRefused) as info:
        check_header("subject", value)
    assert info.value.code == "header_crlf"


def test_E2_crlf_in_attachment_name_refused() -> None:
    with pytest.raises(SendRefused):
        build_message(
            sender=Recipient("a@x.test"),
            to=[Recipient("b@x.test")],
            subject="s",
            body_text="b",
            attachments=[Attachment("x\r\ny.pdf", b"1", "application/pdf")],
        )


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("plan.pdf", "application/pdf"),
        ("photo.JPG", "image/jpeg"),
        ("x.unknownext", "application/octet-stream"),
        ("archive.tar.gz", "application/gzip"),
        ("notes.txt", "text/plain"),
    ],
)
def test_E2_attachment_type_detected(name: str, ctype: str) -> None:
    assert Attachment.from_bytes(name, b"data").content_type == ctype


def test_E2_bcc_in_sent_copy_never_on_the_wire() -> None:
    msg = build_message(
        sender=Recipient("a@x.test"),
        to=[Recipient("b@x.test")],
        bcc=[Recipient("c@x.test", "Bea Blind"), Recipient("d@x.test")],
        subject="s",
        body_text="b",
    )
    assert str(msg["Bcc"]) == "Bea Blind <c@x.test>, d@x.test"  # the Sent copy
    wire = wire_bytes(msg.as_bytes())
    assert b"c@x.test" not in wire and b"d@x.test" not in wire and b"Bcc" not in wire
    assert wire.replace(b"\r\n", b"\n") != msg.as_bytes()
    assert wire_bytes(b"From: a\r\nBcc: x@y,\r\n z@y\r\nTo: b\r\n\r\nBcc: body\r\n") == (
        b"From: a\r\nTo: b\r\n\r\nBcc: body\r\n"
    )


def test_E2_international_domain_encoded_non_ascii_local_part_refused() -> None:
    msg = build_message(
        sender=Recipient("a@x.test"),
        to=[Recipient("joerg@exämple.test", "Jörg")],
        subject="s",
        body_text="b",
    )
    assert msg["To"].addresses[0].domain == "xn--exmple-cua.test"
    with pytest.raises(SendRefused) as info:
        build_message(
            sender=Recipient("a@x.test"), to=[Recipient("jörg@x.test")], subject="s", body_text="b"
        )
    assert info.value.code == "bad_address"
