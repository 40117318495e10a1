"""What a D1 lease costs (not a test): PostgreSQL lease rows (``mailops.lease.PgLeases``)
against the project's own temp-dir PostgreSQL (``mailops.dev.postgres``), on 127.0.0.1.

Prints, each as the median of ROUNDS rounds:
* claim + release of one mailbox, one worker: milliseconds per claim;
* K workers (threads, one connection each) racing for the same M mailboxes (each tries
  them all, starting at its own offset): claims per second, and that every mailbox went
  to exactly one worker;
* renewal of N held leases (the renewer's one UPDATE): milliseconds;
* what the leases of 100,000 mailboxes at a 15-minute cadence cost PostgreSQL: claims per
  second needed, and the share of one connection's time they take.

    .venv/bin/python bench/lease_bench.py [--rounds 5] [--mailboxes 2000] [--workers 4]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time


def _race(dsn: str, base: int, workers: int, mailboxes: int) -> tuple[list[int], float]:
    """WORKERS threads (a connection each) try to claim the same MAILBOXES mailboxes, each
    from its own offset: (the mailboxes won, seconds)."""
    from mailops.lease import MailboxBusy, PgLeases

    wins: list[int] = []
    lock = threading.Lock()
    go = threading.Barrier(workers + 1)

    def worker(n: int) -> None:
        mine = PgLeases(dsn)
        mine.holder(0)  # connected before the start
        go.wait()
        got = []
        for k in range(mailboxes):
            mailbox_id = base + (k + n * mailboxes // workers) % mailboxes
            try:
                got.append(mine.acquire(mailbox_id).mailbox_id)
            except MailboxBusy:
                pass
        with lock:
            wins.extend(got)
        mine.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return wins, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mailboxes", type=int, default=2000, help="M: mailboxes per round")
    ap.add_argument("--workers", type=int, default=4, help="K: racing workers")
    ap.add_argument("--held", type=int, default=1000, help="N: leases renewed at once")
    args = ap.parse_args()

    from mailops.dev.postgres import PostgresServer
    from mailops.lease import PgLeases

    server = PostgresServer()
    st = server.start()
    try:
        print(f"PostgreSQL {st.bindir} on 127.0.0.1:{st.port} ({st.root})")
        one: list[float] = []
        race: list[float] = []
        renew: list[float] = []
        for r in range(args.rounds):
            dsn = server.new_database("bench")
            leases = PgLeases(dsn)
            leases.holder(0)  # connect, create the table
            t0 = time.perf_counter()
            for i in range(args.mailboxes):
                leases.acquire(i).release()
            one.append((time.perf_counter() - t0) / args.mailboxes * 1000)

            base = 10_000_000 * (r + 1)
            wins, seconds = _race(dsn, base, args.workers, args.mailboxes)
            race.append(args.workers * args.mailboxes / seconds)
            assert sorted(wins) == [base + i for i in range(args.mailboxes)], "not exactly once"

            held = [leases.acquire(20_000_000 * (r + 1) + i) for i in range(args.held)]
            t0 = time.perf_counter()
            leases._renew(held)  # what the renewer thread does every ttl/3
            renew.append((time.perf_counter() - t0) * 1000)
            assert not any(x.lost for x in held)
            leases.close()
            print(
                f"  round {r + 1}: claim+release {one[-1]:.2f} ms; {args.workers} racing:"
                f" {race[-1]:,.0f} attempts/s; renew {args.held}: {renew[-1]:.1f} ms"
            )
        ms = statistics.median(one)
        print(f"claim + release, one worker: {ms:.2f} ms (median of {args.rounds})")
        print(
            f"{args.workers} workers racing for {args.mailboxes} mailboxes: "
            f"{statistics.median(race):,.0f} claim attempts/s, each mailbox to exactly one"
        )
        print(f"renewing {args.held} held leases (one UPDATE): {statistics.median(renew):.1f} ms")
        per_s = 100_000 / (15 * 60)
        print(
            f"100,000 mailboxes every 15 min: {per_s:.0f} claims/s + releases;"
            f" at {ms:.2f} ms each that is {per_s * ms / 10:.1f}% of one connection's time"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
