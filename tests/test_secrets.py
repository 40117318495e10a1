"""C5: the encrypted secrets store (key sources, where the key lives, file modes, the move of
an old key file out of the secrets folder, names that say nothing)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mailops.config import Settings
from mailops.errors import SecretsError
from mailops.secrets import SecretStore, default_key_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "config-home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def _legacy_store(settings: Settings, values: dict[str, str]) -> bytes:
    """Secrets as versions before the fix left them: the key as <secrets_dir>/key."""
    folder = settings.secrets_path
    folder.mkdir(mode=0o700)
    key = Fernet.generate_key()
    (folder / "key").write_bytes(key)
    os.chmod(folder / "key", 0o600)
    old = SecretStore(Settings.load(secret_key_file=str(folder / "key")))
    for ref, value in values.items():
        old.put(ref, value)
    return key


def test_C5_secret_encrypted_0600_and_name_is_a_hash(settings, config_home):
    s = SecretStore(settings)
    s.put("mailbox/7/password", "hunter2-plain")
    [f] = [p for p in s.dir.iterdir() if p.suffix == ".enc"]
    assert b"hunter2-plain" not in f.read_bytes() and "mailbox" not in f.name
    assert _mode(f) == 0o600 and _mode(s.dir) == 0o700
    assert s.get("mailbox/7/password") == "hunter2-plain"
    s.delete("mailbox/7/password")
    assert not s.has("mailbox/7/password")
    with pytest.raises(SecretsError) as e:
        s.get("mailbox/7/password")
    assert e.value.code == "secret_missing"


def test_C5_key_is_a_per_user_file_apart_from_the_secrets(settings, config_home):
    s = SecretStore(settings)
    s.put("r", "v")
    key_file = config_home / "mailops" / "key"
    assert default_key_file() == key_file and s.key_source == "user_file"
    assert not (s.dir / "key").exists() and [p.name for p in s.dir.iterdir()] != []
    assert _mode(key_file) == 0o600 and _mode(key_file.parent) == 0o700
    assert s.dir.resolve() not in key_file.resolve().parents
    # another store of the same user shares the key; a new process reads the same key
    assert SecretStore(settings).get("r") == "v"


def test_C5_env_key_wins_and_a_changed_key_is_reported(settings, config_home, monkeypatch):
    monkeypatch.setenv("MAILOPS_SECRET_KEY", "a passphrase")
    s = SecretStore(settings)
    s.put("r", "v")
    assert s.key_source == "env" and not (s.dir / "key").exists()
    assert not (config_home / "mailops" / "key").exists()
    monkeypatch.setenv("MAILOPS_SECRET_KEY", "another passphrase")
    with pytest.raises(SecretsError) as e:
        SecretStore(settings).get("r")
    assert e.value.code == "secret_key_mismatch"


def test_C5_key_file_readable_by_others_is_refused(settings, config_home):
    s = SecretStore(settings)
    s.put("r", "v")
    os.chmod(config_home / "mailops" / "key", 0o644)
    with pytest.raises(SecretsError) as e:
        SecretStore(settings).get("r")
    assert "chmod 600" in e.value.guidance


def test_C5_key_file_sharing_the_secrets_folder_warns(settings, config_home, caplog):
    shared = Settings.load(secret_key_file=str(settings.secrets_path / "my.key"))
    with caplog.at_level(logging.WARNING, logger="mailops.secrets"):
        SecretStore(shared).put("r", "v")
    assert any("shares a folder with the secrets" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mailops.secrets"):
        SecretStore(settings).put("r2", "v")  # the default: no warning
    assert not caplog.records


def test_C5_legacy_key_moves_to_the_user_file_and_every_secret_still_opens(settings, config_home):
    values = {f"mailbox/{i}/password": f"pw-{i}" for i in range(5)}
    key = _legacy_store(settings, values)
    s = SecretStore(settings)
    assert all(s.get(ref) == v for ref, v in values.items())
    assert not (settings.secrets_path / "key").exists()
    assert (config_home / "mailops" / "key").read_bytes() == key  # moved as is: nothing rewritten
    assert SecretStore(settings).get("mailbox/3/password") == "pw-3"


def test_C5_legacy_key_meets_an_existing_user_key_secrets_are_reencrypted(
    settings, config_home, caplog
):
    user_key = config_home / "mailops" / "key"
    SecretStore(Settings.load(secrets_dir=str(settings.secrets_path) + "-other")).put("x", "y")
    before = user_key.read_bytes()
    values = {f"ref-{i}": f"secret-{i}" for i in range(4)}
    _legacy_store(settings, values)
    with caplog.at_level(logging.WARNING, logger="mailops.secrets"):
        assert SecretStore(settings).migrate_legacy_key() == 4
    assert "4 secret(s) re-encrypted" in caplog.text
    assert user_key.read_bytes() == before and not (settings.secrets_path / "key").exists()
    fresh = SecretStore(settings)
    assert {r: fresh.get(r) for r in values} == values and fresh.key_source == "user_file"


def test_C5_interrupted_legacy_move_is_finished_without_loss(settings, config_home):
    """A crash after some secrets were re-encrypted (legacy key still there): the next use
    opens both kinds and finishes the move."""
    SecretStore(Settings.load(secrets_dir=str(settings.secrets_path) + "-other")).put("x", "y")
    _legacy_store(settings, {"a": "1", "b": "2"})
    new = Fernet((config_home / "mailops" / "key").read_bytes())
    half = SecretStore(settings)
    half._write(half._path("a"), new.encrypt(b"1"))  # "a" already moved, "b" not yet
    s = SecretStore(settings)
    assert (s.get("a"), s.get("b")) == ("1", "2")
    assert not (settings.secrets_path / "key").exists()


def test_C5_env_key_set_later_takes_over_legacy_secrets(settings, config_home, monkeypatch):
    _legacy_store(settings, {"a": "1"})
    monkeypatch.setenv("MAILOPS_SECRET_KEY", "from the vault")
    s = SecretStore(settings)
    assert s.get("a") == "1" and s.key_source == "env"
    assert not (settings.secrets_path / "key").exists()
    assert not (config_home / "mailops" / "key").exists()


class _MemoryKeyring:
    """A keyring backend held in memory (pure unit: the OS keyring is not on this machine)."""

    priority = 1

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, name: str) -> str | None:
        return self.items.get((service, name))

    def set_password(self, service: str, name: str, value: str) -> None:
        self.items[(service, name)] = value


def test_C5_os_keyring_is_preferred_and_receives_a_legacy_key(settings, config_home, monkeypatch):
    import mailops.secrets as secrets_module

    ring = _MemoryKeyring()
    monkeypatch.setenv("MAILOPS_KEYRING", "1")
    monkeypatch.setattr(secrets_module, "_keyring", lambda: ring)
    key = _legacy_store(settings, {"a": "1"})
    s = SecretStore(settings)
    assert s.get("a") == "1" and s.key_source == "keyring"
    assert ring.items == {("mailops", str(settings.secrets_path.resolve())): key.decode()}
    assert not (settings.secrets_path / "key").exists()
    assert not (config_home / "mailops" / "key").exists()


def test_C5_real_connect_keeps_working_after_the_legacy_key_moves(store, settings, mailserver):
    """Mailboxes connected (password and MSAL OAuth) while the key lay in the secrets folder
    still log in to the real Dovecot and SMTP after the key moved out; the key file is gone
    from the secrets folder and the user's key (shared with other stores) opens them."""
    from connect_support import Approver, local_endpoints

    from mailops.connect import connect_mailbox, test_mailbox

    folder = settings.secrets_path
    folder.mkdir(mode=0o700)
    (folder / "key").write_bytes(Fernet.generate_key())
    os.chmod(folder / "key", 0o600)
    old = Settings.load(secret_key_file=str(folder / "key"))  # how it was before the fix
    address, password = mailserver.new_user()
    pw_mb = connect_mailbox(
        store,
        old,
        user_id="user-1",
        provider="generic",
        address=address,
        password=password,
        endpoints=local_endpoints(mailserver, old, "generic"),
    )
    oauth_address, _ = mailserver.new_user()
    approver = Approver(mailserver)
    approver.address = oauth_address
    oauth_mb = connect_mailbox(
        store,
        old,
        user_id="user-2",
        provider="microsoft",
        address=oauth_address,
        endpoints=local_endpoints(mailserver, old, "microsoft"),
        device_code_callback=approver,
    )
    SecretStore(Settings.load(secrets_dir=str(folder) + "-other")).put("x", "y")  # a user key
    assert test_mailbox(store, settings, pw_mb.id).ok
    assert test_mailbox(store, settings, oauth_mb.id).ok
    assert not (folder / "key").exists()
    assert SecretStore(settings).key_source == "user_file"
    assert test_mailbox(store, settings, pw_mb.id).ok  # and in the next process too
