"""Big-message benchmark (not a test): peak RSS of a sync of a mailbox holding ten 45 MB emails.

Starts its own devserver under /tmp, seeds one mailbox with N customer emails of SIZE MB
each (one PDF-like attachment of random bytes, base64 on the wire, different per message so
content addressing cannot share them), and a second mailbox with one small customer email
(the baseline). Each is synced into a fresh store in a fresh process; the peak RSS is that
process's VmHWM (and GNU time's maximum RSS). S12 asks for a peak under about twice the
largest message plus the baseline.

    .venv/bin/python bench/big_message_bench.py                 # 10 x 45 MB
    .venv/bin/python bench/big_message_bench.py -n 3 --size-mb 20
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MB = 1024 * 1024
CUSTOMER = "buyer@customer.example"


def big_email(i: int, to: str, size_mb: float) -> bytes:
    attachment = os.urandom(int(size_mb * MB * 0.74))  # base64 + lines: ~SIZE_MB on the wire
    b64 = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    now = datetime.now(UTC)
    head = (
        f"From: {CUSTOMER}\r\nTo: {to}\r\nSubject: signed contract {i}\r\n"
        f"Date: {format_datetime(now)}\r\nMessage-ID: <big-{i}-{os.getpid()}@customer.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Dear Sam,\r\nthe signed contract and the floor plans.\r\n"
        f'--b1\r\nContent-Type: application/pdf; name="contract-{i}.pdf"\r\n'
        f'Content-Disposition: attachment; filename="contract-{i}.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    return head + b64 + b"--b1--\r\n"


def small_email(to: str) -> bytes:
    return (
        f"From: {CUSTOMER}\r\nTo: {to}\r\nSubject: hello\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\nMessage-ID: <small@customer.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nSee you tomorrow.\r\n"
    ).encode()


def seed(state, address: str, password: str, messages: list[bytes]) -> None:
    import imapclient

    ctx = ssl.create_default_context(cafile=state.ca_file)
    c = imapclient.IMAPClient(
        "127.0.0.1", port=state.imaps_port, ssl=True, ssl_context=ctx, timeout=300
    )
    c.login(address, password)
    for raw in messages:
        c.append("INBOX", raw)
    c.logout()


WORKER = r"""
import json, re, sys, time
t0 = time.perf_counter()
from mailops.config import Settings
from mailops.store import Store, blobs
from mailops.sync import summarize, sync_all
s = Settings.load(db=sys.argv[1])
store = Store(s.db)
t1 = time.perf_counter()
out = summarize(sync_all(store, s, trigger="bench"))
out["sync_s"] = time.perf_counter() - t1
out["blobs"] = blobs.stats(store)
store.close()
out["vmhwm_kb"] = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps(out))
"""


def run_worker(db: str, env: dict[str, str]) -> tuple[dict, float, float]:
    timer = shutil.which("time", path="/usr/bin:/bin")
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as f:
        cmd = [sys.executable, "-c", WORKER, db]
        if timer:
            cmd = [timer, "-f", "%M", "-o", f.name, *cmd]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"worker failed ({done.returncode})")
        lines = f.read().strip().splitlines()
        gnu_peak = int(lines[-1]) / 1024 if timer and lines else float("nan")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall, gnu_peak


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=10, help="big messages in the mailbox")
    ap.add_argument("--size-mb", type=float, default=45.0, help="size of each on the wire")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    import sync_bench as bench

    from mailops.config import Settings
    from mailops.dev.devserver import DevServer
    from mailops.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="mailops-bigbench-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    users = {"big@bench.example": "pw-big", "small@bench.example": "pw-small"}
    server = DevServer(str(tmp / "server"), users=users)
    env = dict(
        os.environ, MAILOPS_KEYRING="0", MAILOPS_SECRET_KEY="bench-secret-key", PYTHONPATH=str(ROOT)
    )
    os.environ.update(MAILOPS_KEYRING="0", MAILOPS_SECRET_KEY="bench-secret-key")

    def new_store(name: str, address: str, password: str) -> str:
        db = tmp / f"{name}.duckdb"
        settings = Settings.load(db=str(db), secrets_dir=str(tmp / f"{name}.secrets"))
        store = Store(settings.db)
        store.execute("INSERT INTO customers (id, name) VALUES ('c1', 'Buyer')")
        store.execute(
            "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
            " VALUES ('c1', ?, TRUE, TIMESTAMP '2000-01-01')",
            [CUSTOMER],
        )
        bench.connect_mailbox(store, settings, state, address, password)
        store.close()
        env["MAILOPS_SECRETS_DIR"] = str(tmp / f"{name}.secrets")
        return str(db)

    try:
        state = server.start()
        t = time.perf_counter()
        largest = 0
        for i in range(args.n):  # one at a time: the seeder never holds them all
            raw = big_email(i, "big@bench.example", args.size_mb)
            largest = max(largest, len(raw))
            seed(state, "big@bench.example", "pw-big", [raw])
            del raw
        seed(state, "small@bench.example", "pw-small", [small_email("small@bench.example")])
        print(
            f"seeded {args.n} x {largest / MB:.1f} MB in {time.perf_counter() - t:.1f}s",
            file=sys.stderr,
        )
        base, base_wall, base_gnu = run_worker(new_store("small", *list(users.items())[1]), env)
        heavy, wall, gnu = run_worker(new_store("big", *list(users.items())[0]), env)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    peak = heavy["vmhwm_kb"] / 1024
    baseline = base["vmhwm_kb"] / 1024
    bound = baseline + 2 * largest / MB
    report = {
        "messages": args.n,
        "largest_message_mb": round(largest / MB, 1),
        "stored": heavy["stored"],
        "errors": heavy.get("errors"),
        "sync_s": round(heavy["sync_s"], 2),
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(peak, 1),
        "peak_rss_gnu_time_mb": round(gnu, 1),
        "baseline_rss_mb": round(baseline, 1),
        "baseline_gnu_time_mb": round(base_gnu, 1),
        "bound_mb": round(bound, 1),
        "within_bound": peak <= bound,
        "blobs": heavy["blobs"],
    }
    print(
        f"\nbig-message sync: {args.n} x {largest / MB:.1f} MB, stored {heavy['stored']},"
        f" {heavy['sync_s']:.1f} s; peak RSS {peak:.0f} MB (baseline {baseline:.0f} MB,"
        f" +{peak - baseline:.0f} MB = {(peak - baseline) / (largest / MB):.2f} x the largest"
        f" message; S12 bound {bound:.0f} MB: {'met' if peak <= bound else 'NOT met'})"
    )
    print(json.dumps(report, indent=1))
    if heavy["stored"] != args.n:
        raise SystemExit("not every big message was stored")


if __name__ == "__main__":
    main()
