"""Google sign-in with google-auth-oauthlib (installed-app flow, PKCE, 127.0.0.1 redirect)
and silent refresh with google-auth ``Credentials`` (C2). The refresh token is stored only
encrypted (C5); access tokens stay in this process's memory until they expire."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import jwt

from mailops.auth.oauth import (
    Browser,
    LocalRedirect,
    SignIn,
    default_browser,
    http_session,
    identities_from_claims,
    load_blob,
)
from mailops.errors import ConfigError, ConnectionProblem
from mailops.providers import Endpoints
from mailops.store.mailboxes import Mailbox

BLOB_KIND = "google"
_memo: dict[tuple[int, str], tuple[str, float]] = {}  # (mailbox id, rt hash) -> (AT, expiry)
_memo_lock = threading.Lock()


def _claims(id_token: str | None) -> dict[str, Any]:
    if not id_token:
        return {}
    # Received straight from the token endpoint over TLS: OIDC Core 3.1.3.7 allows skipping
    # the signature check here; we only read who signed in.
    try:
        return dict(jwt.decode(id_token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        return {}


def installed_app_sign_in(
    ep: Endpoints,
    login_hint: str,
    browser: Browser | None = None,
    *,
    timeout: float = 300.0,
) -> SignIn:
    from google_auth_oauthlib.flow import Flow

    from mailops.problems import classify

    if not ep.client_id:
        raise ConfigError(
            "no Google client id configured",
            guidance="create an OAuth 'Desktop app' client and set MAILOPS_GOOGLE_CLIENT_ID"
            " and MAILOPS_GOOGLE_CLIENT_SECRET",
        )
    with LocalRedirect() as redirect:
        config = {
            "installed": {
                "client_id": ep.client_id,
                "client_secret": ep.client_secret,
                "auth_uri": ep.authorize_url,
                "token_uri": ep.token_url,
                "redirect_uris": [redirect.redirect_uri],
            }
        }
        flow = Flow.from_client_config(
            config, scopes=list(ep.scopes), redirect_uri=redirect.redirect_uri
        )
        if ep.ca_file:
            flow.oauth2session.trust_env = False
        url, state = flow.authorization_url(
            login_hint=login_hint, access_type="offline", prompt="consent"
        )
        redirect.expect(state)  # a redirect without this sign-in's state is not ours
        (browser or default_browser)(url)
        params = redirect.wait(timeout)
    if params.get("state") != state:  # the listener filters; say it twice
        raise ConnectionProblem("sign-in response with another state", code="protocol_error")
    if "error" in params:
        raise classify(
            {"error": params["error"], "error_description": params.get("error_description", "")}
        )
    try:
        token = flow.fetch_token(code=params["code"], verify=ep.ca_file or True)
    except Exception as e:  # noqa: BLE001 - oauthlib errors carry the OAuth error text
        raise classify(e) from None
    rt = token.get("refresh_token")
    if not rt:
        raise ConnectionProblem(
            "Google returned no refresh token",
            code="consent_required",
            guidance="remove mailops from the account's third-party access and sign in again",
        )
    blob = json.dumps(
        {
            "kind": BLOB_KIND,
            "client_id": ep.client_id,
            "client_secret": ep.client_secret,
            "token_uri": ep.token_url,
            "scopes": list(ep.scopes),
            "refresh_token": rt,
        }
    )
    return SignIn(
        provider="google",
        identities=identities_from_claims(_claims(token.get("id_token"))),
        access_token=token["access_token"],
        blob=blob,
        scopes=tuple(ep.scopes),
    )


def refresh(mailbox: Mailbox, blob: str, *, force_refresh: bool = False) -> tuple[str, str | None]:
    """(access token, updated blob or None) from the stored refresh token."""
    import hashlib

    from google.auth.transport.requests import Request
    from google.oauth2.credentials import Credentials

    from mailops.problems import classify

    data = load_blob(blob)
    rt = str(data.get("refresh_token") or "")
    key = (mailbox.id, hashlib.sha256(rt.encode()).hexdigest())
    now = time.time()
    with _memo_lock:
        hit = _memo.get(key)
    if hit and not force_refresh and hit[1] - now > 300:
        return hit[0], None
    creds = Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=rt,
        token_uri=mailbox.oauth_authority or data.get("token_uri"),
        client_id=data.get("client_id"),
        client_secret=data.get("client_secret"),
        scopes=data.get("scopes"),
    )
    session = http_session(mailbox.ca_file)
    try:
        creds.refresh(Request(session))  # type: ignore[no-untyped-call]
    except Exception as e:  # noqa: BLE001 - RefreshError (invalid_grant), TransportError
        raise classify(e, mailbox.address) from None
    finally:
        session.close()
    expiry = creds.expiry.timestamp() if creds.expiry else now + 3000
    if creds.expiry is not None and creds.expiry.tzinfo is None:  # google-auth: naive UTC
        from datetime import UTC

        expiry = creds.expiry.replace(tzinfo=UTC).timestamp()
    new_blob = None
    if creds.refresh_token and creds.refresh_token != rt:
        new_blob = json.dumps({**data, "refresh_token": creds.refresh_token})
        key = (mailbox.id, hashlib.sha256(creds.refresh_token.encode()).hexdigest())
    with _memo_lock:
        _memo[key] = (str(creds.token), expiry)
    return str(creds.token), new_blob


def forget(mailbox_id: int) -> None:
    with _memo_lock:
        for k in [k for k in _memo if k[0] == mailbox_id]:
            del _memo[k]
