"""Test SMTP submission server (aiosmtpd) on 127.0.0.1 that delivers into Dovecot via LMTP.

  AUTH PLAIN / LOGIN : checked against Dovecot's passwd-file (user:{PLAIN}password:...)
  AUTH XOAUTH2       : token checked with the same introspection endpoint Dovecot uses
  DATA               : each local recipient is delivered over LMTP (unix socket ROOT/run/lmtp),
                       so the message shows up in that user's IMAP INBOX.

Started by mailops.dev.devserver: ctl = make_controller(root, port=0 ...); ctl.start(); ctl.stop().
"""

import asyncio
import base64
import json
import smtplib
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def read_users(path):
    """passwd-file -> {user: plain_password}; only {PLAIN} entries are usable here."""
    users: dict[str, str | None] = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, pw = line.split(":")[:2]
            users[name.lower()] = pw[len("{PLAIN}") :] if pw.startswith("{PLAIN}") else None
    return users


def introspect(url, token):
    """POST token=... like Dovecot does; return the username or None."""
    data = urllib.parse.urlencode({"token": token}).encode()
    try:
        with urllib.request.urlopen(url, data=data, timeout=5) as r:
            body = json.load(r)
    except urllib.error.HTTPError:  # 401 for unknown tokens
        return None
    return body.get("username") if body.get("active") is True else None


class LmtpHandler:
    def __init__(
        self, users_file, lmtp_socket, oauth_url=None, accept_all=False, require_auth=True
    ):
        self.users_file = users_file
        # NB: never name a handler attribute auth_*: aiosmtpd turns EVERY handler member called
        # auth_<X> (even a bool) into an advertised AUTH mechanism <X>.
        self.require_auth = require_auth
        self.lmtp_socket = lmtp_socket
        self.oauth_url = oauth_url
        self.accept_all = accept_all
        self.messages = []  # (mail_from, rcpt_tos, bytes) of everything accepted, for assertions

    # --- AUTH PLAIN/LOGIN go through the Controller's authenticator= callable
    def authenticator(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode().lower()
        ok = read_users(self.users_file).get(user) == auth_data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    # --- AUTH XOAUTH2: custom mechanism = handler method named auth_<MECH>(server, args)
    async def auth_XOAUTH2(self, server, args):
        # args = ["XOAUTH2"] or ["XOAUTH2", <base64 initial response>]
        if len(args) > 1:
            try:
                raw = base64.b64decode(args[1], validate=True)
            except ValueError:
                return AuthResult(
                    success=False, handled=False, message="501 5.5.2 Can't decode base64"
                )
        else:
            raw = await server.challenge_auth("")
            if not isinstance(raw, bytes):  # client aborted with '*' (already answered)
                return AuthResult(success=False, handled=True)
        # "user=" USER ^A "auth=Bearer " TOKEN ^A ^A
        fields = dict(
            p.split("=", 1) for p in raw.decode(errors="replace").split("\x01") if "=" in p
        )
        user = fields.get("user", "").lower()
        token = (
            fields.get("auth", "")[len("Bearer ") :]
            if fields.get("auth", "").startswith("Bearer ")
            else ""
        )
        owner = None
        if self.oauth_url and token:
            loop = asyncio.get_running_loop()
            try:
                owner = await loop.run_in_executor(None, introspect, self.oauth_url, token)
            except OSError:  # introspection server unreachable (URLError is an OSError)
                return AuthResult(
                    success=False,
                    handled=False,
                    message="454 4.7.0 Temporary authentication failure",
                )
        if owner and owner.lower() == user:
            return AuthResult(success=True, auth_data=user)
        # Like Gmail/Dovecot: send a JSON error challenge, client answers with an empty line, then 535.
        await server.challenge_auth(
            json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"})
        )
        # NB: AuthResult(success=False) defaults to handled=True = "I already replied" -> client hangs.
        return AuthResult(success=False, handled=False, message="535 5.7.8 Invalid token")

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # "Auth required" is enforced here, not with aiosmtpd's auth_required=True: that one, without
        # TLS, warns (UserWarning) in every new connection; under pytest -W error the connection hangs.
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.accept_all or address.lower() in read_users(self.users_file):
            envelope.rcpt_tos.append(address)
            return "250 OK"
        return "550 5.1.1 No such user here"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content  # raw bytes as received (SMTPUTF8-safe)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), data))
        local = read_users(self.users_file)
        rcpts = [r for r in envelope.rcpt_tos if r.lower() in local]
        if rcpts:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, self._deliver, envelope.mail_from, rcpts, data)
            except smtplib.SMTPException as e:
                return f"451 4.3.0 LMTP delivery failed: {e}"
        return "250 OK queued"

    def _deliver(self, mail_from, rcpts, data):
        # smtplib.LMTP reads only ONE reply after DATA, but LMTP sends one per recipient;
        # so deliver one transaction per recipient (simple and correct).
        with smtplib.LMTP(self.lmtp_socket) as lmtp:  # host starting with "/" = unix socket
            for rcpt in rcpts:
                lmtp.sendmail(mail_from or "<>", [rcpt], data)


def make_controller(root, port=0, oauth_url=None, require_auth=True, tls=False, accept_all=False):
    """Start-able aiosmtpd Controller (ctl.start() / ctl.stop(); ctl.port is the port)."""
    if (
        port == 0
    ):  # aiosmtpd 1.4's Controller can't bind port 0 (its readiness probe dials self.port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    handler = LmtpHandler(f"{root}/users", f"{root}/run/lmtp", oauth_url, accept_all, require_auth)
    kw: dict[str, Any] = {}
    if tls:  # offer STARTTLS with Dovecot's self-signed cert
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(f"{root}/ssl/server.pem", f"{root}/ssl/server.key")
        kw["tls_context"] = ctx
    ctl = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=handler.authenticator,
        auth_require_tls=False,  # else aiosmtpd hides AUTH until STARTTLS
        **kw,
    )
    ctl.handler_obj = handler  # type: ignore[attr-defined]
    return ctl
