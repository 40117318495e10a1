"""Many mailboxes, nothing new (not a test): `mailops sync` of M unchanged mailboxes.

Starts its own devserver under /tmp with M accounts (default 100), seeds each INBOX with a
few messages (``sync_bench.seed``), connects all M to one fresh store and syncs them once
(not timed). Then times, ROUNDS times each (>= 5), in a fresh process as a user (or cron)
runs it:

- ``mailops sync`` (the CLI, all connected mailboxes; wall time incl. Python start-up, and
  the CLI's own ``duration_s`` per mailbox summed up for reference),
- ``mbsync -a`` on the same M accounts into a Maildir (when mbsync is installed: apt
  package ``isync``), synced once before,

and a raw-socket floor (TLS + LOGIN + LIST-STATUS of every mailbox on bare sockets, 4 at
once: what the server costs), and prints the medians (wall, and the client's CPU time,
which says more on a loaded machine), all runs and the ratios. ``--tree DIR`` adds another source tree
(e.g. ``git worktree add /tmp/before <commit>``) timed in alternating order, for an A/B.

    .venv/bin/python bench/many_mailboxes_bench.py                    # 100 mailboxes, 7 rounds
    .venv/bin/python bench/many_mailboxes_bench.py -m 100 --tree /tmp/before
    .venv/bin/python bench/many_mailboxes_bench.py --parallel 4       # MAILOPS_SYNC_PARALLEL
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def timed(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds of the child (user + sys, ``os.wait4``) and its stdout.
    CWD: ``python -m`` puts the working directory before PYTHONPATH, so a tree's CLI is
    run from inside that tree."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, cwd=cwd)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(cmd[:6])} failed ({proc.returncode}):\n{tail}")
    return wall, usage.ru_utime + usage.ru_stime, out.decode()


def raw_floor(state: Any, users: list[tuple[str, str]], concurrency: int) -> float:
    """What the server costs: TLS + LOGIN + LIST-STATUS + LOGOUT of every mailbox on bare
    sockets, CONCURRENCY at a time, no parsing (the floor any client pays here)."""
    ctx = ssl.create_default_context(cafile=state.ca_file)
    items = b"(SPECIAL-USE STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))"

    def one(user: tuple[str, str]) -> None:
        raw = socket.create_connection(("127.0.0.1", state.imaps_port))
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b'a LOGIN "%s" "%s"\r\n' % (user[0].encode(), user[1].encode()))
            while not f.readline().startswith(b"a "):
                pass
            s.sendall(b'b LIST "" "*" RETURN ' + items + b"\r\nc LOGOUT\r\n")
            while not f.readline().startswith(b"b "):
                pass

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, users))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-m", "--mailboxes", type=int, default=100)
    ap.add_argument("--messages", type=int, default=5, help="messages per INBOX")
    ap.add_argument("--rounds", type=int, default=7, help="timed runs per tool (>= 5)")
    ap.add_argument("--tree", action="append", default=[], help="another source tree (A/B)")
    ap.add_argument("--parallel", type=int, help="MAILOPS_SYNC_PARALLEL for the runs")
    ap.add_argument("--no-mbsync", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import sync_bench

    from mailops.config import Settings
    from mailops.dev.devserver import DevServer
    from mailops.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="mailops-many-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    users = [(f"m{i:03d}@bench.example", f"pw-m{i:03d}") for i in range(args.mailboxes)]
    server = DevServer(str(tmp / "server"), users=dict(users))
    os.environ.update(MAILOPS_KEYRING="0", MAILOPS_SECRET_KEY="bench-secret-key")
    trees = [str(ROOT), *(str(Path(t).resolve()) for t in args.tree)]
    mbsync = None if args.no_mbsync else shutil.which("mbsync")
    times: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    detail: dict[str, dict] = {}
    try:
        state = server.start()
        t = time.perf_counter()
        customers = [f"customer{k}@buyers.example" for k in range(50)]
        for k, (address, password) in enumerate(users):
            sync_bench.seed(state, address, password, args.messages, 0.4, customers, 5000 + k)
        print(f"seeded {len(users)} mailboxes in {time.perf_counter() - t:.1f} s", file=sys.stderr)

        stores: dict[str, dict[str, str]] = {}
        for n, tree in enumerate(trees):
            db, secrets = tmp / f"many{n}.duckdb", tmp / f"many{n}.secrets"
            settings = Settings.load(db=str(db), secrets_dir=str(secrets))
            store = Store(settings.db)
            for k, c in enumerate(customers):
                store.execute("INSERT INTO customers (id, name) VALUES (?, ?)", [f"c{k}", f"C{k}"])
                store.execute(
                    "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
                    " VALUES (?, ?, TRUE, TIMESTAMP '2000-01-01')",
                    [f"c{k}", c],
                )
            now = datetime.now(UTC).replace(tzinfo=None)
            for address, password in users:
                sync_bench.connect_mailbox(
                    store, settings, state, address, password, connected_at=now
                )
            store.close()
            env = dict(os.environ, PYTHONPATH=tree, MAILOPS_SECRETS_DIR=str(secrets))
            # as installed: bytecode cached (this session's shells set PYTHONDONTWRITEBYTECODE,
            # which made every fresh process compile ~70 modules again: ~0.1-0.2 s)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            if args.parallel:
                env["MAILOPS_SYNC_PARALLEL"] = str(args.parallel)
            stores[tree] = env
            first, _, out = timed([sys.executable, "-m", "mailops.cli", "--db", str(db), "sync",
                                "--json"], env, tree)  # fmt: skip
            print(f"first sync ({tree}): {first:.2f} s", file=sys.stderr)
        if mbsync:
            rc, maildir = tmp / "mbsyncrc", tmp / "maildir"
            maildir.mkdir()
            sync_bench.mbsync_rc(rc, state, users, maildir)
            timed([mbsync, "-c", str(rc), "-a", "-q"], dict(os.environ))
        raw_floor(state, users, 4)  # warm
        for rnd in range(max(5, args.rounds)):
            order = [*trees, *(["mbsync"] if mbsync else []), "floor"]
            for what in order if rnd % 2 == 0 else order[::-1]:
                if what == "floor":
                    label = "raw-socket floor (TLS+LOGIN+LIST-STATUS, 4 at once, in-process)"
                    times.setdefault(label, []).append(raw_floor(state, users, 4))
                    continue
                if what == "mbsync" and mbsync:
                    wall, cpu, _ = timed([mbsync, "-c", str(rc), "-a", "-q"], dict(os.environ))
                    times.setdefault("mbsync -a (isync)", []).append(wall)
                    cpus.setdefault("mbsync -a (isync)", []).append(cpu)
                    continue
                env = stores[what]
                db = tmp / f"many{trees.index(what)}.duckdb"
                cmd = [sys.executable, "-m", "mailops.cli", "--db", str(db), "sync", "--json"]
                wall, cpu, out = timed(cmd, env, what)
                label = "mailops sync" + ("" if what == trees[0] else f" ({what})")
                times.setdefault(label, []).append(wall)
                cpus.setdefault(label, []).append(cpu)
                try:
                    detail[label] = json.loads(out)
                except ValueError:
                    detail[label] = {}
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"\nno-change sync of {len(users)} mailboxes ({args.messages} messages each), fresh"
        f" process each run, {len(times['mailops sync'])} runs, {os.cpu_count()} cores,"
        f" load {os.getloadavg()[0]:.1f}\n"
    )
    print("| tool | median wall s | median client CPU s | all runs (wall) s |")
    print("|---|---:|---:|---|")
    for name, wall_s in med.items():
        cpu_s = f"{statistics.median(cpus[name]):.2f}" if name in cpus else ""
        runs = " ".join(f"{x:.2f}" for x in times[name])
        print(f"| {name} | {wall_s:.2f} | {cpu_s} | {runs} |")
    ours = med["mailops sync"]
    for name, wall_s in med.items():
        if name != "mailops sync":
            print(f"mailops sync / {name}: {ours / wall_s:.2f}")
    last = detail.get("mailops sync") or {}
    if isinstance(last, dict) and last.get("summary"):
        summary = last["summary"]
        print(f"last run: {summary.get('mailboxes')} mailboxes, {summary.get('failed')} failed")


if __name__ == "__main__":
    main()
