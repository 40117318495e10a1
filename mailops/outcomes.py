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

from collections.abc import Iterable
from datetime import datetime
from typing import Any

__all__ = ["EXIT_CODES", "describe", "exit_code", "outcome_of", "worst"]

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
