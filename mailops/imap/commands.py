"""IMAP commands the engine needs, behind names of our own.

Every private imaplib / imapclient call of mailops lives in this package: an imapclient
upgrade that changes them breaks here, next to the tests that exercise these functions,
never silently inside the sync engine.
"""

from __future__ import annotations

import imaplib
import io
import logging
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from imapclient import IMAPClient

from mailops.imap.fetch_parser import read_fetch

__all__ = [
    "BODY_KEY",
    "append",
    "capabilities",
    "count",
    "fetch",
    "fetch_body_to",
    "folder_status",
    "header_block",
    "list_folders",
    "list_with_status",
    "search",
    "select",
    "status_items",
    "statuses",
    "uid_set",
    "unselect",
]

log = logging.getLogger(__name__)

BODY_KEY = b"BODY[]"

Listing = list[tuple[Any, Any, str]]


def capabilities(client: IMAPClient) -> frozenset[bytes]:
    return frozenset(bytes(c).upper() for c in client.capabilities())


def uid_set(uids: Sequence[int]) -> str:
    """[1,2,3,7] -> "1:3,7" (short commands for large batches)."""
    out: list[str] = []
    start = prev = uids[0]
    for u in uids[1:]:
        if u == prev + 1:
            prev = u
            continue
        out.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = u
    out.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(out)


def _tagged(client: IMAPClient, name: str, *args: str) -> tuple[str, list[Any]]:
    """Send one command, wait for its tagged completion, raise imapclient's error when not OK."""
    imap = client._imap
    tag = imap._command(*args)
    typ, data = imap._command_complete(name, tag)
    client._checkok(name.lower(), typ, data)
    return typ, data


def _untagged(client: IMAPClient, typ: str, data: list[Any], name: str) -> list[Any]:
    typ, data = client._imap._untagged_response(typ, data, name)
    return [d for d in data if d is not None]


# -- fetch ------------------------------------------------------------------------------
def fetch(
    client: IMAPClient, uids: Sequence[int], items: Sequence[bytes]
) -> dict[int, dict[bytes, Any]]:
    """``UID FETCH`` read by the lean reader (``fetch_parser.read_fetch``, straight off the
    session's socket buffer); imapclient's own FETCH on a client without one."""
    if not uids:
        return {}
    imap = getattr(client, "_imap", None)
    if imap is None:
        got = client.fetch(list(uids), list(items))
        return {
            int(k): {n: v for n, v in rec.items() if n not in (b"SEQ", b"UID")}
            for k, rec in got.items()
        }
    spec = "(" + " ".join(i.decode() for i in items) + ")"
    readline, read = _socket_file(imap)
    imap._check_bye()
    tag = imap._command("UID", "FETCH", uid_set(sorted(uids)), spec)
    try:
        return read_fetch(readline, read, bytes(tag), untagged=imap._append_untagged)
    finally:
        imap.tagged_commands.pop(tag, None)


def _socket_file(imap: Any) -> tuple[Callable[[int], bytes], Callable[[int], bytes]]:
    """The session's buffered socket file, read directly (Python < 3.14, where imaplib
    reads through ``self.file``); else imaplib's own read/readline (3.14 keeps a read
    buffer of its own: bypassing it would lose bytes)."""
    file = getattr(imap, "file", None) if sys.version_info < (3, 14) else None
    if isinstance(file, io.BufferedReader):
        return file.readline, file.read
    return (lambda _size: bytes(imap.readline())), imap.read


def header_block(record: dict[bytes, Any]) -> bytes:
    """The ``BODY[HEADER.FIELDS (...)]`` literal of one FETCH record (however echoed)."""
    for k, v in record.items():
        if k.startswith(b"BODY[HEADER") and isinstance(v, bytes | bytearray):
            return bytes(v)
    return b""


def fetch_body_to(
    client: IMAPClient,
    uid: int,
    write: Callable[[bytes], object],
    size: int,
    *,
    chunk: int = 8 * 1024 * 1024,
) -> int:
    """Hand message UID's bytes to WRITE by partial fetches (``BODY.PEEK[]<offset.length>``),
    so a big message never sits whole in memory. Returns the number of bytes written.
    Raises LookupError when the message is gone."""
    offset = 0
    while size <= 0 or offset < size:
        got = fetch(client, [uid], [f"BODY.PEEK[]<{offset}.{chunk}>".encode()]).get(uid) or {}
        part = next((bytes(v) for k, v in got.items() if k.startswith(b"BODY[]")), None)
        del got
        if part is None and offset == 0:
            raise LookupError(f"UID {uid} vanished before its body was fetched")
        if not part:
            break
        write(part)
        offset += len(part)
        if len(part) < chunk:
            break
        del part
    return offset


# -- folders ----------------------------------------------------------------------------
def status_items(condstore: bool) -> list[bytes]:
    return [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"] + ([b"HIGHESTMODSEQ"] if condstore else [])


def list_folders(client: IMAPClient) -> Listing:
    return [(f[0], f[1], str(f[2])) for f in client.list_folders()]


def list_with_status(
    client: IMAPClient, condstore: bool
) -> tuple[Listing, dict[str, dict[bytes, int]]]:
    """``LIST ... RETURN (SPECIAL-USE STATUS (...))`` (RFC 5819): every folder and its
    counters in ONE round trip, when the server has LIST-STATUS; else LIST (+ STATUS later)."""
    caps = capabilities(client)
    if b"LIST-STATUS" not in caps or getattr(client, "_imap", None) is None:
        return list_folders(client), {}
    items = " ".join(i.decode() for i in status_items(condstore))
    ret = (
        "(SPECIAL-USE STATUS (" + items + "))" if b"SPECIAL-USE" in caps else f"(STATUS ({items}))"
    )
    typ, data = _tagged(client, "LIST", "LIST", '""', '"*"', "RETURN", ret)
    status_lines = client._imap.untagged_responses.pop("STATUS", [])
    data = _untagged(client, typ, data, "LIST")
    listing = _fast_listing(client, data)
    if listing is None:
        listing = [(f[0], f[1], str(f[2])) for f in client._proc_folder_list(data)]
    statuses = _status_lines(client, status_lines)
    return listing, statuses


def folder_status(client: IMAPClient, name: str, condstore: bool) -> dict[bytes, int]:
    return {k: int(v) for k, v in client.folder_status(name, status_items(condstore)).items()}


_NAME = rb'(?:"((?:[^"\\]|\\.)*)"|([^\s"(){}\\]+))'  # a quoted string or an atom
_LIST_LINE_RE = re.compile(rb'\(([^()"]*)\) (?:NIL|"((?:[^"\\]|\\.)*)") ' + _NAME + rb"\Z", re.S)
_STATUS_LINE_RE = re.compile(_NAME + rb" \(([^()]*)\)\Z", re.S)
_ESCAPED_RE = re.compile(rb"\\(.)", re.S)


def _unquote(quoted: bytes | None, atom: bytes | None) -> bytes:
    if quoted is None:
        return atom or b""
    return _ESCAPED_RE.sub(rb"\1", quoted) if b"\\" in quoted else quoted


def _folder_name(client: IMAPClient, raw: bytes) -> str:
    from imapclient.imap_utf7 import decode as decode_utf7

    return str(decode_utf7(raw)) if client.folder_encode else raw.decode(errors="replace")


def _fast_listing(client: IMAPClient, data: list[Any]) -> Listing | None:
    """LIST lines -> (flags, delimiter, name) as imapclient has them, by one regex a line
    (imapclient's tokenizer cost ~0.5 ms a mailbox); None when a line is not the plain kind
    (a literal name, extended data): then imapclient parses them all."""
    out: Listing = []
    for item in data:
        if item in (b"", None):
            continue
        if not isinstance(item, bytes):
            return None
        m = _LIST_LINE_RE.match(item)
        if m is None:
            return None
        delim = None if m.group(2) is None else _unquote(m.group(2), None)
        name = _folder_name(client, _unquote(m.group(3), m.group(4)))
        out.append((tuple(m.group(1).split()), delim, name))
    return out


def _status_lines(client: IMAPClient, lines: Iterable[Any]) -> dict[str, dict[bytes, int]]:
    """Untagged ``* STATUS name (K v ...)`` responses -> {folder: {K: v}}."""
    from imapclient.response_parser import parse_response

    out: dict[str, dict[bytes, int]] = {}
    for line in lines:
        m = _STATUS_LINE_RE.match(line) if isinstance(line, bytes) else None
        if m is not None:
            words = m.group(3).split()
            if len(words) % 2 == 0 and all(v.isdigit() for v in words[1::2]):
                name = _folder_name(client, _unquote(m.group(1), m.group(2)))
                it = iter(words)
                out[name] = {k.upper(): int(v) for k, v in zip(it, it, strict=True)}
                continue
        try:
            name, values = parse_response([line])
        except (ValueError, TypeError):
            continue  # that folder gets its own STATUS
        if isinstance(name, bytes):
            name = _folder_name(client, name)
        it = iter(values)
        out[str(name)] = {bytes(k).upper(): int(v) for k, v in zip(it, it, strict=False)}
    return out


def statuses(
    client: IMAPClient, names: Sequence[str], condstore: bool
) -> dict[str, dict[bytes, int]]:
    """STATUS of every folder in NAMES, pipelined: all the commands are sent before the
    first answer is read, so N folders cost one round trip, not N (servers without
    LIST-STATUS). A folder the server refuses (NO/BAD) is left out: the caller asks it
    alone and sees the refusal there. A dropped session raises."""
    imap = getattr(client, "_imap", None)
    if not names:
        return {}
    if imap is None or len(names) == 1:
        out: dict[str, dict[bytes, int]] = {}
        for name in names:
            try:
                out[name] = folder_status(client, name, condstore)
            except imaplib.IMAP4.error as e:
                if isinstance(e, imaplib.IMAP4.abort):
                    raise
        return out
    items = "(" + " ".join(i.decode() for i in status_items(condstore)) + ")"
    imap.untagged_responses.pop("STATUS", None)
    tags = [imap._command("STATUS", client._normalise_folder(n), items) for n in names]
    refused = 0
    for tag in tags:
        try:
            typ, _ = imap._command_complete("STATUS", tag)
        except imaplib.IMAP4.error as e:  # BAD
            if isinstance(e, imaplib.IMAP4.abort):
                raise
            typ = "BAD"
        refused += typ != "OK"
    got = _status_lines(client, imap.untagged_responses.pop("STATUS", []))
    if refused:
        log.debug("pipelined STATUS: %d of %d folders refused", refused, len(names))
    wanted = set(names)
    return {k: v for k, v in got.items() if k in wanted}


def select(client: IMAPClient, name: str, *, readonly: bool = True) -> dict[bytes, Any]:
    return dict(client.select_folder(name, readonly=readonly))


def unselect(client: IMAPClient) -> None:
    client.unselect_folder()


def search(client: IMAPClient, criteria: Sequence[Any]) -> list[int]:
    """``UID SEARCH``; sorted UIDs."""
    return sorted(int(u) for u in client.search(list(criteria)))


_COUNT_RE = re.compile(rb"COUNT (\d+)")


def count(client: IMAPClient, criteria: Sequence[Any]) -> int:
    """How many messages of the selected folder match CRITERIA: ``SEARCH RETURN (COUNT)``
    (ESEARCH, RFC 4731: one number on the wire), else the length of a plain SEARCH."""
    if b"ESEARCH" not in capabilities(client) or getattr(client, "_imap", None) is None:
        return len(search(client, criteria))
    from imapclient.imapclient import _normalise_search_criteria

    args = [a.decode() for a in _normalise_search_criteria(list(criteria), None)]
    typ, data = _tagged(client, "SEARCH", "UID", "SEARCH", "RETURN", "(COUNT)", *args)
    lines = _untagged(client, typ, data, "ESEARCH")
    for line in lines:
        m = _COUNT_RE.search(bytes(line))
        if m:
            return int(m.group(1))
    return 0


def append(
    client: IMAPClient,
    folder: str,
    raw: bytes,
    *,
    flags: Iterable[bytes] = (),
    when: datetime | None = None,
) -> int | None:
    """APPEND RAW to FOLDER; the new UID when the server says it (UIDPLUS ``APPENDUID``)."""
    answer = client.append(folder, raw, flags=list(flags), msg_time=when)
    text = bytes(answer) if isinstance(answer, bytes | bytearray) else str(answer).encode()
    m = re.search(rb"APPENDUID \d+ (\d+)", text)
    return int(m.group(1)) if m else None


def create_folder(client: IMAPClient, name: str) -> None:
    client.create_folder(name)
