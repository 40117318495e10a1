"""C5: the encrypted secrets store (key sources, file modes, names that say nothing)."""

from __future__ import annotations

import os
import stat

import pytest

from mailops.errors import SecretsError
from mailops.secrets import SecretStore


def test_C5_secret_encrypted_0600_and_name_is_a_hash(settings):
    s = SecretStore(settings)
    s.put("mailbox/7/password", "hunter2-plain")
    [f] = [p for p in s.dir.iterdir() if p.suffix == ".enc"]
    assert b"hunter2-plain" not in f.read_bytes() and "mailbox" not in f.name
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and stat.S_IMODE(s.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((s.dir / "key").stat().st_mode) == 0o600  # no env key, no keyring here
    assert s.get("mailbox/7/password") == "hunter2-plain" and s.key_source == "file"
    s.delete("mailbox/7/password")
    assert not s.has("mailbox/7/password")
    with pytest.raises(SecretsError) as e:
        s.get("mailbox/7/password")
    assert e.value.code == "secret_missing"


def test_C5_env_key_wins_and_a_changed_key_is_reported(settings, monkeypatch):
    monkeypatch.setenv("MAILOPS_SECRET_KEY", "a passphrase")
    s = SecretStore(settings)
    s.put("r", "v")
    assert s.key_source == "env" and not (s.dir / "key").exists()
    monkeypatch.setenv("MAILOPS_SECRET_KEY", "another passphrase")
    with pytest.raises(SecretsError) as e:
        SecretStore(settings).get("r")
    assert e.value.code == "secret_key_mismatch"


def test_C5_key_file_readable_by_others_is_refused(settings):
    s = SecretStore(settings)
    s.put("r", "v")
    os.chmod(s.dir / "key", 0o644)
    with pytest.raises(SecretsError) as e:
        SecretStore(settings).get("r")
    assert "chmod 600" in e.value.guidance
