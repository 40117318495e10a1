"""Credentials for IMAP/SMTP logins: a password, or an OAuth access token (XOAUTH2).

``credentials_for(mailbox)`` is what sync and send call; it never returns anything that
gets stored: tokens and passwords stay in memory and in the encrypted secrets store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from mailops.config import Settings
from mailops.errors import SecretsError
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
    from mailops.auth.oauth import access_token  # provider specific (MSAL / google-auth)

    return Credentials(
        mailbox.address,
        "xoauth2",
        access_token(mailbox, settings, secrets, force_refresh=force_refresh),
    )
