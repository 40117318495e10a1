"""The lean FETCH reader: FETCH responses straight off the socket buffer, and their parser.

imaplib reads a response line by line through several Python frames per line (regex
matches for every response kind, a dict of untagged responses, literal bookkeeping), and
imapclient's general response parser then tokenises every byte of the metadata again: on a
headers-first sync the two cost more than everything the server does. ``read_fetch`` reads
the session's buffered file itself: one ``readline`` per line, one ``read`` per literal (so
a literal's bytes, whatever CRLF, braces or 8-bit data they hold, are never scanned), and
``parse_record`` walks the few items of one response (``UID``, ``FLAGS``, ``INTERNALDATE``,
``RFC822.SIZE``, ``BODY[...]`` as a literal, a quoted string with escapes, or ``NIL``).

The records have imapclient's shape (``{uid: {b"FLAGS": (...), b"BODY[...]": bytes, ...}}``,
without the ``UID``/``SEQ`` keys). A response this parser does not know (say a nested list)
goes to imapclient's parser alone; one neither can read is reported after the whole reply
has been read (``ProtocolError``, a refusal: the session stays usable and the sync fetches
those messages one per command, S15). ``internaldate`` reads the fixed IMAP date-time
(``"01-Jan-2026 10:00:00 +0000"``) by hand: ``time.strptime`` cost 6% of a full sync.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["MAXLINE", "internaldate", "parse_fetch", "parse_record", "read_fetch"]

MAXLINE = 1_000_000  # as imaplib: longer lines (outside literals) are a broken server

Abort = imaplib.IMAP4.abort

# -- INTERNALDATE -------------------------------------------------------------------------
_MONTHS = {
    m: n
    for n, m in enumerate(
        (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun")
        + (b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"),
        1,
    )
}
_ZONES: dict[bytes, timezone] = {}


def _zone(z: bytes) -> timezone:
    tz = _ZONES.get(z)
    if tz is None:
        if len(z) != 5 or z[:1] not in (b"+", b"-") or not z[1:].isdigit():
            raise ValueError(f"bad zone {z!r}")
        minutes = int(z[1:3]) * 60 + int(z[3:5])
        tz = timezone(timedelta(minutes=-minutes if z[:1] == b"-" else minutes))
        if len(_ZONES) < 256:
            _ZONES[z] = tz
    return tz


def internaldate(raw: bytes | str) -> datetime | None:
    """``"01-Jan-2026 10:00:00 +0000"`` (day may be space-padded) -> an aware datetime;
    None when it is not that (imapclient's answer for a date it cannot read)."""
    s = raw.encode() if isinstance(raw, str) else raw
    try:
        day, mon, rest = s.strip().split(b"-", 2)
        if (
            len(rest) != 19
            or rest[4] != 32
            or rest[7] != 58
            or rest[10] != 58
            or rest[13] != 32
            or not day.strip().isdigit()
            or not rest[:4].isdigit()
        ):
            return None
        return datetime(
            int(rest[:4]),
            _MONTHS[mon.title()],
            int(day),
            int(rest[5:7]),
            int(rest[8:10]),
            int(rest[11:13]),
            tzinfo=_zone(rest[14:19]),
        )
    except (ValueError, KeyError, OverflowError):
        return None


# -- one response's items -----------------------------------------------------------------
_NAME_RE = re.compile(rb"[A-Za-z0-9.\-]+(?:\[[^\]]*\](?:<\d+>)?)?")
_QUOTED_RE = re.compile(rb'"((?:[^"\\]|\\.)*)"', re.S)
_UNESCAPE_RE = re.compile(rb"\\(.)", re.S)
_FLAT_LIST_RE = re.compile(rb'\(([^()"{]*)\)')
_ATOM_RE = re.compile(rb"[^ ()\[\]]+")
_HEAD_RE = re.compile(rb"\* (\d+) FETCH \(", re.I)


def parse_record(texts: list[bytes], literals: list[bytes]) -> tuple[int, dict[bytes, Any]]:
    """One ``* n FETCH (...)`` response -> (message number or UID, items). TEXTS are its
    lines without the literals (each but the last ended with a literal's ``{n}``), LITERALS
    the literals' bytes. The key is the UID when the response has one, else -(sequence
    number). Raises ValueError for anything else than the flat items a sync asks for."""
    s = texts[0]
    m = _HEAD_RE.match(s)
    if m is None:
        raise ValueError("not a FETCH response")
    pos, seg, n = m.end(), 0, len(s)
    rec: dict[bytes, Any] = {}
    uid: int | None = None
    while True:
        while pos < n and s[pos] == 32:
            pos += 1
        if pos >= n:
            raise ValueError("FETCH response ends inside its item list")
        if s[pos] == 41:  # ")"
            if pos + 1 != n or seg + 1 != len(texts):
                raise ValueError("text after the FETCH item list")
            break
        nm = _NAME_RE.match(s, pos)
        if nm is None:
            raise ValueError("bad FETCH item name")
        name = nm.group().upper()
        pos = nm.end()
        if pos < n and s[pos] == 32:
            pos += 1
        value: Any
        if pos >= n:  # the value is the literal that ended this line
            if seg >= len(literals):
                raise ValueError("FETCH item without a value")
            value = literals[seg]
            seg += 1
            s = texts[seg]
            pos, n = 0, len(s)
        else:
            c = s[pos]
            if c == 34:  # '"'
                q = _QUOTED_RE.match(s, pos)
                if q is None:
                    raise ValueError("unterminated quoted string")
                value = q.group(1)
                if b"\\" in value:
                    value = _UNESCAPE_RE.sub(rb"\1", value)
                pos = q.end()
            elif c == 40:  # "("
                fl = _FLAT_LIST_RE.match(s, pos)
                if fl is None:
                    raise ValueError("nested list in FETCH")
                value = tuple(fl.group(1).split())
                if name != b"FLAGS":  # MODSEQ (n) and the like: numbers as imapclient has them
                    value = tuple(int(w) if w.isdigit() else w for w in value)
                pos = fl.end()
            else:
                a = _ATOM_RE.match(s, pos)
                if a is None:
                    raise ValueError("bad FETCH value")
                word = a.group()
                value = int(word) if word.isdigit() else (None if word == b"NIL" else word)
                pos = a.end()
        if name == b"UID":
            if not isinstance(value, int):
                raise ValueError("bad UID")
            uid = value
        elif name == b"INTERNALDATE":
            rec[name] = internaldate(value) if isinstance(value, bytes) else None
        else:
            rec[name] = value
    return (uid if uid is not None else -int(m.group(1))), rec


def _imaplib_shape(texts: list[bytes], literals: list[bytes]) -> list[Any]:
    """One response as imaplib's untagged FETCH data (for imapclient's parser)."""
    out: list[Any] = []
    first = texts[0][2:].replace(b" FETCH ", b" ", 1)  # "* 7 FETCH (" -> "7 ("
    for i, lit in enumerate(literals):
        head = first if i == 0 else texts[i]
        out.append((head + b"{%d}" % len(lit), lit))
    out.append(texts[-1] if literals else first)
    return out


def _fallback(texts: list[bytes], literals: list[bytes]) -> tuple[int, dict[bytes, Any]]:
    from imapclient.response_parser import parse_fetch_response

    parsed = dict(parse_fetch_response(_imaplib_shape(texts, literals), False, True))
    if len(parsed) != 1:
        raise ValueError("FETCH response without one message")
    ((key, rec),) = parsed.items()
    rec = dict(rec)
    seq = rec.pop(b"SEQ", None)
    has_uid = key != seq or b"UID" in texts[0].upper()
    return (int(key) if has_uid else -int(seq or 0)), rec


# -- the reply of one command -------------------------------------------------------------
def _read_response(
    readline: Callable[[int], bytes], read: Callable[[int], bytes]
) -> tuple[list[bytes], list[bytes]]:
    """One response: its lines (without CRLF and without the literals' ``{n}``) and its
    literals, read whole with ``read`` (never scanned: CRLF and braces inside are data)."""
    texts: list[bytes] = []
    literals: list[bytes] = []
    while True:
        line = readline(MAXLINE + 1)
        if not line:
            raise Abort("socket error: EOF")
        if len(line) > MAXLINE:
            raise Abort(f"got more than {MAXLINE} bytes on one line")
        line = line[:-2] if line.endswith(b"\r\n") else line.rstrip(b"\r\n")
        if line.endswith(b"}"):
            i = line.rfind(b"{")
            size = line[i + 1 : -1].rstrip(b"+")
            if i >= 0 and size.isdigit():
                head = line[: i - 1] if i and line[i - 1] == 126 else line[:i]  # ~{n}: literal8
                want = int(size)
                data = read(want)
                if len(data) != want:
                    raise Abort("socket error: EOF inside a literal")
                texts.append(head)
                literals.append(data)
                continue
        texts.append(line)
        return texts, literals


_UNTAGGED_RE = re.compile(rb"\* (?:(\d+) )?([A-Za-z-]+)(?: (.*))?", re.S)
_FETCH_ANY_CASE_RE = re.compile(rb"\* \d+ fetch ", re.I)


def read_fetch(
    readline: Callable[[int], bytes],
    read: Callable[[int], bytes],
    tag: bytes,
    *,
    untagged: Callable[[str, Any], None] | None = None,
    command: str = "fetch",
) -> dict[int, dict[bytes, Any]]:
    """Read the reply of the FETCH command TAG up to its tagged completion.

    Returns ``{uid: items}`` (responses without a UID, e.g. a flag change the server
    volunteers, are left out). Other untagged responses go to UNTAGGED(type, data) as
    imaplib would have stored them. Raises ``IMAP4.abort`` on EOF/BYE/garbage (the session
    is gone), ``IMAPClientError`` on NO/BAD and ``ProtocolError`` (after reading the whole
    reply) when a response could not be parsed at all."""
    from imapclient.exceptions import IMAPClientError, ProtocolError

    out: dict[int, dict[bytes, Any]] = {}
    bad: list[str] = []
    prefix = tag + b" "
    while True:
        texts, literals = _read_response(readline, read)
        first = texts[0]
        if first.startswith(b"* "):
            if first.find(b" FETCH (", 2, 24) > 0 or _FETCH_ANY_CASE_RE.match(first):
                try:
                    try:
                        key, rec = parse_record(texts, literals)
                    except ValueError:
                        key, rec = _fallback(texts, literals)
                except Exception as e:  # noqa: BLE001 - reported once the reply is read
                    bad.append(f"{first[:40]!r}: {e}")
                    continue
                if key > 0:
                    out.setdefault(key, {}).update(rec)
                continue
            m = _UNTAGGED_RE.match(first)
            if m is None:
                raise Abort(f"unexpected response: {first[:80]!r}")
            kind = m.group(2).upper().decode()
            if kind == "BYE":
                raise Abort(f"server said BYE: {first[2:200].decode(errors='replace')}")
            if untagged is not None:
                data = m.group(3) or b""
                if m.group(1) is not None:
                    data = m.group(1) if not m.group(3) else m.group(1) + b" " + m.group(3)
                untagged(kind, data)
            continue
        if first.startswith(prefix):
            status, _, text = first[len(prefix) :].partition(b" ")
            status = status.upper()
            if status == b"OK":
                break
            if status in (b"NO", b"BAD"):
                raise IMAPClientError(f"{command} failed: {text.decode(errors='replace')}")
            raise Abort(f"bad tagged response: {first[:80]!r}")
        raise Abort(f"unexpected response: {first[:80]!r}")
    if bad:
        raise ProtocolError(f"{len(bad)} unreadable FETCH response(s): {bad[0]}")
    return out


# -- imaplib's shape (a client without a socket file of its own) --------------------------
_UID_RE = re.compile(rb"UID (\d+)")
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
_DATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_SIZE_RE = re.compile(rb"RFC822\.SIZE (\d+)")
_LITERAL_KEY_RE = re.compile(rb"(BODY\[[^\]]*\](?:<\d+>)?) \{\d+\}$")


def parse_fetch(data: list[Any]) -> dict[int, dict[bytes, Any]]:
    """FETCH responses as imaplib returns them -> imapclient's shape. Raises ValueError."""
    out: dict[int, dict[bytes, Any]] = {}
    i, n = 0, len(data)
    while i < n:
        item = data[i]
        i += 1
        literal: bytes | None = None
        key: bytes | None = None
        if isinstance(item, tuple):
            meta, literal = item[0], item[1]
            k = _LITERAL_KEY_RE.search(meta)
            if k is None:
                raise ValueError("unexpected literal in FETCH")
            key = k.group(1)
            if i < n and isinstance(data[i], bytes):  # the rest of the line after the literal
                meta = meta + b" " + data[i]
                i += 1
        elif isinstance(item, bytes):
            if item == b")":
                continue
            meta = item
        else:
            raise ValueError("unexpected FETCH item")
        m = _UID_RE.search(meta)
        if m is None:
            raise ValueError("FETCH without UID")
        rec: dict[bytes, Any] = {}
        if (f := _FLAGS_RE.search(meta)) is not None:
            rec[b"FLAGS"] = tuple(f.group(1).split())
        if (d := _DATE_RE.search(meta)) is not None:
            rec[b"INTERNALDATE"] = internaldate(d.group(1))
        if (z := _SIZE_RE.search(meta)) is not None:
            rec[b"RFC822.SIZE"] = int(z.group(1))
        if key is not None and literal is not None:
            rec[key] = literal
        out.setdefault(int(m.group(1)), {}).update(rec)
    return out
