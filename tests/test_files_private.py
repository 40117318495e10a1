"""C5: files at rest are readable by their owner only: the DuckDB file and its WAL, the
secrets folder, every export and report, the devserver's users file (checked with os.stat,
starting from the usual 022 umask of a shell)."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from mailops.cli import main
from mailops.files import private_umask, tighten
from mailops.secrets import SecretStore
from mailops.store import Store


def _mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def shell_umask():
    """A process that starts as a login shell would: umask 022 (files 0644)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_C5_store_file_and_wal_are_0600(tmp_path, shell_umask):
    db = tmp_path / "fresh.duckdb"
    store = Store(db)
    store.execute("CREATE TABLE t AS SELECT 'buyer@customer.test' AS address")
    wal = Path(f"{db}.wal")
    assert wal.exists()  # written, not yet checkpointed
    assert _mode(db) == 0o600 and _mode(wal) == 0o600
    store.close()
    assert _mode(db) == 0o600


def test_C5_a_store_created_0644_is_made_private_on_open(tmp_path, shell_umask):
    db = tmp_path / "old.duckdb"
    Store(db).close()
    os.chmod(db, 0o644)
    with Store(db) as store:
        store.scalar("SELECT 1")
        assert _mode(db) == 0o600


def test_C5_secrets_folder_0700_and_files_0600(settings, shell_umask):
    s = SecretStore(settings)
    s.put("mailbox/1/password", "pw")
    assert _mode(s.dir) == 0o700
    assert {_mode(p) for p in s.dir.iterdir()} == {0o600}


def test_C5_private_umask_keeps_stricter_bits_and_tighten_only_touches_own_files(tmp_path):
    old = os.umask(0o027)
    try:
        private_umask()
        assert os.umask(0o077) == 0o077
    finally:
        os.umask(old)
    f = tmp_path / "f"
    f.write_text("x")
    os.chmod(f, 0o640)
    assert tighten(f) and _mode(f) == 0o600
    assert not tighten(f) and not tighten(tmp_path / "missing")


def test_C5_audit_exports_are_0600(settings, tmp_path, shell_umask, capsys):
    Store(settings.db).close()
    os.chmod(settings.db, 0o644)
    os.umask(0o022)
    out = tmp_path / "exports"
    out.mkdir()
    files = [out / "ledger.csv", out / "ledger.json", out / "ledger.parquet"]
    for f in files:
        assert main(["audit", "--output", str(f)]) == 0
    capsys.readouterr()
    assert [_mode(f) for f in files] == [0o600] * 3
    assert _mode(settings.db) == 0o600


@pytest.mark.notebook
def test_C5_reports_folder_0700_and_report_files_0600(settings, tmp_path, shell_umask, capsys):
    Store(settings.db).close()
    os.umask(0o022)
    reports = tmp_path / "reports"
    code = main(["report", "problematic_accounts", "--reports-dir", str(reports)])
    capsys.readouterr()
    assert code == 0
    folder = reports / "problematic_accounts"
    written = list(folder.iterdir())
    assert _mode(folder) == 0o700
    assert {p.suffix for p in written} >= {".ipynb", ".html"}
    assert {_mode(p) for p in written} == {0o600}


def test_C5_devserver_users_file_is_0600_and_logins_still_work(mailserver):
    import imaplib

    users = Path(mailserver.root, "users")
    st = users.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert pwd.getpwuid(st.st_uid).pw_name == "dovecot"  # Dovecot's auth process reads it
    assert _mode(Path(mailserver.root, "ssl", "server.key")) == 0o600
    address, password = mailserver.new_user()
    mailserver.add_users({"c5-late@example.test": "pw-late"})  # rewritten: still private
    assert _mode(users) == 0o600 and pwd.getpwuid(users.stat().st_uid).pw_name == "dovecot"
    for user, pw in ((address, password), ("c5-late@example.test", "pw-late")):
        client = imaplib.IMAP4("127.0.0.1", mailserver.imap_port)
        assert client.login(user, pw)[0] == "OK"
        client.logout()
