"""Sync benchmark (not a test): mailops against mbsync and imap-tools, one local Dovecot.

Starts its own devserver under /tmp and seeds, by MULTIAPPEND, two mailboxes of N messages
(2-5 KB; 10% and 100% of them with one of 50 customers) and ``--resync-mailboxes`` (100)
mailboxes of 5. Then, ``--runs`` times (default 5), interleaved, each step a fresh process:

- full sync of the 10% and the 100% mailbox: ``mailops sync --json`` (the CLI a user runs)
  into a fresh DuckDB store; mbsync (isync) into a fresh Maildir on the same disk (and, for
  the 10% case, on tmpfs); imap-tools into a fresh SQLite file (bench/peers.py); the
  IMAPClient BODY.PEEK[] floor (every message read, nothing kept);
- no-change resync of the 10% mailbox by each (mailops, mbsync, imap-tools);
- the 100 unchanged mailboxes by each (and mailops' ``--watch`` round with sessions kept).

Wall time (median, min, max), CPU time (user + sys) and peak RSS (GNU time) of each; the
ratio of mailops' median to each peer's and the issue's goal met or not. Missing peers are
installed first (``ensure_peers``: apt for isync, pip with the lock for imap-tools).

    .venv/bin/python bench/sync_bench.py                  # 10,000 messages, 5 runs
    .venv/bin/python bench/sync_bench.py -n 2000 --runs 1 --resync-mailboxes 10
    .venv/bin/python bench/sync_bench.py --profile        # + cProfile of one full sync

``make bench`` (bench/run.py) runs this and bench/report_bench.py and writes
bench/results/latest.json and latest.md; bench/readme.py puts the table into README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIME = shutil.which("time", path="/usr/bin:/bin")
WORDS = [
    "unit",
    "apartment",
    "offer",
    "price",
    "floor",
    "plan",
    "balcony",
    "viewing",
    "contract",
    "deposit",
    "mortgage",
    "schedule",
    "handover",
    "keys",
    "parking",
    "storage",
    "garden",
    "terrace",
    "notary",
    "bank",
    "approval",
    "the",
    "a",
    "of",
    "to",
    "and",
    "for",
    "with",
    "on",
    "at",
    "by",
    "from",
    "please",
    "thanks",
    "regards",
    "meeting",
    "tomorrow",
    "next",
    "week",
]


# -- seeding ---------------------------------------------------------------------------
def make_message(
    rng: random.Random, i: int, mailbox: str, customer: str | None, when: datetime
) -> bytes:
    size = rng.randint(2000, 5000)
    others = [
        "news@shop.example",
        "team@corp.example",
        "noreply@system.example",
        "friend@mail.example",
    ]
    if customer is None:
        frm, to, cc = rng.choice(others), [mailbox], []
    elif rng.random() < 0.5:
        frm, to, cc = (
            customer,
            [mailbox],
            (["assistant@corp.example"] if rng.random() < 0.3 else []),
        )
    else:
        frm, to, cc = mailbox, [customer], []
    head = (
        f"From: {frm}\r\nTo: {', '.join(to)}\r\n"
        + (f"Cc: {', '.join(cc)}\r\n" if cc else "")
        + f"Subject: Message {i} about the {rng.choice(WORDS)} {rng.choice(WORDS)}\r\n"
        f"Date: {format_datetime(when.replace(tzinfo=UTC))}\r\n"
        f"Message-ID: <bench-{i}-{rng.getrandbits(40):x}@bench.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    body: list[str] = []
    n = len(head)
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(12)) + "\r\n"
        body.append(line)
        n += len(line)
    return (head + "".join(body)).encode()


def seed(
    state, address: str, password: str, n: int, share: float, customers: list[str], seed_no: int
) -> None:
    import ssl

    import imapclient

    rng = random.Random(seed_no)
    now = datetime.now(UTC).replace(tzinfo=None)
    ctx = ssl.create_default_context(cafile=state.ca_file)
    c = imapclient.IMAPClient(
        "127.0.0.1", port=state.imaps_port, ssl=True, ssl_context=ctx, timeout=120
    )
    c.login(address, password)
    c.select_folder("INBOX")
    batch = []
    for i in range(n):
        when = now - timedelta(days=20 * (n - i) / max(1, n), minutes=5)
        customer = rng.choice(customers) if rng.random() < share else None
        raw = make_message(rng, i, address, customer, when)
        batch.append({"msg": raw, "flags": [b"\\Seen"], "date": when.replace(tzinfo=UTC)})
        if len(batch) == 500:
            c.multiappend("INBOX", batch)
            batch = []
    if batch:
        c.multiappend("INBOX", batch)
    c.logout()


# -- workers (run in a fresh process so imports and RSS are honest) ---------------------
def worker(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    from mailops.config import Settings
    from mailops.store import Store
    from mailops.sync import summarize, sync_all

    t_import = time.perf_counter() - t0
    settings = Settings.load(db=args.db)
    t_open0 = time.perf_counter()
    store = Store(settings.db)
    t_open = time.perf_counter() - t_open0
    t1 = time.perf_counter()
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
    if args.warm:  # the scheduler's case: sessions kept from the previous round
        from mailops.sync import SessionPool

        pool = SessionPool()
        sync_all(store, settings, trigger="bench", pool=pool)
        t1 = time.perf_counter()
        results = sync_all(store, settings, trigger="bench", pool=pool)
        t_sync = time.perf_counter() - t1
        pool.close()
        store.close()
        out = summarize(results)
        out.update(import_s=t_import, sync_s=t_sync)
        print(json.dumps(out))
        return
    results = sync_all(store, settings, trigger="bench")
    if args.profile:
        prof.disable()
        stats = pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative")
        stats.print_stats(30)
        stats.sort_stats("tottime").print_stats(25)
        print(where_the_time_goes(stats), file=sys.stderr)
    t_sync = time.perf_counter() - t1
    t_close0 = time.perf_counter()
    store.close()  # DuckDB checkpoints its WAL into the file here
    out = summarize(results)
    out.update(
        import_s=t_import, open_s=t_open, sync_s=t_sync, close_s=time.perf_counter() - t_close0
    )
    print(json.dumps(out))


#: (share of the profile, group) by where a function lives: the first that matches
PROFILE_GROUPS = [
    ("mailops/store/", "store (DuckDB calls)"),
    ("duckdb", "store (DuckDB calls)"),
    ("mailops/imap/", "IMAP reading and the FETCH parser"),
    ("imapclient", "IMAP reading and the FETCH parser"),
    ("imaplib", "IMAP reading and the FETCH parser"),
    ("ssl.py", "TLS and the socket"),
    ("socket.py", "TLS and the socket"),
    ("<method 'read' of '_ssl", "TLS and the socket"),
    ("<method 'recv", "TLS and the socket"),
    ("mailops/parse", "message and header parsing"),
    ("email/", "message and header parsing"),
    ("mailops/match", "decisions (match)"),
    ("mailops/", "other mailops"),
]


def where_the_time_goes(stats: Any) -> str:
    """The profile's own time (tottime) summed by PROFILE_GROUPS, largest first."""
    groups: dict[str, float] = {}
    others: list[tuple[float, str]] = []
    total = 0.0
    for (path, _line, name), row in stats.stats.items():
        own = row[2]
        total += own
        label = f"{path} {name}"
        group = next((g for key, g in PROFILE_GROUPS if key in label), "other")
        groups[group] = groups.get(group, 0.0) + own
        if group == "other":
            others.append((own, f"{Path(path).name}:{name}"))
    lines = [f"where the time goes (own time, {total:.2f} s profiled):"]
    for group, secs in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {secs / total:5.1%}  {secs:6.2f} s  {group}")
    top = ", ".join(f"{label} {secs:.2f} s" for secs, label in sorted(others, reverse=True)[:6])
    return "\n".join([*lines, f"  largest of other: {top}"])


def run_measured(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall seconds, peak RSS MB, CPU seconds (user + sys) and stdout of CMD in a fresh
    process. GNU time reports RSS and CPU: measured from this big Python parent, the forked
    child's pages would count."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        full = ["/usr/bin/time", "-f", "%M %U %S", "-o", rss_file.name, *cmd] if TIME else cmd
        t0 = time.perf_counter()
        done = subprocess.run(full, env=env, stdout=subprocess.PIPE)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:4])} failed with {done.returncode}")
        text = rss_file.read().strip().splitlines()
    out: dict[str, Any] = {"wall_s": wall, "rss_mb": None, "cpu_s": None}
    if TIME and text:
        kb, user, system = text[-1].split()
        out.update(rss_mb=int(kb) / 1024.0, cpu_s=float(user) + float(system))
    out["stdout"] = done.stdout.decode()
    return out


def mbsync_rc(path: Path, state, users: list[tuple[str, str]], maildir: Path) -> None:
    blocks = []
    for n, (address, password) in enumerate(users):
        (maildir / str(n)).mkdir(parents=True, exist_ok=True)
        blocks.append(
            f"""IMAPAccount acc{n}
Host 127.0.0.1
Port {state.imaps_port}
User {address}
Pass {password}
SSLType IMAPS
CertificateFile {state.ca_file}
AuthMechs LOGIN

IMAPStore remote{n}
Account acc{n}

MaildirStore local{n}
Path {maildir}/{n}/
Inbox {maildir}/{n}/INBOX
SubFolders Verbatim

Channel ch{n}
Far :remote{n}:
Near :local{n}:
Patterns INBOX
Create Near
Sync Pull
SyncState *
"""
        )
    path.write_text("\n".join(blocks))


def connect_mailbox(
    store: Any,
    settings: Any,
    state: Any,
    address: str,
    password: str,
    *,
    owner: str = "bench",
    smtp: bool = False,
    connected_at: datetime | None = None,
) -> int:
    """A connected password mailbox of the devserver in a bench store (its secret in the
    store's secrets folder); the other benches use it too. Returns the mailbox id."""
    from mailops.dev.stand_ins import password_mailbox

    extra = {"connected_at": connected_at} if connected_at else {}
    mb = password_mailbox(
        store, settings, state, address, password, owner=owner, smtp=smtp, **extra
    )
    return int(mb.id)


# -- the run ---------------------------------------------------------------------------
MAILOPS = "mailops"
MBSYNC = "mbsync"
IMAP_TOOLS = "imap-tools"
FLOOR = "IMAPClient BODY.PEEK[] floor"
MBSYNC_TMPFS = "mbsync, Maildir on tmpfs (no fsync)"
WARM = "mailops, sessions kept (--watch)"
#: the peers the goals name; mailops' ratio to each is printed
PEERS = (MBSYNC, IMAP_TOOLS, FLOOR)

#: case id -> (title, goal text, goal): {"ratio": {peer: at most}} or {"max_s": seconds}
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "full_10": (
        "full sync, {n:,} messages, 10% customer mail",
        "≤ 0.25× mbsync and ≤ 0.25× imap-tools",
        {"ratio": {MBSYNC: 0.25, IMAP_TOOLS: 0.25}},
    ),
    "full_100": (
        "full sync, {n:,} messages, 100% customer mail",
        "≤ 0.5× mbsync",
        {"ratio": {MBSYNC: 0.5}},
    ),
    "resync": ("no-change resync, fresh process", "≤ 0.15 s", {"max_s": 0.15}),
    "many": (
        "{m} unchanged mailboxes, fresh process",
        "≤ 1.0 s",
        {"max_s": 1.0},
    ),
}


def versions() -> dict[str, str]:
    import duckdb

    done = subprocess.run(["mbsync", "--version"], capture_output=True, text=True)
    out = {
        "python": sys.version.split()[0],
        "duckdb": duckdb.__version__,
        "mbsync": (done.stdout or done.stderr).strip(),
    }
    try:
        from importlib.metadata import version

        out["imap-tools"] = version("imap-tools")
        out["imapclient"] = version("imapclient")
    except Exception:  # noqa: BLE001 - a version is only a label here
        pass
    return out


def ensure_peers() -> None:
    """Install what the benchmark compares against when it is missing: mbsync (Debian package
    isync, through scripts/install-system-deps.sh: apt as root) and imap-tools (PyPI, the
    version the lock pins, into this interpreter's environment)."""
    if not shutil.which("mbsync"):
        print("mbsync is missing: installing the Debian package isync", file=sys.stderr)
        subprocess.run([str(ROOT / "scripts" / "install-system-deps.sh"), "isync"], check=True)
    try:
        import imap_tools  # noqa: F401
    except ImportError:
        print("imap-tools is missing: installing it (constraints.txt)", file=sys.stderr)
        lock = ROOT / "constraints.txt"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-c", str(lock), "imap-tools"],
            check=True,
        )


def summary_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in rows]
    cpus = [r["cpu_s"] for r in rows if r.get("cpu_s") is not None]
    rss = [r["rss_mb"] for r in rows if r.get("rss_mb") is not None]
    inproc = [r["in_process_s"] for r in rows if r.get("in_process_s") is not None]
    return {
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "cpu_s": statistics.median(cpus) if cpus else None,
        "rss_mb": max(rss) if rss else None,
        "in_process_s": statistics.median(inproc) if inproc else None,
        "runs": rows,
    }


def judge(case: str, tools: dict[str, dict[str, Any]]) -> tuple[dict[str, float], bool | None]:
    """mailops' ratio to each peer (medians of wall time) and whether the goal is met."""
    ours = tools.get(MAILOPS)
    if ours is None:
        return {}, None
    ratios = {
        t: ours["median_s"] / tools[t]["median_s"]
        for t in PEERS
        if t in tools and tools[t]["median_s"] > 0
    }
    goal = CASES[case][2]
    if "max_s" in goal:
        return ratios, ours["median_s"] <= goal["max_s"]
    if not all(t in ratios for t in goal["ratio"]):
        return ratios, None
    return ratios, all(ratios[t] <= limit for t, limit in goal["ratio"].items())


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every case, ARGS.runs times, interleaved; the samples, summaries, ratios and verdicts."""
    sys.path.insert(0, str(ROOT))
    from mailops.config import Settings
    from mailops.dev.devserver import DevServer
    from mailops.store import Store

    ensure_peers()
    tmp = Path(tempfile.mkdtemp(prefix="mailops-bench-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    u10 = ("full10@bench.example", "pw-full10")
    u100 = ("full100@bench.example", "pw-full100")
    small = [(f"small{i}@bench.example", f"pw-small{i}") for i in range(args.resync_mailboxes)]
    server = DevServer(str(tmp / "server"), users=dict([u10, u100, *small]))
    env = dict(
        os.environ, MAILOPS_KEYRING="0", MAILOPS_SECRET_KEY="bench-secret-key", PYTHONPATH=str(ROOT)
    )
    os.environ.update(MAILOPS_KEYRING="0", MAILOPS_SECRET_KEY="bench-secret-key")
    customers = [f"customer{k}@buyers.example" for k in range(50)]
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {c: {} for c in CASES}

    def record(case: str, tool: str, m: dict[str, Any], in_process: float | None = None) -> None:
        row = {k: m[k] for k in ("wall_s", "rss_mb", "cpu_s")}
        row["in_process_s"] = in_process
        samples[case].setdefault(tool, []).append(row)

    def new_store(name: str, users: list[tuple[str, str]]) -> str:
        db = tmp / f"{name}.duckdb"
        for p in (db, Path(f"{db}.wal")):
            p.unlink(missing_ok=True)
        shutil.rmtree(tmp / f"{name}.secrets", ignore_errors=True)
        settings = Settings.load(db=str(db), secrets_dir=str(tmp / f"{name}.secrets"))
        store = Store(settings.db)
        for k, c in enumerate(customers):
            store.execute(
                "INSERT INTO customers (id, name) VALUES (?, ?)", [f"c{k}", f"Customer {k}"]
            )
            store.execute(
                "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
                " VALUES (?, ?, TRUE, TIMESTAMP '2000-01-01')",
                [f"c{k}", c],
            )
        now = datetime.now(UTC).replace(tzinfo=None)
        for address, password in users:
            connect_mailbox(store, settings, state, address, password, connected_at=now)
        store.close()
        return str(db)

    def mailops(db: str, expect: int | None = None) -> tuple[dict[str, Any], float]:
        """`mailops sync --json` as a user runs it: a fresh process, the CLI's own imports."""
        run_env = dict(env, MAILOPS_SECRETS_DIR=db.removesuffix(".duckdb") + ".secrets")
        cmd = [sys.executable, "-m", "mailops.cli", "--db", db, "sync", "--json"]
        m = run_measured(cmd, run_env)
        out = json.loads(m["stdout"])
        summary = out["summary"]
        if summary["failed"] or summary["exit_code"]:
            raise SystemExit(f"mailops sync failed: {summary}")
        if expect is not None and summary["examined"] != expect:
            raise SystemExit(f"mailops examined {summary['examined']}, expected {expect}")
        return m, max((r["duration_s"] for r in out["mailboxes"]), default=0.0)

    def peer(kind: str, users: list[tuple[str, str]], db: Path, expect: int) -> dict[str, Any]:
        spec = tmp / f"{db.name}.json"
        spec.write_text(
            json.dumps(
                {
                    "host": "127.0.0.1",
                    "port": state.imaps_port,
                    "ca_file": state.ca_file,
                    "users": users,
                    "db": str(db),
                }
            )
        )
        m = run_measured([sys.executable, str(HERE / "peers.py"), kind, str(spec)], env)
        m["out"] = json.loads(m["stdout"].strip().splitlines()[-1])
        if m["out"]["fetched"] != expect:
            raise SystemExit(f"{kind} fetched {m['out']['fetched']}, expected {expect}")
        return m

    def mbsync(rc: Path) -> dict[str, Any]:
        return run_measured(["mbsync", "-c", str(rc), "-a", "-q"], env)

    def settle() -> None:
        """Before every no-change step: a resync comes minutes after the last sync, not in
        the same second. mbsync sleeps until the clock ticks when its Maildir changed in the
        current second (1.05 s of its 1.06 s resync right after the full sync, 0.02 s CPU)."""
        time.sleep(1.2)

    worker_cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    try:
        state = server.start()
        t = time.perf_counter()
        seed(state, *u10, args.n, 0.1, customers, 1000)
        seed(state, *u100, args.n, 1.0, customers, 2000)
        for k, (address, password) in enumerate(small):
            seed(state, address, password, 5, 0.4, customers, 5000 + k)
        seed_s = time.perf_counter() - t
        print(
            f"seeded 2 x {args.n:,} + {len(small)} x 5 messages in {seed_s:.1f}s", file=sys.stderr
        )
        if args.profile:  # cProfile of one full sync on stderr, not timed
            db = new_store("profile", [u10])
            run_env = dict(env, MAILOPS_SECRETS_DIR=str(tmp / "profile.secrets"))
            subprocess.run([*worker_cmd, "--db", db, "--profile"], env=run_env, check=True)

        # the many-mailbox stores: first syncs once, not timed
        many_db = new_store("many", small)
        mailops(many_db)
        rc_many = tmp / "mbsyncrc-many"
        mbsync_rc(rc_many, state, small, tmp / "maildir-many")
        mbsync(rc_many)
        it_many = tmp / "many.sqlite"
        peer("imap-tools", small, it_many, 5 * len(small))

        for run_no in range(args.runs):
            print(f"run {run_no + 1} of {args.runs}", file=sys.stderr)
            for case, user in (("full_10", u10), ("full_100", u100)):
                db = new_store(case, [user])
                m, inproc = mailops(db, expect=args.n)
                record(case, MAILOPS, m, inproc)
                if case == "full_10":
                    settle()
                    m, inproc = mailops(db, expect=0)
                    record("resync", MAILOPS, m, inproc)
                maildir = tmp / f"maildir-{case}"
                shutil.rmtree(maildir, ignore_errors=True)
                maildir.mkdir()
                rc = tmp / f"mbsyncrc-{case}"
                mbsync_rc(rc, state, [user], maildir)
                record(case, MBSYNC, mbsync(rc))
                if case == "full_10":
                    settle()
                    record("resync", MBSYNC, mbsync(rc))
                    if Path("/dev/shm").is_dir():  # the C client's floor: no fsync cost
                        shm = Path(tempfile.mkdtemp(prefix="mailops-bench-", dir="/dev/shm"))
                        try:
                            rc_shm = tmp / "mbsyncrc-shm"
                            mbsync_rc(rc_shm, state, [user], shm)
                            record(case, MBSYNC_TMPFS, mbsync(rc_shm))
                        finally:
                            shutil.rmtree(shm, ignore_errors=True)
                it_db = tmp / f"{case}.sqlite"
                it_db.unlink(missing_ok=True)
                m = peer("imap-tools", [user], it_db, args.n)
                record(case, IMAP_TOOLS, m, m["out"]["sync_s"])
                if case == "full_10":
                    settle()
                    m = peer("imap-tools", [user], it_db, 0)
                    record("resync", IMAP_TOOLS, m, m["out"]["sync_s"])
                m = peer("floor", [user], tmp / "floor", args.n)
                record(case, FLOOR, m, m["out"]["sync_s"])
            # many unchanged mailboxes, each tool in a fresh process
            settle()
            m, _ = mailops(many_db, expect=0)
            record("many", MAILOPS, m)
            run_env = dict(env, MAILOPS_SECRETS_DIR=str(tmp / "many.secrets"))
            m = run_measured([*worker_cmd, "--db", many_db, "--warm"], run_env)
            record("many", WARM, m, json.loads(m["stdout"].strip().splitlines()[-1])["sync_s"])
            record("many", MBSYNC, mbsync(rc_many))
            m = peer("imap-tools", small, it_many, 0)
            record("many", IMAP_TOOLS, m, m["out"]["sync_s"])
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    cases = []
    for case, (title, goal_text, goal) in CASES.items():
        tools = {tool: summary_of(rows) for tool, rows in samples[case].items()}
        ratios, met = judge(case, tools)
        cases.append(
            {
                "id": case,
                "title": title.format(n=args.n, m=len(small)),
                "goal": goal,
                "goal_text": goal_text,
                "met": met,
                "ratios": ratios,
                "tools": tools,
            }
        )
    return {
        "n": args.n,
        "runs": args.runs,
        "resync_mailboxes": len(small),
        "seed_s": seed_s,
        "started": started.isoformat(timespec="seconds"),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "versions": versions(),
        "cases": cases,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=10_000, help="messages of each big mailbox")
    ap.add_argument("--resync-mailboxes", type=int, default=100, help="for the many-mailbox case")
    ap.add_argument("--runs", type=int, default=5, help="repeat every case; medians")
    ap.add_argument("--json", dest="json_out", help="also write the result as JSON here")
    ap.add_argument("--profile", action="store_true", help="cProfile one full sync (stderr)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    import readme

    result = run(args)
    print(readme.render_sync(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
