"""C2: the providers table and endpoint overrides (pure)."""

from __future__ import annotations

import pytest

from mailops.config import Settings
from mailops.errors import ConfigError, DevServerError
from mailops.providers import (
    GOOGLE_MAIL_SCOPE,
    MS_IMAP_SCOPE,
    MS_SMTP_SCOPE,
    PROVIDERS,
    devserver_overrides,
    resolve,
)


def test_C2_microsoft_defaults():
    p = PROVIDERS["microsoft"]
    assert (p.imap_host, p.imap_port, p.imap_security) == ("outlook.office365.com", 993, "ssl")
    assert (p.smtp_host, p.smtp_port, p.smtp_security) == ("smtp.office365.com", 587, "starttls")
    assert p.sasl == "XOAUTH2" and p.auth_kind == "oauth"
    assert {MS_IMAP_SCOPE, MS_SMTP_SCOPE, "email"} == set(p.scopes)
    # MSAL refuses its reserved scopes in the list (it always adds them itself)
    assert not {"openid", "profile", "offline_access"} & set(p.scopes)
    assert p.authority == "https://login.microsoftonline.com/organizations"


def test_C2_google_and_generic_defaults():
    g = PROVIDERS["google"]
    assert (g.imap_host, g.imap_port, g.smtp_host, g.smtp_port) == (
        "imap.gmail.com",
        993,
        "smtp.gmail.com",
        587,
    )
    assert GOOGLE_MAIL_SCOPE in g.scopes and g.sasl == "XOAUTH2"
    assert PROVIDERS["generic"].auth_kind == "password"


def test_C2_every_endpoint_overridable(tmp_path):
    s = Settings.load(microsoft_client_id="app-1", db=str(tmp_path / "x.duckdb"))
    ep = resolve(
        "microsoft",
        s,
        imap_host="127.0.0.1",
        imap_port="1993",
        smtp_security="ssl",
        authority="https://127.0.0.1:8443/organizations",
        ca_file="/ca.pem",
    )
    assert (ep.imap_host, ep.imap_port, ep.smtp_security) == ("127.0.0.1", 1993, "ssl")
    assert ep.client_id == "app-1" and ep.ca_file == "/ca.pem"
    assert not ep.validate_authority  # local authority: MSAL validation/discovery off
    assert resolve("microsoft", s).validate_authority  # the real cloud: left on
    with pytest.raises(ConfigError):
        resolve("microsoft", s, imap_security="tls-please")
    with pytest.raises(ConfigError):
        resolve("microsoft", s, bogus="x")
    with pytest.raises(ConfigError):
        resolve("yahoo", s)


def test_C2_devserver_overrides_need_a_running_devserver(tmp_path):
    with pytest.raises(DevServerError):
        devserver_overrides(Settings.load(devserver_dir=str(tmp_path)))
