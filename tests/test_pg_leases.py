"""D1: lease rows in a real PostgreSQL (the project's own temp-dir cluster, the `postgres`
fixture): compare-and-swap claims, renewal, take-over after expiry, a holder killed with
kill -9; and the cluster itself (start, CLI, the apt path when no binaries are found)."""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from mailops.dev import postgres as pg
from mailops.lease import (
    FileLeases,
    LeaseLost,
    LocalLeases,
    MailboxBusy,
    PgLeases,
    lake_dsn,
    leases_for,
)


def _row(dsn: str, mailbox_id: int) -> tuple | None:
    with psycopg.connect(dsn) as c:
        return c.execute(
            "SELECT holder, pid, expires_at - now() FROM sync_leases WHERE mailbox_id = %s",
            [mailbox_id],
        ).fetchone()


# -- the cluster ------------------------------------------------------------------------
def test_D1_postgres_fixture_is_a_real_server_in_its_own_temp_dir(postgres):
    st = postgres.state
    assert st.host == "127.0.0.1" and st.dsn.startswith("postgres://postgres@127.0.0.1:")
    with psycopg.connect(st.dsn) as c:
        version = c.execute("SHOW server_version").fetchone()[0]
        listen = c.execute("SHOW listen_addresses").fetchone()[0]
        sockets = c.execute("SHOW unix_socket_directories").fetchone()[0]
        assert c.execute("SELECT current_database()").fetchone()[0] == "mailops"
    assert int(version.split(".")[0]) >= 13
    assert listen == "127.0.0.1" and sockets == st.root  # nothing in /var/run/postgresql
    owner = pwd.getpwuid(os.stat(st.root).st_uid).pw_name
    assert owner == ("postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name)
    assert stat.S_IMODE(os.stat(st.root).st_mode) == 0o700
    assert Path(st.root, "data", "PG_VERSION").exists()


def test_D1_postgres_starts_and_stops_cleanly_and_leaves_nothing(tmp_path):
    server = pg.PostgresServer()
    st = server.start()
    try:
        assert pg.status(st.root) is not None
        dsn = server.new_database()
        with psycopg.connect(dsn) as c:
            c.execute("CREATE TABLE t (x int)")
    finally:
        server.stop()
    assert not os.path.exists(st.root)  # a folder it made itself is removed
    assert not pg.pid_alive(st.pid)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(st.dsn, connect_timeout=2)


def test_D1_postgres_cli_start_status_stop(tmp_path):
    folder = f"/tmp/mailops-pgcli-{os.getpid()}"
    run = [sys.executable, "-m", "mailops.cli", "devserver", "postgres"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*run, *args, "--dir", folder], capture_output=True, text=True)

    try:
        started = cli("start")
        assert started.returncode == 0, started.stderr
        assert "DSN   postgres://postgres@127.0.0.1:" in started.stdout
        again = cli("start")  # safe to re-run: the same cluster
        assert again.returncode == 0 and again.stdout == started.stdout
        status = cli("status", "--json")
        assert status.returncode == 0, status.stderr
        st = json.loads(status.stdout)
        with psycopg.connect(st["dsn"]) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        stopped = cli("stop")
        assert stopped.returncode == 0 and f"pid {st['pid']}" in stopped.stdout
        gone = cli("status")
        assert gone.returncode == 1 and "not running" in gone.stdout
        assert not pg.pid_alive(st["pid"])
        assert cli("start").returncode == 0  # the data folder is started again
        assert cli("stop", "--remove").returncode == 0
        assert not os.path.exists(folder)
    finally:
        subprocess.run([*run, "stop", "--remove", "--dir", folder], capture_output=True)


def test_D1_postgres_is_installed_with_apt_when_no_binaries_are_found(tmp_path, monkeypatch):
    """The install path of a fresh Debian machine: the search finds nothing (an empty
    folder), so apt-get installs Debian's postgresql, then the binaries are found. apt-get
    is a recording stand-in here (the real one needs the network); a test the
    Dovecot path shares."""
    if os.geteuid() != 0:
        with pytest.raises(pg.DevServerError, match="needs root and apt-get"):
            pg.ensure_postgres(search=[str(tmp_path)])
        return
    empty = tmp_path / "empty"
    empty.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "apt-get"
    fake.write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {calls}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert pg.find_bindir([str(empty)]) is None
    found = pg.ensure_postgres(search=[str(empty)])
    assert os.access(os.path.join(found, "initdb"), os.X_OK)
    assert calls.read_text().splitlines() == [
        "noninteractive update -qq",
        "noninteractive install -y -qq --no-install-recommends postgresql",
    ]
    with pytest.raises(pg.DevServerError, match="PostgreSQL is not installed"):
        pg.ensure_postgres(install=False, search=[str(empty)])
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package postgresql' >&2; exit 100\n")
    with pytest.raises(pg.DevServerError, match="Unable to locate package"):
        pg.ensure_postgres(search=[str(empty)])


def test_D1_postgres_package_is_in_the_debian_list():
    listed = (Path(__file__).parent.parent / "scripts" / "debian-packages.txt").read_text()
    names = [ln.split()[0] for ln in listed.splitlines() if ln.strip() and ln[0] != "#"]
    assert set(pg.POSTGRES_PACKAGES) <= set(names)


# -- the lease rows -----------------------------------------------------------------------
def test_D1_lease_claim_is_compare_and_swap(pg_dsn):
    """Eight workers (each its own connection) race for the same 40 mailboxes: every
    mailbox goes to exactly one of them."""
    wins: dict[int, list[int]] = {}
    lock = threading.Lock()
    go = threading.Barrier(8)

    def worker(n: int) -> None:
        leases = PgLeases(pg_dsn)
        leases.holder(0)  # connected (and the table made) before the race starts
        go.wait()
        try:
            for i in range(40):  # each starts elsewhere and runs into the others
                mailbox_id = 1 + (i + 5 * n) % 40
                try:
                    leases.acquire(mailbox_id)
                except MailboxBusy:
                    continue
                with lock:
                    wins.setdefault(mailbox_id, []).append(n)
        finally:
            leases.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(wins) == list(range(1, 41))
    assert all(len(w) == 1 for w in wins.values()), wins
    assert len({w[0] for w in wins.values()}) > 1  # it was a race, not one worker first


def test_D1_lease_busy_says_who_holds_it_and_release_gives_it_back(pg_dsn):
    mine, theirs = PgLeases(pg_dsn), PgLeases(pg_dsn)
    try:
        lease = mine.acquire(7)
        with pytest.raises(MailboxBusy) as busy:
            theirs.acquire(7, wait=0.5)
        assert busy.value.holder is not None and busy.value.holder.pid == os.getpid()
        assert f"mailbox 7: already syncing (pid {os.getpid()}, since" in busy.value.message
        assert busy.value.exit_code == 11
        with pytest.raises(MailboxBusy):  # a second claim in the same process is refused too
            mine.acquire(7)
        assert theirs.acquire(8) is not None  # another mailbox is free
        lease.release()
        assert theirs.holder(7) is None and _row(pg_dsn, 7) is None
        theirs.acquire(7).release()
    finally:
        mine.close()
        theirs.close()


def test_D1_lease_is_renewed_while_held(pg_dsn):
    holder, other = PgLeases(pg_dsn, ttl=1.0), PgLeases(pg_dsn, ttl=1.0)
    try:
        lease = holder.acquire(3)
        first = lease.expires_at
        time.sleep(2.5)  # 2.5 TTLs: alive only because the renewer ran (every ttl/3)
        with pytest.raises(MailboxBusy):
            other.acquire(3)
        assert lease.expires_at > first and not lease.lost
        left = _row(pg_dsn, 3)[2].total_seconds()
        assert 0 < left <= 1.0
        lease.renew()  # by hand too
        lease.release()
        assert other.holder(3) is None
    finally:
        holder.close()
        other.close()


def test_D1_lease_taken_over_after_expiry(pg_dsn):
    """A holder that stops renewing (hung, cut off) keeps the mailbox until the TTL is
    over, then another worker takes it; the old holder learns it lost the lease, and its
    late release leaves the new holder's row alone."""
    stale, fresh = PgLeases(pg_dsn, ttl=1.5), PgLeases(pg_dsn, ttl=1.5)
    try:
        old = stale.acquire(5)
        stale._stop.set()  # the renewer stops: as if the holder hung
        stale._renewer.join(5)
        with pytest.raises(MailboxBusy):
            fresh.acquire(5)
        t0 = time.monotonic()
        new = fresh.acquire(5, wait=10)
        waited = time.monotonic() - t0
        assert 0.3 < waited < 2.5, waited
        assert new.holder.since >= old.holder.since
        with pytest.raises(LeaseLost):
            old.renew()
        assert old.lost
        old.release()
        assert _row(pg_dsn, 5)[0] == new.token  # still the new holder's
        new.release()
    finally:
        stale.close()
        fresh.close()


def test_D1_renewer_notices_a_lost_lease(pg_dsn):
    lost = []
    holder = PgLeases(pg_dsn, ttl=0.6, on_lost=lost.append)
    try:
        lease = holder.acquire(9)
        with psycopg.connect(pg_dsn, autocommit=True) as c:  # someone took it over
            c.execute("UPDATE sync_leases SET holder = 'elsewhere' WHERE mailbox_id = 9")
        deadline = time.monotonic() + 5
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.lost and lost == [lease]
        lease.release()
        assert _row(pg_dsn, 9)[0] == "elsewhere"
    finally:
        holder.close()


HOLDER = """
import sys, time
from mailops.lease import PgLeases
leases = PgLeases(sys.argv[1], ttl=float(sys.argv[2]))
for mailbox_id in (11, 12):
    leases.acquire(mailbox_id)
print("held", flush=True)
time.sleep(600)
"""


def test_D1_lease_of_a_killed_holder_process_is_taken_over_after_expiry(pg_dsn):
    ttl = 2.0
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_dsn, str(ttl)], stdout=subprocess.PIPE, text=True
    )
    leases = PgLeases(pg_dsn, ttl=ttl)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        time.sleep(ttl)  # the holder renews: its leases outlive their first TTL
        found = leases.holder(11)
        assert found is not None and found.pid == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
        with pytest.raises(MailboxBusy) as busy:  # a row, not a connection: still held
            leases.acquire(11)
        assert f"pid {proc.pid}" in busy.value.message
        a = leases.acquire(11, wait=3 * ttl)
        b = leases.acquire(12, wait=3 * ttl)
        assert time.monotonic() - killed <= ttl + 1.0
        assert {a.holder.pid, b.holder.pid} == {os.getpid()}
        assert leases.held_ids() == {11, 12}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        leases.close()


def test_D1_lease_claim_survives_a_dropped_connection(pg_dsn):
    leases = PgLeases(pg_dsn)
    try:
        leases.acquire(21).release()
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'mailops-leases'"
            )
        lease = leases.acquire(22)  # reconnects
        assert leases.holder(22) is not None
        lease.release()
    finally:
        leases.close()


def test_D1_a_claim_never_hangs_on_a_row_someone_keeps_locked(pg_dsn):
    """A statement that cannot finish (here: a row locked by a transaction left open) gives
    up after ttl/3 instead of hanging the worker or the renewer past the TTL."""
    from mailops.errors import StoreError

    leases = PgLeases(pg_dsn, ttl=3.0)
    leases.acquire(31).release()
    with psycopg.connect(pg_dsn) as other:  # not autocommit: the transaction stays open
        other.execute(
            "INSERT INTO sync_leases (mailbox_id, holder, host, pid, expires_at)"
            " VALUES (32, 'x', 'h', 1, now() - interval '1 hour')"
        )
        other.commit()
        other.execute("SELECT * FROM sync_leases WHERE mailbox_id = 32 FOR UPDATE")
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="statement timeout"):
            leases.acquire(32)
        assert time.monotonic() - t0 < 2 * (1.0 + 1.0)  # two tries of ttl/3 each
    lease = leases.acquire(32)  # the lock is gone: the expired row is taken over
    assert lease.holder.pid == os.getpid()
    leases.close()


def test_D1_leases_survive_a_postgres_restart(tmp_path):
    """The database restarts (failover, crash) under a held lease: the rows are durable, the
    renewer reconnects, the lease stays its holder's and is renewed; another worker's
    claim is refused before and after."""
    server = pg.PostgresServer()
    st = server.start()
    holder, other = PgLeases(st.dsn, ttl=3.0), PgLeases(st.dsn, ttl=3.0)
    try:
        lease = holder.acquire(41)
        before = lease.expires_at
        server.restart()
        time.sleep(2.0)  # the renewer ran (every 1 s) on a fresh connection
        assert not lease.lost and lease.expires_at > before
        with pytest.raises(MailboxBusy):
            other.acquire(41)
        lease.release()
        assert other.acquire(41).holder.pid == os.getpid()
    finally:
        holder.close()
        other.close()
        server.stop()


def test_D1_unreachable_lease_database_is_one_clear_error():
    from mailops.errors import StoreError

    leases = PgLeases(f"postgres://postgres@127.0.0.1:{pg.free_port()}/none", connect_timeout=2)
    with pytest.raises(StoreError, match="cannot reach the lease database"):
        leases.acquire(1)


def test_D1_leases_for_picks_the_backend_of_the_store(pg_dsn, tmp_path):
    lake = SimpleNamespace(backend="lake", lake_dsn=pg_dsn, path="ignored")
    got = leases_for(lake)
    assert isinstance(got, PgLeases) and got.dsn == pg_dsn
    assert leases_for(lake) is got  # one connection and renewer per process
    assert isinstance(leases_for(SimpleNamespace(path=str(tmp_path / "x.duckdb"))), FileLeases)
    assert isinstance(leases_for(str(tmp_path / "x.duckdb")), FileLeases)
    assert isinstance(leases_for(":memory:"), LocalLeases)
    by_name = leases_for(f"ducklake:{pg_dsn}?data=/srv/lake")
    assert isinstance(by_name, PgLeases) and by_name.dsn == pg_dsn
    assert lake_dsn("ducklake:postgres://u@h:5/db?sslmode=disable&data=/x") == (
        "postgres://u@h:5/db?sslmode=disable"
    )
    assert lake_dsn("ducklake:postgres:dbname=db host=h") == "dbname=db host=h"
    assert lake_dsn("/srv/mailops.duckdb") is None
