"""Files at rest are their owner's alone (C5): the store and its WAL, the secrets, exports.

The DuckDB file holds every customer email and DuckDB creates it, its WAL and its spill
folder itself, with the process umask; so do pandas, pyarrow, papermill and nbconvert for
the exports and reports. ``private_umask()`` therefore narrows the umask of the process to
owner-only (files 0600, folders 0700) before any of them write: the CLI calls it first
thing, ``Store`` when it opens a file, ``run_report`` before it writes. ``tighten()`` fixes a
store an older version created 0644.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077


def private_umask() -> int:
    """Make every file and folder this process creates from now on owner-only; returns the
    umask it replaced. Bits already masked stay masked."""
    old = os.umask(PRIVATE_UMASK)
    os.umask(old | PRIVATE_UMASK)
    return old


def tighten(path: str | os.PathLike[str]) -> bool:
    """Remove group/other permissions from PATH when this user owns it; True if it changed."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077 or st.st_uid != os.geteuid():
        return False
    os.chmod(path, mode & ~0o077)
    log.info("made %s private (was %o)", path, mode)
    return True


def private_dir(path: str | os.PathLike[str]) -> Path:
    """PATH as a folder (created if needed) that only its owner can enter."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tighten(folder)
    return folder
