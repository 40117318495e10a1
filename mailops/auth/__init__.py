"""Credentials for IMAP/SMTP logins: a password, or an OAuth access token (XOAUTH2).

``credentials_for(mailbox)`` is what sync and send call; it never returns anything that
gets stored: tokens and passwords stay in memory and in the encrypted secrets store.
``REFRESH`` is the one dispatch on the provider (``microsoft.py``: MSAL, ``google.py``:
google-auth); ``oauth.py`` is the plumbing both share and imports neither.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mailops.config import Settings
from mailops.errors import ConnectionProblem, SecretsError
from mailops.secrets import SecretStore
from mailops.store.mailboxes import Mailbox

# C5: these libraries log whole token responses (access and refresh tokens) at DEBUG; keep
# them at WARNING whatever the application's log level (even under `mailops --debug`).
TOKEN_LOGGING_LIBRARIES = ("requests_oauthlib", "oauthlib", "google_auth_oauthlib")
for _name in TOKEN_LOGGING_LIBRARIES:
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclass(frozen=True)
class Credentials:
    username: str
    mechanism: str  # "password" | "xoauth2"
    secret: str = field(repr=False)

    def xoauth2_string(self) -> str:
        return f"user={self.username}\x01auth=Bearer {self.secret}\x01\x01"


def password_ref(mailbox_id: int) -> str:
    return f"mailbox/{mailbox_id}/password"


def token_cache_ref(mailbox_id: int) -> str:
    return f"mailbox/{mailbox_id}/oauth"


def credentials_for(
    mailbox: Mailbox,
    settings: Settings | None = None,
    secrets: SecretStore | None = None,
    *,
    force_refresh: bool = False,
) -> Credentials:
    """Credentials to log in to MAILBOX now (refreshing an OAuth access token silently)."""
    settings = settings or Settings.load()
    secrets = secrets or SecretStore(settings)
    if mailbox.auth_kind == "password":
        try:
            password = secrets.get(mailbox.secret_ref or password_ref(mailbox.id))
        except SecretsError as e:  # a missing/undecryptable secret is a C4 problem, not a crash
            from mailops.problems import classify

            raise classify(e, mailbox.address) from None
        return Credentials(mailbox.address, "password", password)
    return Credentials(
        mailbox.address,
        "xoauth2",
        access_token(mailbox, settings, secrets, force_refresh=force_refresh),
    )


# (mailbox, stored blob, force_refresh) -> (access token, new blob to store or None)
Refresh = Callable[[Mailbox, str, bool], tuple[str, str | None]]


def _microsoft(mailbox: Mailbox, blob: str, force_refresh: bool) -> tuple[str, str | None]:
    from mailops.auth import microsoft  # msal loads only when an OAuth mailbox logs in

    return microsoft.refresh(mailbox, blob, force_refresh=force_refresh)


def _google(mailbox: Mailbox, blob: str, force_refresh: bool) -> tuple[str, str | None]:
    from mailops.auth import google

    return google.refresh(mailbox, blob, force_refresh=force_refresh)


#: provider -> how its access token is renewed (C5)
REFRESH: dict[str, Refresh] = {"microsoft": _microsoft, "google": _google}


def access_token(
    mailbox: Mailbox,
    settings: Settings | None = None,
    secrets: SecretStore | None = None,
    *,
    force_refresh: bool = False,
) -> str:
    """A valid access token for MAILBOX, refreshed silently when needed (C5); a refused
    refresh raises ConnectionProblem(code="token_revoked") (C4)."""
    from mailops.problems import classify

    settings = settings or Settings.load()
    secrets = secrets or SecretStore(settings)
    ref = mailbox.secret_ref or token_cache_ref(mailbox.id)
    try:
        blob = secrets.get(ref)
    except Exception as e:  # noqa: BLE001 - SecretsError -> secret_missing
        raise classify(e, mailbox.address) from None
    renew = REFRESH.get(mailbox.provider)
    if renew is None:
        raise ConnectionProblem(
            f"{mailbox.address}: provider {mailbox.provider!r} has no OAuth sign-in",
            code="protocol_error",
            mailbox=mailbox.address,
        )
    token, new_blob = renew(mailbox, blob, force_refresh)
    if new_blob is not None and new_blob != blob:
        secrets.put(ref, new_blob)  # rotated refresh token / updated MSAL cache
    return token
