"""C4 self-healing: transient problems are probed with backoff and heal by themselves.

A mailbox that turned ``problematic`` for a transient reason (network, timeout, throttled,
server unavailable, over quota: ``Reason.transient`` in ``mailops.problems``) is *probed*:
a normal sync is tried ``heal_probe_first_s`` (5 min) after it turned problematic, then
after doubling waits up to ``heal_probe_cap_s`` (6 h). When the server answers, the sync of
the probe backfills the gap (the folder checkpoints resume where the last good run
stopped) and the mailbox is ``connected`` again, with the recovery in its history.
Credential and policy problems (wrong password, revoked token, IMAP disabled ...) are never
probed: they wait for the user to reconnect.

``plan`` splits the mailboxes a sync was asked for into those to sync now and those
skipped, each skip with its why (problematic since T, reason, next probe at T').
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mailops.config import Settings
from mailops.errors import ConnectionProblem
from mailops.store import Store
from mailops.store import mailboxes as mailbox_store
from mailops.store import probes as probe_store
from mailops.store.mailboxes import Mailbox

__all__ = [
    "Skip",
    "due_probes",
    "first_probe_at",
    "heals_itself",
    "next_probe_at",
    "plan",
    "probe_delay",
    "record_probe_failure",
    "record_recovery",
]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def heals_itself(code: str | None) -> bool:
    """True for a transient reason (probed), False for one that waits for the user."""
    from mailops.problems import reason

    return bool(code) and reason(code or "").transient


def probe_delay(attempts: int, settings: Settings) -> timedelta:
    """The wait before the next probe after ATTEMPTS failed ones: first, doubling, capped."""
    first = max(0.0, float(settings.heal_probe_first_s))
    cap = max(first, float(settings.heal_probe_cap_s))
    return timedelta(seconds=min(cap, first * (2 ** max(0, min(attempts, 30)))))


def next_probe_at(
    mb: Mailbox, probe: probe_store.Probe | None, settings: Settings
) -> datetime | None:
    """When a problematic mailbox is probed next (None: it waits for the user)."""
    if mb.state != "problematic" or not heals_itself(mb.problem_code):
        return None
    if probe is not None:
        return probe.next_probe_at
    return (mb.problem_since or _now()) + probe_delay(0, settings)


@dataclass(frozen=True)
class Skip:
    """A mailbox a sync did not touch, and why."""

    mailbox: Mailbox
    reason: str  # problematic (waits for the user) | probe_not_due (self-healing)
    next_probe_at: datetime | None = None
    probes: int = 0

    def as_result(self) -> Any:
        from mailops.outcomes import SyncResult

        mb = self.mailbox
        return SyncResult(
            mb.id,
            mb.address,
            status="skipped",
            skip_reason=self.reason,
            error_code=mb.problem_code,
            error_message=mb.problem_message,
            problem_since=mb.problem_since,
            next_probe_at=self.next_probe_at,
            problematic=True,
        )


def plan(
    store: Store,
    settings: Settings,
    mailboxes: Sequence[Mailbox],
    *,
    now: datetime | None = None,
    probe_now: bool = False,
) -> tuple[list[Mailbox], list[Skip]]:
    """MAILBOXES -> (sync now, skipped). Connected ones are synced; transient-problematic ones
    when their probe is due (or PROBE_NOW); the other problematic ones are skipped."""
    now = now or _now()
    problematic = [m for m in mailboxes if m.state == "problematic"]
    probes = probe_store.probes_for(store, [m.id for m in problematic])
    todo: list[Mailbox] = []
    skipped: list[Skip] = []
    for mb in mailboxes:
        if mb.state == "connected":
            todo.append(mb)
        elif mb.state == "problematic":
            probe = probes.get(mb.id)
            at = next_probe_at(mb, probe, settings)
            if at is None:
                skipped.append(Skip(mb, "problematic"))
            elif probe_now or at <= now:
                todo.append(mb)
            else:
                skipped.append(Skip(mb, "probe_not_due", at, probe.attempts if probe else 0))
    return todo, skipped


def due_probes(store: Store, settings: Settings, *, now: datetime | None = None) -> list[Mailbox]:
    """Problematic mailboxes whose probe is due (the scheduler adds them to its round)."""
    todo, _ = plan(
        store, settings, mailbox_store.all_mailboxes(store, states=("problematic",)), now=now
    )
    return todo


def record_probe_failure(
    store: Store, settings: Settings, mb: Mailbox, problem: ConnectionProblem
) -> datetime | None:
    """A probe failed: a transient answer schedules the next one (doubling); a credential or
    policy answer (recorded by ``record_failure``) ends the probing. Returns the next time."""
    current = mailbox_store.get(store, mb.id)
    if current.state != "problematic" or not heals_itself(current.problem_code):
        probe_store.clear(store, mb.id)
        return None
    before = probe_store.probes_for(store, [mb.id]).get(mb.id)
    attempts = (before.attempts if before else 0) + 1
    now = _now()
    wait = probe_delay(attempts, settings)
    if problem.retry_after:
        wait = max(wait, timedelta(seconds=float(problem.retry_after)))
    at = now + wait
    probe_store.record(
        store,
        mb.id,
        attempts=attempts,
        at=now,
        next_at=at,
        code=problem.code,
        message=problem.message,
    )
    return at


def first_probe_at(store: Store, settings: Settings, mb: Mailbox) -> datetime | None:
    """A mailbox just turned problematic: forget an earlier episode's probes; when is the
    first probe (None when its reason waits for the user)."""
    probe_store.clear(store, mb.id)
    return next_probe_at(mailbox_store.get(store, mb.id), None, settings)


def record_recovery(store: Store, mb: Mailbox) -> None:
    """The server answered a probe: back to ``connected`` (C3 history says it healed)."""
    probe = probe_store.probes_for(store, [mb.id]).get(mb.id)
    since = f" since {mb.problem_since:%Y-%m-%d %H:%M} UTC" if mb.problem_since else ""
    tries = f" after {probe.attempts + 1} probes" if probe else ""
    mailbox_store.set_state(
        store,
        mb.id,
        "connected",
        code=mb.problem_code,
        message=f"recovered by itself{tries}: problematic [{mb.problem_code}]{since}",
    )
    probe_store.clear(store, mb.id)


def describe(skips: Iterable[Skip]) -> list[str]:
    return [s.as_result().one_line() for s in skips]
