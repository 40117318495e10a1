"""The store: recorded migrations, the one door to DuckDB, lock handling."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from mailops.errors import StoreBusy
from mailops.store import Store, readers
from mailops.store.migrations import MIGRATIONS, Migration


def test_migrations_apply_once_and_are_recorded(tmp_path):
    path = tmp_path / "m.duckdb"
    s = Store(path, migrate=False)
    assert [m.name for m in s.pending()] == [m.name for m in MIGRATIONS]
    applied = s.migrate()
    assert applied == [m.name for m in MIGRATIONS]
    assert s.migrate() == []
    assert s.pending() == []
    s.close()
    again = Store(path)  # reopening migrates nothing new
    assert again.scalar("SELECT count(*) FROM schema_migrations") == len(MIGRATIONS)
    status = again.status()
    assert set(status["state"]) == {"applied"}
    again.close()


def test_new_migration_is_pending_then_applied(tmp_path):
    s = Store(tmp_path / "m.duckdb")
    extra = [*MIGRATIONS, Migration("9999_test_extra", "CREATE TABLE extra_t (x INTEGER)")]
    assert [m.name for m in s.pending(extra)] == ["9999_test_extra"]
    assert s.migrate(extra) == ["9999_test_extra"]
    assert s.scalar("SELECT count(*) FROM extra_t") == 0


def test_failed_migration_rolls_back_and_is_not_recorded(tmp_path):
    s = Store(tmp_path / "m.duckdb")
    bad = [
        *MIGRATIONS,
        Migration("9998_bad", "CREATE TABLE half_t (x INTEGER); SELECT * FROM no_such_table"),
    ]
    with pytest.raises(Exception, match="9998_bad"):
        s.migrate(bad)
    assert "9998_bad" not in s.applied()
    assert (
        s.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'half_t'") == 0
    )


def test_query_returns_dataframe(store):
    store.execute("INSERT INTO users (id, email, role) VALUES ('u1', 'a@x.test', 'sales')")
    df = store.query("SELECT id, email FROM users")
    assert list(df.columns) == ["id", "email"]
    assert df.iloc[0]["email"] == "a@x.test"


def test_transaction_rolls_back_on_error(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.execute("INSERT INTO users (id, email) VALUES ('u1', 'a@x.test')")
        raise RuntimeError("boom")
    assert store.scalar("SELECT count(*) FROM users") == 0


def test_locked_store_gives_store_busy_not_a_traceback(tmp_path):
    path = tmp_path / "locked.duckdb"
    Store(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys, time
            c = duckdb.connect({str(path)!r})
            print("held", flush=True)
            time.sleep(30)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusy, match="locked by another process"):
            Store(path, busy_timeout=0.5).query("SELECT 1")
    finally:
        holder.kill()
        holder.wait()
    # once the writer is gone the store opens again
    assert Store(path, busy_timeout=5).scalar("SELECT 1") == 1


def test_R2_long_writer_yields_to_readers_and_keeps_its_settings(tmp_path):
    """A sync releases the file between batches once it held it a while and someone waits
    (readers get in); connection settings such as its memory cap come back after the reopen."""
    path = tmp_path / "w.duckdb"
    writer = Store(path)
    writer.on_open("SET memory_limit = '64MB'")
    readers.announce(str(path))
    assert writer.yield_to_readers(min_hold=60) is False  # held only briefly: keep it
    with writer.transaction():
        writer.execute("INSERT INTO users (id, email) VALUES ('u1', 'a@x.test')")
        assert writer.yield_to_readers(min_hold=0) is False  # never inside a transaction
    assert writer.yield_to_readers(min_hold=0) is True
    reader = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import duckdb; print(duckdb.connect({str(path)!r}, read_only=True)"
            ".execute('SELECT count(*) FROM users').fetchone()[0])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reader.stdout.strip() == "1", reader.stderr
    assert writer.scalar("SELECT current_setting('memory_limit')") == "61.0 MiB"  # 64 MB
    writer.close()


def test_R2_writer_keeps_the_file_while_nobody_waits_and_lets_a_waiting_reader_in(tmp_path):
    """No close/reopen (a WAL checkpoint each) between a sync's units while no other process
    waits; a reader blocked on the lock announces itself and is let in at the next unit."""
    path = tmp_path / "w.duckdb"
    writer = Store(path)
    writer.conn  # noqa: B018 - open it
    opened = writer._opened_at
    assert writer.yield_to_readers(min_hold=0) is False  # nobody waits
    assert writer._conn is not None and writer._opened_at == opened
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from mailops.store import Store;"
            f"s = Store({str(path)!r}, read_only=True, busy_timeout=60, migrate=False);"
            "print(s.scalar('SELECT count(*) FROM users'))",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not readers.waiting(str(path)):  # it found the file locked and said so
            assert reader.poll() is None, reader.stderr.read() if reader.stderr else ""
            assert time.monotonic() < deadline, "the reader never announced itself"
            time.sleep(0.01)
        with writer.transaction():
            writer.execute("INSERT INTO users (id, email) VALUES ('u1', 'a@x.test')")
        assert writer.yield_to_readers(min_hold=0) is True
        assert not readers.waiting(str(path))  # answered
        out, err = reader.communicate(timeout=60)
        assert out.strip() == "1", err
    finally:
        if reader.poll() is None:
            reader.kill()
    assert writer.scalar("SELECT count(*) FROM users") == 1  # reopened on use
    # a waiter that cannot announce itself still gets in: after max_hold, whoever waits
    assert writer.yield_to_readers(min_hold=0, max_hold=0) is True
    writer.close()
