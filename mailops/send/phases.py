"""E3: the SMTP phases of one delivery attempt, fine enough to tell a safe resend from an
ambiguous one.

The outbox records each phase *before* the step it names goes on the wire::

    connect -> mail_from -> rcpt -> data_started -> data_terminator_sent -> accepted

SMTP (RFC 5321 4.1.1.4, 3.3) delivers a message only once the server has read the final
``<CRLF>.<CRLF>``; a connection lost before that makes the server discard the transaction.
So an attempt that stopped in any phase up to ``data_started`` (the body half uploaded)
delivered nothing, and sending again is safe. ``data_terminator_sent`` means the server may
have accepted and delivered it without our hearing the ``250``: the outcome is *unknown*
and only a person can decide (resend, or mark sent). ``accepted`` means the ``250`` came.
"""

from __future__ import annotations

import re
import select
import smtplib
import socket
from collections.abc import Callable

__all__ = [
    "AMBIGUOUS",
    "DELIVERED",
    "PHASES",
    "SAFE_TO_RESEND",
    "send_data",
]

PHASES = (
    "queued",
    "connect",
    "mail_from",
    "rcpt",
    "data_started",
    "data_terminator_sent",
    "accepted",
    "done",
)
#: the server cannot have delivered it: a retry sends it (``refused``: it said no)
SAFE_TO_RESEND = frozenset({"queued", "connect", "mail_from", "rcpt", "data_started", "refused"})
#: the server may have delivered it: ``delivery_unknown`` until a person decides. ``smtp`` is
#: the one coarse phase of outbox rows written before the fine phases existed.
AMBIGUOUS = frozenset({"data_terminator_sent", "smtp"})
#: the server said 250: it is delivered whatever happens next
DELIVERED = frozenset({"accepted", "filed"})

CHUNK = 64 * 1024
_LEADING_DOT = re.compile(rb"(?m)^\.")


def send_data(
    smtp: smtplib.SMTP,
    raw: bytes,
    phase: Callable[[str], None],
    crash_point: Callable[[str], None] = lambda _name: None,
) -> tuple[int, bytes]:
    """``DATA`` in steps that the outbox can tell apart: 354, the body (dot-stuffed, in
    chunks), then the terminator, recording ``data_started`` and ``data_terminator_sent``
    first. Returns the server's final reply; raises SMTPDataError when DATA is refused."""
    code, resp = smtp.docmd("DATA")
    if code != 354:
        raise smtplib.SMTPDataError(code, resp)
    phase("data_started")
    body = _LEADING_DOT.sub(b"..", raw)
    if body[-2:] != b"\r\n":
        body += b"\r\n"
    half = len(body) // 2
    for start in range(0, len(body), CHUNK):
        smtp.send(body[start : start + CHUNK])
        if start <= half < start + CHUNK:
            crash_point("outbox.smtp_mid_data")
    if _peer_spoke(smtp):  # RST, EOF or a reply mid-DATA: the dot must not follow
        raise smtplib.SMTPServerDisconnected("connection lost while the body was uploading")
    phase("data_terminator_sent")  # from here the server may deliver it
    crash_point("outbox.smtp_before_terminator")
    try:
        smtp.send(b".\r\n")
    except (OSError, smtplib.SMTPServerDisconnected):
        phase("data_started")  # the dot could not be written: the server cannot have it
        raise
    crash_point("outbox.smtp_terminator_sent")
    code, resp = smtp.getreply()
    return code, resp


def _peer_spoke(smtp: smtplib.SMTP) -> bool:
    """A server never writes during DATA: anything readable now (a reset, EOF, an early
    error reply) means the transaction is broken. Checked on the TCP socket under TLS."""
    sock = smtp.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True
