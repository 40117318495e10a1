"""Local OAuth 2.0 / OpenID Connect token service: a 127.0.0.1 stand-in for the Microsoft identity platform.

Verified with msal 1.39.0, google-auth 2.63.0 / google-auth-oauthlib 1.5.0 and Dovecot 2.3.19 passdb oauth2;
see MSAL-LOCAL.md.  MSAL only accepts https:// authorities, so serve HTTPS (make_tls_files() writes a
throwaway CA + server cert) and trust the CA with a session that ignores REQUESTS_CA_BUNDLE:
    s = requests.Session(); s.verify = ca_pem; s.trust_env = False
    app = msal.PublicClientApplication(CLIENT_ID, authority=svc.base_url + "/organizations",
                                       validate_authority=False, instance_discovery=False, http_client=s)
Endpoints ({t} = any tenant path segment, e.g. organizations / common / a GUID; it is not checked):
  GET  /{t}/v2.0/.well-known/openid-configuration   OIDC discovery, read by MSAL's constructor
  GET  /{t}/.well-known/openid-configuration        same document (for oidc_authority=".../{t}")
  GET  /{t}/discovery/v2.0/keys                     JWKS of the RS256 id_token key
  POST /{t}/oauth2/v2.0/devicecode                  device authorization (RFC 8628)
  GET  /{t}/oauth2/v2.0/authorize                   auth code without UI: 302 to redirect_uri?code=&state=,
                                                    the signed-in user is the login_hint parameter
  POST /{t}/oauth2/v2.0/token                       grant_type device_code | refresh_token | authorization_code
  POST /approve     user_code=&username=[&deny=1]   test helper: "the user signed in on the other device"
  POST /revoke      token=  or  username=           revoke one token, or all tokens of one user
  POST /introspect  token=   (or GET ?token=, or Authorization: Bearer)   RFC 7662, for Dovecot passdb oauth2:
                    200 {"active": true, "username": ...} for live access tokens, else 200 {"active": false}
  POST /issue       username=[&ttl=]              test helper: issue tokens without a sign-in flow
  POST /config      at_ttl=                        test helper: change the access-token lifetime
  POST /fault       path=&status=&error=[&count=]  test helper: the next COUNT requests to PATH fail
In-process: svc = TokenService(); ca, crt, key = make_tls_files(tmpdir); svc.serve(0, (crt, key)); svc.serve(0)
mailops.dev.devserver runs it in the devserver process, HTTPS for the OAuth clients, plain HTTP for Dovecot.
"""

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import secrets
import socketserver
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TENANT_ID = "00000000-0000-4000-8000-00000000cafe"  # "tid" / "utid" of every user (made up)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_tls_files(directory):
    """Write ca.pem, server.pem (SAN IP:127.0.0.1 + DNS:localhost), server.key; return the three paths.
    Has the extensions strict verifiers (Python 3.13 VERIFY_X509_STRICT) want: critical CA basicConstraints
    and keyUsage, SKI/AKI, serverAuth EKU."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, srv_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local test CA")])

    def cert(subject, key, ca):
        off = dict.fromkeys(
            [
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "encipher_only",
                "decipher_only",
            ],
            False,
        )
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True
            )
            .add_extension(
                x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **off), True
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if not ca:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    files = {
        "ca.pem": cert(ca_name, ca_key, True),
        "server.pem": cert(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), srv_key, False
        ),
        "server.key": srv_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    return tuple(os.path.join(directory, n) for n in files)


class TokenService:
    """All state, in memory.  Tests may poke it directly: svc.at_ttl = 302, svc.approve(...), svc.log."""

    # Helpers that mint or steer sign-ins: only a caller holding the devserver's secret
    # (ADMIN_SECRET_FILE, 0600 in its folder) may use them; anything else is any local
    # process getting a token for any user.
    ADMIN_PATHS = ("/issue", "/config", "/fault", "/revoke", "/approve")
    ADMIN_HEADER = "X-Devserver-Secret"

    def __init__(self, at_ttl=3600, rt_ttl=90 * 86400, state_file=None, admin_secret=None):
        self.state_file = state_file  # live tokens survive a restart of the devserver
        self.admin_secret = admin_secret  # None: the helpers answer 403 to everyone
        self.at_ttl, self.rt_ttl = (
            at_ttl,
            rt_ttl,
        )  # NB: MSAL treats an AT with < 300 s left as expired
        self.lock = threading.Lock()
        self.access, self.refresh = {}, {}  # token -> {"username", "client_id", "scope", "exp"}
        self.device, self.codes = {}, {}  # device_code -> pending sign-in; auth code -> grant
        self.log = []  # (method, path, grant_type or None), for assertions
        self.key = rsa.generate_private_key(
            public_exponent=65537, key_size=2048
        )  # id_token signing key
        self.kid, self.base_url = "local-rs256", None
        self.faults: dict[str, list[Any]] = {}  # path suffix -> [count, status, body]
        self.identity_override: dict[
            str, str
        ] = {}  # username -> preferred_username to put in id_token
        self._load()

    def _load(self):
        if not self.state_file or not os.path.exists(self.state_file):
            return
        try:
            with open(self.state_file) as f:
                saved = json.load(f)
            now = time.time()
            self.access = {t: v for t, v in saved.get("access", {}).items() if v["exp"] > now}
            self.refresh = {t: v for t, v in saved.get("refresh", {}).items() if v["exp"] > now}
        except (OSError, ValueError, KeyError, AttributeError):
            self.access, self.refresh = {}, {}

    def _save(self):
        """Write the live tokens (0600, in the devserver's own directory: this is the
        identity provider's side, like a real IdP's database). Caller holds self.lock."""
        if not self.state_file:
            return
        tmp = self.state_file + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"access": self.access, "refresh": self.refresh}, f)
        os.replace(tmp, self.state_file)

    def sign_jwt(self, claims):
        head = b64u(json.dumps({"typ": "JWT", "alg": "RS256", "kid": self.kid}).encode())
        body = b64u(json.dumps(claims).encode())
        return f"{head}.{body}.{b64u(self.key.sign(f'{head}.{body}'.encode(), padding.PKCS1v15(), hashes.SHA256()))}"

    def jwks(self):
        pub, i2b = (
            self.key.public_key().public_numbers(),
            lambda i: i.to_bytes((i.bit_length() + 7) // 8, "big"),
        )
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": self.kid,
                    "n": b64u(i2b(pub.n)),
                    "e": b64u(i2b(pub.e)),
                }
            ]
        }

    def discovery(self, tenant):
        t = f"{self.base_url}/{tenant}"
        return {
            "issuer": f"{t}/v2.0",
            "authorization_endpoint": f"{t}/oauth2/v2.0/authorize",
            "token_endpoint": f"{t}/oauth2/v2.0/token",  # MSAL: must be https with >= 1 path segment
            "device_authorization_endpoint": f"{t}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{t}/discovery/v2.0/keys",
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT],
        }

    def issue(self, username, client_id, scope, nonce=None):
        """AAD-v2-shaped token response; caller holds self.lock.  "scope" echoes the request, so MSAL's cache
        target and google-auth's granted-scope check both match what the client asked for."""
        now, oid = int(time.time()), str(uuid.uuid5(uuid.NAMESPACE_URL, "user:" + username.lower()))
        at, rt = "at-" + secrets.token_urlsafe(32), "rt-" + secrets.token_urlsafe(32)
        self.access[at] = dict(
            username=username, client_id=client_id, scope=scope, exp=now + self.at_ttl
        )
        self.refresh[rt] = dict(
            username=username, client_id=client_id, scope=scope, exp=now + self.rt_ttl
        )
        self._save()
        resp = {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": self.at_ttl,
            "ext_expires_in": self.at_ttl,
            "access_token": at,
            "refresh_token": rt,
            # MSAL sends client_info=1; {"uid","utid"} becomes its home_account_id "<uid>.<utid>"
            "client_info": b64u(json.dumps({"uid": oid, "utid": TENANT_ID}).encode()),
        }
        if (
            "openid" in scope.split()
        ):  # MSAL always asks for openid; it decodes but never verifies the id_token
            claims = {
                "ver": "2.0",
                "iss": f"{self.base_url}/{TENANT_ID}/v2.0",
                "aud": client_id,
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "tid": TENANT_ID,
                "oid": oid,
                "sub": b64u(hashlib.sha256(f"{oid}|{client_id}".encode()).digest()),
                "preferred_username": self.identity_override.get(username.lower(), username),
                "email": self.identity_override.get(username.lower(), username),
                "name": username.split("@")[0],
            }
            if (
                nonce
            ):  # auth-code flow: MSAL sends sha256(nonce) as nonce= and raises unless it comes back
                claims["nonce"] = nonce
            resp["id_token"] = self.sign_jwt(claims)
        return resp

    def approve(self, user_code, username, deny=False):
        with self.lock:
            for d in self.device.values():
                if d["user_code"] == user_code.strip().upper():
                    d["username"], d["denied"] = username, deny
                    return True
        return False

    def revoke(self, token=None, username=None):
        with self.lock:
            for table in (self.access, self.refresh):
                for t in [
                    t
                    for t, v in table.items()
                    if t == token or (username and v["username"] == username)
                ]:
                    del table[t]
            self._save()

    def _admin(self, headers) -> bool:
        import hmac

        given = (headers.get(self.ADMIN_HEADER) or "") if headers is not None else ""
        return bool(self.admin_secret) and hmac.compare_digest(
            given.encode(), str(self.admin_secret).encode()
        )

    def route(self, method, path, query, form, headers):
        """-> (status, JSON body or None, extra headers).  Tests can wrap this to inject faults."""
        self.log.append((method, path, form.get("grant_type")))
        if path in self.ADMIN_PATHS and not self._admin(headers):
            return 403, {"error": "forbidden", "error_description": "devserver secret required"}, {}
        for suffix, fault in list(self.faults.items()):
            if path.endswith(suffix) and fault[0] > 0:
                fault[0] -= 1
                return fault[1], fault[2], {}
        if method == "POST" and path == "/issue":
            with self.lock:
                saved, self.at_ttl = self.at_ttl, int(form.get("ttl") or self.at_ttl)
                try:
                    resp = self.issue(
                        form["username"],
                        form.get("client_id", "test"),
                        form.get("scope", "openid mail"),
                    )
                finally:
                    self.at_ttl = saved
            return 200, resp, {}
        if method == "POST" and path == "/config":
            if form.get("at_ttl"):
                self.at_ttl = int(form["at_ttl"])
            if form.get("identity_for") and form.get("identity"):
                self.identity_override[form["identity_for"].lower()] = form["identity"]
            return 200, {"at_ttl": self.at_ttl}, {}
        if method == "POST" and path == "/fault":
            body = {
                "error": form.get("error", "server_error"),
                "error_description": form.get("description", "injected fault"),
                "error_codes": [],
            }
            self.faults[form["path"]] = [
                int(form.get("count", 1)),
                int(form.get("status", 500)),
                body,
            ]
            return 200, {}, {}
        tenant, _, tail = path.strip("/").partition("/")
        if method == "GET" and tail in (
            "v2.0/.well-known/openid-configuration",
            ".well-known/openid-configuration",
        ):
            return 200, self.discovery(tenant), {}
        if method == "GET" and tail == "discovery/v2.0/keys":
            return 200, self.jwks(), {}
        if method == "POST" and tail == "oauth2/v2.0/devicecode":
            dc, uc, url = (
                secrets.token_urlsafe(32),
                secrets.token_hex(4).upper(),
                f"{self.base_url}/devicelogin",
            )
            with self.lock:
                self.device[dc] = dict(
                    user_code=uc,
                    scope=form.get("scope", ""),
                    exp=time.time() + 900,
                    username=None,
                    denied=False,
                )
            return (
                200,
                {
                    "device_code": dc,
                    "user_code": uc,
                    "verification_uri": url,
                    "expires_in": 900,
                    "interval": 1,  # MSAL sleeps `interval` s between polls; 0 makes it busy-loop
                    "message": f"To sign in, use a web browser to open the page {url} "
                    f"and enter the code {uc} to authenticate.",
                },
                {},
            )
        if method == "GET" and tail == "oauth2/v2.0/authorize":
            user, redirect = query.get("login_hint"), query.get("redirect_uri")
            if not user or not redirect:
                return (
                    400,
                    {
                        "error": "invalid_request",
                        "error_description": "need login_hint and redirect_uri",
                    },
                    {},
                )
            code = secrets.token_urlsafe(24)
            with self.lock:
                self.codes[code] = dict(
                    username=user,
                    scope=query.get("scope", ""),
                    nonce=query.get("nonce"),
                    redirect_uri=redirect,
                    challenge=query.get("code_challenge"),
                    exp=time.time() + 300,
                )
            sep = "&" if "?" in redirect else "?"
            return (
                302,
                None,
                {
                    "Location": redirect
                    + sep
                    + urlencode({"code": code, "state": query.get("state", "")})
                },
            )
        if method == "POST" and tail == "oauth2/v2.0/token":
            return self.token(form)
        if method == "POST" and path == "/approve":
            ok = self.approve(
                form.get("user_code", ""), form.get("username", ""), form.get("deny") == "1"
            )
            return (200, {"ok": True}, {}) if ok else (404, {"error": "unknown user_code"}, {})
        if method == "POST" and path == "/revoke":
            self.revoke(form.get("token"), form.get("username"))
            return 200, {}, {}
        if path == "/introspect":
            auth = headers.get("Authorization", "")
            token = (
                form.get("token")
                or query.get("token")
                or (auth[7:] if auth.lower().startswith("bearer ") else "")
            )
            with self.lock:
                a = self.access.get(token)
            if not a or a["exp"] < time.time():
                return 200, {"active": False}, {}
            return (
                200,
                {
                    "active": True,
                    "username": a["username"],
                    "email": a["username"],
                    "scope": a["scope"],
                    "client_id": a["client_id"],
                    "exp": a["exp"],
                    "token_type": "Bearer",
                },
                {},
            )
        return 404, {"error": "not_found", "error_description": path}, {}

    def token(self, form):
        def err(
            code, desc
        ):  # RFC 6749 section 5.2: HTTP 400 + JSON; MSAL returns this dict to its caller
            return (
                400,
                {
                    "error": code,
                    "error_description": desc,
                    "error_codes": [],
                    "timestamp": time.ctime(),
                },
                {},
            )

        grant, client_id, now = form.get("grant_type"), form.get("client_id"), time.time()
        with self.lock:
            if grant == DEVICE_GRANT:
                d = self.device.get(form.get("device_code"))
                if not d or d["exp"] < now:
                    return err(
                        "expired_token", "AADSTS70020: device_code is not valid or has expired."
                    )
                if d["denied"]:
                    return err(
                        "authorization_declined", "AADSTS70016: the user declined the sign-in."
                    )
                if not d["username"]:
                    return err(
                        "authorization_pending",
                        "AADSTS70016: OAuth 2.0 device flow error. "
                        "Authorization is pending. Continue polling.",
                    )
                del self.device[form["device_code"]]
                return 200, self.issue(d["username"], client_id, d["scope"]), {}
            if (
                grant == "refresh_token"
            ):  # answers with a new RT (as AAD does); the old one stays valid too
                r = self.refresh.get(form.get("refresh_token"))
                if not r or r["exp"] < now:
                    return err(
                        "invalid_grant",
                        "AADSTS700082: The refresh token has expired or been revoked.",
                    )
                return (
                    200,
                    self.issue(r["username"], client_id, form.get("scope") or r["scope"]),
                    {},
                )
            if grant == "authorization_code":
                c = self.codes.pop(form.get("code"), None)
                if not c or c["exp"] < now or c["redirect_uri"] != form.get("redirect_uri"):
                    return err(
                        "invalid_grant",
                        "AADSTS70008: The authorization code is invalid or has expired.",
                    )
                if (
                    c["challenge"]
                    and b64u(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
                    != c["challenge"]
                ):  # PKCE S256 (MSAL and google-auth-oauthlib both send it)
                    return err(
                        "invalid_grant",
                        "AADSTS501481: The code_verifier does not match the code_challenge.",
                    )
                return (
                    200,
                    self.issue(
                        c["username"], client_id, form.get("scope") or c["scope"], c["nonce"]
                    ),
                    {},
                )
        return err("unsupported_grant_type", f"grant_type {grant!r} is not supported here")

    def serve(self, port=0, tls=None):
        """Start a 127.0.0.1 listener in a daemon thread; tls=(certfile, keyfile) makes it HTTPS.  Returns the
        server (.url; stop with .shutdown() and .server_close()).  Discovery advertises the HTTPS listener."""
        srv = _Server(("127.0.0.1", port), _Handler)
        srv.svc = self
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        srv.url = f"{'https' if tls else 'http'}://127.0.0.1:{srv.server_address[1]}"
        if tls or not self.base_url:
            self.base_url = srv.url
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    svc: TokenService
    url: str

    def server_bind(
        self,
    ):  # HTTPServer.server_bind() calls socket.getfqdn() = a reverse-DNS lookup; skip it
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet; svc.log has (method, path, grant_type)
        pass

    def _run(self):
        url, n = urlsplit(self.path), int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(n).decode()).items()} if n else {}
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        status, body, extra = self.server.svc.route(  # type: ignore[attr-defined]
            self.command, url.path, query, form, self.headers
        )
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in {
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
            **extra,
        }.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _run
