"""Building outgoing emails with the stdlib ``email`` API (E2): plain, rich, attachments.

Every header value passes ``check_header`` first: CR or LF in a header field would let a
subject or a name inject headers, so it is refused (``header_crlf``), never stripped.
HTML is sanitized with nh3 and always gets a plain-text alternative made by html2text.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import html2text
import nh3

from mailops.errors import SendRefused

__all__ = [
    "Attachment",
    "Recipient",
    "build_message",
    "check_header",
    "html_to_text",
    "load_attachments",
    "new_message_id",
    "sanitize_html",
]


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str | None = None
    customer_id: str | None = None


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"

    @classmethod
    def from_path(cls, path: str | Path) -> Attachment:
        p = Path(path)
        if not p.is_file():
            raise SendRefused(f"attachment {p} is not a readable file", code="attachment_missing")
        return cls.from_bytes(p.name, p.read_bytes())

    @classmethod
    def from_bytes(
        cls, filename: str, content: bytes, content_type: str | None = None
    ) -> Attachment:
        guessed, encoding = mimetypes.guess_type(filename)
        if content_type is None:
            # a .gz is a gzip file to the recipient, not "text/plain + gzip encoding"
            content_type = (
                "application/gzip"
                if encoding == "gzip"
                else guessed
                if guessed and not encoding
                else "application/octet-stream"
            )
        return cls(filename=filename, content=content, content_type=content_type)


def load_attachments(items: Iterable[str | Path | Attachment]) -> list[Attachment]:
    return [a if isinstance(a, Attachment) else Attachment.from_path(a) for a in items]


def check_header(field: str, value: str | None) -> str | None:
    """VALUE unchanged, or SendRefused(header_crlf) when it holds CR or LF."""
    if value is not None and ("\r" in value or "\n" in value):
        raise SendRefused(
            f"the {field} contains a line break; header fields must be one line",
            code="header_crlf",
        )
    return value


def sanitize_html(html: str) -> str:
    """Outgoing HTML: no scripts, handlers or remote loaders (nh3's allow-list)."""
    return nh3.clean(html)


def html_to_text(html: str) -> str:
    conv = html2text.HTML2Text()
    conv.body_width = 0  # no hard wrapping; the mail client wraps
    conv.ignore_images = True
    return conv.handle(html).strip() + "\n"


def new_message_id(sender_address: str) -> str:
    """A globally unique Message-ID in the sending mailbox's own domain."""
    domain = sender_address.rsplit("@", 1)[-1] or "localhost"
    return make_msgid(domain=domain)


def _address(r: Recipient, field: str) -> Address:
    check_header(field, r.address)
    check_header(field, r.name)
    if "@" not in r.address:
        raise SendRefused(f"{r.address!r} is not an email address", code="bad_address")
    local, domain = r.address.rsplit("@", 1)
    if not local.isascii():
        raise SendRefused(
            f"{r.address} has a non-ASCII local part, which needs SMTPUTF8; not supported",
            code="bad_address",
        )
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")  # IDNA: exämple.test -> xn--...
        except UnicodeError:
            raise SendRefused(f"{r.address} has an invalid domain", code="bad_address") from None
    return Address(display_name=r.name or "", username=local, domain=domain)


def build_message(
    *,
    sender: Recipient,
    to: Sequence[Recipient],
    subject: str,
    body_text: str | None = None,
    body_html: str | None = None,
    cc: Sequence[Recipient] = (),
    bcc: Sequence[Recipient] = (),
    attachments: Sequence[Attachment] = (),
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    date: datetime | None = None,
    max_bytes: int | None = None,
) -> EmailMessage:
    """One RFC 5322 message (Bcc recipients are checked but not written). ``body_html`` is sanitized and gets a text alternative
    (``body_text`` when given, else html2text of the HTML)."""
    check_header("subject", subject)
    for name, value in (("Message-ID", message_id), ("In-Reply-To", in_reply_to)):
        check_header(name, value)
    for ref in references:
        check_header("References", ref)
    if max_bytes is not None:
        total = sum(len(a.content) for a in attachments)
        if total > max_bytes:
            raise SendRefused(
                f"attachments total {total:,} bytes; the limit is {max_bytes:,} bytes",
                code="too_large",
                guidance="send fewer or smaller files, or share a link",
            )
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _address(sender, "From")
    msg["To"] = [_address(r, "To") for r in to]
    if cc:
        msg["Cc"] = [_address(r, "Cc") for r in cc]
    for r in bcc:  # Bcc stays in the envelope only: no header reveals it, not even in Sent
        _address(r, "Bcc")
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id or new_message_id(sender.address)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    msg["MIME-Version"] = "1.0"
    if body_html is not None:
        clean = sanitize_html(body_html)
        msg.set_content(body_text if body_text is not None else html_to_text(clean))
        msg.add_alternative(clean, subtype="html")
    else:
        msg.set_content(body_text or "")
    for a in attachments:
        check_header("attachment name", a.filename)
        maintype, _, subtype = a.content_type.partition("/")
        msg.add_attachment(
            a.content, maintype=maintype, subtype=subtype or "octet-stream", filename=a.filename
        )
    if max_bytes is not None:
        size = len(msg.as_bytes())
        if size > max_bytes:
            raise SendRefused(
                f"the email is {size:,} bytes encoded; the limit is {max_bytes:,} bytes",
                code="too_large",
                guidance="send fewer or smaller files, or share a link",
            )
    return msg


def text_to_html(text: str) -> str:
    """Plain text as minimal HTML paragraphs (for a plain reply quoting an HTML original)."""
    import html as _html

    paras = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(
        "<p>" + "<br>".join(_html.escape(line) for line in p.split("\n")) + "</p>" for p in paras
    )
