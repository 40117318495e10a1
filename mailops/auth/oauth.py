"""OAuth plumbing shared by the Microsoft (MSAL) and Google (google-auth) flows.

- ``SignIn``: what a sign-in produced -- the identity the provider vouches for (C1), the
  access token (memory only) and the encrypted-at-rest blob (refresh token / MSAL cache).
- ``http_session(ca_file)``: a requests session for the token service; with a private CA it
  ignores REQUESTS_CA_BUNDLE / proxies (``trust_env=False``) so the CA really applies.
- ``LocalRedirect``: the localhost redirect listener of the auth-code (+PKCE) flows.
- ``access_token(mailbox, settings, secrets)``: dispatch on the mailbox's provider; a
  refused refresh raises ConnectionProblem(code="token_revoked") (C4).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from mailops.config import Settings
from mailops.errors import ConnectionProblem
from mailops.secrets import SecretStore
from mailops.store.mailboxes import Mailbox

log = logging.getLogger(__name__)

#: callback(url) that opens the provider's sign-in page (a browser, or a test's stand-in)
Browser = Callable[[str], Any]


@dataclass(frozen=True)
class DeviceCodePrompt:
    """What to show the user during a device-code sign-in (terminal or notebook)."""

    message: str
    user_code: str
    verification_uri: str
    expires_in: int


@dataclass
class SignIn:
    provider: str
    identities: tuple[str, ...]  # lower-case preferred_username / email from the id_token
    access_token: str = field(repr=False)
    blob: str = field(repr=False)  # JSON to store ENCRYPTED under token_cache_ref(id)
    scopes: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        return self.identities[0] if self.identities else ""

    def proves(self, address: str) -> bool:
        return address.strip().lower() in self.identities


def identities_from_claims(claims: dict[str, Any] | None) -> tuple[str, ...]:
    out: list[str] = []
    for key in ("preferred_username", "email", "upn"):
        v = (claims or {}).get(key)
        if isinstance(v, str) and v.strip() and v.strip().lower() not in out:
            out.append(v.strip().lower())
    return tuple(out)


def http_session(ca_file: str | None) -> requests.Session:
    s = requests.Session()
    if ca_file:
        s.verify = ca_file
        s.trust_env = False  # REQUESTS_CA_BUNDLE would beat verify= (MSAL-LOCAL gotcha 3)
    return s


class LocalRedirect:
    """A one-shot HTTP listener on 127.0.0.1 receiving the OAuth redirect (?code=&state=)."""

    def __init__(self) -> None:
        self.params: dict[str, str] | None = None
        self._got = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                query = dict(parse_qsl(urlsplit(self.path).query))
                if "code" in query or "error" in query:
                    outer.params = query
                    outer._got.set()
                body = b"<html><body>Sign-in complete. You can close this window.</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # the query holds the code: never log
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.redirect_uri = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalRedirect:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, timeout: float) -> dict[str, str]:
        if not self._got.wait(timeout) or self.params is None:
            raise ConnectionProblem(
                "the browser sign-in did not complete in time",
                code="consent_required",
                guidance="sign in in the browser window that opened, then try again",
                transient=False,
            )
        return self.params


def default_browser(url: str) -> None:
    import webbrowser

    webbrowser.open(url)


def follow_locally(url: str, ca_file: str | None = None) -> None:
    """A stand-in browser for tests and the demo: fetch the authorize URL without following
    redirects (the local token service answers 302 to the redirect URI at once), then deliver
    that redirect to our 127.0.0.1 listener."""
    with http_session(ca_file) as s:
        r = s.get(url, allow_redirects=False, timeout=10)
        location = r.headers.get("Location")
        if not location:
            raise ConnectionProblem(
                f"the sign-in page answered HTTP {r.status_code} without a redirect",
                code="consent_required",
            )
        if urlsplit(location).hostname not in ("127.0.0.1", "localhost"):
            raise ConnectionProblem("refusing a non-local redirect", code="protocol_error")
        requests.get(location, timeout=10, proxies={"http": "", "https": ""})


def load_blob(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ConnectionProblem(
            "the stored sign-in data is unreadable",
            code="secret_missing",
            guidance="reconnect the mailbox",
        )
    return data


def access_token(
    mailbox: Mailbox,
    settings: Settings | None = None,
    secrets: SecretStore | None = None,
    force_refresh: bool = False,
) -> str:
    """A valid access token for MAILBOX, refreshed silently when needed (C5)."""
    from mailops.auth import token_cache_ref
    from mailops.problems import classify

    settings = settings or Settings.load()
    secrets = secrets or SecretStore(settings)
    ref = mailbox.secret_ref or token_cache_ref(mailbox.id)
    try:
        blob = secrets.get(ref)
    except Exception as e:  # noqa: BLE001 - SecretsError -> secret_missing
        raise classify(e, mailbox.address) from None
    if mailbox.provider == "microsoft":
        from mailops.auth import microsoft

        token, new_blob = microsoft.refresh(mailbox, blob, force_refresh=force_refresh)
    elif mailbox.provider == "google":
        from mailops.auth import google

        token, new_blob = google.refresh(mailbox, blob, force_refresh=force_refresh)
    else:
        raise ConnectionProblem(
            f"{mailbox.address}: provider {mailbox.provider!r} has no OAuth sign-in",
            code="protocol_error",
            mailbox=mailbox.address,
        )
    if new_blob is not None and new_blob != blob:
        secrets.put(ref, new_blob)  # rotated refresh token / updated MSAL cache
    return token
