"""A/B of two source trees on one seeded mailbox (not a test): is a change slower?

On a busy machine wall times of whole benchmark runs drift by 2x between runs; this seeds
ONE local Dovecot mailbox (``sync_bench.seed``: N messages, 10% customer mail), then runs
the full sync of ``sync_bench.py --worker`` into a fresh store for tree A and tree B in
alternating order, ROUNDS times, and prints the in-process sync time and the worker's CPU
time (user + sys, from ``os.wait4``; includes imports) with their medians. CPU time is the
figure to compare when the load is high.

    git worktree add /tmp/before <commit>     # or: git archive <commit> | tar -x -C /tmp/before
    .venv/bin/python bench/sync_ab.py --a /tmp/before --b . --rounds 6
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--a", required=True, help="tree A (e.g. the commit before the change)")
    ap.add_argument("--b", required=True, help="tree B (e.g. this worktree)")
    ap.add_argument("-n", type=int, default=10000, help="messages in the mailbox")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    trees = [str(Path(args.a).resolve()), str(Path(args.b).resolve())]
    sys.path.insert(0, str(HERE))
    import sync_bench as bench

    from mailops.config import Settings
    from mailops.dev.devserver import DevServer
    from mailops.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="mailops-ab-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    address, password = "ab0@bench.example", "pw-ab0"
    os.environ.update(MAILOPS_KEYRING="0", MAILOPS_SECRET_KEY="bench-secret-key")
    customers = [f"customer{k}@buyers.example" for k in range(50)]
    server = DevServer(str(tmp / "server"), users={address: password})
    state = server.start()
    try:
        bench.seed(state, address, password, args.n, 0.1, customers, 1000)

        def new_store(tree: str) -> tuple[str, str]:
            db, secrets_dir = tmp / "ab.duckdb", tmp / "ab.secrets"
            for p in (db, Path(f"{db}.wal")):
                p.unlink(missing_ok=True)
            shutil.rmtree(secrets_dir, ignore_errors=True)
            settings = Settings.load(db=str(db), secrets_dir=str(secrets_dir))
            store = Store(settings.db)
            for k, c in enumerate(customers):
                store.execute("INSERT INTO customers (id, name) VALUES (?, ?)", [f"c{k}", f"C{k}"])
                store.execute(
                    "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
                    " VALUES (?, ?, TRUE, TIMESTAMP '2000-01-01')",
                    [f"c{k}", c],
                )
            bench.connect_mailbox(store, settings, state, address, password)
            store.close()
            env = dict(os.environ, PYTHONPATH=tree, MAILOPS_SECRETS_DIR=str(secrets_dir))
            # the tree's own migrations run here, not inside the timed sync
            opener = f"from mailops.store import Store; Store({str(db)!r}).close()"
            subprocess.run([sys.executable, "-c", opener], check=True, env=env)
            return str(db), str(secrets_dir)

        results: dict[str, list[tuple[float, float]]] = {t: [] for t in trees}
        for rnd in range(args.rounds):
            for tree in trees if rnd % 2 == 0 else trees[::-1]:
                db, secrets_dir = new_store(tree)
                env = dict(os.environ, PYTHONPATH=tree, MAILOPS_SECRETS_DIR=secrets_dir)
                cmd = [sys.executable, f"{tree}/bench/sync_bench.py", "--worker", "--db", db]
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
                out = proc.stdout.read() if proc.stdout else ""
                _, _, usage = os.wait4(proc.pid, 0)
                detail = json.loads(out.strip().splitlines()[-1])
                cpu = usage.ru_utime + usage.ru_stime
                results[tree].append((detail["sync_s"], cpu))
                print(
                    f"round {rnd} {tree}: sync {detail['sync_s']:.3f} s, worker CPU {cpu:.2f} s,"
                    f" stored {detail['stored']} of {detail['examined']},"
                    f" load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        for label, tree in zip("AB", trees, strict=True):
            rows = results[tree]
            print(
                f"{label} {tree}: median sync {statistics.median(r[0] for r in rows):.3f} s,"
                f" median worker CPU {statistics.median(r[1] for r in rows):.2f} s"
            )
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
