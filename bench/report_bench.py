"""Report queries at CRM scale: `python bench/report_bench.py [--sizes 250000 1000000]`.

Builds stores of N activities with DuckDB's own generators (threads of 1-6 messages, both
directions, 50 sales people, N/20 customers, some messages on two customers of a deal) and
times every report query on each, median of --runs. The peer is the previous
``response_times`` (a Python walk over each (customer, thread) with ``itertuples``), run in
the same process on the smallest size; its ratio is printed. ``--notebook`` also runs the
whole activity_report notebook under papermill on each store and prints its time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from mailops.reports import Scope, activity, utcnow
from mailops.store import Store


def build(path: Path, n: int) -> Store:
    """A store of about N activities; the last 120 days before now."""
    store = Store(str(path))
    customers = max(n // 20, 10)
    now = utcnow()
    start = now - timedelta(days=120)
    with store.transaction():
        store.execute(
            "INSERT INTO users (id, email, name, role, team)"
            " SELECT 'u' || i, 'u' || i || '@corp.test', 'User ' || i,"
            " CASE WHEN i < 45 THEN 'sales' ELSE 'manager' END, 'team' || (i % 5)"
            " FROM range(50) t(i)"
        )
        store.execute(
            "INSERT INTO customers (id, name, owner_user_id)"
            " SELECT 'c' || i, 'Customer ' || i, 'u' || (i % 45) FROM range(?) t(i)",
            [customers],
        )
        store.execute(
            "INSERT INTO deals (id, name, owner_user_id) SELECT 'd' || i, 'Deal ' || i,"
            " 'u' || (i % 45) FROM range(?) t(i)",
            [customers // 2],
        )
        store.execute(
            "INSERT INTO deal_customers (deal_id, customer_id)"
            " SELECT 'd' || (i // 2), 'c' || i FROM range(?) t(i)",
            [customers],
        )
        # message i belongs to thread i // 6 when its position in the thread is below the
        # thread's length (1-6): about 3.5 messages a thread, as in real stores
        store.execute(
            "CREATE TEMP TABLE gen AS SELECT i, i // 6 AS t, i % 6 AS pos,"
            " hash(i // 6) % 6 + 1 AS len, hash(i // 6 * 7) % ? AS cust"
            " FROM range(?) r(i)",
            [customers, int(n / 3.5 * 6)],
        )
        store.execute("DELETE FROM gen WHERE pos >= len")
        store.execute(
            'INSERT INTO messages (id, subject, "references", in_reply_to, sent_at)'
            " SELECT 'm' || i || '@gen.test', 'Offer ' || t,"
            " CASE WHEN pos = 0 THEN [] ELSE ['m' || (t * 6) || '@gen.test'] END,"
            " CASE WHEN pos = 0 THEN NULL ELSE 'm' || (i - 1) || '@gen.test' END,"
            " ?::TIMESTAMP + to_seconds((hash(t) % 10000000)::DOUBLE + pos * (hash(i) % 200000))"
            " FROM gen",
            [start],
        )
        store.execute(
            "INSERT INTO activities (message_id, customer_id, user_id, direction, occurred_at)"
            " SELECT 'm' || i || '@gen.test', 'c' || cust, 'u' || (cust % 45),"
            " CASE WHEN (pos + hash(i) % 3) % 2 = 0 THEN 'inbound' ELSE 'outbound' END,"
            " ?::TIMESTAMP + to_seconds((hash(t) % 10000000)::DOUBLE + pos * (hash(i) % 200000))"
            " FROM gen",
            [start],
        )
        # every 25th message also on the co-customer of its deal (S4)
        store.execute(
            "INSERT INTO activities (message_id, customer_id, user_id, direction, occurred_at,"
            " match_kind) SELECT 'm' || i || '@gen.test', 'c' || xor(cust, 1), 'u' || (cust % 45),"
            " CASE WHEN (pos + hash(i) % 3) % 2 = 0 THEN 'inbound' ELSE 'outbound' END,"
            " ?::TIMESTAMP + to_seconds((hash(t) % 10000000)::DOUBLE + pos * (hash(i) % 200000)),"
            " 'co_customer' FROM gen WHERE i % 25 = 0 AND xor(cust, 1) < ?",
            [start, customers],
        )
        store.execute("DROP TABLE gen")
    store.execute("CHECKPOINT")
    return store


def python_response_times(scope: Scope) -> pd.DataFrame:
    """The previous implementation (kept here as the peer): all activities into pandas, a
    Python loop per (customer, thread), the period applied last."""
    acts = scope.store.query(
        "SELECT a.customer_id, a.user_id, a.direction, a.occurred_at, msg.subject,"
        ' coalesce(msg."references"[1], msg.in_reply_to, msg.id) AS thread'
        " FROM activities a JOIN messages msg ON msg.id = a.message_id"
        " WHERE a.unlinked_at IS NULL AND a.occurred_at IS NOT NULL"
        " ORDER BY a.customer_id, thread, a.occurred_at, a.direction"
    )
    out: list[dict[str, Any]] = []
    for _key, group in acts.groupby(["customer_id", "thread"], sort=False):
        pending = None
        for row in group.itertuples(index=False):
            if row.direction == "inbound":
                if pending is None:
                    pending = row
            elif pending is not None:
                out.append(
                    {
                        "asked_at": pending.occurred_at,
                        "hours": (row.occurred_at - pending.occurred_at).total_seconds() / 3600,
                    }
                )
                pending = None
    df = pd.DataFrame(out)
    if scope.since is not None and not df.empty:
        df = df[df["asked_at"] >= scope.since]
    return df


def timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return times, result


def queries(store: Store, now: datetime) -> dict[str, Callable[[], Any]]:
    month = Scope(store, since=now - timedelta(days=30), now=now)
    everything = Scope(store, now=now)
    return {
        "volumes by sales person (30 d)": lambda: activity.volumes(month, "sales_person"),
        "volumes by customer (30 d)": lambda: activity.volumes(month, "customer"),
        "volumes by deal (30 d)": lambda: activity.volumes(month, "deal"),
        "volumes by week (all)": lambda: activity.volumes(everything, "week"),
        "response times (30 d)": lambda: activity.response_times(month),
        "response times, business hours (30 d)": lambda: activity.response_times(
            month, business_hours=True, tz="Europe/Berlin"
        ),
        "response times (all)": lambda: activity.response_times(everything),
        "unanswered (3 d)": lambda: activity.unanswered(month, days=3),
        "most active deals (30 d)": lambda: activity.most_active_deals(month),
    }


def notebook_run(db: Path, out: Path) -> tuple[float, float]:
    """Wall time and peak RSS (MB) of the whole activity_report notebook on DB."""
    code = (
        "import resource, time; from mailops.notebook import run_report;"
        "t = time.perf_counter();"
        f"run_report('activity_report', reports_dir={str(out)!r});"
        "print(time.perf_counter() - t,"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    env = {**os.environ, "MAILOPS_DB": str(db)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"notebook run failed: {res.stderr.strip().splitlines()[-1:]}")
    wall, rss = res.stdout.split()[-2:]
    return float(wall), float(rss)


#: the issue's goals: every query under this at the largest store, the whole notebook too
QUERY_GOAL_S = 1.0
NOTEBOOK_GOAL_S = 10.0


def run(sizes: list[int], runs: int, notebook: bool) -> dict[str, Any]:
    """Every report query on a store of each size (medians of RUNS), the previous Python
    response times on the smallest, the whole notebook; the goals judged at the largest."""
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, n in enumerate(sizes):
            t = time.perf_counter()
            path = Path(tmp) / f"r{n}.duckdb"
            store = build(path, n)
            acts = int(store.scalar("SELECT count(*) FROM activities"))
            size: dict[str, Any] = {
                "size": n,
                "activities": acts,
                "build_s": time.perf_counter() - t,
                "queries": [],
            }
            print(f"store of {acts:,} activities", file=sys.stderr)
            now = utcnow()
            for name, fn in queries(store, now).items():
                times, df = timed(fn, runs)
                size["queries"].append(
                    {
                        "name": name,
                        "median_s": statistics.median(times),
                        "min_s": min(times),
                        "max_s": max(times),
                        "rows": len(df),
                    }
                )
                if name == "response times (30 d)" and i == 0:
                    month = Scope(store, since=now - timedelta(days=30), now=now)
                    peer_times, old = timed(lambda m=month: python_response_times(m), 1)
                    assert len(old) == len(df), (len(old), len(df))
                    size["peer"] = {
                        "name": "previous Python response times (30 d)",
                        "median_s": peer_times[0],
                        "rows": len(old),
                    }
            store.close()
            if notebook:
                wall, rss = notebook_run(path, Path(tmp) / "reports")
                size["notebook"] = {"wall_s": wall, "rss_mb": rss}
            out.append(size)
    last = out[-1]
    return {
        "started": started.isoformat(timespec="seconds"),
        "runs": runs,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "sizes": out,
        "goal": {"query_max_s": QUERY_GOAL_S, "notebook_max_s": NOTEBOOK_GOAL_S},
        "queries_met": all(q["median_s"] < QUERY_GOAL_S for q in last["queries"]),
        "notebook_met": (
            last["notebook"]["wall_s"] < NOTEBOOK_GOAL_S if "notebook" in last else None
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000])
    ap.add_argument("--runs", type=int, default=5, help="medians of this many runs")
    ap.add_argument("--notebook", action="store_true", help="also time the whole notebook")
    ap.add_argument("--json", dest="json_out", help="also write the result as JSON here")
    args = ap.parse_args()
    import readme

    result = run(args.sizes, args.runs, args.notebook)
    print(readme.render_reports(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
