"""Shared fixtures: the real local mail server (one per test session) and fresh stores.

The mail server is mailops' own devserver (Dovecot + aiosmtpd + token service) run in this
process; ROOT lives under /tmp (not pytest's 0700 tmp dirs, which Dovecot's unprivileged
processes cannot enter). ``mailserver.new_user()`` hands out a fresh pre-created account, so
tests never wait for Dovecot to re-read its users file. ``postgres`` is a real PostgreSQL
in a temp dir (D1), started the same way by the project's own code (mailops.dev.postgres).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailops.config import Settings
from mailops.dev.devserver import DevServer, DevServerState
from mailops.dev.postgres import PostgresServer
from mailops.errors import MailopsError
from mailops.store import Store

# C5: the per-user key file ($XDG_CONFIG_HOME/mailops/key) of this test session, never the
# real user's; subprocesses (CLI, papermill kernels) inherit it.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="mailops-test-config-")
atexit.register(shutil.rmtree, os.environ["XDG_CONFIG_HOME"], True)

POOL = 2000  # pre-created accounts u0000@example.test ... (password "pw-u0000")


@dataclass
class MailServer:
    """The running devserver plus helpers for tests."""

    state: DevServerState
    server: DevServer
    _counter: itertools.count = field(default_factory=itertools.count)

    def __getattr__(self, name: str):  # delegate host/ports/helpers to the state
        return getattr(self.state, name)

    def new_user(self, prefix: str = "u") -> tuple[str, str]:
        """A fresh, unused mail account: (address, password)."""
        n = next(self._counter)
        if n >= POOL:
            raise RuntimeError("test user pool exhausted; raise POOL in conftest")
        return f"u{n:04d}@example.test", f"pw-u{n:04d}"

    @property
    def svc(self):  # the in-process TokenService (fault injection, logs)
        return self.server.svc

    @property
    def smtp_messages(self):
        return self.server.smtp_messages


@pytest.fixture(scope="session")
def mailserver() -> Iterator[MailServer]:
    if os.geteuid() != 0:
        pytest.skip("the devserver starts Dovecot as root (it drops privileges itself)")
    root = tempfile.mkdtemp(prefix="mailops-test-", dir="/tmp")
    os.chmod(root, 0o755)
    users = {f"u{n:04d}@example.test": f"pw-u{n:04d}" for n in range(POOL)}
    server = DevServer(root, users=users)
    state = server.start()
    try:
        yield MailServer(state, server)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """D1: a real PostgreSQL (initdb + pg_ctl in a temp dir under /tmp, 127.0.0.1, a free
    port; apt-installs Debian's postgresql when missing). Never skipped: when it cannot
    start the tests that need it fail with the reason. ``postgres.state.dsn`` is its
    ``mailops`` database; ``postgres.new_database()`` a fresh one."""
    server = PostgresServer()
    try:
        server.start()
    except MailopsError as e:
        server.stop()
        pytest.fail(f"cannot start PostgreSQL for the D1 tests: {e.one_line()}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> str:
    """The DSN of a fresh, empty database in the session's PostgreSQL."""
    return postgres.new_database()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings pointing at a fresh store and secrets dir under tmp_path."""
    db = tmp_path / "mailops.duckdb"
    monkeypatch.setenv("MAILOPS_DB", str(db))
    monkeypatch.setenv("MAILOPS_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("MAILOPS_KEYRING", "0")
    monkeypatch.delenv("MAILOPS_SECRET_KEY", raising=False)
    return Settings.load()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store(settings.db)
    try:
        yield s
    finally:
        s.close()


def add_password_mailbox(
    store: Store,
    settings: Settings,
    ms: MailServer,
    address: str,
    password: str,
    owner: str = "user-1",
    **extra,
):
    """A connected password mailbox on the devserver, written straight to the store (for tests
    of sync and send that don't exercise the connect flow itself)."""
    from mailops.dev.stand_ins import password_mailbox

    return password_mailbox(store, settings, ms, address, password, owner=owner, **extra)


@pytest.fixture
def password_mailbox(store, settings, mailserver):
    """Factory: password_mailbox(owner="user-1") -> (Mailbox, password) on a fresh devserver account."""

    def make(owner: str = "user-1", **extra):
        address, password = mailserver.new_user()
        return add_password_mailbox(
            store, settings, mailserver, address, password, owner, **extra
        ), password

    return make
