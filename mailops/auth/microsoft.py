"""Microsoft 365 sign-in with MSAL (C2): device code, auth code + PKCE, silent refresh.

The MSAL token cache is serialized by MSAL and stored only encrypted (C5) -- the caller
puts ``SignIn.blob`` into the SecretStore under ``token_cache_ref(mailbox_id)``. Access
tokens are handed out in memory; MSAL refreshes them silently with the refresh token.
Against a non-Microsoft authority (the local devserver) MSAL's authority validation and
instance discovery are switched off and the local CA is trusted (MSAL-LOCAL recipe).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import msal

from mailops.auth.oauth import (
    Browser,
    DeviceCodePrompt,
    LocalRedirect,
    SignIn,
    default_browser,
    http_session,
    identities_from_claims,
    load_blob,
)
from mailops.errors import ConfigError, ConnectionProblem
from mailops.providers import MICROSOFT_HOSTS, PROVIDERS, Endpoints
from mailops.store.mailboxes import Mailbox

SCOPES = list(PROVIDERS["microsoft"].scopes)
BLOB_KIND = "msal"


def _validate(authority: str) -> bool:
    from urllib.parse import urlsplit

    return (urlsplit(authority).hostname or "") in MICROSOFT_HOSTS


def make_app(
    authority: str,
    client_id: str,
    ca_file: str | None,
    cache: msal.SerializableTokenCache | None = None,
) -> msal.PublicClientApplication:
    if not client_id:
        raise ConfigError(
            "no Microsoft client id configured",
            guidance="register a public-client app in Entra ID and set MAILOPS_MICROSOFT_CLIENT_ID",
        )
    validate = _validate(authority)
    try:
        return msal.PublicClientApplication(
            client_id,
            authority=authority,
            validate_authority=validate,
            instance_discovery=None if validate else False,
            http_client=http_session(ca_file),
            token_cache=cache or msal.SerializableTokenCache(),
        )
    except Exception as e:  # noqa: BLE001 - discovery failed: network / TLS / 4xx
        from mailops.problems import classify

        raise classify(e) from None


def _blob(client_id: str, authority: str, cache: msal.SerializableTokenCache) -> str:
    """The encrypted-at-rest form of the MSAL cache; expired access tokens are dropped first
    (C5: an access token is never kept beyond its lifetime)."""
    now = time.time()
    for at in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
        if int(at.get("expires_on", 0)) <= now:
            cache.remove_at(at)
    return json.dumps(
        {
            "kind": BLOB_KIND,
            "client_id": client_id,
            "authority": authority,
            "cache": cache.serialize(),
        }
    )


def _signed_in(result: dict[str, Any], app: msal.PublicClientApplication, ep: Endpoints) -> SignIn:
    from mailops.problems import classify

    if "access_token" not in result:
        raise classify(result)
    cache = app.token_cache
    assert isinstance(cache, msal.SerializableTokenCache)
    return SignIn(
        provider="microsoft",
        identities=identities_from_claims(result.get("id_token_claims")),
        access_token=result["access_token"],
        blob=_blob(ep.client_id, ep.authority, cache),
        scopes=tuple(ep.scopes),
    )


def device_code_sign_in(
    ep: Endpoints,
    prompt: Callable[[DeviceCodePrompt], Any] | None = None,
    *,
    timeout: float | None = None,
) -> SignIn:
    """Device-code flow: PROMPT gets the message to show ("open URL, enter code"); this call
    then polls until the user has signed in (or TIMEOUT seconds / the code expire)."""
    from mailops.problems import classify

    app = make_app(ep.authority, ep.client_id, ep.ca_file)
    try:
        flow = app.initiate_device_flow(scopes=list(ep.scopes))
    except Exception as e:  # noqa: BLE001
        raise classify(e) from None
    if "user_code" not in flow:
        raise classify(flow)
    info = DeviceCodePrompt(
        message=flow.get("message", ""),
        user_code=flow["user_code"],
        verification_uri=flow.get("verification_uri", ""),
        expires_in=int(flow.get("expires_in", 900)),
    )
    (prompt or (lambda p: print(p.message, flush=True)))(info)
    if timeout is not None:
        flow["expires_at"] = min(
            float(flow.get("expires_at", 0) or 0) or 1e18, time.time() + timeout
        )
    try:
        result = app.acquire_token_by_device_flow(flow)
    except Exception as e:  # noqa: BLE001
        raise classify(e) from None
    if result.get("error") in ("authorization_pending", "expired_token"):
        raise ConnectionProblem(
            "the device-code sign-in was not completed in time",
            code="consent_required",
            guidance="open the sign-in page, enter the code, and finish signing in before it expires",
        )
    return _signed_in(result, app, ep)


def auth_code_sign_in(
    ep: Endpoints,
    login_hint: str,
    browser: Browser | None = None,
    *,
    timeout: float = 300.0,
) -> SignIn:
    """Authorization-code flow with PKCE and a 127.0.0.1 redirect: BROWSER opens the sign-in
    page (the default opens the system browser)."""
    from mailops.problems import classify

    app = make_app(ep.authority, ep.client_id, ep.ca_file)
    with LocalRedirect() as redirect:
        with warnings.catch_warnings():
            # MSAL recommends form_post; a loopback redirect uses the query (MSAL-LOCAL #11)
            warnings.simplefilter("ignore", UserWarning)
            flow = app.initiate_auth_code_flow(
                list(ep.scopes), redirect_uri=redirect.redirect_uri, login_hint=login_hint
            )
        redirect.expect(flow.get("state"))
        (browser or default_browser)(flow["auth_uri"])
        params = redirect.wait(timeout)
    try:
        result = app.acquire_token_by_auth_code_flow(flow, params)
    except ValueError as e:  # state mismatch etc.
        raise ConnectionProblem(f"sign-in response rejected: {e}", code="protocol_error") from None
    except Exception as e:  # noqa: BLE001
        raise classify(e) from None
    return _signed_in(result, app, ep)


def _app_for(mailbox: Mailbox, data: dict[str, Any]) -> tuple[msal.PublicClientApplication, Any]:
    cache = msal.SerializableTokenCache()
    cache.deserialize(data.get("cache") or "{}")
    authority = mailbox.oauth_authority or data.get("authority") or PROVIDERS["microsoft"].authority
    app = make_app(authority, str(data.get("client_id") or ""), mailbox.ca_file, cache)
    return app, cache


def _account(app: msal.PublicClientApplication, address: str) -> dict[str, Any] | None:
    accounts = app.get_accounts(username=address) or app.get_accounts()
    return accounts[0] if accounts else None


def refresh(mailbox: Mailbox, blob: str, *, force_refresh: bool = False) -> tuple[str, str | None]:
    """(access token, updated blob or None): silent MSAL refresh from the stored cache."""
    from mailops.problems import classify, problem

    data = load_blob(blob)
    try:
        app, cache = _app_for(mailbox, data)
    except ConnectionProblem as e:
        # the sign-in service is unreachable: a still-valid cached access token keeps
        # IMAP/SMTP working through the outage (MSAL would do the same once constructed)
        cached = (
            None if force_refresh or not e.transient else cached_access_token(data, mailbox.address)
        )
        if cached:
            return cached, None
        raise
    account = _account(app, mailbox.address)
    if account is None:
        raise problem(
            "token_revoked",
            mailbox=mailbox.address,
            detail="no signed-in account in the token cache",
        )
    try:
        result = app.acquire_token_silent_with_error(
            SCOPES, account=account, force_refresh=force_refresh
        )
    except Exception as e:  # noqa: BLE001 - MsalServiceError (5xx/429), requests errors
        raise classify(e, mailbox.address) from None
    if not result:
        raise problem("token_revoked", mailbox=mailbox.address, detail="no refresh token cached")
    if "access_token" not in result:
        raise classify(result, mailbox.address)
    new_blob = None
    if cache.has_state_changed:
        new_blob = _blob(str(data.get("client_id") or ""), str(data.get("authority") or ""), cache)
    return result["access_token"], new_blob


def cached_access_token(data: dict[str, Any], address: str, min_left: int = 300) -> str | None:
    """A cached access token of ADDRESS for the IMAP scope with at least MIN_LEFT seconds to
    live (MSAL's own 5-minute rule), read through MSAL's cache API; None otherwise."""
    cache = msal.SerializableTokenCache()
    cache.deserialize(data.get("cache") or "{}")
    kinds = msal.TokenCache.CredentialType
    homes = {
        a.get("home_account_id")
        for a in cache.search(kinds.ACCOUNT)
        if str(a.get("username", "")).lower() == address.lower()
    }
    now = time.time()
    for at in cache.search(kinds.ACCESS_TOKEN, target=[SCOPES[0]]):
        if at.get("home_account_id") in homes and int(at.get("expires_on", 0)) - now > min_left:
            return str(at["secret"])
    return None


def remove_account(mailbox: Mailbox, blob: str) -> str:
    """Drop every account from the cached MSAL state (reconnect starts clean). No network
    beyond MSAL's discovery request."""
    data = load_blob(blob)
    cache = msal.SerializableTokenCache()
    cache.deserialize(data.get("cache") or "{}")
    try:
        app, cache = _app_for(mailbox, data)
    except ConnectionProblem:
        return json.dumps({**data, "cache": "{}"})  # IdP unreachable: forget the cache anyway
    for account in app.get_accounts():
        app.remove_account(account)
    return _blob(str(data.get("client_id") or ""), str(data.get("authority") or ""), cache)
