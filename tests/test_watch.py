"""S1 push: `mailops sync --watch` with IMAP IDLE; polling where IDLE is missing or drops."""

from __future__ import annotations

import dataclasses
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from timeline_support import Team, make_team

from mailops.store import mailboxes
from mailops.watch import IdleWatcher, Watch

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent
BOUND_S = 10.0  # SMTP delivery -> notification row while --watch runs (measured: well under 1 s)


@pytest.fixture
def team(store, settings, mailserver, password_mailbox) -> Team:
    return make_team(store, settings, mailserver, password_mailbox)


def _notification_for(db: str, subject: str) -> tuple | None:
    from mailops.reports import open_reader

    reader = open_reader(db)
    rows = reader.rows(
        "SELECT n.user_id, n.created_at, r.trigger FROM notifications n"
        " JOIN messages m ON m.id = n.message_id"
        " LEFT JOIN (SELECT DISTINCT l.message_id, s.trigger FROM audit_ledger l"
        "   JOIN sync_runs s ON s.id = l.run_id) r ON r.message_id = n.message_id"
        " WHERE m.subject = ? AND n.user_id = 'u-anna'",
        [subject],
    )
    return rows[0] if rows else None


def test_S1_watch_idle_notifies_within_seconds_of_smtp_delivery(team, settings):
    team.store.close()  # the watcher process owns the file now
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailops.cli", "sync", "--watch", "--for", "60"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + 30
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith("IDLE on") and team.mailbox.address in line:
                break
        t0 = time.monotonic()
        team.deliver("c-1", "Pushed, not polled")
        found = None
        while time.monotonic() - t0 < BOUND_S:
            found = _notification_for(settings.db, "Pushed, not polled")
            if found:
                break
            time.sleep(0.05)
        latency = time.monotonic() - t0
        assert found is not None, f"no notification within {BOUND_S} s"
        assert found[2] == "idle"  # synced because IDLE said so, not by the schedule
        print(f"S1 delivery -> notification row: {latency:.2f} s")
    finally:
        proc.terminate()
        proc.wait(10)


def test_S1_watch_falls_back_to_polling_where_idle_is_missing(team, settings, mailserver):
    from mailops.imap import login as _connect

    class NoIdle:
        def __init__(self, client):
            self._c = client

        def capabilities(self):
            return tuple(c for c in self._c.capabilities() if c.upper() != b"IDLE")

        def __getattr__(self, name):
            return getattr(self._c, name)

    quick = dataclasses.replace(settings, sync_interval_min=0.02, sync_interval_max=0.03)  # ~1.5 s
    states: list[str] = []
    w = Watch(
        team.store,
        quick,
        connect=lambda mb, s: NoIdle(_connect(mb, s)),
        on_state=lambda mb, st: states.append(st),
    )
    threading.Timer(1.0, lambda: team.deliver("c-1", "Found by polling")).start()
    w.run(seconds=6)
    assert states == ["unsupported"]
    row = team.store.rows(
        "SELECT s.trigger FROM audit_ledger l JOIN sync_runs s ON s.id = l.run_id"
        " WHERE l.subject = 'Found by polling'"
    )
    assert row == [("schedule",)]
    assert (
        team.store.scalar(
            "SELECT count(*) FROM notifications n JOIN messages m ON m.id = n.message_id"
            " WHERE m.subject = 'Found by polling'"
        )
        == 2
    )  # Anna (mailbox) and Bob (deal owner)


def test_S1_watch_re_idles_before_the_timeout_and_reconnects_after_a_drop(team, settings):
    from mailops.imap import login as _connect

    calls = {"n": 0}

    def flaky(mb, s):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionResetError("network dropped")
        return _connect(mb, s)

    events: queue.Queue[int] = queue.Queue()
    mb = mailboxes.get(team.store, team.mailbox.id)
    states: list[str] = []
    w = IdleWatcher(
        mb,
        settings,
        events,
        renew_s=1.0,
        check_s=0.2,
        connect=flaky,
        backoff=(0.2,),
        on_state=lambda m, st: states.append(st),
    ).start()
    try:
        assert events.get(timeout=10) == mb.id  # catch-up after the (re)connect
        for _ in range(100):
            if w.state == "idle":
                break
            time.sleep(0.05)
        assert states[:2] == ["dropped", "idle"] and w.drops == 1
        time.sleep(2.6)
        assert w.renewals >= 2 and w.state == "idle"  # IDLE re-issued every renew_s
        t0 = time.monotonic()
        team.deliver("c-1", "after renewals")
        assert events.get(timeout=10) == mb.id
        assert time.monotonic() - t0 < 5, "pushed within seconds"
    finally:
        w.stop()
    assert w.state == "stopped" and not w.alive
