"""OAuth plumbing shared by the Microsoft (MSAL) and Google (google-auth) flows.

- ``SignIn``: what a sign-in produced -- the identity the provider vouches for (C1), the
  access token (memory only) and the encrypted-at-rest blob (refresh token / MSAL cache).
- ``http_session(ca_file)``: a requests session for the token service; with a private CA it
  ignores REQUESTS_CA_BUNDLE / proxies (``trust_env=False``) so the CA really applies.
- ``LocalRedirect``: the localhost redirect listener of the auth-code (+PKCE) flows.

Which provider renews a mailbox's access token is a table in ``mailops.auth``
(``REFRESH``); this module knows no provider.
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

from mailops.errors import ConnectionProblem

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
