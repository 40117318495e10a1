"""The soak suite (issue 11, `make soak`): operations under abuse, on 127.0.0.1 only.

Five parts, each printing ONE line of figures:

1. ``kills``      -- random ``kill -9`` of ``mailops sync`` processes syncing an N-message
   mailbox, then one last run; the store is compared with an uninterrupted sync (messages,
   places, activities, final ledger decision per UID): lost, duplicated.
2. ``faults``     -- a TCP proxy between mailops and Dovecot / the SMTP server injects a reset
   mid-FETCH, a stall, a refusal (IMAP) and a reset mid-DATA, a lost reply, a refusal
   (SMTP); how each ended and how long until it was whole again.
3. ``concurrent`` -- two ``mailops sync`` processes of one mailbox at once: examined counts.
4. ``send``       -- ``mailops outbox retry`` killed at random moments and at every SMTP
   phase, then retried (a ``delivery_unknown`` decided like a person would, by asking the
   recipient's INBOX); copies delivered per send.
5. ``reports``    -- CLI reads and a notebook report while a big sync writes.

``python -m mailops.dev.soak [--messages 10000] [--kills 50] [--send-kills 20]
[--budget 1500]``; ``run(...)`` is what the fast subset in ``make test`` calls with small
numbers. It starts its own devserver under /tmp and never talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from mailops.config import Settings
from mailops.dev.devserver import DevServer, DevServerState
from mailops.dev.devserver.proxy import FaultProxy
from mailops.store import Store

__all__ = ["Soak", "main", "run"]

PASSWORD = "soak-pw"
CUSTOMER = "buyer@soak-customers.test"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _msg(i: int, to: str) -> bytes:
    frm = CUSTOMER if i % 3 == 0 else f"news{i % 97}@lists.test"
    date = format_datetime(datetime.now(UTC))
    body = f"Message {i}.\r\n" + ("The unit on the third floor is still available. " * 20) + "\r\n"
    return (
        f"From: {frm}\r\nTo: {to}\r\nSubject: soak {i:05d}\r\nDate: {date}\r\n"
        f"Message-ID: {make_msgid(idstring=f'soak{i}', domain='soak.test')}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


@dataclasses.dataclass
class Soak:
    """One soak session: its devserver, its stores, its budget."""

    root: Path
    state: DevServerState
    deadline: float
    env: dict[str, str]
    out: Callable[[str], None] = print
    _n: int = 0

    # -- plumbing ------------------------------------------------------------------------
    def left(self) -> float:
        return self.deadline - time.monotonic()

    def account(self, prefix: str = "soak") -> str:
        self._n += 1
        address = f"{prefix}{self._n:03d}@soak.test"
        self.state.add_users({address: PASSWORD})
        return address

    def imap(self, address: str) -> Any:
        import imapclient

        ctx = ssl.create_default_context(cafile=self.state.ca_file)
        c = imapclient.IMAPClient(
            "127.0.0.1", port=self.state.imaps_port, ssl=True, ssl_context=ctx, timeout=60
        )
        c.login(address, PASSWORD)
        return c

    def seed(self, address: str, n: int) -> None:
        c = self.imap(address)
        try:
            for start in range(0, n, 500):
                c.multiappend(
                    "INBOX", [{"msg": _msg(i, address)} for i in range(start, min(n, start + 500))]
                )
        finally:
            c.logout()

    def count(self, address: str, message_id: str | None = None) -> int:
        c = self.imap(address)
        try:
            c.select_folder("INBOX", readonly=True)
            crit = ["HEADER", "Message-ID", message_id] if message_id else ["ALL"]
            return len(c.search(crit))
        finally:
            c.logout()

    def store_env(self, name: str) -> dict[str, str]:
        db = self.root / f"{name}.duckdb"
        return {**self.env, "MAILOPS_DB": str(db), "MAILOPS_SECRETS_DIR": f"{db}.secrets"}

    def settings(self, env: dict[str, str]) -> Settings:
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            return Settings.load()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def new_store(self, name: str, address: str, *, imap_port: int | None = None) -> Any:
        """A store with the customer and one connected password mailbox; closed again."""
        from mailops.auth import password_ref
        from mailops.secrets import SecretStore
        from mailops.store import mailboxes

        env = self.store_env(name)
        settings = self.settings(env)
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            store = Store(settings.db)
            store.execute(
                "INSERT INTO users (id, email, name) VALUES ('u-soak', ?, 'Soak')", [address]
            )
            store.execute(
                "INSERT INTO customers (id, name, owner_user_id) VALUES ('c-soak', 'Buyer', 'u-soak')"
            )
            store.execute(
                "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
                " VALUES ('c-soak', ?, TRUE, '2000-01-01')",
                [CUSTOMER],
            )
            mb = mailboxes.insert(
                store,
                owner_user_id="u-soak",
                address=address,
                provider="generic",
                auth_kind="password",
                imap_host="127.0.0.1",
                imap_port=imap_port or self.state.imaps_port,
                imap_security="ssl",
                smtp_host="127.0.0.1",
                smtp_port=self.state.smtp_port,
                smtp_security="starttls",
                ca_file=self.state.ca_file,
                state="connected",
            )
            ref = password_ref(mb.id)
            SecretStore(settings).put(ref, PASSWORD)
            mailboxes.update(store, mb.id, secret_ref=ref, connected_at=_now())
            store.close()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return env, settings, mb

    def mailops(self, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "mailops.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run_cli(
        self, env: dict[str, str], *args: str, timeout: float = 600
    ) -> tuple[int, str, str]:
        p = self.mailops(env, *args)
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err

    @contextmanager
    def opened(self, settings: Settings) -> Iterator[Store]:
        store = Store(settings.db)
        try:
            yield store
        finally:
            store.close()


# -- 1. kills --------------------------------------------------------------------------------
def snapshot(store: Store) -> dict[str, Any]:
    """What a sync produced, independent of run ids and timing."""
    return {
        "messages": Counter(r[0] for r in store.rows("SELECT id FROM messages")),
        "places": Counter(
            tuple(r) for r in store.rows("SELECT message_id, folder, uid FROM message_places")
        ),
        "activities": Counter(
            tuple(r)
            for r in store.rows("SELECT message_id, customer_id, direction FROM activities")
        ),
        "ledger": Counter(
            tuple(r) for r in store.rows("SELECT folder, uid, decision, reason FROM audit_ledger")
        ),
    }


def compare(ref: dict[str, Any], got: dict[str, Any]) -> tuple[int, int, dict[str, str]]:
    lost = dup = 0
    detail: dict[str, str] = {}
    for key in ref:
        want, have = ref[key], got[key]
        missing = sum((want - have).values())
        extra = sum((have - want).values())
        lost += missing
        dup += extra
        detail[key] = f"{sum(have.values())}/{sum(want.values())}"
    return lost, dup, detail


def part_kills(s: Soak, n: int, kills: int) -> dict[str, Any]:
    address = s.account()
    s.seed(address, n)
    env_a, set_a, _ = s.new_store("kills-reference", address)
    t0 = time.monotonic()
    code, out, err = s.run_cli({**env_a, "MAILOPS_SYNC_BATCH": "200"}, "sync", address)
    ref_s = time.monotonic() - t0
    if code != 0:
        raise RuntimeError(f"reference sync failed: {err}")
    with s.opened(set_a) as st:
        ref = snapshot(st)

    from mailops.lease import leases_for

    rng = random.Random(11)
    done = runs = rounds = interrupted = 0
    lost = dup = 0
    detail: dict[str, str] = {}
    finals: list[int] = []
    t_kill = time.monotonic()
    while done < kills and s.left() > 60:
        # a round: a fresh store, killed until a run gets to the end by itself, then checked
        rounds += 1
        env_b, set_b, box = s.new_store(f"kills-{rounds}", address)
        env_b = {**env_b, "MAILOPS_SYNC_BATCH": "100"}
        leases = leases_for(set_b.db)
        while done < kills and s.left() > 60:
            p = s.mailops(env_b, "sync", address)
            # kill while it syncs: once it holds the mailbox's lease (S14), at a random moment
            t_start = time.monotonic()
            while leases.holder(box.id) is None and p.poll() is None:
                if time.monotonic() - t_start > 120:
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 2.0))
            runs += 1
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                done += 1
            else:
                p.communicate()
                if p.returncode == 0:
                    break  # this run finished the mailbox
        code, out, err = s.run_cli(env_b, "sync", address)
        finals.append(code)
        with s.opened(set_b) as st:
            got = snapshot(st)
            interrupted += int(
                st.scalar("SELECT count(*) FROM sync_runs WHERE status = 'interrupted'") or 0
            )
        lo, du, detail = compare(ref, got)
        lost, dup = lost + lo, dup + du
    return {
        "messages": n,
        "kills": done,
        "kills_after_committed_batches": interrupted,
        "rounds": rounds,
        "runs": runs + rounds,
        "lost": lost,
        "duplicated": dup,
        "last_round": detail,
        "final_exits": sorted(set(finals)),
        "reference_sync_s": round(ref_s, 1),
        "seconds": round(time.monotonic() - t_kill, 1),
    }


# -- 2. faults through the proxy -------------------------------------------------------------
def _until_ok(
    s: Soak, env: dict[str, str], address: str, limit: float = 120.0
) -> tuple[float, str]:
    t0 = time.monotonic()
    last = ""
    while time.monotonic() - t0 < limit:
        code, out, err = s.run_cli(env, "sync", address, "--json")
        try:
            [m] = json.loads(out)["mailboxes"]
            last = m["outcome"]
        except (ValueError, KeyError):
            last = f"exit {code}"
        if code == 0:
            return time.monotonic() - t0, last
        time.sleep(0.5)
    return -1.0, last


def part_faults(s: Soak, n: int) -> dict[str, Any]:
    from mailops.store import mailboxes as mb_store

    out: dict[str, str] = {}
    address = s.account()
    s.seed(address, n)
    with FaultProxy(s.state.imaps_port) as proxy:
        env, settings, mb = s.new_store("faults", address, imap_port=proxy.port)
        env = {
            **env,
            "MAILOPS_SOCKET_TIMEOUT": "3",
            "MAILOPS_SYNC_RETRY_BASE": "0.2",
            "MAILOPS_CONNECT_RETRY_BUDGET": "1",
            "MAILOPS_HEAL_PROBE_FIRST_S": "8",
            "MAILOPS_SYNC_BATCH": "200",
        }
        # reset mid-FETCH: the first connection is cut after 150 KB of answers
        proxy.reset_after(150_000, "down")
        t0 = time.monotonic()
        code, o, e = s.run_cli(env, "sync", address, "--json")
        m = json.loads(o)["mailboxes"][0] if o.strip() else {}
        out["imap_reset_mid_fetch"] = (
            f"{m.get('outcome')} in the same run after {proxy.resets} reset(s),"
            f" {m.get('examined')} examined, {time.monotonic() - t0:.1f}s"
        )
        # new mail, then a stall longer than the socket timeout
        c = s.imap(address)
        c.multiappend("INBOX", [{"msg": _msg(n + i, address)} for i in range(50)])
        c.logout()
        proxy.stall(8.0)
        t0 = time.monotonic()
        code, o, e = s.run_cli(env, "sync", address, "--json")
        m = json.loads(o)["mailboxes"][0] if o.strip() else {}
        took = time.monotonic() - t0
        if code != 0:
            rec, last = _until_ok(s, env, address)
            out["imap_stall_8s"] = (
                f"{m.get('outcome')} [{m.get('error_code')}], whole again {took + rec:.1f}s after the stall began"
            )
        else:
            out["imap_stall_8s"] = (
                f"ok after timeouts and retries, {m.get('examined')} examined, {took:.1f}s"
            )
        # refusal: the port closes; budget 1 -> problematic; back -> healed by a probe
        proxy.refuse()
        code, o, e = s.run_cli(env, "sync", address, "--json")
        m = json.loads(o)["mailboxes"][0] if o.strip() else {}
        first = f"{m.get('outcome')} [{m.get('error_code')}] exit {code}"
        code2, o2, _ = s.run_cli(env, "sync", address, "--json")
        m2 = json.loads(o2)["mailboxes"][0] if o2.strip() else {}
        proxy.accept()
        t_back = time.monotonic()
        time.sleep(1.0)
        rec, last = _until_ok(s, env, address)
        with s.opened(settings) as st:
            state = mb_store.get(st, mb.id).state
            msgs = st.scalar("SELECT count(*) FROM messages")
        out["imap_refused"] = (
            f"{first}, then {m2.get('outcome')} exit {code2}; server back -> {last} ({state})"
            f" {time.monotonic() - t_back:.1f}s later"
        )
        out["imap_messages_after"] = (
            f"{msgs} stored of {sum(1 for i in range(n + 50) if i % 3 == 0)}"
        )
    out.update(_smtp_faults(s))
    return out


def _smtp_item(
    s: Soak, settings: Settings, env: dict[str, str], mb_id: int, to_cid: str, size: int
) -> int:
    from mailops.send import EmailRequest, prepare, queue

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with s.opened(settings) as st:
            prepared = prepare(
                st,
                settings,
                EmailRequest(
                    user_id="u-soak",
                    mailbox=mb_id,
                    customer_id=to_cid,
                    subject=f"Offer {random.random():.6f}",
                    body_text="Dear buyer,\n"
                    + ("the offer for unit B-204 stands. " * 30 + "\n") * max(1, size // 1000),
                ),
            )
            return queue(st, prepared).id
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _add_send_customer(s: Soak, settings: Settings, env: dict[str, str], cid: str) -> str:
    rcpt = s.account("cust")
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with s.opened(settings) as st:
            st.execute(
                "INSERT INTO customers (id, name, owner_user_id) VALUES (?, ?, 'u-soak')",
                [cid, cid],
            )
            st.execute(
                "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
                " VALUES (?, ?, TRUE, '2000-01-01')",
                [cid, rcpt],
            )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return rcpt


def _item(settings: Settings, s: Soak, oid: int) -> Any:
    from mailops.store import outbox as obstore

    with s.opened(settings) as st:
        return obstore.get_item(st, oid)


def _decide(s: Soak, env: dict[str, str], settings: Settings, oid: int, rcpt: str) -> str:
    """Retry; an unknown delivery is decided as a person would: ask the recipient."""
    s.run_cli(env, "outbox", "retry", str(oid))
    item = _item(settings, s, oid)
    if item.state != "delivery_unknown":
        return item.state
    time.sleep(1.0)  # a delivery in flight lands
    arrived = s.count(rcpt, item.message_id_header)
    s.run_cli(env, "outbox", "mark-sent" if arrived else "resend", str(oid))
    return "unknown->" + ("mark-sent" if arrived else "resend")


def _smtp_faults(s: Soak) -> dict[str, str]:
    from mailops.store import mailboxes as mb_store

    out: dict[str, str] = {}
    address = s.account()
    with FaultProxy(s.state.smtp_port) as proxy:
        env, settings, mb = s.new_store("smtp-faults", address)
        with s.opened(settings) as st:
            mb_store.update(st, mb.id, smtp_port=proxy.port)
        env = {**env, "MAILOPS_SOCKET_TIMEOUT": "2"}
        for name in ("reset_mid_data", "reply_lost", "refused"):
            cid = f"c-{name}"
            rcpt = _add_send_customer(s, settings, env, cid)
            oid = _smtp_item(s, settings, env, mb.id, cid, 2_000_000)
            size = len(_item(settings, s, oid).raw)
            if name == "reset_mid_data":
                proxy.reset_after(size // 2, "up")
            elif name == "reply_lost":
                proxy.stall_after(size // 2, 6.0, "up")
            else:
                proxy.refuse()
            t0 = time.monotonic()
            s.run_cli(env, "outbox", "retry", str(oid))
            first = _item(settings, s, oid)
            ended = f"{first.state} [{first.error_code}] phase {first.phase}"
            if name == "refused":
                proxy.accept()
            if name == "reply_lost":
                time.sleep(7)
            how = _decide(s, env, settings, oid, rcpt)
            copies = s.count(rcpt, first.message_id_header)
            out[f"smtp_{name}"] = (
                f"{ended} -> {how}, {copies} cop{'y' if copies == 1 else 'ies'}, {time.monotonic() - t0:.1f}s"
            )
    return out


# -- 3. concurrent ---------------------------------------------------------------------------
def part_concurrent(s: Soak, n: int) -> dict[str, Any]:
    address = s.account()
    s.seed(address, n)
    results: dict[str, Any] = {}
    # how many bytes a batch of 200 brings down here: the second stall must fall inside the
    # second batch (after the first handed the store over, before the second commits)
    with FaultProxy(s.state.imaps_port) as probe:
        env, _, _ = s.new_store("concurrent-measure", address, imap_port=probe.port)
        s.run_cli({**env, "MAILOPS_SYNC_BATCH": "200"}, "sync", address)
        per_batch = probe.bytes_down / max(1, -(-n // 200))
    for label, wait in (("busy", "0"), ("waits", "600")):
        with FaultProxy(s.state.imaps_port) as proxy:
            env, settings, box = s.new_store(f"concurrent-{label}", address, imap_port=proxy.port)
            env = {**env, "MAILOPS_SYNC_BATCH": "200"}
            proxy.stall(4.0)  # the first holds the lease (and the store) while logging in ...
            proxy.stall_after(int(1.5 * per_batch), 6.0)  # ... hands the store over: B starts
            a = s.mailops(env, "sync", address, "--json")
            from mailops.lease import leases_for

            leases = leases_for(settings.db)
            t0 = time.monotonic()
            while leases.holder(box.id) is None and time.monotonic() - t0 < 60:
                time.sleep(0.02)
            b = s.mailops({**env, "MAILOPS_SYNC_LEASE_WAIT": wait}, "sync", address, "--json")
            oa, _ = a.communicate(timeout=900)
            ob, _ = b.communicate(timeout=900)
        ma, mb_ = json.loads(oa)["mailboxes"][0], json.loads(ob)["mailboxes"][0]
        with s.opened(settings) as st:
            ledger = st.scalar("SELECT count(*) FROM audit_ledger")
            uids = st.scalar("SELECT count(DISTINCT uid) FROM audit_ledger")
            runs = st.rows("SELECT status, examined, linked FROM sync_runs ORDER BY id")
        results[label] = {
            "first": (ma["outcome"], ma["examined"], a.returncode),
            "second": (mb_["outcome"], mb_["examined"], b.returncode),
            "ledger_rows": ledger,
            "distinct_uids": uids,
            "runs": runs,
        }
    results["messages"] = n
    return results


# -- 4. send kills ---------------------------------------------------------------------------
PHASE_POINTS = (
    "outbox.before_smtp",
    "outbox.smtp_mail_from",
    "outbox.smtp_rcpt",
    "outbox.smtp_mid_data",
    "outbox.smtp_before_terminator",
    "outbox.smtp_terminator_sent",
    "outbox.after_smtp_accept",
    "outbox.after_sent_copy",
)


def part_send(s: Soak, random_kills: int, points: tuple[str, ...] = PHASE_POINTS) -> dict[str, Any]:
    from mailops.store import mailboxes as mb_store

    address = s.account()
    env, settings, mb = s.new_store("send", address)
    watch = FaultProxy(s.state.smtp_port).start()  # no faults: it tells when SMTP begins
    with s.opened(settings) as st:
        mb_store.update(st, mb.id, smtp_port=watch.port)
    rng = random.Random(7)
    copies: Counter[int] = Counter()
    how: Counter[str] = Counter()
    killed_at: Counter[str] = Counter()
    for i, point in enumerate([*points, *(["random"] * random_kills)]):
        if s.left() < 30:
            break
        cid = f"c-send-{i}"
        rcpt = _add_send_customer(s, settings, env, cid)
        oid = _smtp_item(s, settings, env, mb.id, cid, 1_500_000)
        if point == "random":
            seen = watch.connections
            p = s.mailops(env, "outbox", "retry", str(oid))
            t_start = time.monotonic()  # kill at a random moment of the SMTP session
            while watch.connections == seen and p.poll() is None:
                if time.monotonic() - t_start > 120:
                    break
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 1.5))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                killed_at[_item(settings, s, oid).phase or "?"] += 1
            else:
                p.communicate()
                killed_at["after the end"] += 1
        else:
            code, _, _ = s.run_cli({**env, "MAILOPS_CRASH_AT": point}, "outbox", "retry", str(oid))
            killed_at[point.split(".", 1)[1]] += code == -9
        how[_decide(s, env, settings, oid, rcpt)] += 1
        item = _item(settings, s, oid)
        copies[s.count(rcpt, item.message_id_header)] += 1
        with s.opened(settings) as st:
            acts = st.scalar("SELECT count(*) FROM activities WHERE customer_id = ?", [cid])
        how[f"activities={acts}"] += 1
    watch.stop()
    return {"copies": dict(copies), "how": dict(how), "killed_at": dict(killed_at)}


# -- 5. reports during a sync ----------------------------------------------------------------
def part_reports(s: Soak, n: int, notebook: bool = True) -> dict[str, Any]:
    address = s.account()
    s.seed(address, n)
    env, settings, _ = s.new_store("reports", address)
    env = {**env, "MAILOPS_SYNC_BATCH": "200"}
    sync = s.mailops(env, "sync", address)
    ok = failed = 0
    longest = 0.0
    errors: list[str] = []
    reports_dir = s.root / "reports-out"
    nb_result = "not run"
    nb_thread: threading.Thread | None = None
    if notebook:

        def nb() -> None:
            nonlocal nb_result
            code, _, err = s.run_cli(
                env, "report", "sync_audit", "--reports-dir", str(reports_dir), timeout=900
            )
            nb_result = "ok" if code == 0 else f"exit {code}: {err.strip()[-200:]}"

        nb_thread = threading.Thread(target=nb)
        nb_thread.start()
    while sync.poll() is None:
        for args in (("audit", "--summary"), ("stats", "activity"), ("audit", "--runs")):
            t0 = time.monotonic()
            code, _, err = s.run_cli(env, *args)
            longest = max(longest, time.monotonic() - t0)
            if code == 0:
                ok += 1
            else:
                failed += 1
                errors.append(err.strip()[-160:])
            if sync.poll() is not None:
                break
    sync.communicate()
    if nb_thread is not None:
        nb_thread.join()
    return {
        "reads_ok": ok,
        "reads_failed": failed,
        "longest_s": round(longest, 1),
        "notebook": nb_result,
        "sync_exit": sync.returncode,
        "errors": errors[:3],
    }


# -- the session ------------------------------------------------------------------------------
@contextmanager
def session(budget: float, out: Callable[[str], None] = print) -> Iterator[Soak]:
    if os.geteuid() != 0:
        raise SystemExit("the soak starts its own Dovecot: run it as root")
    root = Path(tempfile.mkdtemp(prefix="mailops-soak-", dir="/tmp"))
    os.chmod(root, 0o755)
    import logging

    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's deprecation chatter
    server = DevServer(str(root / "mail"))
    state = server.start()
    env = {
        **os.environ,
        "MAILOPS_KEYRING": "0",
        "MAILOPS_SECRET_KEY": "soak-only-passphrase-not-a-secret",
        "MAILOPS_LOG_LEVEL": "ERROR",
    }
    for k in ("MAILOPS_CRASH_AT", "MAILOPS_CONFIG"):
        env.pop(k, None)
    try:
        yield Soak(root, state, time.monotonic() + budget, env, out)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _line(name: str, figures: dict[str, Any]) -> str:
    return f"{name}: " + "; ".join(f"{k} {v}" for k, v in figures.items())


def run(
    *,
    messages: int = 10_000,
    kills: int = 50,
    fault_messages: int = 2_000,
    concurrent_messages: int = 10_000,
    send_kills: int = 20,
    send_points: tuple[str, ...] = PHASE_POINTS,
    report_messages: int = 10_000,
    notebook: bool = True,
    budget: float = 1800.0,
    parts: tuple[str, ...] = ("kills", "faults", "concurrent", "send", "reports"),
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the parts; print one line each; return every figure."""
    figures: dict[str, Any] = {}
    with session(budget, out) as s:
        for part in parts:
            t0 = time.monotonic()
            if part == "kills":
                got = part_kills(s, messages, kills)
            elif part == "faults":
                got = part_faults(s, fault_messages)
            elif part == "concurrent":
                got = part_concurrent(s, concurrent_messages)
            elif part == "send":
                got = part_send(s, send_kills, send_points)
            elif part == "reports":
                got = part_reports(s, report_messages, notebook)
            else:
                raise ValueError(part)
            got["part_s"] = round(time.monotonic() - t0, 1)
            figures[part] = got
            out(_line(part, got))
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mailops.dev.soak", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--send-kills", type=int, default=20)
    ap.add_argument("--budget", type=float, default=1800.0, help="seconds for the whole soak")
    ap.add_argument("--parts", default="kills,faults,concurrent,send,reports")
    ap.add_argument("--json", help="write every figure to this file")
    a = ap.parse_args(argv)
    figures = run(
        messages=a.messages,
        kills=a.kills,
        concurrent_messages=a.messages,
        report_messages=a.messages,
        send_kills=a.send_kills,
        budget=a.budget,
        parts=tuple(p for p in a.parts.split(",") if p),
    )
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2, default=str))
    k = figures.get("kills", {})
    sends = figures.get("send", {}).get("copies", {})
    bad = k.get("lost", 0) or k.get("duplicated", 0) or any(c != 1 for c in sends)
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
