"""Where passwords and tokens live (C5): encrypted files beside the store, never DuckDB.

The encryption key comes from, in order: ``MAILOPS_SECRET_KEY`` (a Fernet key or any
passphrase), the OS keyring (when a real backend is available), or a 0600 key file
(``<secrets_dir>/key``). Each secret is one Fernet token in its own 0600 file whose name is
a hash of its reference, so even the file names say nothing.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from mailops.config import Settings
from mailops.errors import SecretsError

log = logging.getLogger(__name__)
KEYRING_SERVICE = "mailops"


def _fernet_key(material: str) -> bytes:
    raw = material.encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def _keyring_key(ident: str) -> bytes | None:
    if os.environ.get("MAILOPS_KEYRING", "1") in ("0", "false", "no"):
        return None
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
            return None
        key = keyring.get_password(KEYRING_SERVICE, ident)
        if key is None:
            key = Fernet.generate_key().decode()
            keyring.set_password(KEYRING_SERVICE, ident, key)
        return key.encode()
    except Exception as e:  # noqa: BLE001 - any keyring trouble means "no keyring here"
        log.debug("keyring unavailable: %s", type(e).__name__)
        return None


class SecretStore:
    """Encrypted key/value store for credentials."""

    def __init__(
        self, settings: Settings | None = None, directory: str | os.PathLike[str] | None = None
    ) -> None:
        self.settings = settings or Settings.load()
        self.dir = Path(directory) if directory else self.settings.secrets_path
        self._fernet: Fernet | None = None

    @property
    def key_source(self) -> str:
        if os.environ.get("MAILOPS_SECRET_KEY"):
            return "env"
        return "keyring" if _keyring_key(str(self.dir.resolve())) else "file"

    def _key(self) -> Fernet:
        if self._fernet is None:
            env = os.environ.get("MAILOPS_SECRET_KEY")
            if env:
                key = _fernet_key(env)
            else:
                key = _keyring_key(str(self.dir.resolve())) or self._file_key()
            self._fernet = Fernet(key)
        return self._fernet

    def _file_key(self) -> bytes:
        path = (
            Path(self.settings.secret_key_file)
            if self.settings.secret_key_file
            else self.dir / "key"
        )
        try:
            if path.exists():
                if path.stat().st_mode & 0o077:
                    raise SecretsError(
                        f"key file {path} is readable by others", guidance=f"chmod 600 {path}"
                    )
                return path.read_bytes().strip()
            self._ensure_dir()
            key = Fernet.generate_key()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key)
            return key
        except OSError as e:
            raise SecretsError(f"cannot use key file {path}: {e.strerror}") from None

    def _ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)

    def _path(self, ref: str) -> Path:
        return self.dir / (hashlib.sha256(ref.encode()).hexdigest()[:32] + ".enc")

    def put(self, ref: str, value: str) -> None:
        token = self._key().encrypt(value.encode())
        self._ensure_dir()
        path = self._path(ref)
        tmp = path.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(token)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise SecretsError(f"cannot write secret: {e.strerror}") from None

    def get(self, ref: str) -> str:
        path = self._path(ref)
        if not path.exists():
            raise SecretsError(
                f"no stored secret for {ref}",
                code="secret_missing",
                guidance="reconnect the mailbox to enter its credentials again",
            )
        try:
            return self._key().decrypt(path.read_bytes()).decode()
        except InvalidToken:
            raise SecretsError(
                f"stored secret for {ref} cannot be decrypted with this key",
                code="secret_key_mismatch",
                guidance="MAILOPS_SECRET_KEY / key file changed; reconnect the mailbox",
            ) from None

    def has(self, ref: str) -> bool:
        return self._path(ref).exists()

    def delete(self, ref: str) -> None:
        self._path(ref).unlink(missing_ok=True)
