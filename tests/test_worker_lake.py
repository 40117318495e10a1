"""D1: `mailops worker` processes on a DuckLake (catalog and lease rows in the real
PostgreSQL of the `postgres` fixture, data in Parquet files): they split the mailboxes,
each synced by exactly one; a killed worker's mailboxes are taken over after expiry."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from lease_support import finish, mailops, seed
from sync_support import add_customer

from mailops.dev.devserver.proxy import FaultProxy
from mailops.lease import PgLeases
from mailops.store import Store, mailboxes
from tests.conftest import add_password_mailbox

pytestmark = pytest.mark.server


@pytest.fixture
def lake(postgres, tmp_path, monkeypatch):
    dsn = postgres.new_database("lake")
    spec = f"ducklake:{dsn}?data={tmp_path / 'lake-data'}"
    monkeypatch.setenv("MAILOPS_STORE", spec)
    return spec, dsn


def test_D1_workers_on_a_lake_split_the_mailboxes(lake, settings, mailserver):
    spec, dsn = lake
    s = Store(spec)
    s.execute("INSERT INTO users (id, email, name) VALUES ('user-1', 'sales@corp.test', 'S')")
    add_customer(s, "c-a", "a@cust.test")
    boxes = []
    for _ in range(12):
        address, pw = mailserver.new_user()
        boxes.append(add_password_mailbox(s, settings, mailserver, address, pw))
        seed(mailserver, address, pw, 6)
    s.close()
    procs = [
        mailops("worker", "--once", "--json", "--concurrency", "2", "--batch", "2")
        for _ in range(3)
    ]
    outs = [finish(p, timeout=300) for p in procs]
    synced = []
    for code, out, err in outs:
        assert code == 0, err
        lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        synced.append([d["mailbox_id"] for d in lines if d.get("outcome") == "ok"])
        assert "leases: PgLeases" in err
    assert sorted(i for ids in synced for i in ids) == sorted(mb.id for mb in boxes)  # once each
    assert sum(1 for ids in synced if ids) >= 2, [len(ids) for ids in synced]  # shared
    s = Store(spec)
    assert s.scalar("SELECT count(*) FROM audit_ledger") == 12 * 6
    runs = s.rows("SELECT mailbox_id, status FROM sync_runs")
    assert sorted(r[0] for r in runs) == sorted(mb.id for mb in boxes)
    assert PgLeases(dsn).held_ids() == set()


def test_D1_lake_worker_killed_mid_batch_is_taken_over_and_nothing_is_lost_or_doubled(
    lake, settings, mailserver
):
    """Worker A commits the first batch of a mailbox, stalls in the second (its server
    hangs) and is killed with kill -9. Worker B syncs the other mailbox at once, sees the
    first held by A's lease row, and after the lease expired (4 s) takes it over and
    resumes from the checkpoint: every message stored once."""
    spec, dsn = lake
    n = 600
    s = Store(spec)
    s.execute("INSERT INTO users (id, email, name) VALUES ('user-1', 'sales@corp.test', 'S')")
    add_customer(s, "c-a", "a@cust.test")
    (a_addr, a_pw), (b_addr, b_pw) = mailserver.new_user(), mailserver.new_user()
    slow = add_password_mailbox(s, settings, mailserver, a_addr, a_pw)
    other = add_password_mailbox(s, settings, mailserver, b_addr, b_pw)
    seed(mailserver, a_addr, a_pw, n)
    seed(mailserver, b_addr, b_pw, 9)
    proxy = FaultProxy(mailserver.imaps_port).start()
    mailboxes.update(s, slow.id, imap_port=proxy.port)
    mailboxes.update(s, other.id, last_sync_at=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()))
    s.close()
    ttl = 4.0
    env = {"MAILOPS_LEASE_TTL": str(ttl), "MAILOPS_SYNC_BATCH": "200"}
    leases = PgLeases(dsn)
    try:
        proxy.stall_after(140_000, 600)  # in the second batch's FETCH
        a = mailops("worker", "--once", "--concurrency", "1", env=env)
        deadline = time.monotonic() + 120
        s = Store(spec)
        while s.scalar("SELECT count(*) FROM audit_ledger WHERE mailbox_id = ?", [slow.id]) == 0:
            assert time.monotonic() < deadline and a.poll() is None, a.stderr.read()
            time.sleep(0.2)
        assert leases.holder(slow.id).pid == a.pid
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
        killed = time.monotonic()
        first_part = s.scalar("SELECT count(*) FROM audit_ledger WHERE mailbox_id = ?", [slow.id])
        assert 0 < first_part < n
        proxy.cut_all()
        mailboxes.update(s, other.id, last_sync_at=None)
        s.close()
        code, out, err = finish(mailops("worker", "--once", "--json", env=env))
        assert code == 0, err
        lines = [json.loads(x) for x in out.splitlines() if '"mailbox_id"' in x]
        if time.monotonic() - killed < ttl:  # A's lease row still stood all along
            assert [d["mailbox_id"] for d in lines] == [other.id]
        while leases.holder(slow.id) is not None:
            assert time.monotonic() - killed < ttl + 4, "the killed worker's lease did not expire"
            time.sleep(0.1)
        code, out, err = finish(mailops("worker", "--once", "--json", env=env))
        assert code == 0, err
        lines += [json.loads(x) for x in out.splitlines() if '"mailbox_id"' in x]
        took = [d for d in lines if d["mailbox_id"] == slow.id]  # by the 2nd or the 3rd
        assert [(d["outcome"], d["examined"]) for d in took] == [("ok", n - first_part)]
    finally:
        proxy.stop()
        leases.close()
    s = Store(spec)
    ledger = s.rows(
        "SELECT count(*), count(DISTINCT uid) FROM audit_ledger WHERE mailbox_id = ?", [slow.id]
    )
    assert ledger == [(n, n)]
    assert s.scalar("SELECT count(*) FROM messages") == s.scalar(
        "SELECT count(DISTINCT id) FROM messages"
    )
    runs = dict(
        s.rows("SELECT status, count(*) FROM sync_runs WHERE mailbox_id = ? GROUP BY 1", [slow.id])
    )
    assert runs == {"interrupted": 1, "ok": 1}, runs
    s.close()


def test_D1_mailops_sync_on_a_lake_respects_a_workers_lease_row(lake, settings, mailserver):
    """S14 on the lake: `mailops sync` takes the same PostgreSQL lease rows as the workers."""
    spec, dsn = lake
    s = Store(spec)
    s.execute("INSERT INTO users (id, email, name) VALUES ('user-1', 'sales@corp.test', 'S')")
    address, pw = mailserver.new_user()
    mb = add_password_mailbox(s, settings, mailserver, address, pw)
    seed(mailserver, address, pw, 3)
    s.close()
    worker = PgLeases(dsn)
    try:
        lease = worker.acquire(mb.id)  # a worker (here: this test) is on it
        code, out, err = finish(mailops("sync", address, env={"MAILOPS_SYNC_LEASE_WAIT": "0"}))
        assert code == 11, (out, err)
        assert f"{address}: skipped, already syncing (pid {os.getpid()}, since" in err
        lease.release()
        code, out, err = finish(mailops("sync", address))
        assert code == 0, err
        assert "examined 3" in out
        assert worker.held_ids() == set()  # the sync gave its lease row back
    finally:
        worker.close()
