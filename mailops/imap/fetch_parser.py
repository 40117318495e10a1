"""The fast FETCH response parser, for the few items a headers-first sync asks for.

imapclient's general response parser tokenises every byte of the metadata and costs more
than everything else in a headers-first sync; our items need four regexes. The result has
imapclient's shape (``{uid: {b"FLAGS": (...), b"BODY[...]": bytes, ...}}``) so callers can
fall back to imapclient's parser for anything unexpected (``ValueError``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

__all__ = ["parse_fetch"]

_UID_RE = re.compile(rb"UID (\d+)")
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
_DATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_SIZE_RE = re.compile(rb"RFC822\.SIZE (\d+)")
# the section a literal belongs to: "... BODY[HEADER.FIELDS (FROM TO)] {123}" (or BODY[]<0>)
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
            rec[b"INTERNALDATE"] = datetime.strptime(
                d.group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z"
            )
        if (z := _SIZE_RE.search(meta)) is not None:
            rec[b"RFC822.SIZE"] = int(z.group(1))
        if key is not None and literal is not None:
            rec[key] = literal
        out.setdefault(int(m.group(1)), {}).update(rec)
    return out
