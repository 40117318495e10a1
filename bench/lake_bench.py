"""D1 scale-out benchmark (not a test): sync workers on a DuckLake vs the embedded file.

Starts its own devserver (Dovecot) and PostgreSQL under /tmp, seeds ``--mailboxes``
devserver mailboxes (default 1,000) with a month of mail of realistic, skewed sizes
(log-normal, median ``--median`` messages, 10% of it customer mail), then for each
configuration -- the embedded DuckDB file with one worker, a lake with 1, 2 and 4 workers
(``--workers``):

1. connects every mailbox, then **backfill** (once per store, by the most workers):
   ``mailops worker --once --cadence 0`` processes until every mailbox is synced;
2. for each W: delivers new mail to ``--changed`` of the mailboxes (1-3 messages each, dated now),
   then a **steady pass**: W workers again, every mailbox due (the 15-minute cadence's
   work, done at once); then a pass with nothing due gives the workers' start-up, which a
   long-running worker pays once (the throughput figures leave it out);
3. reads the end-to-end lag of the new mail: stored (activities.created_at) minus
   delivered (its Date), during the pass -- a real deployment adds the wait for the next
   pass (half the cadence on average).

Prints per configuration: wall times, mailbox syncs per hour, the mailboxes W workers serve
at a 15-minute cadence (per worker and per core of this machine: Dovecot and PostgreSQL
share its cores), the lag, and the lake's write-lock time per mailbox sync (its one shared
resource; measured in-process) -- and from those, how many machines 100,000 mailboxes need.

    .venv/bin/python bench/lake_bench.py                    # 1,000 mailboxes, 1/2/4 workers
    .venv/bin/python bench/lake_bench.py --mailboxes 200 --workers 1,2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from sync_bench import connect_mailbox, make_message  # noqa: E402

CADENCE_S = 15 * 60
CORES = os.cpu_count() or 1


def _append(state: Any, address: str, password: str, messages: list[bytes]) -> None:
    import ssl

    import imapclient

    ctx = ssl.create_default_context(cafile=state.ca_file)
    c = imapclient.IMAPClient(
        "127.0.0.1", port=state.imaps_port, ssl=True, ssl_context=ctx, timeout=120
    )
    c.login(address, password)
    try:
        for i in range(0, len(messages), 500):
            c.multiappend(
                "INBOX", [{"msg": m, "flags": [b"\\Seen"]} for m in messages[i : i + 500]]
            )
    finally:
        c.logout()


def seed_month(state: Any, users: dict[str, str], customers: list[str], median: int) -> int:
    """A month of mail per mailbox, sizes log-normal around MEDIAN (a few big mailboxes,
    many small); returns how many messages."""
    rng = random.Random(15)
    now = datetime.now(UTC).replace(tzinfo=None)
    jobs = []
    for n, (address, password) in enumerate(users.items()):
        k = max(1, min(20 * median, int(rng.lognormvariate(math.log(median), 0.9))))
        msgs = []
        for i in range(k):
            when = now - timedelta(days=28 * (k - i) / k, minutes=10)
            customer = rng.choice(customers) if rng.random() < 0.1 else None
            msgs.append(make_message(rng, n * 100_000 + i, address, customer, when))
        jobs.append((address, password, msgs))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda j: _append(state, *j), jobs))
    return sum(len(j[2]) for j in jobs)


def deliver_new(
    state: Any, users: dict[str, str], customers: list[str], share: float, tag: int
) -> int:
    rng = random.Random(tag)
    now = datetime.now(UTC).replace(tzinfo=None)
    jobs = []
    for n, (address, password) in enumerate(users.items()):
        if rng.random() >= share:
            continue
        msgs = [
            make_message(rng, 10**9 + tag * 10**6 + n * 10 + i, address, rng.choice(customers), now)
            for i in range(rng.randint(1, 3))
        ]
        jobs.append((address, password, msgs))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda j: _append(state, *j), jobs))
    return sum(len(j[2]) for j in jobs)


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """Run in-process code (Settings, the store) under a configuration's environment."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def prepare_store(
    spec: str, env: dict[str, str], state: Any, users: dict[str, str], customers: list[str]
) -> None:
    from mailops.config import Settings
    from mailops.store import Store

    with _environ(env):
        settings = Settings.load(db=spec)
        with Store(spec) as store, store.transaction():
            store.execute("INSERT INTO users (id, email) VALUES ('bench', 'bench@corp.test')")
            store.executemany(
                "INSERT INTO customers (id, name) VALUES (?, ?)",
                [[f"c{i}", c] for i, c in enumerate(customers)],
            )
            store.executemany(
                "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
                " VALUES (?, ?, TRUE, TIMESTAMP '2000-01-01')",
                [[f"c{i}", c] for i, c in enumerate(customers)],
            )
            for address, password in users.items():
                connect_mailbox(store, settings, state, address, password, owner="bench")


def run_workers(n: int, env: dict[str, str], cadence: str = "0") -> tuple[float, list[int], float]:
    """N `mailops worker --once --cadence CADENCE` processes at once: wall seconds, exit
    codes, the largest peak RSS (MB)."""
    cmd = [sys.executable, "-m", "mailops.cli", "worker", "--once", "--cadence", cadence]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(n)
    ]
    codes, rss = [], 0.0
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        codes.append(p.returncode)
        rss = max(rss, usage.ru_maxrss / 1024)
        if p.returncode not in (0,) and p.stderr is not None:
            sys.stderr.write(p.stderr.read().decode(errors="replace")[-2000:])
    return time.perf_counter() - start, codes, rss


def lag_and_counts(spec: str, env: dict[str, str], since: datetime) -> dict[str, Any]:
    from mailops.store import Store

    with _environ(env), Store(spec, read_only=True, migrate=False) as s:
        lags = [
            float(r[0])
            for r in s.rows(
                "SELECT epoch(a.created_at) - epoch(m.sent_at) FROM activities a"
                " JOIN messages m ON m.id = a.message_id WHERE m.sent_at >= ?",
                [since],
            )
        ]
        counts = {
            t: int(s.scalar(f"SELECT count(*) FROM {t}"))
            for t in ("messages", "message_places", "activities", "audit_ledger")
        }
    lags.sort()
    return {
        "lag_median_s": statistics.median(lags) if lags else None,
        "lag_p95_s": lags[int(0.95 * (len(lags) - 1))] if lags else None,
        "new_activities": len(lags),
        **counts,
    }


def lock_cost(spec: str, env: dict[str, str], sample: int) -> dict[str, float]:
    """An in-process steady pass over SAMPLE mailboxes (new mail delivered to the same share
    as in the steady passes): the write lock's time per mailbox sync -- the one thing all
    workers of a lake share, so what bounds the mailboxes of one lake."""
    from mailops.config import Settings
    from mailops.store import Store, mailboxes
    from mailops.sync import sync_all

    with _environ(env):
        settings = Settings.load(db=spec)
        with Store(spec) as s:
            boxes = mailboxes.all_mailboxes(s)[:sample]
            start = time.perf_counter()
            sync_all(s, settings, mailboxes=boxes)
            wall = time.perf_counter() - start
            lock = s._write_lock
            held = lock.held_s if lock is not None else 0.0
            return {
                "sample": len(boxes),
                "wall_per_mailbox_s": wall / max(1, len(boxes)),
                "lock_held_per_mailbox_s": held / max(1, len(boxes)),
                "lock_commits_per_mailbox": (lock.acquired if lock else 0) / max(1, len(boxes)),
            }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mailboxes", type=int, default=1000)
    ap.add_argument("--median", type=int, default=40, help="median messages per mailbox")
    ap.add_argument("--customers", type=int, default=500)
    ap.add_argument("--changed", type=float, default=0.1, help="share of mailboxes with new mail")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--no-file", action="store_true", help="skip the embedded store")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from mailops.dev.devserver import DevServer
    from mailops.dev.postgres import PostgresServer

    root = tempfile.mkdtemp(prefix="mailops-lakebench-", dir="/tmp")
    os.chmod(root, 0o755)
    users = {f"w{i:05d}@example.test": f"pw-{i}" for i in range(args.mailboxes)}
    customers = [f"cust{i}@buyer.test" for i in range(args.customers)]
    server = DevServer(root, users=users)
    state = server.start()
    pg = PostgresServer()
    pg.start()
    work = Path(tempfile.mkdtemp(prefix="lakebench-work-"))
    key_dir = Path(tempfile.mkdtemp(prefix="lakebench-key-"))
    results: list[dict[str, Any]] = []
    try:
        t = time.perf_counter()
        total = seed_month(state, users, customers, args.median)
        print(
            f"seeded {args.mailboxes} mailboxes, {total} messages in {time.perf_counter() - t:.0f} s",
            flush=True,
        )
        counts = [int(w) for w in args.workers.split(",")]
        stores = ([] if args.no_file else [("file", [1])]) + [("lake", counts)]
        tag = 0
        for kind, worker_counts in stores:
            if kind == "file":
                spec = str(work / "file.duckdb")
            else:
                spec = f"ducklake:{pg.new_database('bench')}?data={work / 'lake'}"
            env = {
                **os.environ,
                "MAILOPS_STORE": spec,
                "MAILOPS_SECRETS_DIR": str(work / f"secrets-{kind}"),
                "MAILOPS_SECRET_KEY_FILE": str(key_dir / "key"),
                "MAILOPS_KEYRING": "0",
                "PYTHONPATH": str(ROOT),
            }
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled modules kept
            prepare_store(spec, env, state, users, customers)
            first = max(worker_counts)  # one backfill per store, by the most workers
            backfill, codes1, rss1 = run_workers(first, env)
            print(f"{kind}: backfill by {first} worker(s) {backfill:.1f} s", flush=True)
            for workers in worker_counts:
                tag += 1
                since = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
                since -= timedelta(seconds=1)
                new = deliver_new(state, users, customers, args.changed, tag)
                steady, codes2, rss2 = run_workers(workers, env)
                idle, codes3, _ = run_workers(workers, env, cadence="15")  # nothing due
                row: dict[str, Any] = {
                    "store": kind,
                    "workers": workers,
                    "mailboxes": args.mailboxes,
                    "backfill_s": round(backfill, 1),
                    "backfill_workers": first,
                    "steady_s": round(steady, 2),
                    "startup_s": round(idle, 2),
                    "new_messages": new,
                    "exit_codes": sorted(set(codes1 + codes2 + codes3)),
                    "peak_rss_mb": round(max(rss1, rss2)),
                    **lag_and_counts(spec, env, since),
                }
                # a long-running worker pays its start-up (imports, opening the store) once
                syncs_per_hour = args.mailboxes / max(0.01, steady - idle) * 3600
                row["mailbox_syncs_per_hour"] = round(syncs_per_hour)
                row["served_at_15min"] = round(syncs_per_hour * CADENCE_S / 3600)
                row["served_per_worker"] = round(row["served_at_15min"] / workers)
                row["served_per_core"] = round(row["served_at_15min"] / CORES)
                results.append(row)
                print(json.dumps(row), flush=True)
            if kind == "lake":
                tag += 1
                sampled = dict(list(users.items())[:300])
                deliver_new(state, sampled, customers, args.changed, tag)
                cost = {k: round(v, 4) for k, v in lock_cost(spec, env, 300).items()}
                for row in results:
                    if row["store"] == "lake":
                        row.update(cost)
    finally:
        server.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(key_dir, ignore_errors=True)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: list[dict[str, Any]]) -> None:
    print()
    print(
        f"| store | workers | backfill | steady pass (start-up) | syncs/hour | served at 15 min | per worker | per core ({CORES}) | lag median / p95 | lock per sync | RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        lag = (
            f"{r['lag_median_s']:.1f} / {r['lag_p95_s']:.1f} s"
            if r["lag_median_s"] is not None
            else "-"
        )
        lock = (
            f"{r['lock_held_per_mailbox_s'] * 1000:.0f} ms"
            if "lock_held_per_mailbox_s" in r
            else "-"
        )
        print(
            f"| {r['store']} | {r['workers']} | {r['backfill_s']} s ({r['backfill_workers']} w) | {r['steady_s']} s ({r['startup_s']} s) |"
            f" {r['mailbox_syncs_per_hour']:,} | {r['served_at_15min']:,} | {r['served_per_worker']:,} |"
            f" {r['served_per_core']:,} | {lag} | {lock} | {r['peak_rss_mb']} MB |"
        )
    lakes = [r for r in results if r["store"] == "lake"]
    if not lakes:
        return
    best = max(lakes, key=lambda r: r["served_at_15min"])
    per_machine = best["served_at_15min"]
    lock = max(r.get("lock_held_per_mailbox_s", 0.0) for r in lakes) or 1e-9
    lake_cap = CADENCE_S / lock
    print()
    print(
        f"One {CORES}-core machine ({best['workers']} workers) serves {per_machine:,} mailboxes at a"
        f" 15-minute cadence: 100,000 mailboxes need {math.ceil(100_000 / per_machine)} such"
        f" machines for the sync work. The lake's write lock is held {lock * 1000:.0f} ms per"
        f" mailbox sync, so one lake takes at most {lake_cap:,.0f} mailboxes at that cadence"
        f" ({math.ceil(100_000 / lake_cap)} lake(s) for 100,000)."
    )


if __name__ == "__main__":
    main()
