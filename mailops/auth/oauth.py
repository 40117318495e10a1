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
    """A one-shot HTTP listener on 127.0.0.1 receiving the OAuth redirect (?code=&state=).

    It keeps the FIRST request that matches: sent to this listener's own ``Host``
    (``127.0.0.1:<port>``, so a web page cannot aim a request at it under another name:
    DNS rebinding), on its path, carrying the ``state`` of this sign-in (``expect``). Any
    other request -- a second redirect, a forged one -- is answered 400 and ignored."""

    def __init__(self) -> None:
        self.params: dict[str, str] | None = None
        self.state: str | None = None  # the sign-in's state, set before the browser opens
        self.refused = 0
        self._got = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                ok = outer._accept(self.headers.get("Host", ""), parts.path, query)
                body = (
                    b"<html><body>Sign-in complete. You can close this window.</body></html>"
                    if ok
                    else b"<html><body>Not the sign-in this listener waits for.</body></html>"
                )
                self.send_response(200 if ok else 400)
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

    def expect(self, state: str | None) -> None:
        """The ``state`` this sign-in sent; a redirect without it is not ours."""
        self.state = state

    def _accept(self, host: str, path: str, query: dict[str, str]) -> bool:
        if host.strip().lower() != f"127.0.0.1:{self.port}" or path not in ("", "/"):
            return self._refuse()
        if "code" not in query and "error" not in query:
            return self._refuse()
        if self.state is None or query.get("state") != self.state:
            return self._refuse()
        with self._lock:
            if self.params is not None:  # the first matching request wins
                return self._refuse()
            self.params = query
        self._got.set()
        return True

    def _refuse(self) -> bool:
        self.refused += 1
        return False

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
