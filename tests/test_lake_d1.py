"""D1: the store on a DuckLake (catalog in a real PostgreSQL, data in Parquet files)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mailops.errors import StoreError
from mailops.store import Store
from mailops.store.lake import Dialect, LakeTarget
from mailops.sync import sync_all
from tests.conftest import add_password_mailbox
from tests.lake_support import deliver, holdings, seed_company


@pytest.fixture
def lake_spec(pg_dsn: str, tmp_path: Path) -> str:
    """A fresh lake: an empty database of the session's real PostgreSQL as its catalog."""
    return f"ducklake:{pg_dsn}?data={tmp_path / 'lake-data'}"


def test_D1_lake_address_parsed_and_password_refused(tmp_path: Path) -> None:
    t = LakeTarget.parse(f"ducklake:postgres://svc@db.internal:6543/crm?data={tmp_path}")
    assert (t.host, t.port, t.dbname, t.user) == ("db.internal", 6543, "crm", "svc")
    assert t.dsn == "postgresql://svc@db.internal:6543/crm"
    with pytest.raises(StoreError, match="password"):
        LakeTarget.parse("ducklake:postgres://svc:hunter2@db/crm?data=/x")
    os.environ.pop("MAILOPS_LAKE_DATA", None)
    with pytest.raises(StoreError, match="data folder"):
        LakeTarget.parse("ducklake:postgres://svc@db/crm")


def test_D1_on_conflict_becomes_merge_on_the_declared_keys() -> None:
    d = Dialect(keys={"notifications": [["user_id", "message_id"]]})
    sql = d.translate(
        "INSERT INTO folder_failures (mailbox_id, folder, consecutive) VALUES (?, ?, 1)"
        " ON CONFLICT (mailbox_id, folder) DO UPDATE SET"
        " consecutive = folder_failures.consecutive + 1"
    )
    assert sql.startswith("MERGE INTO folder_failures USING")
    assert '(folder_failures."mailbox_id" = excluded."mailbox_id"' in sql
    assert "WHEN MATCHED THEN UPDATE SET consecutive = folder_failures.consecutive + 1" in sql
    plain = d.translate(
        "INSERT INTO notifications (user_id, message_id, reason) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING"
    )
    assert '(notifications."user_id" = excluded."user_id"' in plain
    assert "WHEN MATCHED" not in plain
    assert d.translate("SELECT 1") == "SELECT 1"
    with pytest.raises(StoreError, match="no key"):
        d.translate("INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING")


def test_D1_lake_store_migrates_upserts_and_numbers(lake_spec: str) -> None:
    with Store(lake_spec) as s:
        assert s.backend == "lake"
        assert s.pending() == []
        s.execute("INSERT INTO users (id, email) VALUES ('u1', 'a@x.test')")
        for _ in range(2):  # a retried write stores nothing twice
            s.execute(
                "INSERT INTO company_policy (key, value, set_by, set_at) VALUES (?, ?, ?, now())"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                ["visibility", "team", "u1"],
            )
        assert s.rows("SELECT key, value FROM company_policy") == [("visibility", "team")]
        from mailops.store import mailboxes

        a = mailboxes.insert(
            s, owner_user_id="u1", address="a@x.test", provider="generic", auth_kind="password"
        )
        with Store(lake_spec) as other:  # another writer's ids continue after ours
            b = mailboxes.insert(
                other,
                owner_user_id="u1",
                address="b@x.test",
                provider="generic",
                auth_kind="password",
            )
        c = mailboxes.insert(
            s, owner_user_id="u1", address="c@x.test", provider="generic", auth_kind="password"
        )
        assert a.id < b.id < c.id
    with Store(lake_spec) as again:  # reopened: nothing to migrate
        assert again.migrate() == []


def test_D1_sync_into_lake_equals_embedded(
    lake_spec: str, mailserver, settings, tmp_path: Path
) -> None:
    accounts = [mailserver.new_user() for _ in range(3)]
    deliver(mailserver, accounts, customers=5, per_box=6)
    results = {}
    for name, spec in (("file", str(tmp_path / "embedded.duckdb")), ("lake", lake_spec)):
        with Store(spec) as s:
            seed_company(s, 5)
            for address, password in accounts:
                add_password_mailbox(s, settings, mailserver, address, password)
            out = sync_all(s, settings)
            assert [r.status for r in out] == ["ok"] * 3, out
            again = sync_all(s, settings)  # a second sync stores nothing
            assert sum(r.stored for r in again) == 0
            results[name] = holdings(s)
    assert results["lake"] == results["file"], _diff(results["lake"], results["file"])
    assert len(results["lake"]["messages"]) >= 18


def _diff(a: dict, b: dict) -> str:
    out = []
    for k in a:
        sa, sb = set(a[k]), set(b[k])
        out.append(f"{k}: only lake {sorted(sa - sb)[:5]} only file {sorted(sb - sa)[:5]}")
    return "\n".join(out)


def test_D1_readers_run_unchanged_on_the_lake(
    lake_spec: str, mailserver, settings, tmp_path: Path, monkeypatch, capsys
) -> None:
    """stats, audit, explain, db status and the report notebooks, pointed at the lake."""
    import json

    from mailops.cli import main

    accounts = [mailserver.new_user() for _ in range(2)]
    deliver(mailserver, accounts, customers=4, per_box=4)
    with Store(lake_spec) as s:
        seed_company(s, 4)
        for address, password in accounts:
            add_password_mailbox(s, settings, mailserver, address, password)
        assert {r.status for r in sync_all(s, settings)} == {"ok"}
    monkeypatch.setenv("MAILOPS_STORE", lake_spec)
    capsys.readouterr()
    assert main(["stats", "activity", "--by", "customer", "--days", "0", "--json"]) == 0
    assert sum(r["inbound"] for r in json.loads(capsys.readouterr().out)) >= 8
    assert main(["audit", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) >= 8
    assert main(["explain", "--message-id", "box0-1@buyer.test"]) == 0
    assert "In the CRM" in capsys.readouterr().out
    assert main(["db", "status"]) == 0
    assert "lake" in capsys.readouterr().out
    reports = tmp_path / "reports"
    for name in ("sync_audit", "activity_report"):
        assert main(["report", name, "--reports-dir", str(reports)]) == 0, name
    html = list(reports.rglob("*.html"))
    assert len(html) == 2
    assert lake_spec.split("?")[0].split("@")[0] not in "".join(p.read_text() for p in html)


def test_D1_G1_erasure_on_the_lake_leaves_no_byte_in_files_or_catalog(
    lake_spec: str, mailserver, settings
) -> None:
    """Time travel would keep an erased person: the lake's old snapshots, Parquet files and
    inlined catalog rows must lose him too."""
    from mailops.erasure import erase
    from tests.sync_support import append, make_msg

    address, password = mailserver.new_user()
    secret = "ZEBRA-SECRET-4711"
    append(
        mailserver,
        address,
        password,
        [
            make_msg("gone@buyer.test", address, subject=f"offer {secret}", body=f"{secret}\n"),
            make_msg("cust0@buyer.test", address, subject="stays"),
        ],
    )
    with Store(lake_spec) as s:
        seed_company(s, 1)
        from tests.sync_support import add_customer

        add_customer(s, "gone", "gone@buyer.test")
        s.execute("INSERT INTO users (id, email, role) VALUES ('adm', 'adm@corp.test', 'admin')")
        add_password_mailbox(s, settings, mailserver, address, password)
        assert sync_all(s, settings)[0].stored == 2
        assert _where(lake_spec, secret)
        result = erase(s, "adm", customer="gone")  # the directory row too
        assert result.counts.get("messages") == 1
        assert s.scalar("SELECT count(*) FROM messages") == 1
    assert _where(lake_spec, secret) == []
    assert _where(lake_spec, "gone@buyer.test") == []


def _where(spec: str, needle: str) -> list[str]:
    """The files of the lake's data folder, and the lines of its catalog's dump, that hold
    NEEDLE."""
    target = LakeTarget.parse(spec)
    files = [
        str(p)
        for p in Path(target.data_path).rglob("*")
        if p.is_file() and needle.encode() in p.read_bytes()
    ]
    dump = subprocess.run(
        [_pg_dump(), target.dsn], check=True, capture_output=True, text=True
    ).stdout
    return files + [line[:200] for line in dump.splitlines() if needle in line]


def _pg_dump() -> str:
    from mailops.dev.postgres import find_bindir

    return os.path.join(find_bindir() or "/usr/bin", "pg_dump")


def _worker(env: dict[str, str], crash: str | None = None) -> subprocess.Popen[bytes]:
    """A `mailops worker --once --cadence 0` process; CRASH: a fault point to die at."""
    import sys

    e = dict(env, MAILOPS_CRASH_AT=crash) if crash else env
    return subprocess.Popen(
        [sys.executable, "-m", "mailops.cli", "worker", "--once", "--cadence", "0"],
        env=e,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _codes(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    codes = []
    for p in procs:
        _, err = p.communicate(timeout=300)
        codes.append(p.returncode)
        if p.returncode not in (0, -9):
            print(err.decode(errors="replace")[-3000:])
    return codes


def _wait_for_a_lease(dsn: str, proc: subprocess.Popen[bytes]) -> None:
    """Until PROC holds a lease row (it has claimed mailboxes and is syncing them)."""
    import time

    import psycopg

    deadline = time.monotonic() + 120
    with psycopg.connect(dsn, autocommit=True) as pg:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                row = pg.execute("SELECT count(*) FROM sync_leases").fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError(f"the first worker claimed nothing (exit {proc.poll()})")


def test_D1_four_workers_on_the_lake_equal_the_embedded_store_and_a_kill_loses_nothing(
    lake_spec: str, mailserver, settings, tmp_path: Path
) -> None:
    """The acceptance check of issue 15: 4 workers sync 40 devserver mailboxes into the
    lake, one of them killed (SIGKILL) with a batch written and not committed; after its
    leases expire a worker takes its mailboxes over. Messages, places, activities and final
    ledger decisions equal what the embedded store holds for the same mail, and no row is
    there twice."""
    accounts = [mailserver.new_user() for _ in range(40)]
    deliver(mailserver, accounts, customers=12, per_box=5)
    file_spec = str(tmp_path / "embedded.duckdb")
    for spec in (file_spec, lake_spec):
        with Store(spec) as s, s.transaction():
            seed_company(s, 12)
            for address, password in accounts:
                add_password_mailbox(s, settings, mailserver, address, password)
    with Store(file_spec) as s:
        assert {r.status for r in sync_all(s, settings)} == {"ok"}
        embedded = holdings(s)
    env = {**os.environ, "MAILOPS_STORE": lake_spec, "MAILOPS_LEASE_TTL": "3"}
    # the worker to kill starts first and claims a batch; the other three start while it
    # syncs it, and it dies with its first batch written, not committed (lock and leases held)
    doomed = _worker(env, crash="sync.batch_written:1")
    _wait_for_a_lease(LakeTarget.parse(lake_spec).dsn, doomed)
    codes = _codes([doomed] + [_worker(env) for _ in range(3)])
    assert codes.count(-9) == 1 and codes.count(0) == 3, codes
    import time

    time.sleep(3.5)  # the killed worker's leases have expired (the others may have taken
    assert _codes([_worker(env)]) == [0]  # its mailboxes over already, during their pass)
    with Store(lake_spec) as s:
        lake = holdings(s)
        twice = {
            "messages": "SELECT id FROM messages GROUP BY id HAVING count(*) > 1",
            "places": "SELECT mailbox_id, folder, uid FROM message_places GROUP BY ALL"
            " HAVING count(*) > 1",
            "activities": "SELECT message_id, customer_id FROM activities GROUP BY ALL"
            " HAVING count(*) > 1",
            "mailbox ids": "SELECT id FROM mailboxes GROUP BY id HAVING count(*) > 1",
            "run ids": "SELECT id FROM sync_runs GROUP BY id HAVING count(*) > 1",
        }
        for what, sql in twice.items():
            assert s.rows(sql) == [], what
        assert s.scalar("SELECT count(*) FROM mailboxes WHERE last_sync_at IS NULL") == 0
    assert lake == embedded, _diff(lake, embedded)
    assert len(lake["messages"]) >= 40 * 5


def test_D1_db_gc_keeps_the_lake_small(lake_spec: str, monkeypatch, capsys) -> None:
    """`mailops db gc` on a lake: inlined rows go to Parquet, old snapshots expire."""
    from mailops.cli import main

    with Store(lake_spec) as s:
        for i in range(5):  # five commits, five snapshots, rows inlined in the catalog
            s.execute("INSERT INTO users (id, email) VALUES (?, ?)", [f"u{i}", f"u{i}@x.test"])
        before = s.scalar("SELECT count(*) FROM ducklake_snapshots('lake')")
    monkeypatch.setenv("MAILOPS_STORE", lake_spec)
    capsys.readouterr()
    assert main(["db", "gc", "--keep-days", "0"]) == 0
    out = capsys.readouterr().out
    import re

    flushed = re.search(r"lake: (\d+) inlined row\(s\) flushed", out)
    assert flushed and int(flushed.group(1)) >= 5, out  # the users and the lake's own tables
    with Store(lake_spec) as s:
        assert s.scalar("SELECT count(*) FROM ducklake_snapshots('lake')") < before
        assert s.scalar("SELECT count(*) FROM users") == 5
    files = list(Path(LakeTarget.parse(lake_spec).data_path).rglob("*.parquet"))
    assert files
