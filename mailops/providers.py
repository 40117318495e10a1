"""Mail providers (C2): endpoints, TLS modes, SASL mechanism and OAuth scopes as data.

Every endpoint can be overridden (``Endpoints.with_overrides``), and
``devserver_overrides(settings)`` points a provider at a running local server (127.0.0.1
IMAP/SMTP and a local OAuth token service with its own CA), so the real MSAL and google-auth
flows run locally in tests and the demo (``mailops mailbox connect --devserver``). The local
server announces itself in ``<devserver_dir>/endpoints.json`` (``LocalServer``, defined here:
the product owns the format, the dev wing's devserver writes it), so nothing here imports
the dev wing.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailops.config import Settings
from mailops.errors import ConfigError, DevServerError

MS_IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
MS_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"

# Hosts MSAL knows as Microsoft clouds: only there is authority validation left on.
MICROSOFT_HOSTS = (
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.windows.net",
    "login.microsoft.com",
    "sts.windows.net",
)

DEVSERVER_CLIENT_ID = "mailops-devserver"  # the local token service accepts any client id
DEVSERVER_CLIENT_SECRET = "not-a-secret"  # google "installed app" secrets are public anyway


@dataclass(frozen=True)
class Provider:
    name: str
    label: str
    auth_kind: str  # "oauth" | "password"
    sasl: str  # "XOAUTH2" | "PLAIN"
    imap_host: str
    imap_port: int
    imap_security: str  # "ssl" | "starttls" | "plain"
    smtp_host: str
    smtp_port: int
    smtp_security: str
    # MSAL takes reserved scopes (openid, profile, offline_access) implicitly; it refuses them
    # in its scopes list, so they are not listed here.
    scopes: tuple[str, ...] = ()
    authority: str = ""  # Microsoft: MSAL authority; Google: unused
    authorize_url: str = ""
    token_url: str = ""


PROVIDERS: dict[str, Provider] = {
    "microsoft": Provider(
        name="microsoft",
        label="Microsoft 365 / Outlook",
        auth_kind="oauth",
        sasl="XOAUTH2",
        imap_host="outlook.office365.com",
        imap_port=993,
        imap_security="ssl",
        smtp_host="smtp.office365.com",
        smtp_port=587,
        smtp_security="starttls",
        scopes=(MS_IMAP_SCOPE, MS_SMTP_SCOPE, "email"),
        authority="https://login.microsoftonline.com/organizations",
        authorize_url="https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize",
        token_url="https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
    ),
    "google": Provider(
        name="google",
        label="Google Workspace / Gmail",
        auth_kind="oauth",
        sasl="XOAUTH2",
        imap_host="imap.gmail.com",
        imap_port=993,
        imap_security="ssl",
        smtp_host="smtp.gmail.com",
        smtp_port=587,
        smtp_security="starttls",
        scopes=(GOOGLE_MAIL_SCOPE, "openid", "email"),
        authorize_url="https://accounts.google.com/o/oauth2/auth",
        token_url="https://oauth2.googleapis.com/token",
    ),
    "generic": Provider(
        name="generic",
        label="Other IMAP/SMTP (password or app password)",
        auth_kind="password",
        sasl="PLAIN",
        imap_host="",
        imap_port=993,
        imap_security="ssl",
        smtp_host="",
        smtp_port=587,
        smtp_security="starttls",
    ),
}

SECURITY_MODES = ("ssl", "starttls", "plain")


@dataclass(frozen=True)
class Endpoints:
    """A provider resolved with its overrides: everything a connection needs except secrets."""

    provider: str
    auth_kind: str
    imap_host: str
    imap_port: int
    imap_security: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    scopes: tuple[str, ...] = ()
    authority: str = ""
    authorize_url: str = ""
    token_url: str = ""
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    ca_file: str = ""
    local: bool = False  # pointed at the devserver

    def with_overrides(self, **overrides: Any) -> Endpoints:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown endpoint override(s): {', '.join(sorted(unknown))}")
        values = {k: v for k, v in overrides.items() if v is not None and v != ""}
        for key in ("imap_port", "smtp_port"):
            if key in values:
                values[key] = int(values[key])
        for key in ("imap_security", "smtp_security"):
            if key in values and values[key] not in SECURITY_MODES:
                raise ConfigError(
                    f"{key} must be one of {', '.join(SECURITY_MODES)}, not {values[key]!r}"
                )
        return replace(self, **values)

    @property
    def validate_authority(self) -> bool:
        """Leave MSAL's authority validation on only for real Microsoft hosts (MSAL-LOCAL §2)."""
        return (urlsplit(self.authority).hostname or "") in MICROSOFT_HOSTS


def provider(name: str) -> Provider:
    try:
        return PROVIDERS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown provider {name!r}",
            guidance=f"choose one of: {', '.join(PROVIDERS)}",
        ) from None


def resolve(
    name: str,
    settings: Settings | None = None,
    *,
    devserver: bool = False,
    **overrides: Any,
) -> Endpoints:
    """The endpoints of provider NAME: table defaults < settings < devserver < explicit overrides."""
    settings = settings or Settings.load()
    p = provider(name)
    ep = Endpoints(
        provider=p.name,
        auth_kind=p.auth_kind,
        imap_host=p.imap_host,
        imap_port=p.imap_port,
        imap_security=p.imap_security,
        smtp_host=p.smtp_host,
        smtp_port=p.smtp_port,
        smtp_security=p.smtp_security,
        scopes=p.scopes,
        authority=p.authority,
        authorize_url=p.authorize_url,
        token_url=p.token_url,
        ca_file=settings.ca_file,
    )
    if p.name == "microsoft":
        ep = ep.with_overrides(client_id=settings.microsoft_client_id)
    elif p.name == "google":
        ep = ep.with_overrides(
            client_id=settings.google_client_id, client_secret=settings.google_client_secret
        )
    if devserver:
        ep = ep.with_overrides(**devserver_overrides(settings, name=p.name))
    return ep.with_overrides(**overrides)


LOCAL_SERVER_FILE = "endpoints.json"


@dataclass(frozen=True)
class LocalServer:
    """Where a local mail server listens (no secrets): ``DIR/endpoints.json``."""

    host: str
    imaps_port: int
    smtp_port: int
    microsoft_authority: str
    authorize_url: str
    token_url: str
    ca_file: str

    def save(self, root: str) -> None:
        path = Path(root, LOCAL_SERVER_FILE)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def running(cls, root: str) -> LocalServer | None:
        """The local server announced in ROOT, if its IMAPS port answers; else None."""
        try:
            data = json.loads(Path(root, LOCAL_SERVER_FILE).read_text())
            server = cls(**{f.name: data[f.name] for f in fields(cls)})
        except (OSError, ValueError, TypeError, KeyError):
            return None
        try:
            socket.create_connection((server.host, server.imaps_port), 1).close()
        except OSError:
            return None
        return server

    @staticmethod
    def forget(root: str) -> None:
        Path(root, LOCAL_SERVER_FILE).unlink(missing_ok=True)


def devserver_overrides(
    settings: Settings | None = None, *, name: str = "generic"
) -> dict[str, Any]:
    """Overrides that point provider NAME at the running devserver (`mailops devserver start`)."""
    settings = settings or Settings.load()
    server = LocalServer.running(settings.devserver_dir)
    if server is None:
        raise DevServerError(
            f"no devserver running in {settings.devserver_dir}",
            guidance="start it with: mailops devserver start",
        )
    return endpoints_for_state(server, name)


def endpoints_for_state(state: Any, name: str) -> dict[str, Any]:
    """Like devserver_overrides, from a ``LocalServer`` (or the devserver's state) in hand."""
    return {
        "imap_host": state.host,
        "imap_port": state.imaps_port,
        "imap_security": "ssl",
        "smtp_host": state.host,
        "smtp_port": state.smtp_port,
        "smtp_security": "starttls",
        "authority": state.microsoft_authority,
        "authorize_url": state.authorize_url,
        "token_url": state.token_url,
        "ca_file": state.ca_file,
        "client_id": DEVSERVER_CLIENT_ID if name in ("microsoft", "google") else "",
        "client_secret": DEVSERVER_CLIENT_SECRET if name == "google" else "",
        "local": True,
    }
