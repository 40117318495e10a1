"""Fault points (S12, E3): named places where a test or a drill makes the process crash on
purpose, so "nothing lost, nothing twice" can be shown on the real code path.

``crash_point(name)`` does nothing unless asked:

- ``MAILOPS_CRASH_AT=name[,name:N...]`` in the environment: the process is killed there with
  SIGKILL (like ``kill -9`` or a power cut: no cleanup, no ``finally``, no atexit). ``name:N``
  fires only where the caller passes ``n=N`` (the sync numbers its batches).
- in-process tests: ``monkeypatch.setattr(faults, "hook", faults.raise_at(name))`` raises
  ``SimulatedCrash`` there, a ``BaseException`` that no ``except Exception`` tidies up.

Every point is listed in ``POINTS``; asking for another name is a bug and fails loudly.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger(__name__)

FAULT_ENV = "MAILOPS_CRASH_AT"

POINTS: dict[str, str] = {
    "sync.batch_written": "a sync batch's rows and checkpoint are written, COMMIT not yet (n = batch)",
    "outbox.before_smtp": "an outbox item is claimed, no SMTP connection yet",
    "outbox.smtp_mail_from": "phase mail_from recorded, MAIL FROM not yet sent",
    "outbox.smtp_rcpt": "phase rcpt recorded, RCPT TO not yet sent",
    "outbox.smtp_mid_data": "DATA accepted (354), half the body uploaded",
    "outbox.smtp_before_terminator": "the body uploaded, phase data_terminator_sent recorded,"
    " the final dot not yet sent (nothing delivered, but the outbox cannot know)",
    "outbox.smtp_terminator_sent": "the final dot sent, the server's reply not yet read",
    "outbox.after_smtp_accept": "the SMTP server accepted DATA (250), the Sent copy not yet filed",
    "outbox.after_sent_copy": "the Sent copy is filed, the outbox not yet marked sent",
}


class SimulatedCrash(BaseException):  # noqa: N818 - it is not an error, it is a crash
    """Raised at a fault point by in-process tests (``hook``)."""


hook: Callable[[str], None] | None = None


def raise_at(*names: str) -> Callable[[str], None]:
    """A ``hook`` that raises ``SimulatedCrash`` at the points NAMES."""
    unknown = set(names) - set(POINTS)
    if unknown:
        raise ValueError(f"unknown fault point(s): {', '.join(sorted(unknown))}")

    def crash(name: str) -> None:
        if name in names:
            raise SimulatedCrash(name)

    return crash


def _wanted(name: str, n: int | None) -> bool:
    for spec in os.environ.get(FAULT_ENV, "").split(","):
        point, _, count = spec.strip().partition(":")
        if point == name and (not count or (n is not None and count == str(n))):
            return True
    return False


def crash_point(name: str, *, n: int | None = None) -> None:
    """Crash here if a test or drill asked for NAME (see the module docstring)."""
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")
    if hook is not None:
        hook(name)
    if FAULT_ENV in os.environ and _wanted(name, n):
        log.warning("simulated crash at %s%s", name, f":{n}" if n is not None else "")
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
