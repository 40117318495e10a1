"""Bytes -> header facts and parsed messages. Pure; never raises on bad mail.

Two speeds, on purpose (see README "Performance"):

- ``parse_headers_fast(header_bytes)`` is what the sync decides from. It uses the stdlib
  parser with ``policy.compat32`` and ``email.utils.getaddresses``: addresses, date and ids
  without building the modern header objects (5x cheaper over a mailbox).
- ``parse_message(raw)`` is for the messages we store: ``policy.default`` for bodies and
  attachments, HTML sanitized with nh3, every problem a warning instead of an exception.

Message-ID normalisation (``normalize_message_id``): the first ``<...>`` token (or the
whole value when there are no brackets), whitespace removed, **lower-cased as a whole**.
RFC 5322 makes the local part case-sensitive in theory, but mail systems rewrite case in
practice and a collision between two ids differing only in case is not a real risk; one
rule everywhere (sync, send, reports) matters more. ``message_key`` falls back to
``sha256:<hex of the raw bytes>`` when a message has no usable Message-ID.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime

import nh3

__all__ = [
    "Attachment",
    "HeaderInfo",
    "ParsedMessage",
    "content_hash",
    "message_key",
    "normalize_message_id",
    "parse_headers_fast",
    "parse_message",
    "split_header",
    "sanitize_html",
]

_ID_RE = re.compile(r"<([^<>]*)>")
_WS_RE = re.compile(r"\s+")
_HEADER_PARSER = BytesHeaderParser(policy=policy.compat32)


class _CachingPolicy(EmailPolicy):
    """``policy.default`` that remembers parsed header objects by (name, raw value).

    ``get_body()``/``iter_attachments()`` re-parse each part's Content-Type several times
    and the same few values ("text/plain; charset=utf-8") recur across a mailbox; the
    header registry parse was half of the cost of parsing a stored message. Header objects
    are immutable, so sharing them is safe.
    """

    def header_fetch_parse(self, name, value):  # type: ignore[no-untyped-def]
        if hasattr(value, "name") or not isinstance(value, str):
            return super().header_fetch_parse(name, value)
        key = (name.lower(), value)
        hit = _HEADER_CACHE.get(key)
        if hit is None:
            hit = super().header_fetch_parse(name, value)
            if len(_HEADER_CACHE) < 4096:
                _HEADER_CACHE[key] = hit
        return hit


_HEADER_CACHE: dict[tuple[str, str], object] = {}
_CACHED_DEFAULT = _CachingPolicy()
_FULL_PARSER = BytesParser(policy=_CACHED_DEFAULT)


def normalize_message_id(value: str | None) -> str | None:
    """``" <ABC@Example.COM> "`` -> ``"abc@example.com"``; None when nothing usable."""
    if not value:
        return None
    text = str(value)
    m = _ID_RE.search(text)
    inner = m.group(1) if m else text
    inner = _WS_RE.sub("", inner).strip("<>").lower()
    return inner or None


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def message_key(message_id_header: str | None, raw: bytes | None = None) -> str | None:
    """The store's id for a message: normalised Message-ID, else ``sha256:<raw hash>``."""
    mid = normalize_message_id(message_id_header)
    if mid:
        return mid
    if raw is None:
        return None
    return "sha256:" + content_hash(raw)


def split_header(raw: bytes) -> bytes:
    """The header section of RAW (up to and including the blank line)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[: i + len(sep)]
    return raw


def _decode_words(value: str) -> str:
    """RFC 2047 encoded words -> text; never raises."""
    if "=?" not in value:
        return _WS_RE.sub(" ", value).strip()
    try:
        return _WS_RE.sub(" ", str(make_header(decode_header(value)))).strip()
    except Exception:  # noqa: BLE001 - mis-encoded header: keep it as it came
        return _WS_RE.sub(" ", value).strip()


def _ids(value: str | None) -> list[str]:
    if not value:
        return []
    out = []
    for m in _ID_RE.finditer(value):
        norm = normalize_message_id(m.group(0))
        if norm:
            out.append(norm)
    return out


def _utc_naive(value: str | None, warnings: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        dt = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        warnings.append(f"unparseable Date header: {value[:60]!r}")
        return None
    if dt is None:
        warnings.append(f"unparseable Date header: {value[:60]!r}")
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


@dataclass
class HeaderInfo:
    """What the sync decides from. Addresses are lower-cased ``local@domain`` strings."""

    message_id: str | None = None  # normalised
    message_id_header: str | None = None  # as it came
    from_addr: str | None = None
    from_name: str | None = None
    to_addrs: list[str] = field(default_factory=list)
    cc_addrs: list[str] = field(default_factory=list)
    date: datetime | None = None  # naive UTC
    subject: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def participants(self) -> list[str]:
        """From + To + Cc, in that order, without duplicates."""
        seen: dict[str, None] = {}
        if self.from_addr:
            seen[self.from_addr] = None
        for a in self.to_addrs:
            seen.setdefault(a, None)
        for a in self.cc_addrs:
            seen.setdefault(a, None)
        return list(seen)


def _addresses(values: list[str]) -> list[tuple[str, str]]:
    """(name, lower-cased address) pairs with an ``@``; never raises."""
    out: list[tuple[str, str]] = []
    for v in values:
        out.extend(_addresses_of(v))
    return out


@functools.lru_cache(maxsize=16384)
def _addresses_of(value: str) -> tuple[tuple[str, str], ...]:
    """One header value's addresses. Cached: the same From/To values recur all over a
    mailbox (the owner's own address, colleagues, newsletters)."""
    try:
        pairs = getaddresses([value])
    except Exception:  # noqa: BLE001 - pathological header: best effort split
        pairs = [("", v.strip()) for v in value.split(",")]
    out = []
    for name, addr in pairs:
        addr = addr.strip().strip("<>").lower()
        if "@" in addr and " " not in addr:
            out.append((name, addr))
    return tuple(out)


def _header_info(items: list[tuple[str, object]]) -> HeaderInfo:
    """Build HeaderInfo from raw (name, value) pairs (compat32 or raw_items)."""
    info = HeaderInfo()
    by: dict[str, list[str]] = {}
    for name, value in items:
        by.setdefault(name.lower(), []).append(str(value))

    def first(name: str) -> str | None:
        values = by.get(name)
        return values[0] if values else None

    info.message_id_header = first("message-id")
    info.message_id = normalize_message_id(info.message_id_header)
    froms = _addresses(by.get("from", []))
    if froms:
        info.from_name = _decode_words(froms[0][0]) or None
        info.from_addr = froms[0][1]
    elif by.get("from"):
        info.warnings.append("From header holds no address")
    info.to_addrs = [a for _, a in _addresses(by.get("to", []))]
    info.cc_addrs = [a for _, a in _addresses(by.get("cc", []))]
    info.date = _utc_naive(first("date"), info.warnings)
    subject = first("subject")
    info.subject = _decode_words(subject) if subject is not None else None
    irt = _ids(first("in-reply-to"))
    info.in_reply_to = irt[0] if irt else None
    info.references = _ids(" ".join(by.get("references", [])))
    return info


_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")  # a line with its end, as FeedParser splits


def _header_items(header_bytes: bytes) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, value) pairs of a header block exactly as ``BytesHeaderParser(policy=compat32)``
    gives them, without building a Message: this runs for every message the sync examines,
    and the FeedParser machinery cost 0.1 ms a block. Only the split into header lines is
    done here; each header's lines go through compat32's own ``header_source_parse`` and
    ``header_fetch_parse``, and decoding (RFC 2047, addresses) stays with the stdlib. A
    test checks both give the same items on the demo corpus, malformed mail included."""
    text = header_bytes.decode("ascii", "surrogateescape")
    sources: list[list[str]] = []
    problems: list[str] = []
    for line in _LINE_RE.findall(text):
        if not line.strip("\r\n"):
            break  # the blank line that ends the header block (or the end)
        if line[0] in " \t":
            if sources:
                sources[-1].append(line)
            else:
                problems.append("FirstHeaderLineIsContinuationDefect")
            continue
        name, colon, _ = line.partition(":")
        if not colon or not name or name != name.rstrip():
            problems.append("MissingHeaderBodySeparatorDefect")
            break
        sources.append([line])
    items = []
    for lines in sources:
        name, value = policy.compat32.header_source_parse(lines)
        items.append((name, str(policy.compat32.header_fetch_parse(name, value))))
    return items, problems


def parse_headers_fast(header_bytes: bytes) -> HeaderInfo:
    """Header facts from a header block (or a whole message); never raises."""
    try:
        items, problems = _header_items(header_bytes or b"")
        info = _header_info(list(items))
        info.warnings.extend(f"header defect: {p}" for p in problems)
        return info
    except Exception as e:  # noqa: BLE001 - S12: a bad message never stops a sync
        return HeaderInfo(warnings=[f"headers unparseable: {type(e).__name__}: {e}"])


@dataclass
class Attachment:
    part_index: int
    filename: str | None
    content_type: str
    content: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return content_hash(self.content)


@dataclass
class ParsedMessage:
    key: str  # the store id: normalised Message-ID or sha256:<hash>
    headers: HeaderInfo
    raw_sha256: str
    raw_size: int
    body_text: str | None = None
    body_html: str | None = None  # sanitized (nh3)
    attachments: list[Attachment] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def sanitize_html(html: str) -> str:
    """HTML from mail, safe to show: scripts, handlers, remote loaders removed (nh3)."""
    return nh3.clean(html)


def _text_of(part: Message, warnings: list[str]) -> str | None:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, bytes):
            return content.decode("utf-8", "replace")
        return str(content)
    except (LookupError, UnicodeError, AssertionError, ValueError, KeyError) as e:
        warnings.append(f"text part undecodable ({type(e).__name__}); decoded with replacement")
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload.decode("utf-8", "replace")
        return None


def _bodies(msg: EmailMessage, warnings: list[str]) -> tuple[str | None, str | None]:
    text = html = None
    try:
        plain = msg.get_body(preferencelist=("plain",))
        if plain is not None:
            text = _text_of(plain, warnings)
        rich = msg.get_body(preferencelist=("html",))
        if rich is not None:
            raw_html = _text_of(rich, warnings)
            if raw_html is not None:
                html = sanitize_html(raw_html)
                if text is None:
                    import html2text

                    h = html2text.HTML2Text()
                    h.body_width = 0
                    text = h.handle(html)
    except Exception as e:  # noqa: BLE001 - S12
        warnings.append(f"body unparseable: {type(e).__name__}: {e}")
    return text, html


def _attachments(msg: EmailMessage, warnings: list[str]) -> list[Attachment]:
    out: list[Attachment] = []
    try:
        for i, part in enumerate(msg.iter_attachments()):
            try:
                payload = part.get_payload(decode=True)
                if payload is None:  # message/rfc822 and other containers
                    payload = part.as_bytes()
                name = part.get_filename()
            except Exception as e:  # noqa: BLE001
                warnings.append(f"attachment {i} unreadable: {type(e).__name__}")
                continue
            out.append(Attachment(i, name, part.get_content_type(), bytes(payload)))
    except Exception as e:  # noqa: BLE001 - S12
        warnings.append(f"attachments unparseable: {type(e).__name__}: {e}")
    return out


def parse_message(raw: bytes, headers: HeaderInfo | None = None) -> ParsedMessage:
    """A stored message: headers, text, sanitized HTML, attachments. Never raises.

    HEADERS, when the caller already parsed this message's header block (the sync did, to
    decide), is reused instead of parsed again."""
    raw = raw or b""
    headers = headers if headers is not None else parse_headers_fast(split_header(raw))
    warnings = list(headers.warnings)
    parsed = ParsedMessage(
        key=message_key(headers.message_id_header, raw) or "sha256:" + content_hash(raw),
        headers=headers,
        raw_sha256=content_hash(raw),
        raw_size=len(raw),
    )
    if not headers.message_id:
        warnings.append("no Message-ID; stored under its content hash")
    try:
        msg = _FULL_PARSER.parsebytes(raw)
    except Exception as e:  # noqa: BLE001 - S12: raw bytes are kept, re-parse later
        warnings.append(f"message unparseable: {type(e).__name__}: {e}")
        parsed.warnings = warnings
        return parsed
    assert isinstance(msg, EmailMessage)
    for d in msg.defects:
        warnings.append(f"defect: {type(d).__name__}")
    parsed.body_text, parsed.body_html = _bodies(msg, warnings)
    parsed.attachments = _attachments(msg, warnings)
    parsed.warnings = list(dict.fromkeys(warnings))
    return parsed
