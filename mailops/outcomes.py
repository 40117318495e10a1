"""O1: what a sync did to each mailbox, and the exit code a scheduler reads.

Every mailbox a sync is asked about gets one outcome:

========================  =====================================================================
``ok``                    synced
``recovered``             was problematic for a transient reason; the probe worked (C4)
``failed``                this run failed (a probe that failed included)
``problematic``           skipped: problematic for a reason that waits for the user
``probe_not_due``         skipped: problematic for a transient reason, next probe later (C4)
``already_syncing``       skipped: another sync holds the mailbox's lease (S14)
``not_connected``         skipped: disconnected
========================  =====================================================================

The exit code is that of the worst outcome (``EXIT_CODES``, first match wins), so cron,
Airflow (``BashOperator(skip_on_exit_code=11)``) or a CI step can tell them apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["EXIT_CODES", "SyncResult", "describe", "exit_code", "outcome_of", "worst"]


@dataclass
class SyncResult:
    mailbox_id: int
    address: str
    run_id: int | None = None
    status: str = "ok"  # ok | failed | skipped | not_connected (see mailops.outcomes)
    examined: int = 0
    stored: int = 0  # new messages stored
    linked: int = 0  # stored decisions for messages already in the store (new place)
    skipped: int = 0
    errors: int = 0  # messages that could not be fetched, parsed or stored (S15)
    by_reason: Counter[str] = field(default_factory=Counter)
    folders: int = 0
    folders_changed: int = 0
    duration_s: float = 0.0
    error_code: str | None = None
    error_message: str | None = None
    retry_after: float | None = None
    problematic: bool = False
    # O1/C4/S14: why a mailbox was skipped, and what happens next (mailops.outcomes)
    skip_reason: str | None = None  # already_syncing | problematic | probe_not_due
    holder: dict[str, Any] | None = None  # already_syncing: pid, host, since
    problem_since: datetime | None = None
    next_probe_at: datetime | None = None
    probed: bool = False  # a transient-problematic mailbox was tried (C4)
    recovered: bool = False  # ... and the server answered: connected again

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["by_reason"] = dict(self.by_reason)
        d["outcome"] = outcome_of(self)
        return d

    def one_line(self) -> str:
        if self.status != "ok":
            return describe(self)
        reasons = ", ".join(
            f"{k} {v}" for k, v in self.by_reason.most_common() if k != "stored_customer"
        )
        errors = f", errors {self.errors}" if self.errors else ""
        return (
            f"{self.address}: examined {self.examined}, stored {self.stored}, linked {self.linked},"
            f" skipped {self.skipped}{errors}{' (' + reasons + ')' if reasons else ''}"
            f" in {self.duration_s:.2f}s"
        )


#: (exit code, outcomes that give it, meaning) -- worst first. 0 when none applies.
EXIT_CODES: list[tuple[int, frozenset[str], str]] = [
    (9, frozenset({"failed"}), "at least one mailbox failed in this run"),
    (
        10,
        frozenset({"problematic", "probe_not_due", "not_connected"}),
        "none failed, but at least one mailbox is problematic and was skipped",
    ),
    (11, frozenset({"already_syncing"}), "a mailbox was skipped: another sync holds it"),
]


def outcome_of(result: Any) -> str:
    status = result.status
    if status == "ok":
        return "recovered" if getattr(result, "recovered", False) else "ok"
    if status == "skipped":
        return str(result.skip_reason or "skipped")
    return str(status)


def exit_code(results: Iterable[Any]) -> int:
    outcomes = {outcome_of(r) for r in results}
    for code, these, _ in EXIT_CODES:
        if outcomes & these:
            return code
    return 0


def worst(results: Iterable[Any]) -> tuple[int, str]:
    code = exit_code(results)
    return code, next((m for c, _, m in EXIT_CODES if c == code), "ok")


def _t(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC" if at else "?"


def describe(r: Any) -> str:
    """One line for a mailbox that was not simply synced."""
    outcome = outcome_of(r)
    since = f" since {_t(r.problem_since)}" if getattr(r, "problem_since", None) else ""
    if outcome == "already_syncing":
        h = r.holder or {}
        who = f"pid {h.get('pid', '?')}, since {str(h.get('since', '?')).replace('T', ' ')} UTC"
        return f"{r.address}: skipped, already syncing ({who})"
    if outcome == "problematic":
        return (
            f"{r.address}: skipped, problematic{since} [{r.error_code}]: waits for the user"
            f" (mailops mailbox reconnect {r.address})"
        )
    if outcome == "probe_not_due":
        return (
            f"{r.address}: skipped, problematic{since} [{r.error_code}]: transient, next probe"
            f" at {_t(r.next_probe_at)}"
        )
    if outcome == "failed":
        text = f"{r.address}: failed [{r.error_code}] {r.error_message or ''}".strip()
        if getattr(r, "next_probe_at", None):
            text += f"; next probe at {_t(r.next_probe_at)}"
        return text
    return f"{r.address}: {r.status} [{r.error_code}] {r.error_message or ''}".strip()
