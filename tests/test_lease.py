"""S14: one sync per mailbox at a time -- real `mailops sync` processes, the real Dovecot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lease_support import as_json, finish, mailops, seed
from sync_support import add_customer

from mailops.dev.devserver.proxy import FaultProxy
from mailops.lease import FileLeases, MailboxBusy, leases_for
from mailops.store import mailboxes

pytestmark = pytest.mark.server


def _leases(settings) -> FileLeases:
    leases = leases_for(settings.db)
    assert isinstance(leases, FileLeases)
    return leases


def _wait_for(cond, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_S14_lease_is_exclusive_and_says_who_holds_it(tmp_path):
    leases = FileLeases(tmp_path / "db.leases")
    lease = leases.acquire(7)
    with pytest.raises(MailboxBusy) as busy:
        FileLeases(tmp_path / "db.leases").acquire(7, wait=0.2)
    assert busy.value.holder is not None and busy.value.holder.pid == os.getpid()
    assert "already syncing (pid" in busy.value.message
    assert leases.acquire(8) is not None  # another mailbox is free
    lease.release()
    assert leases.holder(7) is None
    leases.acquire(7).release()
    assert oct((tmp_path / "db.leases").stat().st_mode & 0o777) == "0o700"


def test_S14_lease_of_a_killed_process_is_recovered_at_once(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from mailops.lease import FileLeases;"
            "FileLeases(sys.argv[1]).acquire(3); print('held', flush=True); time.sleep(600)",
            str(tmp_path / "db.leases"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        leases = FileLeases(tmp_path / "db.leases")
        found = leases.holder(3)
        assert found is not None and found.pid == holder.pid
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        t0 = time.monotonic()
        leases.acquire(3, wait=5).release()  # the kernel released the dead holder's lock
        assert time.monotonic() - t0 < 1.0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_S14_sync_of_a_held_mailbox_says_already_syncing_and_moves_on(
    store, settings, password_mailbox, mailserver
):
    (busy_mb, pw), (free_mb, pw2) = password_mailbox(), password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    seed(mailserver, busy_mb.address, pw, 3)
    seed(mailserver, free_mb.address, pw2, 3)
    store.close()
    lease = _leases(settings).acquire(busy_mb.id)  # "another sync" (this test process)
    try:
        code, out, err = finish(mailops("sync", "--json", env={"MAILOPS_SYNC_LEASE_WAIT": "0.3"}))
        assert code == 11, err
        data = as_json(out)
        by = {m["address"]: m for m in data["mailboxes"]}
        assert by[free_mb.address]["outcome"] == "ok" and by[free_mb.address]["examined"] == 3
        held = by[busy_mb.address]
        assert held["outcome"] == "already_syncing" and held["examined"] == 0
        assert held["holder"]["pid"] == os.getpid()
        assert data["summary"]["exit_code"] == 11

        code, out, err = finish(
            mailops("sync", busy_mb.address, env={"MAILOPS_SYNC_LEASE_WAIT": "0"})
        )
        assert code == 11
        assert f"{busy_mb.address}: skipped, already syncing (pid {os.getpid()}, since" in err
    finally:
        lease.release()
    code, out, err = finish(mailops("sync", busy_mb.address))
    assert code == 0, err
    assert "examined 3" in out
    runs = store.query("SELECT mailbox_id, status, examined FROM sync_runs ORDER BY id")
    assert runs.to_dict("records") == [
        {"mailbox_id": free_mb.id, "status": "ok", "examined": 3},
        {"mailbox_id": busy_mb.id, "status": "ok", "examined": 3},
    ]


def _concurrent(store, settings, password_mailbox, mailserver, n: int, second_wait: str):
    """Two real `mailops sync` processes of one mailbox: the first stalls on the network
    (a proxy) after it took the lease; the second starts then."""
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    seed(mailserver, mb.address, pw, n)
    proxy = FaultProxy(mailserver.imaps_port).start()
    mailboxes.update(store, mb.id, imap_port=proxy.port)
    store.close()
    leases = _leases(settings)
    try:
        env = {"MAILOPS_SYNC_BATCH": "200"}
        # A logs in slowly (it holds the lease and the store meanwhile), commits its first
        # batch, hands the store over (it held it > 2 s) and stalls again mid-run: B starts
        # (a batch of 200 here is ~93 KB down: the second stall falls in batch 2's FETCH)
        proxy.stall(5.0)
        proxy.stall_after(140_000, 8.0)
        first = mailops("sync", mb.address, "--json", env=env)
        _wait_for(lambda: leases.holder(mb.id) is not None, what="the first sync's lease")
        second = mailops(
            "sync", mb.address, "--json", env={**env, "MAILOPS_SYNC_LEASE_WAIT": second_wait}
        )
        a = finish(first)
        b = finish(second)
    finally:
        proxy.stop()
    return mb, a, b


def test_S14_two_concurrent_syncs_one_examines_the_other_says_busy(
    store, settings, password_mailbox, mailserver
):
    n = 1200
    mb, (ca, outa, erra), (cb, outb, errb) = _concurrent(
        store, settings, password_mailbox, mailserver, n, second_wait="0"
    )
    assert ca == 0, erra
    assert cb == 11, errb
    a, b = as_json(outa)["mailboxes"][0], as_json(outb)["mailboxes"][0]
    assert (a["outcome"], a["examined"]) == ("ok", n)
    assert (b["outcome"], b["examined"]) == ("already_syncing", 0)
    assert b["holder"]["pid"] > 0
    assert store.scalar("SELECT count(*) FROM audit_ledger") == n  # each message once
    assert store.scalar("SELECT count(DISTINCT uid) FROM audit_ledger") == n
    runs = store.query("SELECT status, examined, stored, linked FROM sync_runs")
    assert runs.to_dict("records") == [
        {"status": "ok", "examined": n, "stored": n // 3, "linked": 0}
    ]


def test_S14_second_sync_waits_for_the_first_then_finds_nothing_new(
    store, settings, password_mailbox, mailserver
):
    n = 600
    mb, (ca, outa, erra), (cb, outb, errb) = _concurrent(
        store, settings, password_mailbox, mailserver, n, second_wait="120"
    )
    assert (ca, cb) == (0, 0), (erra, errb)
    examined = sorted(
        m["examined"] for m in (as_json(outa)["mailboxes"][0], as_json(outb)["mailboxes"][0])
    )
    assert examined == [0, n]
    assert store.scalar("SELECT count(*) FROM audit_ledger") == n
    runs = store.query("SELECT status, examined, linked FROM sync_runs ORDER BY id")
    assert runs["status"].tolist() == ["ok", "ok"]
    assert sorted(runs["examined"]) == [0, n] and runs["linked"].sum() == 0


def test_S14_lease_files_live_beside_the_store(settings):
    assert Path(_leases(settings).dir) == Path(f"{Path(settings.db).resolve()}.leases")
