"""Bytes -> header facts and parsed messages. Pure; never raises on bad mail.

Two speeds, on purpose (see README "Performance"):

- ``parse_headers_fast(header_bytes, internaldate)`` is what the sync decides from. It uses
  the stdlib parser with ``policy.compat32`` and ``email.utils.getaddresses``: addresses,
  date and ids without building the modern header objects (5x cheaper over a mailbox).
  Each field is read on its own: one bad field (an overflowing Date, a broken address
  list) is a warning and never discards the others (S13).
- ``parse_message(raw)`` is for the messages we store: ``policy.default`` for bodies and
  attachments, HTML sanitized (``mailops.safe_html``: no script, no remote load), every
  problem a warning instead of an exception, from the WHOLE MIME tree.

Message-ID normalisation (``normalize_message_id``): the first ``<...>`` token (or the
whole value when there are no brackets), whitespace removed, **lower-cased as a whole**,
never truncated otherwise (``<svg/onload=x@e.test>`` -> ``svg/onload=x@e.test``). RFC 5322
makes the local part case-sensitive in theory, but mail systems rewrite case in practice;
two messages whose ids differ only in case are told apart by their content (S13) instead.
``usable_message_id`` also refuses garbage: no ``left@right`` form, control characters,
brackets or quotes left inside, undecodable bytes, or longer than 500 characters.

Identity (S13, ``ParsedMessage.content_fp``): sha256 over every From address (sorted), the
Date header (UTC ISO when it parses, else its text), the decoded Subject and a digest of
the decoded leaf parts (text parts as whitespace-collapsed text, others as bytes): what a
reader sees, not how it travelled. Received, Bcc, Delivered-To, MIME boundaries and
transfer encodings are not part of it. A message without a usable Message-ID is stored as
``sha256:<content_fp>``; ``store.messages.resolve_identities`` turns one Message-ID with
another fingerprint into a distinct message.

Dates (S13): a Date before 1970, more than ``FUTURE_SLACK`` after the server's INTERNALDATE
(or now), unparseable, overflowing or missing falls back to the INTERNALDATE the caller
passes, with a warning.

Warnings from the whole MIME tree (S12): each part's defects with its part path
(``defect in part 1.2: InvalidBase64CharactersDefect``), undecodable transfer encodings,
unknown charsets, text not valid in its declared charset, invalid RFC 2047 encoded words
(Subject, From, To, Cc, file names), 8-bit header bytes, a NUL in a file name, MIME nesting
deeper than ``MAX_DEPTH`` (more than ``MAX_BOUNDARIES`` boundaries: the MIME tree is not
parsed at all, the stdlib parser being quadratic in nesting). Stdlib defects treated as noise (``NOISE_DEFECTS``, no warning):
``ObsoleteHeaderDefect`` (obsolete RFC 5322 syntax, which readers must accept),
``NonASCIILocalPartDefect`` (legal under RFC 6532), ``InvalidMultipartContentTransferEncoding
Defect`` (a multipart declared base64/QP: the parts decode anyway) and
``MisplacedEnvelopeHeaderDefect`` (an mbox ``From `` line left by an import).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from mailops.safe_html import sanitize_html

__all__ = [
    "FUTURE_SLACK",
    "MAX_BOUNDARIES",
    "MAX_DEPTH",
    "NOISE_DEFECTS",
    "Attachment",
    "HeaderInfo",
    "ParsedMessage",
    "content_fingerprint",
    "content_hash",
    "message_key",
    "normalize_message_id",
    "parse_headers_fast",
    "parse_message",
    "split_header",
    "sanitize_html",
    "usable_message_id",
]

_ID_RE = re.compile(r"<([^<>]*)>")
_WS_RE = re.compile(r"\s+")
_HEADER_PARSER = BytesHeaderParser(policy=policy.compat32)

EPOCH = datetime(1970, 1, 1)
FUTURE_SLACK = timedelta(days=2)  # a Date later than INTERNALDATE + this is not believed
MAX_DEPTH = 64  # MIME nesting examined; deeper parts are kept in the raw bytes only
MAX_BOUNDARIES = 100  # more multipart boundaries than this: the MIME tree is not parsed
MAX_WARNINGS = 50  # per message
NOISE_DEFECTS = frozenset(
    {
        "ObsoleteHeaderDefect",
        "NonASCIILocalPartDefect",
        "InvalidMultipartContentTransferEncodingDefect",
        "MisplacedEnvelopeHeaderDefect",
    }
)
_KNOWN_CTE = frozenset(
    {"", "7bit", "8bit", "binary", "base64", "quoted-printable"}
    | {"x-uuencode", "uuencode", "uue", "x-uue"}
)
_GARBAGE_ID_RE = re.compile('[\x00-\x1f\x7f<>"\\\\\ufffd\ud800-\udfff]')
_ENCODED_WORD_RE = re.compile(r"=\?[^\s?]*\?[^\s?]*\?[^\s]*?\?=")
_STRICT_WORD_RE = re.compile(r"=\?([^\s?*]+)(?:\*[^\s?]*)?\?([bBqQ])\?([^\s?]*)\?=")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_FORMAT_CHARS_RE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_CHARSET_RE = re.compile(r"""\bcharset\s*=\s*["']?([^"';\s]+)""", re.I)
_YEAR_RE = re.compile(r"(?<![\d:+-])(\d{4})(?![\d:])")


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


def usable_message_id(value: str | None) -> str | None:
    """The normalised Message-ID when it can identify a message, else None (garbage)."""
    mid = normalize_message_id(value)
    if mid is None or len(mid) > 500:
        return None
    plain = mid.isascii() and mid.isprintable() and not _ID_SPECIALS.intersection(mid)
    if not plain and _GARBAGE_ID_RE.search(mid):  # controls, quotes, U+FFFD, bad bytes
        return None
    left, at, right = mid.rpartition("@")
    return mid if at and left and right else None


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def message_key(message_id_header: str | None, raw: bytes | None = None) -> str | None:
    """The store's base id for a message: usable Message-ID, else ``sha256:<content_fp>``."""
    mid = usable_message_id(message_id_header)
    if mid:
        return mid
    if raw is None:
        return None
    return parse_message(raw).key


def split_header(raw: bytes) -> bytes:
    """The header section of RAW (up to and including the blank line)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[: i + len(sep)]
    return raw


@functools.lru_cache(maxsize=256)
def _charset_ok(name: str) -> bool:
    if name.lower() in ("unknown-8bit", "x-unknown"):
        return False
    try:
        codecs.lookup(name)
    except (LookupError, ValueError):
        return False
    return True


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes in a declared (maybe wrong or unknown) charset -> text; never raises."""
    if charset and _charset_ok(charset):
        try:
            return data.decode(charset)
        except UnicodeError:
            pass
    try:
        return data.decode("utf-8")
    except UnicodeError:
        return data.decode("cp1252", "replace")


def _header_text(header_bytes: bytes) -> str:
    if header_bytes.isascii():
        return header_bytes.decode("ascii")
    try:
        return header_bytes.decode("utf-8")
    except UnicodeError:
        return header_bytes.decode("cp1252", "replace")


def _decode_words(value: str, warnings: list[str] | None = None, label: str = "") -> str:
    """RFC 2047 encoded words -> text; never raises (unknown charsets decode best effort).

    With WARNINGS, an encoded word that does not decode (unknown charset, bytes invalid in
    it, invalid base64, an encoded line break) is a warning; decoding and checking share
    one ``decode_header`` pass (this runs for every From and Subject the sync examines)."""
    if "=?" not in value:
        return _WS_RE.sub(" ", value).strip()
    try:
        chunks = decode_header(value)
    except Exception:  # noqa: BLE001 - keep it as it came
        if warnings is not None:
            _check_encoded_words(label, value, warnings)
        return _WS_RE.sub(" ", value).strip()
    if warnings is not None and (
        "?b?" in value
        or "?B?" in value
        or any(cs and (b"\r" in c or b"\n" in c) for c, cs in chunks if isinstance(c, bytes))
    ):
        _check_encoded_words(label, value, warnings)  # base64 errors decode silently to b""
        warnings = None
    try:
        return _WS_RE.sub(" ", str(make_header(chunks))).strip()
    except Exception:  # noqa: BLE001 - unknown charset or bad bytes: chunk by chunk
        if warnings is not None:
            _check_encoded_words(label, value, warnings)
    try:
        text = "".join(
            c if isinstance(c, str) else _decode_bytes(c, cs or "us-ascii") for c, cs in chunks
        )
        return _WS_RE.sub(" ", text).strip()
    except Exception:  # noqa: BLE001 - keep it as it came
        return _WS_RE.sub(" ", value).strip()


def _check_encoded_words(label: str, value: str, warnings: list[str]) -> None:
    """Warn once per header for an RFC 2047 encoded word that does not decode."""
    why = _encoded_word_problem(value)
    if why is not None:
        warnings.append(f"invalid encoded word in {label} ({why})")


@functools.lru_cache(maxsize=4096)
def _encoded_word_problem(value: str) -> str | None:
    """What is wrong with the first bad encoded word of VALUE, else None. Cached: the same
    From values recur all over a mailbox."""
    for m in _ENCODED_WORD_RE.finditer(value):
        word = m.group(0)
        strict = _STRICT_WORD_RE.fullmatch(word)
        why = None
        if strict is None:
            why = "malformed"
        else:
            charset, enc, text = strict.groups()
            if not _charset_ok(charset):
                why = f"unknown charset {charset[:40]!r}"
            else:
                try:
                    if enc in "bB":
                        if not _B64_RE.fullmatch(text) or len(text.rstrip("=")) % 4 == 1:
                            raise binascii.Error("not base64")
                        data = base64.b64decode(text + "=" * (-len(text) % 4))
                    else:
                        data = binascii.a2b_qp(text.replace("_", " ").encode("ascii"), header=True)
                    if b"\r" in data or b"\n" in data:
                        why = "encodes a line break"
                    data.decode(charset)
                except (binascii.Error, UnicodeError, ValueError, LookupError):
                    why = f"not valid {enc.upper()}/{charset[:40]}"
        if why:
            return f"{why}: {word[:60]!r}"
    return None


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
    """A Date header as naive UTC; None (and a warning) when it does not parse or overflows."""
    if not value:
        return None
    try:
        dt = parsedate_to_datetime(value.strip())
        if dt is None:
            raise ValueError(value)
        if " 00" in value:  # a 4-digit year below 100 ("0000") is read as 2000: not a date
            year = _YEAR_RE.search(value)
            if year is not None and int(year.group(1)) != dt.year:
                raise ValueError(value)
        if dt.tzinfo is not None:
            dt = dt.astimezone(UTC).replace(tzinfo=None)
        return dt
    except Exception:  # noqa: BLE001 - TypeError/ValueError/IndexError/OverflowError, all alike
        warnings.append(f"unparseable Date header: {value[:60]!r}")
        return None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _implausible(dt: datetime, internaldate: datetime | None) -> str | None:
    if dt < EPOCH:
        return "before 1970"
    ref = internaldate if internaldate is not None and internaldate >= EPOCH else _now()
    if dt > ref + FUTURE_SLACK:
        return "in the future"
    return None


@dataclass
class HeaderInfo:
    """What the sync decides from. Addresses are lower-cased ``local@domain`` strings."""

    message_id: str | None = None  # normalised and usable (None: missing or garbage)
    message_id_header: str | None = None  # as it came
    from_addr: str | None = None  # the first From address
    from_name: str | None = None
    to_addrs: list[str] = field(default_factory=list)
    cc_addrs: list[str] = field(default_factory=list)
    date: datetime | None = None  # naive UTC: the Date header, else INTERNALDATE (S13)
    subject: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    from_addrs: list[str] = field(default_factory=list)  # every From address (RFC 5322)
    date_source: str | None = None  # header | internaldate | None
    header_date: datetime | None = None  # the Date header as parsed (even implausible)
    date_header: str | None = None  # the Date header as it came
    from_header: str | None = None  # the From header as it came, when it holds no address

    @property
    def participants(self) -> list[str]:
        """Every From, To and Cc address, in that order, without duplicates (S13)."""
        seen: dict[str, None] = dict.fromkeys(self.from_addrs)
        if self.from_addr:
            seen.setdefault(self.from_addr, None)
        for a in self.to_addrs:
            seen.setdefault(a, None)
        for a in self.cc_addrs:
            seen.setdefault(a, None)
        return list(seen)


_NONE: tuple[None] = (None,)
_ID_SPECIALS = frozenset('<>"\\')


def _addresses(values: Iterable[str]) -> list[tuple[str, str]]:
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


def _unreadable(label: str, e: BaseException) -> str:
    return f"{label} header unreadable: {type(e).__name__}"


def _read_from(info: HeaderInfo, values: list[str]) -> None:
    froms = _addresses(values)
    if froms:
        info.from_name = _decode_words(froms[0][0], info.warnings, "From") or None
        info.from_addr = froms[0][1]
        if (
            info.from_name
            and "@" in info.from_name
            and info.from_addr not in info.from_name.lower()
        ):
            info.warnings.append("From display name holds another address than the sender's")
        info.from_addrs = (
            [froms[0][1]] if len(froms) == 1 else list(dict.fromkeys(a for _, a in froms))
        )
    elif values:
        info.warnings.append("From header holds no address")
        info.from_header = " ".join(values)


def _read_date(info: HeaderInfo, value: str | None, internaldate: datetime | None) -> None:
    w = info.warnings
    parsed = _utc_naive(value, w) if value else None
    info.header_date, info.date_header = parsed, value
    why = "unparseable" if value and parsed is None else None
    if parsed is not None:
        why = _implausible(parsed, internaldate)
        if why is None:
            info.date, info.date_source = parsed, "header"
            return
        w.append(f"Date header {why}: {value[:60]!r}" if value else f"Date header {why}")
    if internaldate is None or internaldate < EPOCH:
        return
    info.date, info.date_source = internaldate, "internaldate"
    w.append(
        "no Date header; date taken from the server's INTERNALDATE"
        if not value
        else "date taken from the server's INTERNALDATE"
    )


def _header_info(
    items: list[tuple[str, object]], internaldate: datetime | None = None
) -> HeaderInfo:
    """Build HeaderInfo from raw (name, value) pairs, each field on its own (S13)."""
    info = HeaderInfo()
    by: dict[str, list[str]] = {}
    for name, value in items:
        by.setdefault(name.lower(), []).append(value if isinstance(value, str) else str(value))
    w = info.warnings
    get = by.get
    try:
        info.message_id_header = header = get("message-id", _NONE)[0]
        info.message_id = usable_message_id(info.message_id_header)
        if info.message_id is None and header is not None and header.strip():
            w.append(f"garbage Message-ID {header[:60]!r}; stored under its content hash")
    except Exception as e:  # noqa: BLE001 - S13: one bad field never discards the others
        w.append(_unreadable("Message-ID", e))
    try:
        _read_from(info, get("from", []))
    except Exception as e:  # noqa: BLE001
        w.append(_unreadable("From", e))
    try:
        info.to_addrs = [a for _, a in _addresses(get("to", ()))]
    except Exception as e:  # noqa: BLE001
        w.append(_unreadable("To", e))
    try:
        info.cc_addrs = [a for _, a in _addresses(get("cc", ()))]
    except Exception as e:  # noqa: BLE001
        w.append(_unreadable("Cc", e))
    try:
        _read_date(info, get("date", _NONE)[0], internaldate)
    except Exception as e:  # noqa: BLE001
        w.append(_unreadable("Date", e))
    try:
        subject = get("subject", _NONE)[0]
        info.subject = _decode_words(subject, w, "Subject") if subject is not None else None
    except Exception as e:  # noqa: BLE001
        w.append(_unreadable("Subject", e))
    try:
        irt = _ids(get("in-reply-to", _NONE)[0])
        info.in_reply_to = irt[0] if irt else None
        info.references = _ids(" ".join(get("references", ())))
    except Exception as e:  # noqa: BLE001
        w.append(_unreadable("References", e))
    return info


_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")  # a line with its end, as FeedParser splits


def _header_items(header_bytes: bytes) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, value) pairs of a header block exactly as ``BytesHeaderParser(policy=compat32)``
    gives them, without building a Message: this runs for every message the sync examines,
    and the FeedParser machinery cost 0.1 ms a block. Only the split into header lines is
    done here; each header's lines are joined as compat32's ``header_source_parse`` joins
    them (its ``header_fetch_parse`` is the identity on text without surrogates), and decoding (RFC 2047, addresses) stays with the stdlib. A
    test checks both give the same items on the demo corpus, malformed mail included.

    8-bit bytes (headers not RFC 2047 encoded) are read as UTF-8 (RFC 6532), else as
    Windows-1252, where the stdlib would leave U+FFFD; the caller adds a warning."""
    text = _header_text(header_bytes)
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
    for lines in sources:  # compat32's header_source_parse, inlined (this runs 10k times a
        # sync); its header_fetch_parse is the identity here: the text has no surrogates
        name, value = lines[0].split(":", 1)
        value = value.lstrip(" \t") + "".join(lines[1:])
        items.append((name, value.rstrip("\r\n")))
    return items, problems


def parse_headers_fast(header_bytes: bytes, internaldate: datetime | None = None) -> HeaderInfo:
    """Header facts from a header block (or a whole message); never raises.

    INTERNALDATE (naive UTC, from the server) is the fallback for a missing or bad Date."""
    try:
        block = header_bytes or b""
        items, problems = _header_items(block)
        info = _header_info(list(items), internaldate)
        info.warnings.extend(f"header defect: {p}" for p in problems)
        if not block.isascii():
            info.warnings.append("8-bit bytes in headers (not RFC 2047 encoded)")
        return info
    except Exception as e:  # noqa: BLE001 - S12: a bad message never stops a sync
        return HeaderInfo(warnings=[f"headers unparseable: {type(e).__name__}: {e}"])


def content_fingerprint(headers: HeaderInfo, body_digest: str) -> str:
    """S13 identity: From addresses, Date, Subject and the decoded body (module doc)."""
    h = hashlib.sha256()
    subject = _WS_RE.sub(" ", headers.subject or "").strip()
    froms = ",".join(sorted(headers.from_addrs)) or _WS_RE.sub(" ", headers.from_header or "")
    date = headers.header_date
    when = date.isoformat() if date else _WS_RE.sub(" ", headers.date_header or "").strip()
    for piece in (froms.strip(), when, subject, body_digest):
        h.update(piece.encode("utf-8", "replace"))
        h.update(b"\0")
    return h.hexdigest()


@dataclass
class Attachment:
    part_index: int
    filename: str | None  # as the sender wrote it: data, never a path (filenames.safe_basename)
    content_type: str
    content: bytes = field(repr=False)
    content_id: str | None = None  # Content-ID without brackets, for cid: images
    digest: str | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        if self.digest is None:
            self.digest = content_hash(self.content)
        return self.digest


@dataclass
class ParsedMessage:
    key: str  # the store id: usable Message-ID or sha256:<content_fp> (resolve_identities)
    headers: HeaderInfo
    raw_sha256: str
    raw_size: int
    body_text: str | None = None
    body_html: str | None = None  # sanitized (safe_html)
    attachments: list[Attachment] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    content_fp: str = ""  # S13 identity fingerprint
    identity: str | None = None  # new | linked | variant, once resolved against the store


_Part = tuple[str, Message, bool]  # (part path, part, is a leaf)


def _parts(msg: Message, warnings: list[str]) -> list[_Part]:
    """Every part in tree order with its path ("" = the message, "1.2" = 2nd of the 1st),
    iteratively: hostile nesting cannot exhaust the stack."""
    out: list[_Part] = []
    stack: list[tuple[str, Message, int]] = [("", msg, 0)]
    deep = False
    while stack:
        path, part, depth = stack.pop()
        subs = part.get_payload() if part.is_multipart() else None
        if not isinstance(subs, list):
            out.append((path, part, True))
            continue
        out.append((path, part, False))
        if depth >= MAX_DEPTH:
            deep = True
            continue
        for i in range(len(subs) - 1, -1, -1):
            sub = subs[i]
            if isinstance(sub, Message):
                stack.append((f"{path}.{i + 1}" if path else str(i + 1), sub, depth + 1))
    if deep:
        warnings.append(
            f"MIME nesting deeper than {MAX_DEPTH}; deeper parts kept in the raw bytes only"
        )
    return out


def _where(path: str) -> str:
    return f" in part {path}" if path else ""


# A large MIME leaf of a spooled message (mailops.spool) is replaced in the skeleton the
# parser sees by "mailops-blob:<sha256 of its decoded bytes>:<size>": its identity digest is
# that sha256, so a message has one fingerprint (S13) however it was read.
_BLOB_MARKER = re.compile(rb"^mailops-blob:([0-9a-f]{64}):\d+\s*$")


def _leaf_digest(data: bytes) -> bytes:
    m = _BLOB_MARKER.match(data) if data.startswith(b"mailops-blob:") else None
    return bytes.fromhex(m.group(1).decode()) if m else hashlib.sha256(data).digest()


class _Tree:
    """One pass over the MIME tree: decoded leaf payloads (shared by bodies and attachments),
    the identity digest of the content, and the warnings of every part."""

    def __init__(self, msg: Message, warnings: list[str]) -> None:
        self.parts = _parts(msg, warnings)
        self.payload: dict[int, bytes | None] = {}
        self.text: dict[int, str] = {}
        self.path: dict[int, str] = {}
        digest = hashlib.sha256()
        for path, part, leaf in self.parts:
            self.path[id(part)] = path
            if not leaf:
                continue
            try:
                payload = part.get_payload(decode=True)
            except Exception as e:  # noqa: BLE001
                warnings.append(f"part {path or 'body'} undecodable: {type(e).__name__}")
                payload = None
            data = payload if isinstance(payload, bytes) else None
            self.payload[id(part)] = data
            # the raw header values: the header registry is the costly part of a parse
            ctype = cte = disposition = ""
            for hname, hvalue in part.raw_items():
                key = hname.lower()
                if key == "content-type":
                    ctype = str(hvalue)
                elif key == "content-transfer-encoding":
                    cte = str(hvalue).strip().lower()
                elif key == "content-disposition":
                    disposition = str(hvalue)
            if cte not in _KNOWN_CTE:
                warnings.append(f"unknown transfer encoding {cte[:30]!r}{_where(path)}; kept as is")
            main, slash, _ = ctype.partition(";")[0].strip().partition("/")
            if not slash or main.lower() == "text":
                text = self._decode_text(part, path, ctype, data or b"", warnings)
                self.text[id(part)] = text
                digest.update("\n".join(text.splitlines()).rstrip().encode("utf-8", "replace"))
            else:
                digest.update(_leaf_digest(data or b""))
            digest.update(b"\0")
            if "name" in ctype.lower() or "name" in disposition.lower():
                name = self.filename(part, path, ctype + disposition, warnings)
                if name is not None and "\x00" in name:
                    warnings.append(f"NUL in the file name{_where(path)}")
                if name is not None and _FORMAT_CHARS_RE.search(name):
                    warnings.append(f"bidi or zero-width characters in the file name{_where(path)}")
        for path, part, _ in self.parts:  # after decoding: base64 problems are defects too
            for d in part.defects:
                kind = type(d).__name__
                if kind not in NOISE_DEFECTS:
                    warnings.append(f"defect{_where(path)}: {kind}" if path else f"defect: {kind}")
        self.digest = digest.hexdigest()

    @staticmethod
    def _decode_text(part: Message, path: str, ctype: str, data: bytes, warnings: list[str]) -> str:
        m = _CHARSET_RE.search(ctype) if "harset" in ctype else None
        charset = m.group(1).strip().lower() if m else None
        if charset is None and "harset" in ctype:  # RFC 2231 or odd quoting: the stdlib reads it
            charset = part.get_content_charset()
        if charset and not _charset_ok(charset):
            warnings.append(f"unknown charset {charset[:40]!r}{_where(path)}; decoded best effort")
            return _decode_bytes(data, None)
        try:
            return data.decode(charset or "us-ascii")
        except UnicodeError:
            what = f"is not valid {charset[:40]}" if charset else "has 8-bit bytes and no charset"
            warnings.append(f"text{_where(path)} {what}; decoded best effort")
            return _decode_bytes(data, None)

    @staticmethod
    def filename(part: Message, path: str, raw: str, warnings: list[str]) -> str | None:
        if "=?" in raw:
            _check_encoded_words(f"the file name{_where(path)}", raw, warnings)
        try:
            return part.get_filename()
        except Exception as e:  # noqa: BLE001
            warnings.append(f"file name{_where(path)} unreadable: {type(e).__name__}")
            return None


def _bodies(
    msg: EmailMessage, tree: _Tree, warnings: list[str]
) -> tuple[str | None, str | None, set[int]]:
    text = html = None
    used: set[int] = set()
    try:
        plain = msg.get_body(preferencelist=("plain",))
        if plain is not None:
            used.add(id(plain))
            text = tree.text.get(id(plain))
        rich = msg.get_body(preferencelist=("html",))
        if rich is not None:
            used.add(id(rich))
            raw_html = tree.text.get(id(rich))
            if raw_html is not None:
                html = sanitize_html(raw_html)
                if text is None:
                    import html2text

                    h = html2text.HTML2Text()
                    h.body_width = 0
                    text = h.handle(html)
    except Exception as e:  # noqa: BLE001 - S12
        warnings.append(f"body unparseable: {type(e).__name__}: {e}")
    return text, html, used


def _content_id(part: Message) -> str | None:
    value = part.get("Content-ID")
    if not value:
        return None
    cid = str(value).strip().strip("<>").strip()
    return cid or None


def _attachments(
    msg: EmailMessage, tree: _Tree, body_parts: set[int], warnings: list[str]
) -> list[Attachment]:
    """Top-level attachments (``iter_attachments``), then every other non-body leaf: inline
    images of multipart/related (for ``cid:``) and files nested where mailers put them."""
    out: list[Attachment] = []
    seen: set[int] = set(body_parts)

    def add(part: Message) -> None:
        i = len(out)
        path = tree.path.get(id(part), "")
        try:
            payload: Any = tree.payload.get(id(part))
            if payload is None:
                payload = part.get_payload(decode=True)
            if payload is None:  # message/rfc822 and other containers
                payload = part.as_bytes()
            name = part.get_filename()
        except Exception as e:  # noqa: BLE001
            warnings.append(f"attachment {i}{_where(path)} unreadable: {type(e).__name__}")
            return
        out.append(Attachment(i, name, part.get_content_type(), bytes(payload), _content_id(part)))

    try:
        for part in msg.iter_attachments():
            seen.add(id(part))
            add(part)
    except Exception as e:  # noqa: BLE001 - S12
        warnings.append(f"attachments unparseable: {type(e).__name__}: {e}")
    attached = [
        path
        for path, p, leaf in tree.parts
        if path and not leaf and p.get_content_maintype() == "message"
    ]
    for path, leaf_part, leaf in tree.parts:
        if not leaf or id(leaf_part) in seen or not path:
            continue
        if any(path.startswith(a + ".") for a in attached):
            continue  # inside an attached message: that message is the attachment
        if (
            leaf_part.get_content_maintype() == "text"
            and not leaf_part.get_filename()
            and leaf_part.get_content_disposition() != "attachment"
        ):
            continue  # an alternative body, not a file
        seen.add(id(leaf_part))
        add(leaf_part)
    return out


def parse_message(
    raw: bytes, headers: HeaderInfo | None = None, internaldate: datetime | None = None
) -> ParsedMessage:
    """A stored message: headers, text, sanitized HTML, attachments. Never raises.

    HEADERS, when the caller already parsed this message's header block (the sync did, to
    decide), is reused instead of parsed again; INTERNALDATE is the Date fallback (S13)."""
    raw = raw or b""
    headers = (
        headers if headers is not None else parse_headers_fast(split_header(raw), internaldate)
    )
    warnings = list(headers.warnings)
    parsed = ParsedMessage(key="", headers=headers, raw_sha256=content_hash(raw), raw_size=len(raw))
    if not headers.message_id and not (headers.message_id_header or "").strip():
        warnings.append("no Message-ID; stored under its content hash")
    body_digest = "raw:" + parsed.raw_sha256
    boundaries = raw.count(b"oundary=") + raw.count(b"OUNDARY=")
    if boundaries > MAX_BOUNDARIES:  # the stdlib parser is quadratic in nesting: not this one
        warnings.append(
            f"{boundaries} multipart boundaries (more than {MAX_BOUNDARIES}); MIME not parsed,"
            " kept in the raw bytes"
        )
        parsed.content_fp = content_fingerprint(headers, body_digest)
        parsed.key = headers.message_id or "sha256:" + parsed.content_fp
        parsed.warnings = _capped(warnings)
        return parsed
    try:
        msg = _FULL_PARSER.parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        tree = _Tree(msg, warnings)
        body_digest = tree.digest
        parsed.body_text, parsed.body_html, used = _bodies(msg, tree, warnings)
        parsed.attachments = _attachments(msg, tree, used, warnings)
    except Exception as e:  # noqa: BLE001 - S12: raw bytes are kept, re-parse later
        warnings.append(f"message unparseable: {type(e).__name__}: {e}")
    parsed.content_fp = content_fingerprint(headers, body_digest)
    parsed.key = headers.message_id or "sha256:" + parsed.content_fp
    parsed.warnings = _capped(warnings)
    return parsed


def _capped(warnings: list[str]) -> list[str]:
    """Distinct warnings, at most MAX_WARNINGS (a hostile message can produce thousands)."""
    out = list(dict.fromkeys(warnings))
    if len(out) > MAX_WARNINGS:
        out = [*out[:MAX_WARNINGS], f"... and {len(out) - MAX_WARNINGS} more warnings"]
    return out
