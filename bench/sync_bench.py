"""Sync benchmark (not a test): mailops vs mbsync on the same local Dovecot mailbox.

Starts its own devserver under /tmp, seeds N messages (2-5 KB, a chosen share involving one
of 50 customers) by MULTIAPPEND, then times, in the same run and each in a fresh process:

- mailops full sync into a fresh DuckDB store (``sync_mailbox`` / ``sync_all``),
- mailops no-change resync of the same mailbox(es),
- mailops no-change resync of ``--resync-mailboxes`` mailboxes (default 100) at once,
- mbsync (isync) mirroring the same mailbox(es) into a Maildir on the same disk,

with peak RSS of each process (``os.wait4``). Prints a table and JSON with ratios.

    .venv/bin/python bench/sync_bench.py                       # 10,000 messages, 10% customer
    .venv/bin/python bench/sync_bench.py --customer-share 1.0 -n 10000 --runs 3
    .venv/bin/python bench/sync_bench.py --profile              # cProfile of the full sync

The "sessions kept" row is the ``--watch`` scheduler's case: the second of two rounds in one
process, whose sessions stayed logged in (``SessionPool``); its wall time includes the
first round and the start-up, so read its in-process column.
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
    t_sync = time.perf_counter() - t1
    t_close0 = time.perf_counter()
    store.close()  # DuckDB checkpoints its WAL into the file here
    out = summarize(results)
    out.update(
        import_s=t_import, open_s=t_open, sync_s=t_sync, close_s=time.perf_counter() - t_close0
    )
    print(json.dumps(out))


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS MB and stdout of CMD, a fresh process (GNU time reports the RSS:
    measuring from this big Python parent would count its pages in the forked child)."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        full = ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *cmd] if TIME else cmd
        t0 = time.perf_counter()
        done = subprocess.run(full, env=env, stdout=subprocess.PIPE)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"{cmd[:3]} failed with {done.returncode}")
        text = rss_file.read().strip().splitlines()
        peak = int(text[-1]) / 1024.0 if TIME and text else float("nan")
    return wall, peak, done.stdout.decode()


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
    from mailops.auth import password_ref
    from mailops.secrets import SecretStore
    from mailops.store import mailboxes as mailbox_store

    endpoints: dict[str, Any] = {}
    if smtp:
        endpoints = {
            "smtp_host": "127.0.0.1",
            "smtp_port": state.smtp_port,
            "smtp_security": "starttls",
        }
    mb = mailbox_store.insert(
        store,
        owner_user_id=owner,
        address=address,
        provider="generic",
        auth_kind="password",
        imap_host="127.0.0.1",
        imap_port=state.imaps_port,
        imap_security="ssl",
        ca_file=state.ca_file,
        state="connected",
        connected_at=connected_at or datetime.now(UTC).replace(tzinfo=None),
        **endpoints,
    )
    SecretStore(settings).put(password_ref(mb.id), password)
    mailbox_store.update(store, mb.id, secret_ref=password_ref(mb.id))
    return int(mb.id)


# -- main ------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=10_000, help="messages per mailbox")
    ap.add_argument("--customer-share", type=float, default=0.1)
    ap.add_argument("--mailboxes", type=int, default=1, help="mailboxes of N messages each")
    ap.add_argument("--resync-mailboxes", type=int, default=100, help="for the no-change test")
    ap.add_argument("--runs", type=int, default=1, help="repeat the timed steps; medians")
    ap.add_argument("--json", dest="json_out", help="also write the JSON here")
    ap.add_argument("--profile", action="store_true", help="cProfile the full sync (stderr)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--no-mbsync", action="store_true", help="mailops only (e.g. RSS at 100k)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    sys.path.insert(0, str(ROOT))
    from mailops.config import Settings
    from mailops.dev.devserver import DevServer
    from mailops.store import Store

    if not shutil.which("mbsync"):
        raise SystemExit("mbsync is not installed: apt-get install -y isync")
    tmp = Path(tempfile.mkdtemp(prefix="mailops-bench-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    big = [(f"big{i}@bench.example", f"pw-big{i}") for i in range(args.mailboxes)]
    small = [(f"small{i}@bench.example", f"pw-small{i}") for i in range(args.resync_mailboxes)]
    server = DevServer(str(tmp / "server"), users=dict(big + small))
    env = dict(
        os.environ, MAILOPS_KEYRING="0", MAILOPS_SECRET_KEY="bench-secret-key", PYTHONPATH=str(ROOT)
    )
    os.environ.update(MAILOPS_KEYRING="0", MAILOPS_SECRET_KEY="bench-secret-key")
    customers = [f"customer{k}@buyers.example" for k in range(50)]
    results: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {}
    detail: dict[str, dict] = {}

    def record(name: str, wall: float, peak: float, out: str = "") -> None:
        results.setdefault(name, []).append(wall)
        rss.setdefault(name, []).append(peak)
        if out.strip():
            detail[name] = json.loads(out.strip().splitlines()[-1])

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
        env["MAILOPS_SECRETS_DIR"] = str(tmp / f"{name}.secrets")
        return str(db)

    worker_cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    try:
        state = server.start()
        t = time.perf_counter()
        for k, (address, password) in enumerate(big):
            seed(state, address, password, args.n, args.customer_share, customers, 1000 + k)
        for k, (address, password) in enumerate(small):
            seed(state, address, password, 5, 0.4, customers, 5000 + k)
        seed_s = time.perf_counter() - t
        print(
            f"seeded {args.mailboxes} x {args.n} + {len(small)} x 5 messages in {seed_s:.1f}s",
            file=sys.stderr,
        )

        for run in range(args.runs):
            db = new_store("full", big)
            extra = ["--profile"] if args.profile and run == 0 else []
            record("mailops full sync", *run_measured([*worker_cmd, "--db", db, *extra], env))
            record("mailops no-change resync", *run_measured([*worker_cmd, "--db", db], env))

            if args.no_mbsync:
                continue
            maildir = tmp / f"maildir-{run}"
            shutil.rmtree(maildir, ignore_errors=True)
            maildir.mkdir()
            rc = tmp / "mbsyncrc"
            mbsync_rc(rc, state, big, maildir)
            record("mbsync full", *run_measured(["mbsync", "-c", str(rc), "-a", "-q"], env))
            record("mbsync no-change", *run_measured(["mbsync", "-c", str(rc), "-a", "-q"], env))
            if Path("/dev/shm").is_dir():  # the C client's floor: no fsync cost
                shm = Path(tempfile.mkdtemp(prefix="mailops-bench-", dir="/dev/shm"))
                try:
                    rc_shm = tmp / "mbsyncrc-shm"
                    mbsync_rc(rc_shm, state, big, shm)
                    record(
                        "mbsync full, Maildir on tmpfs",
                        *run_measured(["mbsync", "-c", str(rc_shm), "-a", "-q"], env),
                    )
                finally:
                    shutil.rmtree(shm, ignore_errors=True)

            if small:
                db100 = new_store("many", small)
                run_measured([*worker_cmd, "--db", db100], env)  # first sync, not timed
                name = f"mailops no-change resync, {len(small)} mailboxes"
                record(name, *run_measured([*worker_cmd, "--db", db100], env))
                record(
                    f"mailops no-change resync, {len(small)} mailboxes, sessions kept (--watch)",
                    *run_measured([*worker_cmd, "--db", db100, "--warm"], env),
                )
                rc100 = tmp / "mbsyncrc100"
                md100 = tmp / f"maildir100-{run}"
                shutil.rmtree(md100, ignore_errors=True)
                md100.mkdir()
                mbsync_rc(rc100, state, small, md100)
                run_measured(["mbsync", "-c", str(rc100), "-a", "-q"], env)
                record(
                    f"mbsync no-change, {len(small)} mailboxes",
                    *run_measured(["mbsync", "-c", str(rc100), "-a", "-q"], env),
                )
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in results.items()}
    peak = {k: max(v) for k, v in rss.items()}
    mb_full = med.get("mbsync full", float("nan"))
    shm_full = med.get("mbsync full, Maildir on tmpfs", float("nan"))
    ratios = {
        "full_vs_mbsync": med["mailops full sync"] / mb_full,
        "full_vs_mbsync_tmpfs": med["mailops full sync"] / shm_full,
        "full_in_process_vs_mbsync_tmpfs": detail["mailops full sync"]["sync_s"] / shm_full,
        "resync_many_in_process_s": detail.get(
            f"mailops no-change resync, {len(small)} mailboxes", {}
        ).get("sync_s"),
        "resync_many_warm_in_process_s": detail.get(
            f"mailops no-change resync, {len(small)} mailboxes, sessions kept (--watch)", {}
        ).get("sync_s"),
        "full_in_process_vs_mbsync": detail["mailops full sync"]["sync_s"] / mb_full,
    }
    table = [
        "| step | wall s (median) | in-process sync s | peak RSS MB | x mbsync full |",
        "|---|---:|---:|---:|---:|",
    ]
    for k in med:
        inproc = detail.get(k, {}).get("sync_s")
        table.append(
            f"| {k} | {med[k]:.2f} | {'' if inproc is None else f'{inproc:.2f}'} | {peak[k]:.0f} |"
            f" {med[k] / mb_full:.2f} |"
        )
    report = {
        "n": args.n,
        "customer_share": args.customer_share,
        "mailboxes": args.mailboxes,
        "resync_mailboxes": len(small),
        "runs": args.runs,
        "wall_s": med,
        "peak_rss_mb": peak,
        "ratios": ratios,
        "mailops_full": detail.get("mailops full sync"),
        "mailops_resync_many": detail.get(f"mailops no-change resync, {len(small)} mailboxes"),
    }
    print(
        f"\nmailops sync benchmark: {args.mailboxes} mailbox(es) x {args.n} messages,"
        f" {args.customer_share:.0%} customer mail, {args.runs} run(s), {os.cpu_count()} cores\n"
    )
    print("\n".join(table))
    print(
        f"\nfull sync / mbsync: {ratios['full_vs_mbsync']:.2f} (wall, incl. Python start-up);"
        f" {ratios['full_in_process_vs_mbsync']:.2f} (in-process sync time);"
        f" vs mbsync into tmpfs: {ratios['full_vs_mbsync_tmpfs']:.2f} /"
        f" {ratios['full_in_process_vs_mbsync_tmpfs']:.2f}"
    )
    print(json.dumps(report, indent=1, default=str))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
