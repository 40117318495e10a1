"""Building outgoing emails with the stdlib ``email`` API (E2), as the best clients write them.

Every header value passes ``check_header`` first: CR or LF in a header field would let a
subject or a name inject headers, so it is refused (``header_crlf``), never stripped.

* Bodies are 7-bit safe (quoted-printable or base64, ``OUTGOING``): no relay has to
  downgrade them, so a DKIM signature added on the way survives.
* HTML is sanitized with nh3, keeping a safe subset of inline styles (``SAFE_STYLES``), and
  sent as a full document with ``<meta charset>``; its plain-text alternative is plain prose
  (``plaintext.html_to_text``: links as ``text <url>``, no Markdown).
* ``cid:`` images (a signature logo) travel inline in ``multipart/related``.
* Attachment names go in both ``name*=`` (Content-Type) and ``filename*=``
  (Content-Disposition), RFC 2231 UTF-8, each followed by an ASCII fallback for old clients.
* One MIME-Version (the top level). ``Bcc`` is written in the message -- it is the Sent copy,
  where the sales person sees whom they blind-copied -- and ``wire_bytes`` removes it
  before SMTP DATA, so no recipient ever sees it.
"""

from __future__ import annotations

import html as _html
import mimetypes
import re
import unicodedata
import urllib.parse
from collections.abc import Collection, Iterable, Sequence
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import cast

import nh3

from mailops.errors import SendRefused
from mailops.send.plaintext import html_to_text as _prose

__all__ = [
    "OUTGOING",
    "SAFE_STYLES",
    "Attachment",
    "Recipient",
    "ascii_fallback",
    "build_message",
    "check_header",
    "html_document",
    "html_to_text",
    "load_attachments",
    "new_message_id",
    "sanitize_html",
    "wire_bytes",
]

#: The policy of every outgoing email: SMTP line endings, 7-bit safe bodies, and headers we
#: fold ourselves (attachment names) written exactly as folded.
OUTGOING = policy.SMTP.clone(cte_type="7bit", refold_source="none")

#: CSS properties kept in ``style`` attributes: layout and typography of rich mail, nothing
#: that loads (``url()``), hides, overlays or positions content.
SAFE_STYLES = frozenset(
    [
        "color",
        "background-color",
        "font",
        "font-family",
        "font-size",
        "font-style",
        "font-weight",
        "font-variant",
        "line-height",
        "letter-spacing",
        "word-spacing",
        "text-align",
        "text-decoration",
        "text-indent",
        "text-transform",
        "vertical-align",
        "white-space",
        "direction",
        "margin",
        "margin-top",
        "margin-right",
        "margin-bottom",
        "margin-left",
        "padding",
        "padding-top",
        "padding-right",
        "padding-bottom",
        "padding-left",
        "border",
        "border-top",
        "border-right",
        "border-bottom",
        "border-left",
        "border-color",
        "border-style",
        "border-width",
        "border-collapse",
        "border-spacing",
        "border-radius",
        "width",
        "max-width",
        "min-width",
        "height",
        "max-height",
        "min-height",
        "list-style-type",
        "table-layout",
    ]
)
_UNSAFE_CSS = re.compile(r"url\s*\(|expression\s*\(|@import|javascript:|\\", re.I)

_ATTRIBUTES: dict[str, set[str]] = deepcopy(nh3.ALLOWED_ATTRIBUTES)
_ATTRIBUTES["*"] = {"style", "dir", "lang", "title"}
for _tag, _extra in {
    "table": {"width", "border", "cellpadding", "cellspacing", "bgcolor"},
    "td": {"width", "valign", "bgcolor", "height"},
    "th": {"width", "valign", "bgcolor", "height"},
    "tr": {"valign", "bgcolor"},
    "img": {"title"},
    "p": {"align"},
    "div": {"align"},
}.items():
    _ATTRIBUTES.setdefault(_tag, set()).update(_extra)
_URL_SCHEMES = set(nh3.ALLOWED_URL_SCHEMES) | {"cid"}


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
    #: an inline image: the HTML shows it as ``<img src="cid:CONTENT_ID">``
    content_id: str | None = None

    def inline(self, content_id: str | None = None) -> Attachment:
        """This file as an inline image (``cid:`` its name unless CONTENT_ID is given)."""
        return Attachment(
            self.filename, self.content, self.content_type, content_id or self.filename
        )

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


def _safe_style(value: str) -> str:
    kept = [d for d in value.split(";") if d.strip() and not _UNSAFE_CSS.search(d)]
    return "; ".join(d.strip() for d in kept)


def sanitize_html(html: str, *, inline_ids: Collection[str] | None = None) -> str:
    """Outgoing HTML: no scripts, handlers or remote loaders (nh3's allow-list); inline styles
    from ``SAFE_STYLES`` kept. ``cid:`` images are kept; with INLINE_IDS, only those."""

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if attr == "style":
            return _safe_style(value) or None
        if (
            tag == "img"
            and attr == "src"
            and value[:4].lower() == "cid:"
            and inline_ids is not None
        ):
            return value if _cid(value) in inline_ids else None
        return value

    clean = nh3.clean(
        html,
        attributes=_ATTRIBUTES,
        filter_style_properties=set(SAFE_STYLES),
        url_schemes=_URL_SCHEMES,
        attribute_filter=attribute_filter,
    )
    return _IMG_WITHOUT_SRC.sub(_alt_text, clean)


#: an image whose source was removed (an unknown cid:, a refused scheme) shows its alt text
_IMG_WITHOUT_SRC = re.compile(r"<img(?![^>]*\ssrc=)[^>]*>", re.I)


def _alt_text(m: re.Match[str]) -> str:
    alt = re.search(r'\salt="([^"]*)"', m.group())
    return alt.group(1) if alt else ""


def _cid(src: str) -> str:
    return urllib.parse.unquote(src[4:]).strip("<>")


def html_to_text(html: str) -> str:
    """The plain-text alternative of HTML: plain prose, links as ``text <url>``."""
    return _prose(html)


#: The frame of every HTML body: a full document that declares its charset.
_DOCUMENT = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body style="font-family: Arial, Helvetica, sans-serif; font-size: 14px; line-height: 1.5; color: #222222;">
{body}
</body>
</html>
"""


def html_document(fragment: str) -> str:
    """A sanitized fragment as a full HTML document with ``<meta charset>``."""
    return _DOCUMENT.format(body=fragment.strip())


def ascii_fallback(filename: str) -> str:
    """FILENAME in printable ASCII for clients that ignore RFC 2231 (``Müller.pdf`` ->
    ``Muller.pdf``); the extension is kept."""
    special = {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "þ": "th",
        "Þ": "Th",
        "–": "-",
        "—": "-",
    }
    text = "".join(special.get(ch, ch) for ch in filename)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in text)
    stem, dot, ext = text.rpartition(".")
    if not dot:
        stem, ext = text, ""
    if len(text) > 60:
        keep = 60 - len(ext) - 1
        text = stem[:keep] + ("." + ext if dot else "")
    return text.strip() or "attachment"


#: RFC 2231 attribute-char: what may stay unescaped in an extended parameter value
_ATTR_SAFE = "!#$&+-.^_`|~"


def _param_lines(param: str, filename: str) -> list[str]:
    """``param*=utf-8''...`` (continued past 60 characters), then ``param="fallback"``."""
    fallback = ascii_fallback(filename)
    lines = []
    if fallback != filename:
        pieces = [urllib.parse.quote(ch, safe=_ATTR_SAFE) for ch in filename]
        whole = "".join(pieces)
        if len(f" {param}*=utf-8''{whole};") <= 78:
            lines.append(f"{param}*=utf-8''{whole}")
        else:  # RFC 2231 continuations, each line within 78 characters
            chunks: list[str] = []
            current = ""
            for piece in pieces:
                head = f" {param}*{len(chunks)}*=" + ("utf-8''" if not chunks else "")
                if len(head) + len(current) + len(piece) + 1 > 78:
                    chunks.append(current)
                    current = ""
                current += piece
            chunks.append(current)
            lines += [
                f"{param}*{i}*=" + ("utf-8''" if i == 0 else "") + chunk
                for i, chunk in enumerate(chunks)
            ]
    lines.append(f'{param}="{fallback}"')
    return lines


def _set_names(part: MIMEPart, filename: str, disposition: str) -> None:
    """Content-Type ``name`` and Content-Disposition ``filename``, both RFC 2231 + ASCII."""
    ctype = part.get_content_type()
    del part["Content-Type"]
    del part["Content-Disposition"]
    part.set_raw("Content-Type", ";\n ".join([ctype, *_param_lines("name", filename)]))
    part.set_raw(
        "Content-Disposition", ";\n ".join([disposition, *_param_lines("filename", filename)])
    )


def _parts(container: MIMEPart) -> list[MIMEPart]:
    payload = container.get_payload()
    assert isinstance(payload, list)
    return cast(list[MIMEPart], payload)


def wire_message(raw: bytes, *, offers_8bitmime: bool) -> tuple[bytes, list[str]]:
    """(DATA bytes, MAIL FROM options) for RAW: Bcc removed; 7-bit as composed here, else
    ``BODY=8BITMIME`` when the server offers it (RFC 6152), else re-encoded to 7 bit."""
    wire = wire_bytes(raw)
    if wire.isascii():
        return wire, []
    if offers_8bitmime:
        return wire, ["BODY=8BITMIME"]
    from email.parser import BytesParser

    msg = BytesParser(policy=OUTGOING).parsebytes(wire)
    return msg.as_bytes(policy=OUTGOING), []


def wire_bytes(raw: bytes) -> bytes:
    """RAW as it goes over SMTP: the Bcc header (kept in the Sent copy) removed."""
    end = raw.find(b"\r\n\r\n")
    sep = b"\r\n"
    if end < 0:
        end, sep = raw.find(b"\n\n"), b"\n"
    if end < 0:
        return raw
    lines = raw[:end].split(sep)
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line[:4].lower() == b"bcc:"
        if not dropping:
            kept.append(line)
    return sep.join(kept) + raw[end:]


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
    inline_images: Sequence[Attachment] = (),
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    date: datetime | None = None,
    max_bytes: int | None = None,
) -> EmailMessage:
    """One RFC 5322 message: the Sent copy (with Bcc; ``wire_bytes`` is what SMTP gets).

    ``body_html`` is sanitized, framed as a full document and gets a plain-text alternative
    (``body_text`` when given, else plain prose made from the HTML); the INLINE_IMAGES it
    shows as ``cid:`` travel with it in multipart/related (the others are attachments).
    """
    check_header("subject", subject)
    for name, value in (("Message-ID", message_id), ("In-Reply-To", in_reply_to)):
        check_header(name, value)
    for ref in references:
        check_header("References", ref)
    inline = [a if a.content_id else a.inline() for a in inline_images]
    if max_bytes is not None:
        total = sum(len(a.content) for a in [*attachments, *inline])
        if total > max_bytes:
            raise SendRefused(
                f"attachments total {total:,} bytes; the limit is {max_bytes:,} bytes",
                code="too_large",
                guidance="send fewer or smaller files, or share a link",
            )
    msg = EmailMessage(policy=OUTGOING)
    msg["From"] = _address(sender, "From")
    msg["To"] = [_address(r, "To") for r in to]
    if cc:
        msg["Cc"] = [_address(r, "Cc") for r in cc]
    if bcc:  # the Sent copy shows it; wire_bytes() removes it before DATA
        msg["Bcc"] = [_address(r, "Bcc") for r in bcc]
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id or new_message_id(sender.address)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    msg["MIME-Version"] = "1.0"
    unused = list(inline)
    if body_html is not None:
        clean = sanitize_html(body_html, inline_ids={str(a.content_id) for a in inline})
        msg.set_content(body_text if body_text is not None else html_to_text(clean))
        msg.add_alternative(html_document(clean), subtype="html")
        shown = {_cid(m) for m in re.findall(r'src="(cid:[^"]*)"', clean, flags=re.I)}
        related = [a for a in inline if a.content_id in shown]
        unused = [a for a in inline if a.content_id not in shown]
        if related:
            html_part = _parts(msg)[1]
            for a in related:
                check_header("image name", a.filename)
                maintype, _, subtype = a.content_type.partition("/")
                html_part.add_related(
                    a.content,
                    maintype=maintype,
                    subtype=subtype or "octet-stream",
                    cid=f"<{a.content_id}>",
                    disposition="inline",
                    filename=a.filename,
                )
                _set_names(_parts(html_part)[-1], a.filename, "inline")
    else:
        msg.set_content(body_text or "")
    for a in [*attachments, *unused]:
        check_header("attachment name", a.filename)
        maintype, _, subtype = a.content_type.partition("/")
        msg.add_attachment(
            a.content, maintype=maintype, subtype=subtype or "octet-stream", filename=a.filename
        )
        _set_names(_parts(msg)[-1], a.filename, "attachment")
    for part in msg.walk():  # one MIME-Version: the top level's (RFC 2045)
        if part is not msg:
            del part["MIME-Version"]
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
    paras = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(
        "<p>" + "<br>".join(_html.escape(line) for line in p.split("\n")) + "</p>" for p in paras
    )
