"""Replies to a stored message (E2): subject, threading headers, quoted original."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser
from typing import Any

from mailops.errors import SendRefused
from mailops.parse import normalize_message_id
from mailops.permissions import Viewer
from mailops.send.compose import sanitize_html
from mailops.store import Store
from mailops.store import messages as msgstore

__all__ = [
    "Original",
    "load_original",
    "quote_html",
    "base_subject",
    "forward_subject",
    "quote_text",
    "reply_subject",
    "thread_headers",
]

#: Reply and forward prefixes as mail clients write them in their languages, so a reply to
#: "VS: Angebot" is "Re: Angebot", never "Re: VS: Angebot". Repeated any number of times,
#: with a counter ("Re[2]:", "RE(3):") and an ASCII or full-width colon.
REPLY_PREFIXES = (
    "re", "aw", "sv", "vs", "antw", "odp", "r", "rif", "réf", "ynt", "res", "rsp", "odg",
    "atb", "ats", "vast", "απ", "σχετ", "השב", "رد", "回复", "回覆", "答复", "返信", "답장", "отв",
)  # fmt: skip
FORWARD_PREFIXES = (
    "fw", "fwd", "wg", "tr", "rv", "enc", "pd", "vl", "doorst", "i", "továbbítás", "πρθ",
    "הועבר", "转发", "轉寄", "転送", "전달", "пересл",
)  # fmt: skip
_PREFIX_WORDS = "|".join(
    re.escape(p) for p in sorted({*REPLY_PREFIXES, *FORWARD_PREFIXES}, key=len, reverse=True)
)
_REPLY_PREFIX = re.compile(rf"^\s*(?:(?:{_PREFIX_WORDS})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+", re.I)

#: References kept in a reply (RFC 5322 suggests trimming long chains; keep the first and the
#: latest ones so threading still works).
MAX_REFERENCES = 20


def base_subject(subject: str | None) -> str:
    """SUBJECT without its reply / forward prefixes, in any of the common languages."""
    return _REPLY_PREFIX.sub("", subject or "").strip()


def reply_subject(subject: str | None) -> str:
    rest = base_subject(subject)
    return f"Re: {rest}" if rest else "Re:"


def forward_subject(subject: str | None) -> str:
    rest = base_subject(subject)
    return f"Fwd: {rest}" if rest else "Fwd:"


@dataclass
class Original:
    """The facts of a stored message a reply needs."""

    key: str
    message_id: str | None  # as written, with angle brackets
    references: list[str] = field(default_factory=list)  # as written
    subject: str | None = None
    from_addr: str | None = None
    from_name: str | None = None
    to_addrs: list[str] = field(default_factory=list)
    cc_addrs: list[str] = field(default_factory=list)
    sent_at: datetime | None = None
    body_text: str | None = None
    body_html: str | None = None


def _ids_as_written(value: str | None) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value or "")


def load_original(store: Store, ref: str, *, viewer: Viewer) -> Original:
    """A stored message by store id or Message-ID (with or without brackets), as VIEWER may
    see it (P1: one he may not see is unknown to him; P2: no body, no quote)."""
    key = normalize_message_id(ref) or ref
    row = msgstore.get_message(store, key, viewer=viewer) or msgstore.get_message(
        store, ref, viewer=viewer
    )
    if row is None:
        raise SendRefused(f"no stored message {ref!r} to reply to", code="reply_unknown_message")
    key = row["id"]
    message_id, references = None, []
    raw = msgstore.raw_bytes_unchecked(store, key)  # only its thread ids are read
    if raw:  # the ids exactly as written (the store keeps them lower-cased)
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
        ids = _ids_as_written(str(headers.get("Message-ID", "")))
        message_id = ids[0] if ids else None
        references = _ids_as_written(str(headers.get("References", "")))
        if not references:
            references = _ids_as_written(str(headers.get("In-Reply-To", "")))[:1]
    if message_id is None and not key.startswith("sha256:"):
        message_id = f"<{key}>"
    if not references:
        references = [f"<{r}>" for r in _list(row.get("references"))]

    def _s(v: Any) -> str | None:
        return None if v is None or (isinstance(v, float)) else str(v)

    sent = row.get("sent_at")
    return Original(
        key=key,
        message_id=message_id,
        references=references,
        subject=_s(row.get("subject")),
        from_addr=_s(row.get("from_addr")),
        from_name=_s(row.get("from_name")),
        to_addrs=_list(row.get("to_addrs")),
        cc_addrs=_list(row.get("cc_addrs")),
        sent_at=sent.to_pydatetime()
        if sent is not None and hasattr(sent, "to_pydatetime")
        else sent,
        body_text=_s(row.get("body_text")),
        body_html=_s(row.get("body_html")),
    )


def _list(v: Any) -> list[str]:
    if v is None or isinstance(v, float):
        return []
    return [str(x) for x in list(v)]


def thread_headers(orig: Original) -> tuple[str | None, list[str]]:
    """(In-Reply-To, References) for a reply to ORIG."""
    if orig.message_id is None:
        return None, list(orig.references)
    refs = [r for r in orig.references if r.lower() != orig.message_id.lower()]
    refs.append(orig.message_id)
    if len(refs) > MAX_REFERENCES:
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1) :]
    return orig.message_id, refs


def _attribution(orig: Original) -> str:
    who = orig.from_name or orig.from_addr or "someone"
    if orig.from_name and orig.from_addr:
        who = f"{orig.from_name} <{orig.from_addr}>"
    when = orig.sent_at.strftime("%a, %d %b %Y %H:%M UTC") if orig.sent_at else None
    return f"On {when}, {who} wrote:" if when else f"{who} wrote:"


def quote_text(orig: Original) -> str:
    body = (orig.body_text or "").rstrip("\n")
    if not body and orig.body_html:
        from mailops.send.compose import html_to_text

        body = html_to_text(orig.body_html).rstrip("\n")
    lines = [f"> {line}" if line else ">" for line in body.splitlines()]
    return _attribution(orig) + "\n" + "\n".join(lines) + "\n"


def quote_html(orig: Original) -> str:
    if orig.body_html:
        inner = sanitize_html(orig.body_html)
    else:
        inner = "<br>".join(html.escape(line) for line in (orig.body_text or "").splitlines())
    return sanitize_html(
        f"<p>{html.escape(_attribution(orig))}</p><blockquote>{inner}</blockquote>"
    )
