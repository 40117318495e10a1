"""S1 push latency: SMTP delivery -> notification row while `mailops sync --watch` runs.

Starts its own devserver (Dovecot + SMTP submission -> LMTP) under /tmp, a fresh store with
one customer and M sales mailboxes (the customer's deal owned by another user, so every
delivery notifies two people), runs `mailops sync --watch` in a separate process (IMAP IDLE
on every INBOX), then, one at a time, has the customer send an email through the SMTP
submission port to a random mailbox and times:

- ``observed``: from the SMTP server accepting the DATA to a second process (this one)
  seeing the notification row in the store (polled every 20 ms, read-only);
- ``committed``: from the same moment to the row's ``created_at`` (the sync's commit).

Prints median / p95 / max of both. `--no-idle` runs the watcher without IDLE (polling
only): the latency is then the polling interval, minutes, so use a short `--timeout`.

    .venv/bin/python bench/watch_bench.py -n 20 --mailboxes 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import smtplib
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=20, help="deliveries")
    ap.add_argument("--mailboxes", type=int, default=3, help="sales mailboxes under IDLE")
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between deliveries")
    ap.add_argument("--timeout", type=float, default=30.0, help="give up on one delivery after")
    ap.add_argument("--no-idle", action="store_true", help="watch without IDLE (polling only)")
    ap.add_argument("--json", dest="json_out", help="also write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import sync_bench as bench

    from mailops.config import Settings
    from mailops.dev.devserver import DevServer
    from mailops.reports import open_reader
    from mailops.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="mailops-watchbench-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    sales = [(f"sales{i}@bench.example", f"pw-sales{i}") for i in range(args.mailboxes)]
    customer = ("buyer@buyers.example", "pw-buyer")
    server = DevServer(str(tmp / "server"), users=dict([*sales, customer]))
    state = server.start()
    db = tmp / "watch.duckdb"
    env = dict(
        os.environ,
        MAILOPS_KEYRING="0",
        MAILOPS_SECRET_KEY="bench-secret-key",
        MAILOPS_DB=str(db),
        MAILOPS_SECRETS_DIR=str(tmp / "secrets"),
        PYTHONPATH=str(ROOT),
    )
    os.environ.update({k: env[k] for k in ("MAILOPS_KEYRING", "MAILOPS_SECRET_KEY")})
    proc: subprocess.Popen[str] | None = None
    try:
        settings = Settings.load(db=str(db), secrets_dir=str(tmp / "secrets"))
        store = Store(settings.db)
        store.execute(
            "INSERT INTO users (id, email, name) VALUES ('u-deal', 'deal@bench.example', 'Deal Owner')"
        )
        store.execute(
            "INSERT INTO customers (id, name, owner_user_id) VALUES ('c-1', 'Bea Buyer', 'u-0')"
        )
        store.execute(
            "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
            " VALUES ('c-1', ?, TRUE, TIMESTAMP '2000-01-01')",
            [customer[0]],
        )
        store.execute(
            "INSERT INTO deals (id, name, owner_user_id, project, unit) VALUES ('d-1', 'd', 'u-deal', 'Harbour View', 'B-1')"
        )
        store.execute("INSERT INTO deal_customers (deal_id, customer_id) VALUES ('d-1', 'c-1')")
        for i, (address, password) in enumerate(sales):
            store.execute(
                "INSERT INTO users (id, email, name) VALUES (?, ?, ?)",
                [f"u-{i}", address, f"Sales {i}"],
            )
            bench.connect_mailbox(
                store,
                settings,
                state,
                address,
                password,
                owner=f"u-{i}",
                smtp=True,
                connected_at=_now(),
            )
        store.close()

        cmd = [sys.executable, "-m", "mailops.cli", "sync", "--watch"]
        if args.no_idle:
            cmd.append("--no-idle")
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        ready = threading.Event()
        idle_on: set[str] = set()

        def read_stderr() -> None:
            assert proc is not None and proc.stderr is not None
            for line in proc.stderr:
                if line.startswith("IDLE on"):
                    idle_on.add(line.split()[2])
                    if len(idle_on) == len(sales):
                        ready.set()
                elif line.startswith("syncing every") and args.no_idle:
                    ready.set()

        threading.Thread(target=read_stderr, daemon=True).start()
        if not ready.wait(60):
            raise SystemExit("the watcher did not get every mailbox into IDLE within 60 s")
        time.sleep(1.0)  # the first (scheduled) sync round is over

        ctx = ssl.create_default_context(cafile=state.ca_file)
        observed: list[float] = []
        committed: list[float] = []
        missed = 0
        rng = random.Random(7)
        with smtplib.SMTP("127.0.0.1", state.smtp_port, timeout=30) as smtp:
            smtp.starttls(context=ctx)
            smtp.login(*customer)
            for k in range(args.n):
                to = rng.choice(sales)[0]
                msg = EmailMessage()
                msg["From"], msg["To"], msg["Subject"] = customer[0], to, f"bench {k}"
                msg["Date"] = format_datetime(datetime.now(UTC))
                msg["Message-ID"] = make_msgid(domain="buyers.example")
                msg.set_content("Is the unit still available?\n")
                smtp.send_message(msg)  # returns after the server accepted DATA (LMTP done)
                t0, w0 = time.monotonic(), _now()
                seen = None
                while time.monotonic() - t0 < args.timeout:
                    reader = open_reader(str(db))
                    rows = reader.rows(
                        "SELECT min(n.created_at) FROM notifications n JOIN messages m ON m.id = n.message_id"
                        " WHERE m.subject = ?",
                        [f"bench {k}"],
                    )
                    if rows and rows[0][0] is not None:
                        seen = rows[0][0]
                        break
                    time.sleep(0.02)
                if seen is None:
                    missed += 1
                else:
                    observed.append(time.monotonic() - t0)
                    committed.append(max(0.0, (seen - w0).total_seconds()))
                time.sleep(args.gap)
        figures = {
            "deliveries": args.n,
            "mailboxes": args.mailboxes,
            "idle": not args.no_idle,
            "missed": missed,
        }
        for name, vals in (("observed_s", observed), ("committed_s", committed)):
            if vals:
                figures[name] = {
                    "median": round(statistics.median(vals), 3),
                    "p95": round(_pct(vals, 0.95), 3),
                    "max": round(max(vals), 3),
                }
        print(
            f"S1 delivery -> notification row, {len(observed)}/{args.n} deliveries to {args.mailboxes} mailbox(es)"
            f" ({'IMAP IDLE' if not args.no_idle else 'polling only'}):"
        )
        for name in ("observed_s", "committed_s"):
            f = figures.get(name)
            if isinstance(f, dict):
                print(
                    f"  {name[:-2]:<10} median {f['median']:.3f} s   p95 {f['p95']:.3f} s   max {f['max']:.3f} s"
                )
        if missed:
            print(f"  missed (none within {args.timeout:.0f} s): {missed}")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(figures, indent=2))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
