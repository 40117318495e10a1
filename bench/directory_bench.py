"""Directory import at CRM scale, as a user runs it: `python bench/directory_bench.py [N]`.

Writes CRM exports of N customers (default 20,000; 50 users, a deal per 3 customers, every
7th customer with an additional address) as CSV files, then times `mailops directory
import` in a fresh process for each step and reports its wall time and peak RSS (the
child's ``ru_maxrss``): a first import, the same files again (nothing changes), and a
customers file where every tenth customer's primary address changed (S3 rows appended).
`--keep DIR` leaves the files and the store there.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_files(folder: Path, n: int, changed: bool = False) -> dict[str, Path]:
    paths = {k: folder / f"{k}.csv" for k in ("users", "customers", "deals")}
    with paths["users"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "email", "role", "name"])
        w.writerows([f"u{i}", f"u{i}@acme.test", "sales", f"User {i}"] for i in range(50))
    with paths["customers"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "owner_user_id", "email", "additional_emails"])
        for i in range(n):
            email = f"c{i}@new.test" if changed and i % 10 == 0 else f"c{i}@mail.test"
            extra = f"c{i}@work.test" if i % 7 == 0 else ""
            w.writerow([f"c{i}", f"Customer {i}", f"u{i % 50}", email, extra])
    with paths["deals"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "owner_user_id", "price", "customer_ids"])
        w.writerows([f"d{i}", f"u{i % 50}", "250000", f"c{i};c{i + 1}"] for i in range(0, n - 1, 3))
    return paths


def run(db: Path, *args: str) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds (user + sys, all threads), peak RSS MB, first output line)
    of one `mailops` process. CPU time says more than wall time on a busy machine."""
    cmd = [sys.executable, "-m", "mailops.cli", "--db", str(db), *args]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{out}")
    lines = [line for line in out.splitlines() if line.strip()]
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, (lines[0] if lines else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", nargs="?", type=int, default=20_000, help="customers")
    ap.add_argument("--keep", metavar="DIR", help="keep the CSV files and the store here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "bench.duckdb"
        for p in (db, Path(f"{db}.wal")):
            p.unlink(missing_ok=True)
        first = write_files(folder, args.n)
        files = ["--users", str(first["users"]), "--customers", str(first["customers"])]
        files += ["--deals", str(first["deals"])]
        print(f"directory import of {args.n:,} customers (fresh process each, incl. start-up)")
        for label in ("first import", "same again"):
            wall, cpu, rss, line = run(db, "directory", "import", *files)
            print(f"{label:22} {wall:7.2f} s  cpu {cpu:6.2f} s  peak RSS {rss:6.0f} MB  {line}")
        changed = folder / "changed"
        changed.mkdir(exist_ok=True)
        paths = write_files(changed, args.n, changed=True)
        wall, cpu, rss, line = run(
            db, "directory", "import", "--customers", str(paths["customers"])
        )
        print(
            f"{'10 % primary changes':22} {wall:7.2f} s  cpu {cpu:6.2f} s  peak RSS {rss:6.0f} MB  {line}"
        )


if __name__ == "__main__":
    main()
