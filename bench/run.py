"""The benchmark, one entry point (``make bench``): the sync against mbsync and imap-tools
(bench/sync_bench.py) and the report queries at 250k and 1M activities with the whole
activity_report notebook (bench/report_bench.py), in one run.

    .venv/bin/python bench/run.py                       # everything, 5 runs each (~15 min)
    .venv/bin/python bench/run.py --only reports        # the sync part kept from latest.json
    .venv/bin/python bench/run.py --quick               # a smoke run: small, 1 run, no README
    .venv/bin/python bench/run.py --readme              # and README.md's figures from it

Writes bench/results/latest.json (machine-readable: every sample, medians, ratios, goals
met) and bench/results/latest.md (the tables); --readme then runs bench/readme.py.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "results"


def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "mailops", "bench")
    return rev + ("+changes" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("sync", "reports"), help="run one part, keep the other")
    ap.add_argument("--runs", type=int, default=5, help="sync: runs of every case")
    ap.add_argument("-n", type=int, default=10_000, help="sync: messages of each big mailbox")
    ap.add_argument("--resync-mailboxes", type=int, default=100)
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000])
    ap.add_argument("--report-runs", type=int, default=5, help="reports: runs of every query")
    ap.add_argument("--quick", action="store_true", help="a smoke run: -n 500, 1 run, 20k")
    ap.add_argument("--out", default=str(OUT), help="folder of latest.json and latest.md")
    ap.add_argument("--readme", action="store_true", help="then update README.md's figures")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.n, args.resync_mailboxes = 1, 500, 10
        args.sizes, args.report_runs = [20_000], 1
        if args.out == str(OUT):  # never over the measured results
            args.out = tempfile.mkdtemp(prefix="mailops-bench-quick-")
        if args.readme:
            raise SystemExit("--quick figures are not for README.md")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    import readme
    import sync_bench

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    latest = out / "latest.json"
    previous: dict[str, Any] = json.loads(latest.read_text()) if latest.exists() else {}
    result: dict[str, Any] = {
        "command": shlex.join(["python", "bench/run.py", *sys.argv[1:]]),
        "commit": commit(),
        "sync": previous.get("sync"),
        "reports": previous.get("reports"),
    }
    if args.only != "reports":
        sync_args = argparse.Namespace(
            n=args.n,
            runs=args.runs,
            resync_mailboxes=args.resync_mailboxes,
            profile=False,
            keep=False,
        )
        result["sync"] = sync_bench.run(sync_args)
        result["sync"].update(command=result["command"], commit=result["commit"])
        print(readme.render_sync(result["sync"]), flush=True)
    if args.only != "sync":
        import report_bench

        result["reports"] = report_bench.run(args.sizes, args.report_runs, notebook=True)
        result["reports"].update(command=result["command"], commit=result["commit"])
        print(readme.render_reports(result["reports"]), flush=True)
    latest.write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "latest.md").write_text(readme.render(result) + "\n")
    print(f"\nwrote {latest} and {out / 'latest.md'}")
    if args.readme:
        text = readme.README.read_text()
        readme.README.write_text(readme.update(text, readme.render(result)))
        print(f"updated {readme.README}")


if __name__ == "__main__":
    main()
