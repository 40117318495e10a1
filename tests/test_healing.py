"""C4 self-healing against the real devserver: a transient problem is probed with backoff and
heals by itself (backfilling the gap); a credential problem waits for the user. O1 exit codes
of `mailops sync` on the way."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest
from lease_support import as_json, finish, mailops
from sync_support import add_customer, append, make_msg

from mailops.dev.devserver.proxy import FaultProxy
from mailops.healing import probe_delay
from mailops.problems import PROBLEM_REASONS
from mailops.store import mailboxes
from mailops.store import probes as probe_store
from mailops.sync import sync_all

pytestmark = pytest.mark.server


def test_C4_probe_backoff_doubles_from_5_minutes_to_6_hours(settings):
    waits = [probe_delay(n, settings) for n in range(8)]
    assert waits[:4] == [timedelta(minutes=m) for m in (5, 10, 20, 40)]
    assert waits[-1] == timedelta(hours=6) and max(waits) == timedelta(hours=6)


def test_C4_guidance_says_which_kind_each_reason_is():
    for r in PROBLEM_REASONS.values():
        assert "retried automatically" not in r.guidance.lower()
        if r.transient:
            assert "by itself" in r.guidance, r.code
        else:
            assert r.guidance.startswith("Waits for the user"), r.code


def test_C4_network_problem_heals_by_itself_and_backfills_the_gap(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject="before")])
    proxy = FaultProxy(mailserver.imaps_port).start()
    try:
        mailboxes.update(store, mb.id, imap_port=proxy.port)
        quick = dataclasses.replace(
            settings, connect_retry_budget=1, sync_retries=1, heal_probe_first_s=0.6
        )
        [r] = sync_all(store, quick)
        assert r.status == "ok" and r.stored == 1

        proxy.refuse()  # the server goes away
        t_down = time.monotonic()
        [r] = sync_all(store, quick)
        assert (r.status, r.error_code, r.problematic) == ("failed", "network", True)
        assert r.next_probe_at is not None
        assert mailboxes.get(store, mb.id).state == "problematic"
        # mail arrives meanwhile (straight into Dovecot): the gap
        append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject="gap")])

        [r] = sync_all(store, quick)  # too early: skipped, with the next probe's time
        assert (r.status, r.skip_reason, r.error_code) == ("skipped", "probe_not_due", "network")
        assert r.as_dict()["outcome"] == "probe_not_due"
        assert "next probe at" in r.one_line() and "since" in r.one_line()

        time.sleep(0.7)
        [r] = sync_all(store, quick)  # probe due, still down: next wait doubles
        assert (r.status, r.probed, r.recovered) == ("failed", True, False)
        probe = probe_store.probes_for(store, [mb.id])[mb.id]
        assert probe.attempts == 1
        assert probe.next_probe_at - probe.last_probe_at == timedelta(seconds=1.2)

        proxy.accept()  # the server is back
        t_back = time.monotonic()
        deadline = time.monotonic() + 30
        while True:
            [r] = sync_all(store, quick)
            if r.status == "ok" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        recovered_after = time.monotonic() - t_back
        assert (r.status, r.probed, r.recovered) == ("ok", True, True)
        assert r.stored == 1  # the gap backfilled
        assert recovered_after < 3.0, recovered_after
        assert time.monotonic() - t_down < 30
        now = mailboxes.get(store, mb.id)
        assert (now.state, now.problem_code, now.transient_failures) == ("connected", None, 0)
        assert probe_store.probes_for(store, [mb.id]) == {}
        subjects = set(store.query("SELECT subject FROM messages")["subject"])
        assert subjects == {"before", "gap"}
        events = store.query(
            "SELECT to_state, message FROM mailbox_events WHERE mailbox_id = ? ORDER BY id",
            [mb.id],
        )
        assert events["to_state"].tolist()[-2:] == ["problematic", "connected"]
        assert "recovered by itself" in events["message"].iloc[-1]
    finally:
        proxy.stop()


def test_C4_O1_cli_says_skipped_and_next_probe_then_recovers(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox()
    proxy = FaultProxy(mailserver.imaps_port).start()
    env = {
        "MAILOPS_CONNECT_RETRY_BUDGET": "1",
        "MAILOPS_SYNC_RETRIES": "1",
        "MAILOPS_HEAL_PROBE_FIRST_S": "60",
    }
    try:
        mailboxes.update(store, mb.id, imap_port=proxy.port)
        store.close()
        proxy.refuse()
        code, out, err = finish(mailops("sync", env=env))
        assert code == 9, err  # O1: a failed mailbox
        assert f"{mb.address}: failed [network]" in err and "next probe at" in err
        assert "1 failed" in out
        assert err.strip().splitlines()[-1].startswith("error [sync_failed]: 1 of 1")
        code, out, err = finish(mailops("mailbox", "list", env=env))  # what IT reads
        assert code == 0 and "[network since" in out, err
        assert "reconnects by itself" in out and "Next probe at" in out
        assert "retried automatically" not in out.lower()

        code, out, err = finish(mailops("sync", "--json", env=env))
        assert code == 10  # O1: problematic, skipped
        [m] = as_json(out)["mailboxes"]
        assert m["outcome"] == "probe_not_due" and m["problem_since"] and m["next_probe_at"]
        code, out, err = finish(mailops("sync", env=env))
        assert code == 10 and f"{mb.address}: skipped, problematic since" in err
        assert "[network]: transient, next probe at" in err

        proxy.accept()
        code, out, err = finish(mailops("sync", mb.address, env=env))  # named: probed now
        assert code == 0, err
        assert "recovered by itself" in err and "1 recovered" in out
        code, out, err = finish(mailops("sync", env=env))
        assert code == 0 and err == "", err
    finally:
        proxy.stop()


def test_C4_credential_problem_waits_for_the_user(store, settings, password_mailbox, mailserver):
    from mailops.auth import password_ref
    from mailops.secrets import SecretStore

    mb, _ = password_mailbox()
    SecretStore(settings).put(password_ref(mb.id), "wrong password")
    quick = dataclasses.replace(settings, heal_probe_first_s=0.0)
    [r] = sync_all(store, quick)
    assert (r.status, r.error_code, r.problematic) == ("failed", "auth_failed", True)
    assert r.next_probe_at is None
    for _ in range(2):  # however long one waits: never probed
        [r] = sync_all(store, quick)
        assert (r.status, r.skip_reason) == ("skipped", "problematic")
        assert "waits for the user" in r.one_line() and "reconnect" in r.one_line()
    assert store.scalar("SELECT count(*) FROM sync_runs WHERE mailbox_id = ?", [mb.id]) == 1
    store.close()
    code, out, err = finish(mailops("sync", "--json"))
    assert code == 10
    assert as_json(out)["mailboxes"][0]["outcome"] == "problematic"


def test_O1_report_all_exits_with_the_sync_jobs_code(monkeypatch, capsys, settings):
    """`mailops report --all`: the other notebooks still run; the exit code is the sync job's
    (9/10/11) when only its mailboxes failed, 8 when a notebook itself broke."""
    import mailops.notebook as nbmod
    from mailops.cli import main
    from mailops.errors import ReportError

    names = [i.name for i in nbmod.report_notebooks(settings)]
    assert names[0] == "scheduled_sync"
    outcome: dict[str, ReportError | None] = {}

    def fake_run(name, params, **kw):  # noqa: ANN001, ANN003
        err = outcome.get(name)
        if err is not None:
            raise err
        return nbmod.ReportResult(name, settings.db, settings.db, [], 0.1)

    monkeypatch.setattr(nbmod, "run_report", fake_run)
    sync_failed = ReportError("scheduled_sync failed in cell 12: SyncIncomplete: ...")
    sync_failed.code, sync_failed.exit_code = "sync_failed", 9
    outcome["scheduled_sync"] = sync_failed
    assert main(["report", "--all"]) == 9
    outcome[names[-1]] = ReportError("broken notebook")
    assert main(["report", "--all"]) == 8
    outcome.clear()
    assert main(["report", "--all"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [
        ((), 0),
        (("ok", "recovered"), 0),
        (("ok", "already_syncing"), 11),
        (("probe_not_due", "already_syncing"), 10),
        (("problematic", "ok"), 10),
        (("failed", "problematic", "already_syncing"), 9),
    ],
    ids=[
        "O1-nothing",
        "O1-ok",
        "O1-busy",
        "O1-problematic-over-busy",
        "O1-problematic",
        "O1-failed",
    ],
)
def test_O1_exit_code_is_the_worst_outcome(outcomes, code):
    from mailops.outcomes import exit_code
    from mailops.sync import SyncResult

    def result(o: str) -> SyncResult:
        if o in ("ok", "recovered"):
            return SyncResult(1, "a@x.test", recovered=o == "recovered")
        if o == "failed":
            return SyncResult(1, "a@x.test", status="failed")
        return SyncResult(1, "a@x.test", status="skipped", skip_reason=o)

    assert exit_code([result(o) for o in outcomes]) == code
