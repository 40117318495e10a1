"""Who waits for the store file (R2): a marker beside it, so a long writer lets go only then.

DuckDB admits one process per file while it writes. A sync used to close its file every
couple of seconds "in case a report wants in"; each close checkpoints the WAL into the file
and the reopen costs again (~0.1 s on this machine, more under load), whether anyone waited
or not. Now a process that finds the file locked announces itself (``announce``: creates
``<store>.waiting``, 0600, empty) before it retries; the writer looks (``waiting``: one
``stat``) between units of work and, only when someone waits, closes the file and removes
the marker (``served``). A reader still waiting re-announces on its next attempt.

A process that cannot create the marker (no write permission to the folder) is still let
in: the writer closes the file anyway after ``Store.yield_to_readers``'s ``max_hold``.
"""

from __future__ import annotations

import os

__all__ = ["announce", "marker", "served", "waiting"]


def marker(db_path: str) -> str:
    return f"{db_path}.waiting"


def announce(db_path: str) -> None:
    """This process waits for DB_PATH (called before each retry of a locked open)."""
    try:
        os.close(os.open(marker(db_path), os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError:
        pass  # read-only folder: the writer's max_hold lets us in


def waiting(db_path: str) -> bool:
    """Does another process wait for DB_PATH? (One stat: cheap between units of work.)"""
    return os.path.exists(marker(db_path))


def served(db_path: str) -> None:
    """The writer let go of DB_PATH: the waiting announced so far is answered."""
    try:
        os.unlink(marker(db_path))
    except OSError:
        pass
