"""Poison messages (S15): what went wrong with one message, in one line, and when to give up.

A message the sync cannot fetch, parse or store gets a ledger row ``decision='error'`` with
a code from ``ERROR_REASONS`` and its error in one line (``message_errors``). It never rolls
back or blocks the messages after it. Later runs retry it until ``attempts`` reaches
``Settings.sync_error_retries``; then it is left ``given_up`` with its reason, and IT sees it
in the audit (``mailops audit --errors``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ERROR_REASONS", "ErrorReason", "MessageError", "one_line"]


@dataclass(frozen=True)
class ErrorReason:
    code: str
    rule: str
    description: str


ERROR_REASONS: dict[str, ErrorReason] = {
    r.code: r
    for r in [
        ErrorReason(
            "fetch_failed",
            "S15",
            "the server refused or failed to send this message (FETCH answered NO/BAD)",
        ),
        ErrorReason(
            "parse_failed",
            "S15",
            "the message could not be read into headers, bodies and attachments",
        ),
        ErrorReason(
            "store_failed",
            "S15",
            "the store refused this message (e.g. out of memory or disk); the others were kept",
        ),
    ]
}


@dataclass(frozen=True)
class MessageError:
    reason: str  # a code of ERROR_REASONS
    error: str  # one line


_SECRETISH = re.compile(r"(auth=Bearer\s+|Bearer\s+|password[=:]\s*)\S+", re.I)


def one_line(err: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, bearer tokens and passwords masked, at most LIMIT."""
    text = str(err) or ""
    if isinstance(err.args[0] if err.args else None, bytes):
        text = err.args[0].decode("utf-8", "replace")
    text = " ".join(f"{type(err).__name__}: {text}".split())
    return _SECRETISH.sub(r"\1***", text)[:limit]
