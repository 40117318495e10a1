"""The wire, alone (not a test): the headers-first FETCH of N messages, four ways.

Starts its own devserver under /tmp, seeds one INBOX of N messages (``sync_bench.seed``:
2-5 KB, 10% customer mail), and times reading the sync's header FETCH (``UID FLAGS
INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (...)]``, in batches of ``--batch`` UIDs
as the sync asks) on one logged-in session, ROUNDS times each, in alternating order:

- ``raw socket floor``: the command on a bare TLS socket, bytes read until the tagged OK,
  nothing parsed (what any client must at least spend),
- ``lean reader``: ``mailops.imap.commands.fetch`` (``fetch_parser.read_fetch``),
- ``old path``: imaplib's response loop + the regex parser with ``strptime`` (mailops
  before issue 14),
- ``imapclient``: ``IMAPClient.fetch`` (its general tokenizer).

Prints each median (and the other runs), the bytes read, and ratios to the floor and to the
old path. ``--body`` times ``BODY.PEEK[]`` instead of the headers.

    .venv/bin/python bench/fetch_bench.py                 # 10,000 messages, 7 rounds
    .venv/bin/python bench/fetch_bench.py -n 2000 --rounds 5 --body
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


# -- mailops before issue 14 (for the A/B): imaplib's loop + regexes + strptime ------------
_UID_RE = re.compile(rb"UID (\d+)")
_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
_DATE_RE = re.compile(rb'INTERNALDATE "([^"]+)"')
_SIZE_RE = re.compile(rb"RFC822\.SIZE (\d+)")
_LITERAL_KEY_RE = re.compile(rb"(BODY\[[^\]]*\](?:<\d+>)?) \{\d+\}$")


def old_parse_fetch(data: list[Any]) -> dict[int, dict[bytes, Any]]:
    out: dict[int, dict[bytes, Any]] = {}
    i, n = 0, len(data)
    while i < n:
        item = data[i]
        i += 1
        literal = key = None
        if isinstance(item, tuple):
            meta, literal = item[0], item[1]
            k = _LITERAL_KEY_RE.search(meta)
            if k is None:
                raise ValueError("unexpected literal in FETCH")
            key = k.group(1)
            if i < n and isinstance(data[i], bytes):
                meta = meta + b" " + data[i]
                i += 1
        elif isinstance(item, bytes):
            if item == b")":
                continue
            meta = item
        m = _UID_RE.search(meta)
        if m is None:
            raise ValueError("FETCH without UID")
        rec: dict[bytes, Any] = {}
        if (f := _FLAGS_RE.search(meta)) is not None:
            rec[b"FLAGS"] = tuple(f.group(1).split())
        if (d := _DATE_RE.search(meta)) is not None:
            rec[b"INTERNALDATE"] = datetime.strptime(
                d.group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z"
            )
        if (z := _SIZE_RE.search(meta)) is not None:
            rec[b"RFC822.SIZE"] = int(z.group(1))
        if key is not None and literal is not None:
            rec[key] = literal
        out.setdefault(int(m.group(1)), {}).update(rec)
    return out


def old_fetch(client: Any, uids: list[int], items: list[bytes]) -> dict[int, dict[bytes, Any]]:
    from mailops.imap.commands import uid_set

    imap = client._imap
    spec = "(" + " ".join(i.decode() for i in items) + ")"
    tag = imap._command("UID", "FETCH", uid_set(sorted(uids)), spec)
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    return old_parse_fetch([d for d in data if d is not None])


# -- the floor: a bare TLS socket -----------------------------------------------------------
class RawSession:
    def __init__(self, port: int, ca_file: str, user: str, password: str) -> None:
        ctx = ssl.create_default_context(cafile=ca_file)
        self.sock = ctx.wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
        )
        self.n = 0
        self.buf = b""
        self._recv_line()  # greeting
        self.command(f'LOGIN "{user}" "{password}"'.encode())
        self.command(b"SELECT INBOX")

    def _recv_line(self) -> None:
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(1 << 16)
        self.buf = self.buf.split(b"\r\n", 1)[1]

    def command(self, cmd: bytes) -> int:
        """Send CMD; read until its tagged completion; the number of bytes read. Literals
        are not interpreted: good enough for a floor on mail without fake tag lines."""
        self.n += 1
        tag = b"R%d " % self.n
        self.sock.sendall(tag + cmd + b"\r\n")
        end = b"\r\n" + tag
        window = b"\r\n" + self.buf  # the tag starts a line
        total = len(self.buf)
        recv = self.sock.recv
        while True:
            k = window.find(end)
            if k >= 0:
                stop = window.find(b"\r\n", k + 2)
                if stop >= 0:
                    self.buf = window[stop + 2 :]
                    return total - len(self.buf)
            chunk = recv(1 << 18)
            if not chunk:
                raise EOFError
            total += len(chunk)
            window = window[-256:] + chunk


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=10_000, help="messages in the INBOX")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds per path (>= 5)")
    ap.add_argument("--batch", type=int, default=1000, help="UIDs per FETCH (sync_batch)")
    ap.add_argument("--body", action="store_true", help="BODY.PEEK[] instead of the headers")
    args = ap.parse_args()

    import imapclient
    import sync_bench

    from mailops.dev.devserver import DevServer
    from mailops.imap import commands
    from mailops.imap.commands import uid_set
    from mailops.sync import FETCH_BODY, FETCH_HEADERS

    items = FETCH_BODY if args.body else FETCH_HEADERS
    spec = "(" + " ".join(i.decode() for i in items) + ")"
    tmp = Path(tempfile.mkdtemp(prefix="mailops-fetch-bench-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    user, password = "fetch@bench.example", "pw-fetch"
    server = DevServer(str(tmp / "server"), users={user: password})
    try:
        state = server.start()
        customers = [f"customer{k}@buyers.example" for k in range(50)]
        t = time.perf_counter()
        sync_bench.seed(state, user, password, args.n, 0.1, customers, 1000)
        print(f"seeded {args.n} messages in {time.perf_counter() - t:.1f} s", file=sys.stderr)

        ctx = ssl.create_default_context(cafile=state.ca_file)
        client = imapclient.IMAPClient(
            "127.0.0.1", port=state.imaps_port, ssl=True, ssl_context=ctx, timeout=120
        )
        client.login(user, password)
        client.normalise_times = False
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["ALL"]))
        batches = [uids[i : i + args.batch] for i in range(0, len(uids), args.batch)]
        raw = RawSession(state.imaps_port, state.ca_file, user, password)
        nbytes = [0]

        def floor() -> None:
            nbytes[0] = sum(
                raw.command(b"UID FETCH " + uid_set(b).encode() + b" " + spec.encode())
                for b in batches
            )

        def lean() -> None:
            for b in batches:
                commands.fetch(client, b, items)

        def old() -> None:
            for b in batches:
                old_fetch(client, b, list(items))

        def generic() -> None:
            for b in batches:
                client.fetch(b, list(items))

        paths: dict[str, Callable[[], None]] = {
            "raw socket floor": floor,
            "lean reader (mailops)": lean,
            "old path (imaplib loop + strptime)": old,
            "imapclient fetch": generic,
        }
        # the same answers (the floor aside), and Dovecot's caches warm for every path
        a, b_, c = (
            [commands.fetch(client, b, items) for b in batches],
            [old_fetch(client, b, list(items)) for b in batches],
            [client.fetch(b, list(items)) for b in batches],
        )
        assert a == b_, "lean reader and old path disagree"
        assert [{k: {n: v for n, v in r.items() if n not in (b"SEQ", b"UID")}} for x in c
                for k, r in x.items()] == [{k: r} for x in a for k, r in x.items()]  # fmt: skip
        floor()
        times: dict[str, list[float]] = {k: [] for k in paths}
        for rnd in range(max(5, args.rounds)):
            order = list(paths.items())
            for name, fn in order if rnd % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        client.logout()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    what = "BODY.PEEK[]" if args.body else "header FETCH"
    print(
        f"\n{what} of {args.n:,} messages ({nbytes[0] / 1e6:.1f} MB on the wire), batches of"
        f" {args.batch}, {len(times['raw socket floor'])} rounds, {os.cpu_count()} cores,"
        f" load {os.getloadavg()[0]:.1f}\n"
    )
    print("| path | median s | x floor | x old path | all runs s |")
    print("|---|---:|---:|---:|---|")
    fl, ol = med["raw socket floor"], med["old path (imaplib loop + strptime)"]
    for k, v in med.items():
        runs = " ".join(f"{x:.3f}" for x in times[k])
        print(f"| {k} | {v:.3f} | {v / fl:.2f} | {v / ol:.2f} | {runs} |")
    print(
        f"\nlean reader / old path: {med['lean reader (mailops)'] / ol:.2f};"
        f" lean reader / floor: {med['lean reader (mailops)'] / fl:.2f}"
    )


if __name__ == "__main__":
    main()
