"""D1: `mailops worker` -- due mailboxes claimed by lease, synced by the engine, given back;
several workers split the mailboxes; a killed worker's mailboxes are taken over after its
leases expire. Real Dovecot (devserver), real PostgreSQL (the `postgres` fixture), real
processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from lease_support import finish, mailops, seed
from sync_support import add_customer

from mailops.dev.devserver.proxy import FaultProxy
from mailops.lease import FileLeases, PgLeases, leases_for
from mailops.store import mailboxes
from mailops.worker import Worker

pytestmark = pytest.mark.server

# A worker process on the test's store with lease rows in PostgreSQL (before the lake store
# exists this is how two processes share PgLeases); one JSON line per result, then the pass.
WORKER = """
import json, sys
from mailops.config import Settings
from mailops.lease import PgLeases
from mailops.store import Store
from mailops.worker import Worker
db, dsn, ttl, concurrency = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
cadence = float(sys.argv[5])
show = lambda r: print(json.dumps({"id": r.mailbox_id, "status": r.status,
                                   "examined": r.examined}), flush=True)
w = Worker(Store(db), Settings.load(db=db), leases=PgLeases(dsn, ttl=ttl),
           concurrency=concurrency, cadence=cadence, on_result=show)
print(json.dumps({"started": True}), flush=True)
p = w.run_once()
print(json.dumps({"claimed": p.claimed, "busy": p.busy, "fresh": p.fresh,
                  "exit_code": p.exit_code}), flush=True)
"""


def _worker(
    db: str, dsn: str, ttl: float = 60.0, concurrency: int = 2, cadence: float = 15
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, db, dsn, str(ttl), str(concurrency), str(cadence)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _mailboxes(store, password_mailbox, mailserver, n: int, msgs: int = 3):
    add_customer(store, "c-a", "a@cust.test")
    made = []
    for _ in range(n):
        mb, pw = password_mailbox()
        seed(mailserver, mb.address, pw, msgs)
        made.append((mb, pw))
    return made


def _runs(store) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for mailbox_id, status in store.rows("SELECT mailbox_id, status FROM sync_runs ORDER BY id"):
        out.setdefault(int(mailbox_id), []).append(str(status))
    return out


def test_D1_worker_once_syncs_the_due_mailboxes_then_none_until_the_cadence(
    store, settings, password_mailbox, mailserver
):
    boxes = _mailboxes(store, password_mailbox, mailserver, 3)
    store.close()
    code, out, err = finish(mailops("worker", "--once", "--json"))
    assert code == 0, err
    lines = _lines(out)
    results = {d["mailbox_id"]: d for d in lines if "mailbox_id" in d}
    assert sorted(results) == sorted(mb.id for mb, _ in boxes)
    assert {d["outcome"] for d in results.values()} == {"ok"}
    assert {d["examined"] for d in results.values()} == {3}
    summary = lines[-1]["summary"]
    assert (summary["due"], summary["claimed"], summary["exit_code"]) == (3, 3, 0)
    assert "leases: FileLeases" in err  # the embedded store: lock files

    code, out, err = finish(mailops("worker", "--once"))  # synced a moment ago: not due
    assert code == 0, err
    assert out.startswith("synced 0 mailbox(es)")

    code, out, err = finish(mailops("worker", "--once", "--cadence", "0", "--max-mailboxes", "2"))
    assert code == 0, err
    assert "synced 2 mailbox(es)" in out and "more are due (--max-mailboxes)" in out
    runs = _runs(store)
    assert sorted(len(v) for v in runs.values()) == [1, 2, 2]  # the oldest two again
    assert all(set(v) == {"ok"} for v in runs.values())
    assert all(FileLeases(f"{settings.db}.leases").holder(mb.id) is None for mb, _ in boxes)


def test_D1_worker_once_exits_with_the_worst_outcome(store, settings, password_mailbox, mailserver):
    (good, _), (bad, _) = _mailboxes(store, password_mailbox, mailserver, 2)
    from mailops.secrets import SecretStore

    SecretStore(settings).put(bad.secret_ref, "wrong-password")
    store.close()
    code, out, err = finish(mailops("worker", "--once"))
    assert code == 9, (out, err)
    assert f"{good.address}: examined 3" in out
    assert "1 of 2 mailbox(es) failed" in err


def test_D1_worker_skips_what_another_worker_holds_or_just_synced(
    store, settings, password_mailbox, mailserver, pg_dsn
):
    boxes = _mailboxes(store, password_mailbox, mailserver, 3)
    (held_mb, _), (free_mb, _), (late_mb, _) = boxes
    other = PgLeases(pg_dsn)
    mine = PgLeases(pg_dsn)
    try:
        held = other.acquire(held_mb.id)  # another worker is on it
        w = Worker(store, settings, leases=mine, concurrency=2, cadence=0)
        due = w.due()
        assert [mb.id for mb in due] == [free_mb.id, late_mb.id]  # held ones left out
        # ... and one is synced elsewhere between the listing and the claim
        mailboxes.update(store, late_mb.id, last_sync_at=_utcnow())
        w.due = lambda: list(due)  # type: ignore[method-assign]  # the listing of before
        report = w.run_once()  # (also with cadence 0: its last sync moved since the listing)
        assert [r.mailbox_id for r in report.results] == [free_mb.id]
        assert (report.due, report.claimed, report.fresh, report.exit_code) == (2, 1, 1, 0)
        assert mine.held_ids() == {held_mb.id}  # its own leases are given back
        held.release()
        del w.due
        w.cadence = timedelta(minutes=15)
        assert [r.mailbox_id for r in w.run_once().results] == [held_mb.id]
    finally:
        other.close()
        mine.close()


def test_D1_two_workers_on_one_store_each_mailbox_synced_by_exactly_one(
    store, settings, password_mailbox, mailserver, pg_dsn
):
    boxes = _mailboxes(store, password_mailbox, mailserver, 8)
    store.close()
    procs = [_worker(settings.db, pg_dsn, concurrency=2) for _ in range(2)]
    outs = [finish(p) for p in procs]
    synced: list[list[int]] = []
    for code, out, err in outs:
        assert code == 0, err
        lines = _lines(out)
        assert lines[-1]["exit_code"] == 0, lines
        synced.append([d["id"] for d in lines if "id" in d and d["status"] == "ok"])
    everyone = sorted(i for ids in synced for i in ids)
    assert everyone == sorted(mb.id for mb, _ in boxes)  # each exactly once
    runs = _runs(store)
    assert sorted(runs) == sorted(mb.id for mb, _ in boxes)
    assert all(v == ["ok"] for v in runs.values()), runs
    assert store.scalar("SELECT count(*) FROM audit_ledger") == 8 * 3  # nothing twice
    assert PgLeases(pg_dsn).held_ids() == set()
    # (how they split depends on the store: a DuckDB file admits one writing process at a
    # time, so here the first often does them all; on a lake they share them)


def test_D1_killed_workers_mailbox_is_taken_over_after_its_lease_expires(
    store, settings, password_mailbox, mailserver, pg_dsn
):
    """Worker A claims the one mailbox whose server hangs and is killed (kill -9) in the
    middle of its sync; worker B syncs the others at once, finds the hung one held, and
    takes it over once A's lease has expired: its mail is stored exactly once."""
    ttl = 2.0
    (slow, pw), (other, _) = _mailboxes(store, password_mailbox, mailserver, 2, msgs=30)
    proxy = FaultProxy(mailserver.imaps_port).start()
    mailboxes.update(store, slow.id, imap_port=proxy.port)
    mailboxes.update(store, other.id, last_sync_at=_utcnow())  # only the slow one due
    store.close()
    leases = PgLeases(pg_dsn)
    a = None
    try:
        proxy.stall(600)
        a = _worker(settings.db, pg_dsn, ttl=ttl, concurrency=1)
        deadline = time.monotonic() + 60
        while leases.holder(slow.id) is None:
            assert time.monotonic() < deadline and a.poll() is None, a.stderr and a.stderr.read()
            time.sleep(0.05)
        assert leases.holder(slow.id).pid == a.pid
        time.sleep(0.5)  # inside the sync (logging in through the stalled proxy)
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
        killed = time.monotonic()
        proxy.stall(0)
        proxy.cut_all()

        s = store.__class__(settings.db)
        mailboxes.update(s, other.id, last_sync_at=None)  # now due too
        w = Worker(s, settings, leases=PgLeases(pg_dsn, ttl=ttl), concurrency=2)
        first = w.run_once()  # at once: the other mailbox; the killed one's is still held
        assert [r.mailbox_id for r in first.results] == [other.id]
        assert time.monotonic() - killed < ttl, "the test is too slow to see the lease held"
        assert first.exit_code == 0
        while leases.holder(slow.id) is not None:
            assert time.monotonic() - killed < ttl + 2, "the dead worker's lease did not expire"
            time.sleep(0.1)
        second = w.run_once()
        assert [(r.mailbox_id, r.status, r.examined) for r in second.results] == [
            (slow.id, "ok", 30)
        ]
        assert s.scalar("SELECT count(*) FROM audit_ledger WHERE mailbox_id = ?", [slow.id]) == 30
        assert (
            s.scalar(
                "SELECT count(*) FROM sync_runs WHERE mailbox_id = ? AND status = 'ok'", [slow.id]
            )
            == 1
        )
        s.close()
    finally:
        if a is not None and a.poll() is None:
            a.kill()
            a.wait(10)
        proxy.stop()
        leases.close()


def test_D1_worker_sigterm_finishes_the_batch_and_gives_the_leases_back(
    store, settings, password_mailbox, mailserver
):
    boxes = _mailboxes(store, password_mailbox, mailserver, 3, msgs=6)
    proxy = FaultProxy(mailserver.imaps_port).start()
    for mb, _ in boxes:
        mailboxes.update(store, mb.id, imap_port=proxy.port)
    store.close()
    leases = leases_for(settings.db)
    try:
        proxy.stall(3.0)  # the first batch (1 mailbox) is in its login when SIGTERM comes
        proc = mailops("worker", "--concurrency", "1", "--batch", "1", "--cadence", "60")
        deadline = time.monotonic() + 60
        while not proxy.connections:  # the batch's sync is logging in (stalled)
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        assert any(leases.holder(mb.id) for mb, _ in boxes)
        proc.send_signal(signal.SIGTERM)
        code, out, err = finish(proc, timeout=60)
    finally:
        proxy.stop()
    assert code == 0, err
    assert "SIGTERM: finishing the current batch" in err
    assert out.count(": examined 6") == 1, out  # the batch it was in, not the others
    runs = _runs(store)
    assert len(runs) == 1 and list(runs.values()) == [["ok"]]
    assert all(leases.holder(mb.id) is None for mb, _ in boxes)


def test_D1_worker_sleeps_until_the_next_mailbox_is_due(
    store, settings, password_mailbox, mailserver
):
    _mailboxes(store, password_mailbox, mailserver, 2)
    pauses: list[float] = []
    w = Worker(store, settings, cadence=0.25)  # 15 s
    passes = w.run(passes=2, sleep=pauses.append)
    assert [len(p.results) for p in passes] == [2, 0]  # the second pass: nothing due yet
    assert len(pauses) == 1 and 5.0 <= pauses[0] <= 15.0, pauses
    w = Worker(store, settings, cadence=60)
    w.run(passes=2, sleep=pauses.append)
    assert pauses[-1] == 30.0  # POLL_S: new mailboxes are noticed


def test_D1_worker_pass_that_cannot_reach_the_lease_database_is_retried(store, settings):
    from mailops.dev.devserver import free_port

    mailboxes.insert(
        store,
        owner_user_id="user-1",
        address="a@corp.test",
        provider="generic",
        auth_kind="password",
        state="connected",
    )
    dead = PgLeases(f"postgres://postgres@127.0.0.1:{free_port()}/x", connect_timeout=1)
    errors: list[BaseException] = []
    pauses: list[float] = []
    w = Worker(store, settings, leases=dead, on_error=errors.append)

    def sleep(s: float) -> None:
        pauses.append(s)
        if len(pauses) == 3:
            w.stop()

    assert w.run(sleep=sleep) == []
    assert pauses == [5.0, 10.0, 20.0]
    assert len(errors) == 3 and "cannot reach the lease database" in str(errors[0])
    with pytest.raises(Exception, match="cannot reach the lease database"):
        w.stopping.clear()
        w.run_once()  # --once: the error is the answer
