"""The CLI boundary: expected failures are one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailops.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_store_in_missing_folder_is_one_line_error(tmp_path):
    out = run("--db", str(tmp_path / "no" / "such" / "dir" / "m.duckdb"), "db", "status")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0
    assert "does not exist" in out.stderr


def test_corrupt_store_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(b"this is not a duckdb file" * 100)
    out = run("--db", str(bad), "db", "status")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert bad.read_bytes() == b"this is not a duckdb file" * 100  # nothing lost or overwritten


def test_db_migrate_then_status(tmp_path):
    db = str(tmp_path / "m.duckdb")
    first = run("--db", db, "db", "migrate")
    from mailops.store.migrations import MIGRATIONS

    assert first.returncode == 0 and f"applied {len(MIGRATIONS)} migration(s)" in first.stdout
    again = run("--db", db, "db", "migrate")
    assert again.returncode == 0 and "applied 0 migration(s)" in again.stdout
    status = run("--db", db, "db", "status")
    assert (
        status.returncode == 0
        and "pending" not in status.stdout
        and "0001_directory" in status.stdout
    )


def test_unknown_setting_in_toml_is_one_line(tmp_path):
    cfg = tmp_path / "mailops.toml"
    cfg.write_text("[mailops]\nno_such_setting = 1\n")
    import os

    out = run(
        "db",
        "status",
        env=dict(os.environ, MAILOPS_CONFIG=str(cfg), MAILOPS_DB=str(tmp_path / "x.duckdb")),
    )
    assert out.returncode == 2
    assert "unknown setting" in out.stderr and "Traceback" not in out.stderr
