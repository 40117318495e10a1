"""Store concurrency for reports (issue 6 item 8): DuckDB lets one process write OR several
read. Reports open the file read-only, retry while a writer holds it, and let go after each
query; so a report run while a sync writes (in short transactions) must not fail."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from report_support import notebooks_path, scraps, synthetic_store

from mailops.config import Settings
from mailops.notebook import run_report
from mailops.reports import ReadStore

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mailops.store import Store
    path, stop, first = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    store = Store(path, busy_timeout=60)
    n = 0
    while not stop.exists():
        with store.transaction():
            store.execute(
                "INSERT INTO sync_runs (mailbox_id, trigger, started_at, status) "
                "VALUES (1, 'writer', now()::TIMESTAMP, 'ok')"
            )
            if n == 0:
                Path(str(stop) + ".locked").touch()  # the test starts reading now
            # the file is locked for the whole transaction: FIRST seconds the first time,
            # then 50 ms each, like a sync committing batches
            time.sleep(first if n == 0 else 0.05)
        store.release()  # what a sync does between batches: let readers in
        n += 1
        time.sleep(0.01)  # only a short gap before the next transaction
    print(n)
    """
)


@pytest.fixture
def db(tmp_path):
    store, syn = synthetic_store(tmp_path / "busy.duckdb")
    runs = store.scalar("SELECT count(*) FROM sync_runs")
    store.close()
    return tmp_path / "busy.duckdb", runs


def _writer(path, stop, first: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(stop), str(first)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    locked = Path(str(stop) + ".locked")
    deadline = time.monotonic() + 60
    while not locked.exists():  # wait until it holds the file
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.01)
    return proc


def _stop(proc: subprocess.Popen, stop) -> int:
    stop.write_text("stop")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    return int(out.strip())


def test_R2_reader_queries_while_a_writer_commits(db, tmp_path):
    path, before = db
    stop = tmp_path / "stop"
    proc = _writer(path, stop, first=0.05)
    reader = ReadStore(path, busy_timeout=30)
    seen = []
    try:
        t_end = time.monotonic() + 3
        while time.monotonic() < t_end:
            seen.append(reader.scalar("SELECT count(*) FROM sync_runs"))
    finally:
        written = _stop(proc, stop)
    assert written >= 2 and len(seen) >= 3
    assert seen == sorted(seen) and seen[-1] > before  # the reader saw the writer's commits


def test_R2_reader_waits_for_a_long_write_then_succeeds(db, tmp_path):
    path, _ = db
    stop = tmp_path / "stop"
    proc = _writer(path, stop, first=3.0)  # the first write transaction holds the file 3 s
    try:
        t0 = time.monotonic()
        n = ReadStore(path, busy_timeout=30).scalar("SELECT count(*) FROM customers")
        waited = time.monotonic() - t0
    finally:
        _stop(proc, stop)
    assert n == 4
    assert 1.0 < waited < 30  # it did wait for the writer, then got in


@pytest.mark.notebook
def test_R5_report_runs_while_a_sync_is_writing(db, tmp_path):
    path, _ = db
    stop = tmp_path / "stop"
    settings = Settings.load(
        db=str(path), reports_dir=str(tmp_path / "reports"), notebooks_dir=str(notebooks_path())
    )
    proc = _writer(path, stop, first=0.05)
    try:
        res = run_report("sync_audit", {"DAYS": 0}, settings=settings)
    finally:
        written = _stop(proc, stop)
    got = scraps(res.ipynb_path)
    assert got["runs"] >= 3  # the synthetic runs plus whatever the writer had committed
    assert got["counts_by_reason"]["stored_customer"] == 8
    assert written > 0
