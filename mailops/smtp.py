"""Opening SMTP submission connections: STARTTLS / TLS, AUTH PLAIN or XOAUTH2, typed errors."""

from __future__ import annotations

import smtplib
import ssl

from mailops.auth import Credentials
from mailops.imap import login_error_problem, ssl_context
from mailops.store.mailboxes import Mailbox


def open_smtp(
    mailbox: Mailbox,
    creds: Credentials,
    *,
    timeout: float = 30.0,
    ca_file: str | None = None,
) -> smtplib.SMTP:
    host, port = mailbox.smtp_host or "", int(mailbox.smtp_port or 587)
    security = (mailbox.smtp_security or "starttls").lower()
    ctx = ssl_context(ca_file or mailbox.ca_file)
    try:
        smtp: smtplib.SMTP
        if security == "ssl":
            smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ctx)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
            if security == "starttls":
                smtp.starttls(context=ctx)
        smtp.ehlo()  # smtplib forgets the EHLO answer after STARTTLS
    except (OSError, smtplib.SMTPException, ssl.SSLError) as e:
        raise login_error_problem(e, mailbox.address) from None
    try:
        if creds.mechanism == "xoauth2":
            raw = creds.xoauth2_string()
            code, resp = smtp.auth(
                "XOAUTH2",
                lambda challenge=None: raw if challenge is None else "",
                initial_response_ok=True,
            )
        else:
            code, resp = smtp.login(creds.username, creds.secret)
        if (
            code != 235
        ):  # smtplib takes a 503 ("send EHLO first", "already authenticated") as success
            raise smtplib.SMTPAuthenticationError(code, resp)
    except (smtplib.SMTPException, OSError) as e:
        try:
            smtp.close()
        except Exception:  # noqa: BLE001
            pass
        raise login_error_problem(e, mailbox.address) from None
    return smtp
