"""Why a mailbox connection failed: reason codes, classification, and the C3/C4 state rules.

``PROBLEM_REASONS`` is the one table of reason codes (code -> human message, IT guidance, transient).
``classify(err)`` is pure: it maps whatever a login or a token refresh raised (imapclient,
smtplib, socket/ssl, MSAL error dicts or exceptions, google-auth RefreshError, SecretsError)
to a ``ConnectionProblem`` carrying one of those codes.  ``record_failure`` /
``record_success`` apply the retry budget: a transient fault only flips a mailbox to
``problematic`` once the budget is exhausted, a permanent one flips at once (C4).
"""

from __future__ import annotations

import random
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from mailops.errors import ConnectionProblem, MailopsError


@dataclass(frozen=True)
class ProblemReason:
    code: str
    message: str  # for the mailbox owner
    guidance: str  # for IT (or the owner): what to do about it
    transient: bool  # retried with backoff; flips the state only once the budget is spent


_R = [
    ProblemReason(
        "auth_failed",
        "The server refused the sign-in (wrong password or app password).",
        "Check the address and password; for accounts with MFA create an app password; then"
        " reconnect the mailbox.",
        False,
    ),
    ProblemReason(
        "token_revoked",
        "The sign-in has expired or was revoked (the refresh token is no longer accepted).",
        "The user must reconnect the mailbox and sign in again. Causes: password change,"
        " token revoked by an admin, sign-in sessions revoked, or long inactivity.",
        False,
    ),
    ProblemReason(
        "consent_required",
        "The app's permission to read and send mail was withdrawn or needs new consent.",
        "A tenant admin must grant consent for the IMAP.AccessAsUser.All and SMTP.Send"
        " permissions (or the user re-consents); then reconnect the mailbox.",
        False,
    ),
    ProblemReason(
        "imap_disabled",
        "IMAP access is disabled for this mailbox.",
        "Enable IMAP for the mailbox (Microsoft 365: Exchange admin center > mailbox > Email"
        " apps > IMAP; Google: Gmail settings > Forwarding and POP/IMAP), then reconnect.",
        False,
    ),
    ProblemReason(
        "smtp_disabled",
        "Sending through SMTP (SMTP AUTH) is disabled for this mailbox.",
        "Enable authenticated SMTP for the mailbox (Microsoft 365: Set-CASMailbox"
        " -SmtpClientAuthenticationDisabled $false, or the tenant-wide setting), then reconnect.",
        False,
    ),
    ProblemReason(
        "tls_failed",
        "A secure (TLS) connection to the mail server could not be established.",
        "Check the server name, port and TLS mode, the server certificate and the trusted CA"
        " (ca_file); a proxy may be intercepting TLS.",
        False,
    ),
    ProblemReason(
        "network",
        "The mail server could not be reached (connection refused, reset, or name not found).",
        "Transient: mailops probes the server (5 min, doubling to 6 h) and reconnects by itself"
        " when it answers. If it lasts, check the host name and port, DNS, firewall and"
        " outbound network access.",
        True,
    ),
    ProblemReason(
        "timeout",
        "The mail server did not answer in time.",
        "Transient: mailops probes the server (5 min, doubling to 6 h) and reconnects by itself"
        " when it answers. If it lasts, check the network path or raise socket_timeout.",
        True,
    ),
    ProblemReason(
        "throttled",
        "The provider is throttling requests for this mailbox.",
        "Transient: mailops probes again after the suggested backoff (at least 5 min, doubling"
        " to 6 h) and reconnects by itself. If it lasts, reduce the sync frequency or batch"
        " size for this tenant.",
        True,
    ),
    ProblemReason(
        "over_quota",
        "The provider reports a quota was exceeded (bandwidth, commands or storage).",
        "Transient: mailops probes again later (5 min, doubling to 6 h) and reconnects by"
        " itself. If it lasts, free space in the mailbox or wait for the provider's daily"
        " limits to reset.",
        True,
    ),
    ProblemReason(
        "server_unavailable",
        "The mail or sign-in service is temporarily unavailable.",
        "Transient (usually a provider-side outage): mailops probes the server (5 min, doubling"
        " to 6 h) and reconnects by itself. If it lasts, check the provider's service health.",
        True,
    ),
    ProblemReason(
        "identity_mismatch",
        "The account that signed in is not the mailbox address that was entered.",
        "Sign in with the account of that exact address (check the account picker / browser"
        " session); a user can only connect mailboxes they can sign in to (C1).",
        False,
    ),
    ProblemReason(
        "secret_missing",
        "The stored credentials for this mailbox are missing or cannot be decrypted.",
        "Reconnect the mailbox. If many mailboxes show this, the secrets directory or the"
        " encryption key (MAILOPS_SECRET_KEY / keyring / key file) changed.",
        False,
    ),
    ProblemReason(
        "protocol_error",
        "The mail server answered in a way mailops did not expect.",
        "Check that host and port point at an IMAP/SMTP server with the configured TLS mode.",
        False,
    ),
    ProblemReason(
        "folder_failing",
        "A folder of this mailbox has failed in every recent sync (S15).",
        "The other folders were synced; this one failed each time, so its new mail is missing."
        " `mailops audit --runs` and `mailops audit --folders` show the folder and the server's"
        " answer. Usual causes: the folder is damaged or over a server limit on the provider's"
        " side (repair or move its mail there), or the user leaves it out of the synced"
        " folders (S9). Then reconnect the mailbox.",
        False,
    ),
    ProblemReason(
        "sync_failing",
        "Every recent sync of this mailbox has failed (S15).",
        "Not a sign-in problem: the sync itself fails, each run with its error in"
        " `mailops audit --runs` (disk full, store damaged, a defect in mailops). Fix the cause"
        " (free disk space, `mailops db status`), or report the run ids with `--debug` output;"
        " then reconnect the mailbox.",
        False,
    ),
    ProblemReason(
        "unknown",
        "The connection failed for an unrecognised reason.",
        "Treated as transient: mailops probes the server (5 min, doubling to 6 h) and"
        " reconnects by itself; if it lasts see the mailops log for the server's answer.",
        True,
    ),
]
# C4: the guidance says which kind a reason is. Transient ones say they heal by themselves
# (mailops.healing probes them); the others wait for the user (or IT), never retried alone.
_R = [
    r if r.transient else replace(r, guidance=f"Waits for the user (not retried): {r.guidance}")
    for r in _R
]
PROBLEM_REASONS: dict[str, ProblemReason] = {r.code: r for r in _R}

# Ordered: the first matching pattern wins (throttling and "disabled" before plain refusals).
_TEXT_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p, re.I), code)
    for p, code in [
        (
            r"request is throttled|\[THROTTLED\]|too many (requests|connections|login)|"
            r"4\.7\.0 .*throttl|throttl",
            "throttled",
        ),
        (r"\[OVERQUOTA\]|exceeded (command or )?bandwidth|quota exceeded|over quota", "over_quota"),
        (
            r"\[UNAVAILABLE\]|temporarily unavailable|service (is )?unavailable|try again later|"
            r"unable to get authority configuration",
            "server_unavailable",
        ),
        (
            r"5\.7\.139|SMTP ?AUTH(entication)? is disabled|SmtpClientAuthentication|"
            r"smtp.{0,40}disabled",
            "smtp_disabled",
        ),
        (
            r"IMAP access is disabled|IMAP is disabled|\[ALERT\].*IMAP|IMAP.{0,40}disabled|"
            r"authenticated but not connected|web login required.*imap",
            "imap_disabled",
        ),
        (r"AADSTS65001|consent_required|AADSTS65004|consent", "consent_required"),
        (
            r"invalid_grant|AADSTS700082|AADSTS50173|AADSTS70008|token has been expired or revoked|"
            r"refresh token",
            "token_revoked",
        ),
        (r"interaction_required|AADSTS50076|AADSTS50079", "consent_required"),
        (
            r"\[AUTHENTICATIONFAILED\]|authentication failed|invalid credentials|"
            r"username and password not accepted|5\.7\.8|5\.7\.3|535|login failed|"
            r"authenticationfailed",
            "auth_failed",
        ),
        (
            r"certificate verify failed|CERTIFICATE_VERIFY|SSL|TLS|wrong version number|"
            r"handshake",
            "tls_failed",
        ),
        (r"timed out|timeout", "timeout"),
        (
            r"connection refused|connection reset|broken pipe|name or service not known|"
            r"nodename nor servname|no route to host|network is unreachable|"
            r"temporary failure in name resolution|connection aborted|max retries exceeded|"
            r"failed to establish a new connection|server disconnected|connection unexpectedly closed",
            "network",
        ),
    ]
]

_BACKOFF = re.compile(r"Suggested Backoff Time:\s*(\d+)\s*milli", re.I)


def reason(code: str) -> ProblemReason:
    return PROBLEM_REASONS.get(code) or PROBLEM_REASONS["unknown"]


def problem(
    code: str,
    *,
    mailbox: str | None = None,
    detail: str = "",
    retry_after: float | None = None,
) -> ConnectionProblem:
    """A ConnectionProblem for CODE; DETAIL (the server's own words) is appended to the message."""
    r = reason(code)
    message = r.message
    if mailbox:
        message = f"{mailbox}: {message}"
    if detail:
        message = f"{message} [{_clean(detail)}]"
    return ConnectionProblem(
        message,
        code=r.code,
        guidance=r.guidance,
        transient=r.transient,
        mailbox=mailbox,
        retry_after=retry_after,
    )


def _clean(text: str, limit: int = 200) -> str:
    text = text.strip()
    if text.startswith(("b'", 'b"')) and text.endswith(("'", '"')):
        text = text[2:-1]
    text = " ".join(text.split())
    # never echo anything that looks like a bearer token or an XOAUTH2 string
    text = re.sub(r"(auth=Bearer\s+|Bearer\s+)\S+", r"\1***", text, flags=re.I)
    return text[:limit]


def retry_after_of(text: str) -> float | None:
    """Seconds from "Request is throttled. Suggested Backoff Time: N milliseconds"."""
    m = _BACKOFF.search(text)
    return int(m.group(1)) / 1000.0 if m else None


def classify_text(text: str) -> str:
    for pattern, code in _TEXT_RULES:
        if pattern.search(text):
            return code
    return "unknown"


def _oauth_error_code(err: Mapping[str, Any]) -> str:
    """MSAL / OAuth 2.0 error dict -> reason code."""
    error = str(err.get("error") or "")
    desc = str(err.get("error_description") or "")
    if error in ("throttled", "temporarily_unavailable", "server_error"):
        code = classify_text(desc)
        return code if code in ("throttled", "over_quota") else "server_unavailable"
    if error == "invalid_grant":
        return (
            "consent_required" if re.search(r"AADSTS65001|consent", desc, re.I) else "token_revoked"
        )
    if error in (
        "consent_required",
        "access_denied",
        "authorization_declined",
        "unauthorized_client",
    ):
        return "consent_required"
    if error == "interaction_required":
        return "consent_required" if "consent" in desc.lower() else "token_revoked"
    if error in ("expired_token", "invalid_client", "invalid_request", "invalid_scope"):
        return "consent_required" if error == "invalid_scope" else "auth_failed"
    return classify_text(f"{error} {desc}")


def classify(
    err: BaseException | Mapping[str, Any], mailbox: str | None = None
) -> ConnectionProblem:
    """Map a failure (exception, or an MSAL/OAuth error dict) to a ConnectionProblem. Pure."""
    if isinstance(err, ConnectionProblem):
        if mailbox and not err.mailbox:
            err.mailbox = mailbox
        return err
    if isinstance(err, Mapping):
        text = f"{err.get('error', '')}: {err.get('error_description', '')}"
        return problem(
            _oauth_error_code(err), mailbox=mailbox, detail=text, retry_after=retry_after_of(text)
        )
    text = _error_text(err)
    retry_after = retry_after_of(text)
    code = _code_for(err, text)
    return problem(code, mailbox=mailbox, detail=text, retry_after=retry_after)


def _error_text(err: BaseException) -> str:
    import smtplib

    if isinstance(err, smtplib.SMTPResponseException):
        msg = err.smtp_error
        msg_s = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
        return f"{err.smtp_code} {msg_s}"
    # google-auth RefreshError: ('invalid_grant: ...', {...}); MSAL exceptions: message
    if err.args and isinstance(err.args[0], bytes):
        return err.args[0].decode("utf-8", "replace")
    parts = [str(err) or type(err).__name__]
    return " ".join(parts)


def _code_for(err: BaseException, text: str) -> str:
    import smtplib

    from mailops.errors import SecretsError

    if isinstance(err, SecretsError):
        return "secret_missing"
    if isinstance(err, MailopsError) and err.code in PROBLEM_REASONS:
        return err.code
    name = type(err).__name__
    module = type(err).__module__ or ""
    # Anything explicitly naming throttling/quota/disabled wins over the exception type.
    by_text = classify_text(text)
    if by_text in (
        "throttled",
        "over_quota",
        "imap_disabled",
        "smtp_disabled",
        "server_unavailable",
    ):
        return by_text
    if isinstance(err, smtplib.SMTPResponseException):
        c = err.smtp_code
        if c in (421, 450, 451, 452, 454):
            return by_text if by_text in ("throttled", "over_quota") else "server_unavailable"
        if c in (530, 534, 535, 538):
            return "auth_failed"
        if c == 554 and "5.7" in text:
            return "auth_failed"
        return by_text if by_text != "unknown" else "protocol_error"
    if isinstance(err, smtplib.SMTPServerDisconnected):
        return "network"
    if isinstance(err, ssl.SSLCertVerificationError | ssl.CertificateError):
        return "tls_failed"
    if isinstance(err, ssl.SSLError):
        return "timeout" if "timed out" in text.lower() else "tls_failed"
    if isinstance(err, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(err, socket.gaierror | ConnectionError):
        return "network"
    if module.startswith("requests") or module.startswith("urllib3"):
        if "SSL" in name or "certificate" in text.lower():
            return "tls_failed"
        if "Timeout" in name:
            return "timeout"
        return "network"
    if module.startswith("google.auth"):
        if name == "RefreshError":
            return by_text if by_text != "unknown" else "token_revoked"
        if name == "TransportError":
            return by_text if by_text in ("tls_failed", "timeout") else "network"
    if module.startswith("msal"):
        m = re.search(r"HTTP Error:\s*(\d+)", text)
        if m:
            status = int(m.group(1))
            if status == 429:
                return "throttled"
            if status >= 500:
                return "server_unavailable"
        return by_text if by_text != "unknown" else "server_unavailable"
    if isinstance(err, OSError):
        return by_text if by_text in ("tls_failed", "timeout") else "network"
    if (
        module.startswith("imapclient")
        or module.startswith("imaplib")
        or name
        in (
            "LoginError",
            "IMAP4.error",
            "error",
            "abort",
            "readonly",
        )
    ):
        if name == "LoginError" and by_text == "unknown":
            return "auth_failed"
        if name == "abort" and by_text == "unknown":
            return "network"
        return by_text if by_text != "unknown" else "protocol_error"
    return by_text


# -- C3 / C4: retry budget and state changes --------------------------------------------


def _mailbox_row(store: Any, mailbox: Any) -> tuple[int, str, int]:
    from mailops.store import mailboxes

    mb_id = mailbox if isinstance(mailbox, int) else mailbox.id
    mb = mailboxes.get(store, int(mb_id))
    return mb.id, mb.state, int(mb.transient_failures or 0)


def record_failure(
    store: Any,
    mailbox: Any,
    problem: ConnectionProblem,
    *,
    budget: int = 3,
    actor: str | None = None,
) -> bool:
    """Count a failure against MAILBOX (a Mailbox or its id). Returns True when the state flipped
    to problematic now. Transient faults flip only once ``budget`` consecutive failures have
    been recorded; permanent ones flip at once. A disconnected mailbox is left alone, and a
    transient fault never replaces the reason of an already problematic mailbox."""
    from mailops.store import mailboxes

    mb_id, state, failures = _mailbox_row(store, mailbox)
    if state == "disconnected":
        return False
    if state == "problematic" and problem.transient:
        return False  # keep the recorded (permanent or budget-exhausting) reason
    code = problem.code if problem.code in PROBLEM_REASONS else "unknown"
    message = problem.message
    with store.transaction():
        if problem.transient:
            failures += 1
            mailboxes.update(store, mb_id, transient_failures=failures)
            if failures < max(1, budget):
                return False
            message = f"{message} ({failures} consecutive failures)"
        if state == "problematic":
            current = mailboxes.get(store, mb_id).problem_code
            if current == code:
                return False
        mailboxes.set_state(store, mb_id, "problematic", code=code, message=message, actor=actor)
        if problem.transient:
            mailboxes.update(store, mb_id, transient_failures=failures)
    return state != "problematic"


def record_success(store: Any, mailbox: Any) -> None:
    """A login/sync worked: reset the transient-failure count. A problematic mailbox stays
    problematic (only reconnect brings it back, C3)."""
    from mailops.store import mailboxes

    mb_id = mailbox if isinstance(mailbox, int) else mailbox.id
    mailboxes.update(store, int(mb_id), transient_failures=0)


def backoff_delay(
    attempt: int, problem: ConnectionProblem | None = None, *, base: float = 1.0, cap: float = 120.0
) -> float:
    """Seconds to wait before retry number ATTEMPT (1-based): the server's suggested backoff
    when it gave one, else exponential with full jitter."""
    if problem is not None and problem.retry_after:
        return min(cap, float(problem.retry_after))
    return random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))
