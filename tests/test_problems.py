"""C3/C4: reason codes, classification of real error shapes, retry budget and state flips."""

from __future__ import annotations

import smtplib
import socket
import ssl

import pytest
from imapclient.exceptions import IMAPClientError, LoginError

from mailops import problems
from mailops.errors import ConnectionProblem, SecretsError
from mailops.problems import PROBLEM_REASONS, classify, record_failure, record_success
from mailops.store import mailboxes


class MsalServiceError(Exception):  # shape of msal.exceptions.MsalServiceError
    pass


MsalServiceError.__module__ = "msal.exceptions"


def _google_refresh_error(text: str) -> Exception:
    from google.auth.exceptions import RefreshError

    return RefreshError(text, {"error": "invalid_grant"})


CASES = [
    # (id, error, expected code)
    (
        "imap_wrong_password",
        LoginError("b'[AUTHENTICATIONFAILED] Authentication failed.'"),
        "auth_failed",
    ),
    ("imap_login_plain", LoginError("b'Login failed.'"), "auth_failed"),
    (
        "imap_disabled_o365",
        LoginError("b'User is authenticated but not connected.'"),
        "imap_disabled",
    ),
    (
        "imap_disabled_text",
        IMAPClientError("b'[ALERT] IMAP access is disabled for this account'"),
        "imap_disabled",
    ),
    (
        "imap_throttled",
        IMAPClientError(
            "b'[THROTTLED] Request is throttled. Suggested Backoff Time: 2500 milliseconds'"
        ),
        "throttled",
    ),
    (
        "imap_overquota",
        IMAPClientError("b'[OVERQUOTA] Account exceeded command or bandwidth limits.'"),
        "over_quota",
    ),
    (
        "imap_unavailable",
        LoginError("b'[UNAVAILABLE] Temporary authentication failure.'"),
        "server_unavailable",
    ),
    (
        "smtp_auth_disabled",
        smtplib.SMTPAuthenticationError(
            535,
            b"5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
        ),
        "smtp_disabled",
    ),
    (
        "smtp_wrong_password",
        smtplib.SMTPAuthenticationError(535, b"5.7.8 Error: authentication failed"),
        "auth_failed",
    ),
    (
        "smtp_throttled",
        smtplib.SMTPResponseException(421, b"4.7.0 Temporary System Problem, throttled"),
        "throttled",
    ),
    (
        "smtp_421",
        smtplib.SMTPResponseException(421, b"Service not available"),
        "server_unavailable",
    ),
    (
        "smtp_disconnected",
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
        "network",
    ),
    ("refused", ConnectionRefusedError(111, "Connection refused"), "network"),
    ("reset", ConnectionResetError(104, "Connection reset by peer"), "network"),
    ("dns", socket.gaierror(-2, "Name or service not known"), "network"),
    ("timeout", TimeoutError("timed out"), "timeout"),
    (
        "tls_verify",
        ssl.SSLCertVerificationError(
            1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
        ),
        "tls_failed",
    ),
    (
        "tls_version",
        ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        "tls_failed",
    ),
    (
        "msal_invalid_grant",
        {
            "error": "invalid_grant",
            "error_description": "AADSTS700082: The refresh token has expired",
        },
        "token_revoked",
    ),
    (
        "msal_consent",
        {
            "error": "invalid_grant",
            "error_description": "AADSTS65001: The user or administrator has not consented",
        },
        "consent_required",
    ),
    (
        "msal_interaction",
        {"error": "interaction_required", "error_description": "AADSTS50076: MFA"},
        "token_revoked",
    ),
    (
        "msal_throttled",
        {
            "error": "temporarily_unavailable",
            "error_description": "Request is throttled. Suggested Backoff Time: 1000 milliseconds",
        },
        "throttled",
    ),
    ("msal_http_500", MsalServiceError("HTTP Error: 500"), "server_unavailable"),
    ("msal_http_429", MsalServiceError("HTTP Error: 429"), "throttled"),
    (
        "google_revoked",
        _google_refresh_error("invalid_grant: Token has been expired or revoked."),
        "token_revoked",
    ),
    ("secret_missing", SecretsError("no stored secret", code="secret_missing"), "secret_missing"),
]


@pytest.mark.parametrize(("err", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_C4_classify_maps_server_answers_to_codes(err, code):
    p = classify(err, mailbox="a@example.test")
    assert isinstance(p, ConnectionProblem)
    assert p.code == code
    assert p.transient == PROBLEM_REASONS[code].transient
    assert p.guidance == PROBLEM_REASONS[code].guidance
    assert p.mailbox == "a@example.test"


def test_C4_every_reason_has_message_guidance_and_kind():
    required = {
        "auth_failed",
        "token_revoked",
        "consent_required",
        "imap_disabled",
        "smtp_disabled",
        "tls_failed",
        "network",
        "timeout",
        "throttled",
        "over_quota",
        "server_unavailable",
        "identity_mismatch",
        "secret_missing",
    }
    assert required <= set(PROBLEM_REASONS)
    for r in PROBLEM_REASONS.values():
        assert r.message and r.guidance and isinstance(r.transient, bool)
    transient = {c for c, r in PROBLEM_REASONS.items() if r.transient}
    assert {"network", "timeout", "throttled", "server_unavailable"} <= transient
    assert not transient & {"auth_failed", "token_revoked", "tls_failed", "identity_mismatch"}


def test_C4_throttle_backoff_parsed_into_retry_after():
    p = classify(IMAPClientError("Request is throttled. Suggested Backoff Time: 2500 milliseconds"))
    assert p.code == "throttled" and p.retry_after == 2.5
    assert problems.backoff_delay(1, p) == 2.5
    assert classify(LoginError("b'[AUTHENTICATIONFAILED] x'")).retry_after is None


def test_C5_classify_never_echoes_bearer_tokens():
    p = classify(IMAPClientError("bad line auth=Bearer SECRET-TOKEN-123 rest"))
    assert "SECRET-TOKEN-123" not in str(p) and "SECRET-TOKEN-123" not in p.one_line()


def _mailbox(store):
    return mailboxes.insert(
        store,
        owner_user_id="u1",
        address="x@example.test",
        provider="generic",
        auth_kind="password",
    )


def test_C4_transient_fault_flips_only_when_budget_exhausted(store):
    mb = _mailbox(store)
    p = classify(TimeoutError("timed out"), mb.address)
    assert record_failure(store, mb, p, budget=3) is False
    assert record_failure(store, mb, p, budget=3) is False
    assert mailboxes.get(store, mb.id).state == "connected"
    assert mailboxes.get(store, mb.id).transient_failures == 2
    assert record_failure(store, mb, p, budget=3) is True
    got = mailboxes.get(store, mb.id)
    assert got.state == "problematic" and got.problem_code == "timeout" and got.problem_since
    events = store.rows("SELECT to_state, code FROM mailbox_events WHERE mailbox_id = ?", [mb.id])
    assert events == [("problematic", "timeout")]


def test_C4_success_resets_budget_but_does_not_reconnect(store):
    mb = _mailbox(store)
    p = classify(TimeoutError("timed out"))
    record_failure(store, mb, p, budget=3)
    record_failure(store, mb, p, budget=3)
    record_success(store, mb)
    assert record_failure(store, mb, p, budget=3) is False  # count restarted
    assert mailboxes.get(store, mb.id).state == "connected"
    assert record_failure(store, mb, classify(LoginError("b'[AUTHENTICATIONFAILED] x'"))) is True
    record_success(store, mb)
    assert mailboxes.get(store, mb.id).state == "problematic"


def test_C4_permanent_fault_flips_at_once_and_keeps_since(store):
    mb = _mailbox(store)
    p = classify({"error": "invalid_grant", "error_description": "revoked"}, mb.address)
    assert record_failure(store, mb, p) is True
    first = mailboxes.get(store, mb.id)
    assert first.state == "problematic" and first.problem_code == "token_revoked"
    assert "expired or was revoked" in (first.problem_message or "")
    assert record_failure(store, mb, p) is False  # already problematic for the same reason
    assert mailboxes.get(store, mb.id).problem_since == first.problem_since


def test_C3_disconnected_mailbox_is_not_flipped(store):
    mb = _mailbox(store)
    mailboxes.set_state(store, mb.id, "disconnected")
    assert record_failure(store, mb, classify(LoginError("b'[AUTHENTICATIONFAILED] x'"))) is False
    assert mailboxes.get(store, mb.id).state == "disconnected"


def test_C4_transient_fault_does_not_overwrite_a_recorded_problem(store):
    mb = _mailbox(store)
    record_failure(store, mb, classify({"error": "invalid_grant"}))
    for _ in range(5):
        assert record_failure(store, mb, classify(TimeoutError("timed out")), budget=1) is False
    got = mailboxes.get(store, mb.id)
    assert got.problem_code == "token_revoked"
    # a different permanent reason is recorded (the newest refusal is what IT must fix)
    record_failure(store, mb, classify(LoginError("b'[AUTHENTICATIONFAILED] x'")))
    assert mailboxes.get(store, mb.id).problem_code == "auth_failed"
