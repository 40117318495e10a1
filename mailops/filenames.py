"""Safe local file names for names that come from mail (attachments): never a path.

A name in a MIME header is written by whoever sent the mail: ``../../.bashrc``,
``C:\\x\\evil.exe``, ``con``, a NUL byte, 500 characters, nothing at all. ``safe_basename``
keeps the last path component only, drops control and shell-hostile characters, leading
dots and trailing dots/spaces, bidi and zero-width format characters, avoids reserved device names, and caps the length in UTF-8
bytes while keeping the extension. ``unique_path`` never overwrites an existing file.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

__all__ = ["MAX_NAME_BYTES", "safe_basename", "unique_path", "write_new_file"]

MAX_NAME_BYTES = 200  # well below NAME_MAX (255) so " (12)" still fits
_BAD = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')
_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}


def _cap(name: str, limit: int) -> str:
    if len(name.encode()) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, ext = name, ""
    keep = limit - (len(ext.encode()) + 1 if ext else 0)
    stem_b = stem.encode()[:keep]
    stem = stem_b.decode("utf-8", "ignore")
    return f"{stem}.{ext}" if ext else stem


def safe_basename(name: str | None, fallback: str = "attachment") -> str:
    """A file name safe to create in a directory of our choosing; FALLBACK when nothing
    usable is left."""
    text = unicodedata.normalize("NFC", str(name or ""))
    # bidi overrides and zero-width characters ("invoice\u202efdp.exe" shows as "…exe.pdf")
    text = "".join("_" if unicodedata.category(c) == "Cf" else c for c in text)
    text = re.split(r"[/\\]", text)[-1]  # the last component of any path, POSIX or Windows
    text = _BAD.sub("_", text)
    text = text.strip().lstrip(".").rstrip(". ")
    if text.split(".")[0].lower() in _RESERVED:
        text = "_" + text
    text = _cap(text, MAX_NAME_BYTES)
    if not text or text in (".", ".."):
        text = safe_basename(fallback, "attachment") if fallback != name else "attachment"
    return text


def unique_path(directory: Path, name: str) -> Path:
    """DIRECTORY/NAME, or NAME with " (1)", " (2)" ... before the extension when taken."""
    candidate = directory / name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    n = 1
    while candidate.exists() or candidate.is_symlink():
        candidate = directory / (f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})")
        n += 1
    return candidate


def write_new_file(directory: Path, name: str, content: bytes, mode: int = 0o600) -> Path:
    """Create a new file under DIRECTORY (never following a symlink, never replacing a
    file) named after NAME made safe; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = unique_path(directory, safe_basename(name))
        try:
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode
            )
        except FileExistsError:  # a race with another writer: take the next name
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        return path
    raise FileExistsError(f"no free file name for {name!r} in {directory}")
