"""IMAP sessions: TLS modes, login (password or XOAUTH2), typed errors, the session pool.

``session_for(mailbox, settings, first)`` is the one door sync and send use to talk to a
mailbox: credentials (refreshed once when refused), login, an optional pooled session
kept between scheduler rounds, logout.
"""

from __future__ import annotations

import functools
import imaplib
import logging
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import imapclient
from imapclient import IMAPClient, imap4, tls
from imapclient.exceptions import IMAPClientError, LoginError

from mailops.auth import Credentials
from mailops.config import Settings
from mailops.errors import ConnectionProblem
from mailops.problems import classify
from mailops.store.mailboxes import Mailbox

log = logging.getLogger(__name__)


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
    """Map a login refusal to a problem (``mailops.problems.classify``)."""
    return classify(err, mailbox=address)


_CAPS_RE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.I)


class _Greeted:
    """imaplib asks ``CAPABILITY`` right after the greeting even when the greeting carries
    it (``* OK [CAPABILITY ...]``, Dovecot and most servers): one round trip per login that
    a no-change sync of many mailboxes pays a hundred times. Read them from the greeting."""

    welcome: bytes
    capabilities: tuple[str, ...]

    _greeting_read = False

    def _get_capabilities(self) -> None:
        m = None if self._greeting_read else _CAPS_RE.search(self.welcome or b"")
        self._greeting_read = True  # after STARTTLS imaplib asks again: those must be fresh
        if m is None:
            super()._get_capabilities()  # type: ignore[misc]
            return
        self.capabilities = tuple(m.group(1).decode("ascii", "replace").upper().split())
        # imaplib filed the greeting's code as an untagged CAPABILITY; left there, imapclient
        # would take these pre-login ones for the session's after LOGIN
        self.untagged_responses.pop("CAPABILITY", None)  # type: ignore[attr-defined]


# (host, port) -> (context, the last TLS session of a login there): resumed by the next
# login (no certificate chain to send and verify, no signature). Servers that keep their
# ticket keys across connections take it (Dovecot in its high-performance login mode, most
# providers' front ends); Dovecot's default (a new imap-login process per connection) does
# a full handshake as before.
_TLS_SESSIONS: dict[tuple[str, int], tuple[ssl.SSLContext, ssl.SSLSession]] = {}


class _TLS(_Greeted, tls.IMAP4_TLS):
    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        ctx = self.ssl_context
        if ctx is None:
            return super()._create_socket(timeout)  # type: ignore[no-any-return]
        sock = socket.create_connection(
            (self.host, self.port), timeout=self._timeout if timeout is None else timeout
        )
        cached = _TLS_SESSIONS.get((self.host, self.port))
        session = cached[1] if cached is not None and cached[0] is ctx else None
        try:
            return ctx.wrap_socket(sock, server_hostname=self.host, session=session)
        except BaseException:
            sock.close()
            raise

    def _get_capabilities(self) -> None:
        super()._get_capabilities()
        # the greeting has been read: a TLS 1.3 server's session tickets came before it
        session = getattr(self.sock, "session", None)
        if session is not None and self.ssl_context is not None:
            _TLS_SESSIONS[(self.host, self.port)] = (self.ssl_context, session)


class _Plain(_Greeted, imap4.IMAP4WithTimeout):
    pass


class _Client(IMAPClient):
    """imapclient's client on our imaplib classes (``_Greeted``)."""

    def _create_IMAP4(self) -> imaplib.IMAP4:  # noqa: N802 - imapclient's name
        if self.stream:
            return super()._create_IMAP4()  # type: ignore[no-any-return]
        timeout = getattr(self._timeout, "connect", None)
        if self.ssl:
            return _TLS(self.host, self.port, self.ssl_context, timeout)
        return _Plain(self.host, self.port, timeout)


_LOGIN_SLOTS: dict[tuple[str, int, int], threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def _login_slot(host: str, port: int, bound: int) -> threading.BoundedSemaphore:
    """At most BOUND logins (TCP + TLS + LOGIN) at once per server: the handshakes cost
    CPU on both sides (2 cores here), and providers throttle bursts of logins per IP."""
    key = (host, port, max(1, bound))
    with _SLOTS_LOCK:
        slot = _LOGIN_SLOTS.get(key)
        if slot is None:
            slot = _LOGIN_SLOTS[key] = threading.BoundedSemaphore(key[2])
    return slot


def open_imap(
    mailbox: Mailbox,
    creds: Credentials,
    *,
    timeout: float = 30.0,
    ca_file: str | None = None,
    login_parallel: int = 0,
) -> imapclient.IMAPClient:
    """Connect and log in; raise ConnectionProblem on any failure. LOGIN_PARALLEL > 0
    bounds the logins to this server running at once (``_login_slot``)."""
    host, port = mailbox.imap_host or "", int(mailbox.imap_port or 993)
    if login_parallel > 0:
        with _login_slot(host, port, login_parallel):
            return open_imap(mailbox, creds, timeout=timeout, ca_file=ca_file)
    security = (mailbox.imap_security or "ssl").lower()
    ctx = ssl_context(ca_file or mailbox.ca_file)
    try:
        client = _Client(host, port=port, ssl=security == "ssl", ssl_context=ctx, timeout=timeout)
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


def close_imap(client: imapclient.IMAPClient, *, wait: bool = True) -> None:
    """LOGOUT politely, or drop the socket when the server is already gone. WAIT=False
    sends LOGOUT and closes without waiting for the server's BYE (one round trip less per
    mailbox; the server has the LOGOUT, so it ends the session as a logout)."""
    if not wait:
        try:
            imap = client._imap
            imap.send(imap._new_tag() + b" LOGOUT\r\n")
            imap.state = "LOGOUT"
        except Exception:  # noqa: BLE001 - the server may already be gone
            pass
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass
        return
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - the server may already be gone
        try:
            client.shutdown()
        except Exception:  # noqa: BLE001
            pass


# -- logged-in sessions of a mailbox (sync and send) -------------------------------------
_SECRETS: dict[tuple[str, str], Any] = {}


def _secret_store(settings: Settings) -> Any:
    """One SecretStore per secrets folder (its key lookup may ask the OS keyring)."""
    from mailops.secrets import SecretStore

    key = (str(settings.secrets_path), settings.secret_key_file)
    found = _SECRETS.get(key)
    if found is None:
        found = _SECRETS[key] = SecretStore(settings)
    return found


def _open(mailbox: Mailbox, settings: Settings, secrets: Any, force_refresh: bool) -> IMAPClient:
    from mailops.auth import credentials_for

    creds = credentials_for(
        mailbox, settings, secrets or _secret_store(settings), force_refresh=force_refresh
    )
    client = open_imap(
        mailbox,
        creds,
        timeout=settings.socket_timeout,
        ca_file=settings.ca_file or None,
        login_parallel=int(settings.sync_login_parallel),
    )
    client.normalise_times = False  # INTERNALDATE keeps its zone; callers convert to UTC
    return client


def login(mailbox: Mailbox, settings: Settings, *, secrets: Any = None) -> IMAPClient:
    """Log in; on a refused login refresh the credentials once (C4) before giving up."""
    try:
        return _open(mailbox, settings, secrets, False)
    except ConnectionProblem as p:
        if p.transient:
            raise
        log.info("login refused for %s (%s); refreshing credentials once", mailbox.address, p.code)
        return _open(mailbox, settings, secrets, True)


def is_dropped(err: BaseException) -> bool:
    """The session is gone (socket error, EOF, imaplib's abort): log in again."""
    return isinstance(err, OSError | EOFError | imaplib.IMAP4.abort)


def is_imap_error(err: BaseException) -> bool:
    """Any failure of the IMAP conversation (dropped, or a NO/BAD answer), not a bug of ours."""
    return is_dropped(err) or "imap" in type(err).__module__.lower()


class SessionPool:
    """Logged-in IMAP sessions kept between scheduler rounds (one per mailbox, S1).

    A login costs the server far more than a LIST-STATUS; the ``--watch`` scheduler keeps
    each mailbox's session open, so a round with no new mail is one round trip per mailbox.
    A session the server has dropped meanwhile is replaced transparently (``session_for``).
    """

    def __init__(self) -> None:
        self._clients: dict[int, IMAPClient] = {}
        self._lock = threading.Lock()

    def take(self, mailbox_id: int) -> IMAPClient | None:
        with self._lock:
            return self._clients.pop(mailbox_id, None)

    def give(self, mailbox_id: int, client: IMAPClient) -> None:
        with self._lock:
            old = self._clients.pop(mailbox_id, None)
            self._clients[mailbox_id] = client
        if old is not None and old is not client:
            close_imap(old)

    def close_one(self, mailbox_id: int) -> None:
        client = self.take(mailbox_id)
        if client is not None:
            close_imap(client)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            close_imap(c)

    def __len__(self) -> int:
        return len(self._clients)


T = TypeVar("T")


@dataclass
class Session(Generic[T]):
    """A logged-in client, what its first command returned, and whether a folder is selected."""

    client: IMAPClient
    first: T
    reused: bool = False  # came from the pool
    selected: str | None = None

    @property
    def capabilities(self) -> frozenset[bytes]:
        return frozenset(bytes(c).upper() for c in self.client.capabilities())


@contextmanager
def session_for(
    mailbox: Mailbox,
    settings: Settings,
    first: Callable[[IMAPClient], T],
    *,
    pool: SessionPool | None = None,
    secrets: Any = None,
) -> Iterator[Session[T]]:
    """The one way sync and send get a logged-in session of MAILBOX.

    FIRST is the session's first command (sync: LIST-STATUS; send: find Sent); on a pooled
    session it doubles as the liveness probe, so reuse costs no extra round trip. On a
    clean exit the session goes back to POOL (no folder left selected) or is logged out;
    on an error it is always logged out.
    """
    client = pool.take(mailbox.id) if pool is not None else None
    if client is not None:
        try:
            session: Session[T] = Session(client, first(client), reused=True)
        except Exception as e:
            if not is_imap_error(e):
                close_imap(client)
                raise
            log.debug("%s: pooled session dropped (%s); logging in", mailbox.address, e)
            close_imap(client)
            client = None
    if client is None:
        client = login(mailbox, settings, secrets=secrets)
        try:
            session = Session(client, first(client))
        except BaseException:
            close_imap(client)
            raise
    ok = False
    try:
        yield session
        ok = True
    finally:
        if ok and pool is not None and _leave_unselected(session):
            pool.give(mailbox.id, client)
        else:
            close_imap(client, wait=not ok)  # done: no need to wait for the server's BYE


def _leave_unselected(session: Session[Any]) -> bool:
    """UNSELECT (fresh STATUS next round); False when the session is not worth keeping."""
    if session.selected is None:
        return True
    try:
        session.client.unselect_folder()
    except Exception:  # noqa: BLE001 - a broken session is dropped, not reused
        return False
    session.selected = None
    return True
