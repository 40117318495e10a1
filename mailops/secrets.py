"""Where passwords and tokens live (C5): encrypted files beside the store, never DuckDB.

Each secret is one Fernet token in its own 0600 file of the 0700 secrets folder, named by a
hash of its reference, so even the file names say nothing. The key never lies beside them;
it comes from, in order:

1. ``MAILOPS_SECRET_KEY`` (a Fernet key or any passphrase);
2. the ``secret_key_file`` setting, when given;
3. the OS keyring, when a real backend is available (``MAILOPS_KEYRING=0`` skips it);
4. a per-user key file, ``$XDG_CONFIG_HOME/mailops/key`` (``~/.config/mailops/key``; 0600 in
   a 0700 folder), one key for every store of that user.

Earlier versions kept the key as ``<secrets_dir>/key``. On first use that file is moved out
(``migrate_legacy_key``): the key goes to where the key now comes from; a secret that only
the old key opens is re-encrypted with the new one (atomic rename per file), and the old
key file is deleted last, so an interruption at any point loses nothing. A key file that
shares a folder with the secrets is reported with a warning.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from mailops.config import Settings
from mailops.errors import SecretsError

log = logging.getLogger(__name__)
KEYRING_SERVICE = "mailops"
LEGACY_KEY_NAME = "key"  # <secrets_dir>/key: where versions before C5's fix kept the key


def _fernet_key(material: str) -> bytes:
    raw = material.encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def default_key_file() -> Path:
    """The per-user key file: ``$XDG_CONFIG_HOME/mailops/key`` (default ``~/.config``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mailops" / "key"


def _keyring() -> Any:
    """The OS keyring module when a real backend is available, else None."""
    if os.environ.get("MAILOPS_KEYRING", "1").lower() in ("0", "false", "no"):
        return None
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
            return None
        return keyring
    except Exception as e:  # noqa: BLE001 - any keyring trouble means "no keyring here"
        log.debug("keyring unavailable: %s", type(e).__name__)
        return None


def _keyring_key(ident: str, seed: bytes | None = None) -> bytes | None:
    """This secrets folder's key in the OS keyring, created (from SEED, else new) when
    absent; None without a usable keyring."""
    kr = _keyring()
    if kr is None:
        return None
    try:
        key = kr.get_password(KEYRING_SERVICE, ident)
        if key is None:
            key = (seed or Fernet.generate_key()).decode()
            kr.set_password(KEYRING_SERVICE, ident, key)
        return str(key).encode()
    except Exception as e:  # noqa: BLE001 - a locked/broken keyring: fall back to the file
        log.debug("keyring unavailable: %s", type(e).__name__)
        return None


def _write_new(path: Path, data: bytes) -> bool:
    """Create PATH (0600) holding DATA, atomically; False when it already exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process wrote
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_key_file(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        raise SecretsError(f"key file {path} is readable by others", guidance=f"chmod 600 {path}")
    key = path.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError:
        raise SecretsError(f"key file {path} does not hold a Fernet key") from None
    return key


def _shares_folder(key_file: Path, secrets_dir: Path) -> bool:
    """Whoever reads the key's folder would read the secrets too."""
    folder, secrets = key_file.resolve().parent, secrets_dir.resolve()
    return folder == secrets or folder in secrets.parents


class SecretStore:
    """Encrypted key/value store for credentials."""

    def __init__(
        self, settings: Settings | None = None, directory: str | os.PathLike[str] | None = None
    ) -> None:
        self.settings = settings or Settings.load()
        self.dir = Path(directory) if directory else self.settings.secrets_path
        self._fernet: Fernet | None = None
        self._source = ""

    @property
    def key_source(self) -> str:
        """Where the key comes from: ``env``, ``file`` (a configured key file), ``keyring``
        or ``user_file`` (the per-user key file)."""
        self._key()
        return self._source

    @property
    def legacy_key_file(self) -> Path:
        return self.dir / LEGACY_KEY_NAME

    def _configured_key_file(self) -> Path | None:
        return Path(self.settings.secret_key_file) if self.settings.secret_key_file else None

    def _key(self) -> Fernet:
        if self._fernet is None:
            legacy = self.legacy_key_file
            configured = self._configured_key_file()
            if legacy.is_file() and (
                configured is None or configured.resolve() != legacy.resolve()
            ):
                self.migrate_legacy_key()
            else:
                self._fernet = Fernet(self._resolve())
        assert self._fernet is not None
        return self._fernet

    def _resolve(self, seed: bytes | None = None) -> bytes:
        """The key (and ``_source``); a missing keyring entry or key file is created from
        SEED (the legacy key being moved) or a new key."""
        env = os.environ.get("MAILOPS_SECRET_KEY")
        if env:
            self._source = "env"
            return _fernet_key(env)
        configured = self._configured_key_file()
        if configured is not None:
            self._source = "file"
            return self._file_key(configured, seed)
        key = _keyring_key(str(self.dir.resolve()), seed)
        if key is not None:
            self._source = "keyring"
            return key
        self._source = "user_file"
        return self._file_key(default_key_file(), seed)

    def _file_key(self, path: Path, seed: bytes | None) -> bytes:
        if _shares_folder(path, self.dir):
            log.warning(
                "the secrets key %s shares a folder with the secrets in %s: whoever reads"
                " one reads the other; move the key (secret_key_file) elsewhere",
                path,
                self.dir,
            )
        try:
            if not path.exists():
                _write_new(path, seed or Fernet.generate_key())
            if path == default_key_file():
                path.parent.chmod(0o700)  # our own folder: owner only
            return _read_key_file(path)
        except OSError as e:
            raise SecretsError(f"cannot use key file {path}: {e.strerror}") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def migrate_legacy_key(self) -> int:
        """Move ``<secrets_dir>/key`` out of the secrets folder; returns how many secrets
        were re-encrypted. Safe to interrupt and to run in two processes at once."""
        with self._locked():
            legacy = self.legacy_key_file
            if not legacy.is_file():  # another process moved it meanwhile
                self._fernet = Fernet(self._resolve())
                return 0
            old_key = _read_key_file(legacy)
            new = Fernet(self._resolve(seed=old_key))
            old = Fernet(old_key)
            moved = unreadable = 0
            for path in sorted(self.dir.glob("*.enc")):
                token = path.read_bytes()
                try:
                    new.decrypt(token)
                    continue
                except InvalidToken:
                    pass
                try:
                    value = old.decrypt(token)
                except InvalidToken:
                    unreadable += 1
                    continue
                self._write(path, new.encrypt(value))
                moved += 1
            _fsync_dir(self.dir)
            legacy.unlink()
            _fsync_dir(self.dir)
            self._fernet = new
        log.warning(
            "moved the secrets key out of %s (now: %s); %d secret(s) re-encrypted%s",
            self.dir,
            self._source,
            moved,
            f", {unreadable} not readable with either key" if unreadable else "",
        )
        return moved

    def _ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)

    def _path(self, ref: str) -> Path:
        return self.dir / (hashlib.sha256(ref.encode()).hexdigest()[:32] + ".enc")

    def _write(self, path: Path, token: bytes) -> None:
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

    def put(self, ref: str, value: str) -> None:
        self._ensure_dir()
        self._write(self._path(ref), self._key().encrypt(value.encode()))

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
                guidance="MAILOPS_SECRET_KEY / the keyring entry / the key file changed;"
                " restore it or reconnect the mailbox",
            ) from None

    def has(self, ref: str) -> bool:
        return self._path(ref).exists()

    def delete(self, ref: str) -> None:
        self._path(ref).unlink(missing_ok=True)
