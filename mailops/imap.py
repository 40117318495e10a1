"""Opening IMAP connections: TLS modes, login (password or XOAUTH2), typed errors."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from mailops.auth import Credentials
from mailops.errors import ConnectionProblem
from mailops.store.mailboxes import Mailbox


def ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying TLS context, cached per CA file (loading the system CAs costs ~30 ms,
    which dominated a no-change sync of many mailboxes). Reloaded when the CA file changes."""
    mtime = None
    if ca_file:
        try:
            mtime = os.stat(ca_file).st_mtime_ns
        except OSError:
            mtime = None
    return _cached_context(ca_file or None, mtime)


@functools.lru_cache(maxsize=32)
def _cached_context(ca_file: str | None, _mtime: int | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


def login_error_problem(err: Exception, address: str) -> ConnectionProblem:
    """Map a login refusal to a problem; mailops.problems refines the codes."""
    try:
        from mailops.problems import classify

        return classify(err, mailbox=address)
    except ImportError:  # pragma: no cover - problems module arrives with the connections issue
        return ConnectionProblem(
            f"login refused for {address}: {err}", code="auth_failed", mailbox=address
        )


def open_imap(
    mailbox: Mailbox,
    creds: Credentials,
    *,
    timeout: float = 30.0,
    ca_file: str | None = None,
) -> imapclient.IMAPClient:
    """Connect and log in; raise ConnectionProblem on any failure."""
    host, port = mailbox.imap_host or "", int(mailbox.imap_port or 993)
    security = (mailbox.imap_security or "ssl").lower()
    ctx = ssl_context(ca_file or mailbox.ca_file)
    try:
        client = imapclient.IMAPClient(
            host, port=port, ssl=security == "ssl", ssl_context=ctx, timeout=timeout
        )
        if security == "starttls":
            client.starttls(ctx)
    except (ssl.SSLError, ssl.CertificateError) as e:
        raise login_error_problem(e, mailbox.address) from None
    except (TimeoutError, OSError, IMAPClientError) as e:
        raise login_error_problem(e, mailbox.address) from None
    try:
        if creds.mechanism == "xoauth2":
            client.oauth2_login(creds.username, creds.secret)
        else:
            client.login(creds.username, creds.secret)
    except (LoginError, IMAPClientError, OSError) as e:
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass
        raise login_error_problem(e, mailbox.address) from None
    return client


@contextmanager
def imap_session(
    mailbox: Mailbox, creds: Credentials, **kw: object
) -> Iterator[imapclient.IMAPClient]:
    client = open_imap(mailbox, creds, **kw)  # type: ignore[arg-type]
    try:
        yield client
    finally:
        close_imap(client)


def close_imap(client: imapclient.IMAPClient) -> None:
    """LOGOUT politely, or drop the socket when the server is already gone."""
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - the server may already be gone
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass
