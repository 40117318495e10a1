"""Real-world mail never stops a sync (S12, S15) and the whole mailbox is accounted for (S11),
against the real local Dovecot. Big messages are generated at test time."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys

import pytest
from sync_support import (
    add_customer,
    append,
    big_message,
    days_ago,
    maildir_file,
    make_msg,
)

from mailops.faults import FAULT_ENV
from mailops.permissions import SYSTEM
from mailops.store import blobs
from mailops.store import mailboxes as mailbox_store
from mailops.store import sync as state
from mailops.store.messages import raw_bytes
from mailops.sync import sync_mailbox

pytestmark = pytest.mark.server

MB = 1024 * 1024


@functools.cache
def big(size_mb: int) -> bytes:
    """One big customer message per size for the whole session (generated once)."""
    attachment = int(size_mb * MB * 0.74)  # base64 + headers: the message is ~SIZE_MB
    return big_message("a@cust.test", "someone@example.test", attachment, subject=f"{size_mb} MB")


def count(store, table):
    return store.scalar(f"SELECT count(*) FROM {table}")


def ledger(store, run_id):
    return store.query(
        "SELECT subject, decision, reason FROM audit_ledger WHERE run_id = ? ORDER BY uid",
        [run_id],
    ).values.tolist()


def _attachment_of(store, subject):
    return store.query(
        "SELECT a.filename, a.size, a.sha256, b.in_file FROM attachments a"
        " JOIN messages m ON m.id = a.message_id JOIN attachment_blobs b ON b.sha256 = a.sha256"
        " WHERE m.subject = ?",
        [subject],
    )


# -- S12: big messages, bounded memory ----------------------------------------------------------
def test_S12_20mb_message_stored_with_the_mail_after_it(
    store, settings, password_mailbox, mailserver
):
    """Issue 10 item 1: a 20 MB customer email (15 MB PDF) used to abort the batch with a
    DuckDB OutOfMemory under sync_memory_limit=100MB and block the mailbox for good."""
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    raw = big(20)
    append(mailserver, mb.address, pw, [raw, make_msg("a@cust.test", mb.address, subject="next")])
    assert settings.sync_memory_limit == "100MB"
    r = sync_mailbox(store, settings, mb)
    assert (r.status, r.stored, r.errors) == ("ok", 2, 0), r.one_line()
    att = _attachment_of(store, "20 MB")
    assert att["filename"].tolist() == ["contract.pdf"] and bool(att["in_file"].iloc[0])
    assert att["size"].iloc[0] == int(20 * MB * 0.74)
    key = store.scalar("SELECT id FROM messages WHERE subject = '20 MB'")
    assert raw_bytes(store, key, viewer=SYSTEM) == raw  # the raw bytes, whole, from the blob folder
    content = blobs.attachment_bytes(store, att["sha256"].iloc[0])
    assert content is not None and len(content) == att["size"].iloc[0]
    assert store.blobs.has(att["sha256"].iloc[0])
    assert sync_mailbox(store, settings, mb).examined == 0  # extract twice: nothing new


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked parent (pytest)
_RSS_SCRIPT = """
import json, re, sys
from mailops.config import Settings
from mailops.store import Store
from mailops.sync import sync_mailbox
s = Settings.load()
r = sync_mailbox(Store(s.db), s, sys.argv[1])
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(json.dumps({"status": r.status, "stored": r.stored, "errors": r.errors,
                  "peak_kb": int(hwm)}))
"""


def _sync_in_child(mb_address: str, env: dict[str, str]) -> dict:
    import json

    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, mb_address],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_S12_49mb_message_stored_bounded_memory(
    store, settings, password_mailbox, mailserver, tmp_path
):
    """A 49 MB message (a 36 MB attachment, 49 MB on the wire) is stored with its raw bytes and
    attachment; the sync's peak RSS stays under twice the message plus the baseline (the
    same sync of a small message, measured the same way)."""
    small_mb, small_pw = password_mailbox(owner="user-2")
    big_mb, big_pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    raw = big(49)
    assert 48 * MB < len(raw) < 50 * MB
    append(mailserver, small_mb.address, small_pw, [make_msg("a@cust.test", small_mb.address)])
    append(mailserver, big_mb.address, big_pw, [raw])
    store.close()
    env = dict(os.environ)
    baseline = _sync_in_child(small_mb.address, env)
    heavy = _sync_in_child(big_mb.address, env)
    assert (heavy["status"], heavy["stored"], heavy["errors"]) == ("ok", 1, 0)
    extra_mb = (heavy["peak_kb"] - baseline["peak_kb"]) / 1024
    print(
        f"S12 49 MB message: peak RSS {heavy['peak_kb'] / 1024:.0f} MB,"
        f" baseline {baseline['peak_kb'] / 1024:.0f} MB, +{extra_mb:.0f} MB"
    )
    assert extra_mb < 2 * len(raw) / MB
    key = store.scalar("SELECT id FROM messages WHERE subject = '49 MB'")
    assert raw_bytes(store, key, viewer=SYSTEM) == raw
    att = _attachment_of(store, "49 MB")
    assert att["size"].tolist() == [int(49 * MB * 0.74)] and bool(att["in_file"].iloc[0])
    st = blobs.stats(store)
    assert st["files"] == 2 and st["orphans"] == 0  # the raw message and its attachment
    assert st["files_bytes"] > len(raw)


def test_S12_kill_after_blobs_before_commit_leaves_only_orphans(
    store, settings, password_mailbox, mailserver
):
    """Blobs are written (tmp + fsync + rename) before the unit's transaction commits: a kill
    in between leaves files no row names; the next run stores the message and reuses them."""
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(mailserver, mb.address, pw, [big(6)])
    store.close()
    env = dict(os.environ, **{FAULT_ENV: "sync.batch_written:1"})
    script = (
        "import sys; from mailops.config import Settings; from mailops.store import Store;"
        "from mailops.sync import sync_mailbox; s = Settings.load();"
        "sync_mailbox(Store(s.db), s, sys.argv[1])"
    )
    killed = subprocess.run([sys.executable, "-c", script, mb.address], env=env, timeout=120)
    assert killed.returncode == -9
    assert count(store, "messages") == 0
    assert len(blobs.orphans(store)) == 2  # raw + attachment, no row names them
    r = sync_mailbox(store, settings, mb)
    assert (r.status, r.stored) == ("ok", 1)
    assert blobs.orphans(store) == []


def test_S12_db_status_shows_where_blobs_live(store, settings, password_mailbox, mailserver):
    from click.testing import CliRunner

    from mailops.cli import cli

    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(mailserver, mb.address, pw, [big(6), make_msg("a@cust.test", mb.address)])
    sync_mailbox(store, settings, mb)
    store.close()
    out = CliRunner().invoke(cli, ["db", "status"])
    assert out.exit_code == 0, out.output
    assert f"blobs: {settings.db}.blobs" in out.output
    assert "raw messages: inline: 1" in out.output  # the small one stays in DuckDB
    assert "files on disk: 2" in out.output and "orphans: 0" in out.output


def test_G1_S12_erase_removes_rows_and_blob_files(store, settings, password_mailbox, mailserver):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(mailserver, mb.address, pw, [big(6)])
    sync_mailbox(store, settings, mb)
    raw_sha = store.scalar("SELECT raw_sha256 FROM messages")
    att_sha = store.scalar("SELECT sha256 FROM attachments")
    assert store.blobs.has(raw_sha) and store.blobs.has(att_sha)
    assert blobs.erase(store, raw=[raw_sha], attachments=[att_sha]) == 2
    assert not store.blobs.has(raw_sha) and not store.blobs.has(att_sha)
    assert blobs.raw_bytes(store, raw_sha) is None
    assert blobs.stats(store)["files"] == 0


# -- S15: poison messages -----------------------------------------------------------------------
def test_S15_poison_message_does_not_block(store, settings, password_mailbox, mailserver):
    """A message the server cannot send (its Maildir file unreadable: Dovecot answers NO) gets
    an error row; the messages after it are stored; it is retried up to the bound, then left
    with its reason."""
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    msgs = [make_msg("a@cust.test", mb.address, subject=f"m{i}") for i in range(4)]
    append(mailserver, mb.address, pw, msgs)
    bad = maildir_file(mailserver, mb.address, b"Subject: m1\r\n")
    bad.chmod(0)
    quick = dataclasses.replace(settings, sync_error_retries=3)
    try:
        r1 = sync_mailbox(store, quick, mb)
        assert (r1.status, r1.stored, r1.errors) == ("ok", 3, 1), r1.one_line()
        rows = store.query(
            "SELECT uid, decision, reason FROM audit_ledger WHERE run_id = ? ORDER BY uid",
            [r1.run_id],
        )
        assert rows["decision"].tolist() == ["stored", "error", "stored", "stored"]
        assert rows["reason"].tolist()[1] == "fetch_failed"
        errs = state.message_errors(store, mb.id)
        assert errs[["uid", "reason", "attempts", "state"]].values.tolist() == [
            [2, "fetch_failed", 1, "retrying"]
        ]
        assert "\n" not in errs["error"].iloc[0] and errs["error"].iloc[0]
        r2 = sync_mailbox(store, quick, mb)  # nothing new on the server: only the retry
        assert (r2.examined, r2.errors) == (1, 1)
        r3 = sync_mailbox(store, quick, mb)
        assert r3.errors == 1
        assert state.message_errors(store, mb.id)[["attempts", "state"]].values.tolist() == [
            [3, "given_up"]
        ]
        r4 = sync_mailbox(store, quick, mb)  # given up: not tried again
        assert (r4.examined, r4.folders_changed) == (0, 0)
        runs = store.query("SELECT status, errors FROM sync_runs ORDER BY id").values.tolist()
        assert runs == [["ok", 1], ["ok", 1], ["ok", 1], ["ok", 0]]
    finally:
        bad.chmod(0o600)
    assert count(store, "messages") == 3


def test_S15_poison_message_stored_once_the_server_can_send_it(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject="late")])
    bad = maildir_file(mailserver, mb.address, b"Subject: late\r\n")
    bad.chmod(0)
    try:
        assert sync_mailbox(store, settings, mb).errors == 1
    finally:
        bad.chmod(0o600)
    r = sync_mailbox(store, settings, mb)
    assert (r.stored, r.errors) == (1, 0)
    assert state.message_errors(store, mb.id)["state"].tolist() == ["resolved"]


def test_S15_store_refusing_one_message_keeps_the_others(
    store, settings, password_mailbox, mailserver, monkeypatch
):
    """The store refusing one message (as DuckDB did with OutOfMemory) rolls back nothing
    but that message: it gets a store_failed row, the unit's other messages and the
    checkpoint are committed."""
    import duckdb

    from mailops.store import messages

    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, subject=s) for s in ("ok 1", "refused", "ok 2")],
    )
    real = messages.save_messages

    def picky(store_, batch, **kw):
        if any(p.headers.subject == "refused" for p, _ in batch):
            raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")
        return real(store_, batch, **kw)

    monkeypatch.setattr("mailops.sync.save_messages", picky)
    r = sync_mailbox(store, settings, mb)
    assert (r.status, r.stored, r.errors) == ("ok", 2, 1), r.one_line()
    assert ledger(store, r.run_id) == [
        ["ok 1", "stored", "stored_customer"],
        ["refused", "error", "store_failed"],
        ["ok 2", "stored", "stored_customer"],
    ]
    assert "OutOfMemory" in state.message_errors(store, mb.id)["error"].iloc[0]
    monkeypatch.setattr("mailops.sync.save_messages", real)
    r2 = sync_mailbox(store, settings, mb)  # the retry goes through
    assert (r2.stored, r2.errors) == (1, 0)


def test_S15_folder_failing_every_run_turns_problematic(
    store, settings, password_mailbox, mailserver
):
    """A folder Dovecot cannot open (its Maildir unreadable) fails each run with its own
    error; the other folders are synced; after the budget the mailbox is problematic with
    folder_failing and IT guidance."""
    from pathlib import Path

    from mailops.problems import PROBLEM_REASONS

    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(
        mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject="p")], "Projects"
    )
    local, domain = mb.address.split("@")
    folder = Path(mailserver.root, "mail", domain, local, "Maildir", "Projects")
    folder.chmod(0)
    try:
        for n in range(1, 4):
            append(
                mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address, subject=f"i{n}")]
            )
            r = sync_mailbox(store, settings, mb)
            assert (r.status, r.error_code, r.stored) == ("failed", "folder_failed", 1)
            assert "Projects" in (r.error_message or "")
        assert r.problematic
        got = mailbox_store.get(store, mb.id)
        assert (got.state, got.problem_code) == ("problematic", "folder_failing")
        assert "Projects" in (got.problem_message or "")
        assert "folder" in PROBLEM_REASONS["folder_failing"].guidance
        runs = store.query("SELECT status, error_code FROM sync_runs ORDER BY id").values.tolist()
        assert runs == [["failed", "folder_failed"]] * 3
        rep = store.query(
            "SELECT state, error FROM sync_folder_reports WHERE folder = 'Projects' ORDER BY run_id"
        )
        assert rep["state"].tolist() == ["failed"] * 3 and rep["error"].iloc[0]
    finally:
        folder.chmod(0o700)


def test_S15_every_failed_run_is_recorded_and_a_failing_sync_turns_problematic(
    store, settings, password_mailbox, mailserver, monkeypatch
):
    mb, pw = password_mailbox()
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address)])

    def broken(*a, **k):
        raise RuntimeError("defect in the engine")

    monkeypatch.setattr("mailops.sync._examine", broken)
    for _ in range(3):
        r = sync_mailbox(store, settings, mb)
        assert (r.status, r.error_code) == ("failed", "sync_error")
    runs = store.query("SELECT status, error_code, error_message FROM sync_runs ORDER BY id")
    assert runs["status"].tolist() == ["failed"] * 3
    assert "defect in the engine" in runs["error_message"].iloc[0]
    got = mailbox_store.get(store, mb.id)
    assert (got.state, got.problem_code) == ("problematic", "sync_failing")


def test_S15_a_run_the_store_cannot_record_is_recorded_at_the_next_start(
    store, settings, password_mailbox, mailserver, monkeypatch
):
    """Full disk: the run rows cannot be written; they are kept beside the store and the
    next start records them."""
    import duckdb

    mb, pw = password_mailbox()
    append(mailserver, mb.address, pw, [make_msg("z@z.test", mb.address)])

    def full(*a, **k):
        raise duckdb.IOException("Could not write file: No space left on device")

    monkeypatch.setattr(state, "add_folder_reports", full)
    with pytest.raises(duckdb.IOException):
        sync_mailbox(store, settings, mb)
    assert count(store, "sync_runs") == 1  # the first unit's row: still 'running'
    assert os.path.exists(f"{settings.db}.pending-runs.jsonl")
    monkeypatch.undo()
    sync_mailbox(store, settings, mb)
    runs = store.query("SELECT status, error_message FROM sync_runs ORDER BY id")
    assert runs["status"].tolist() == ["ok", "ok"]
    assert "recorded late" in runs["error_message"].iloc[0]
    assert not os.path.exists(f"{settings.db}.pending-runs.jsonl")


# -- S11: what was not examined -------------------------------------------------------------------
def test_S11_folders_not_examined_and_mail_before_the_window_are_counted(
    store, settings, password_mailbox, mailserver
):
    mb, pw = password_mailbox(sync_folders='["INBOX", "Sent", "Projects"]')
    add_customer(store, "c-a", "a@cust.test")
    old = [
        (
            make_msg("a@cust.test", mb.address, subject=f"old{i}", date=days_ago(90)),
            (),
            days_ago(90),
        )
        for i in range(3)
    ]
    append(mailserver, mb.address, pw, [*old, make_msg("a@cust.test", mb.address, subject="new")])
    append(mailserver, mb.address, pw, [make_msg("spam@x.test", mb.address)] * 2, "Junk")
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address)], "Trash")
    append(mailserver, mb.address, pw, [make_msg("a@cust.test", mb.address)] * 4, "Private")
    r = sync_mailbox(store, settings, mb)
    assert (r.status, r.stored) == ("ok", 1)
    acc = state.folder_accounting(store, mb.id, viewer=SYSTEM).set_index("folder")
    assert acc.loc[
        "INBOX", ["state", "server_messages", "before_window", "examined_ever"]
    ].tolist() == [
        "examined",
        4,
        3,
        1,
    ]
    assert acc.loc["Junk", ["state", "not_examined_reason", "server_messages"]].tolist() == [
        "not_examined",
        "special_use",
        2,
    ]
    assert acc.loc["Trash", "server_messages"] == 1
    assert acc.loc["Private", ["not_examined_reason", "server_messages"]].tolist() == [
        "not_selected",
        4,
    ]
    assert acc.loc["Drafts", "not_examined_reason"] == "special_use"
    examined = acc[acc["state"] != "not_examined"]
    assert examined["not_accounted"].sum() == 0  # every message on the server accounted for
    # a no-change resync keeps the counts without a SELECT (the folder is unchanged)
    r2 = sync_mailbox(store, settings, mb)
    assert r2.folders_changed == 0
    acc2 = state.folder_accounting(store, mb.id, viewer=SYSTEM).set_index("folder")
    assert acc2.loc["INBOX", ["state", "before_window"]].tolist() == ["unchanged", 3]
    assert acc2.loc["Private", "server_messages"] == 4


def test_S11_audit_shows_what_was_not_examined(
    store, settings, password_mailbox, mailserver, capsys
):
    from mailops.cli import main

    mb, pw = password_mailbox()
    append(mailserver, mb.address, pw, [make_msg("spam@x.test", mb.address)], "Junk")
    append(mailserver, mb.address, pw, [(make_msg("a@x.test", mb.address), (), days_ago(60))])
    sync_mailbox(store, settings, mb)
    store.close()
    assert main(["audit", "--folders"]) == 0
    out = capsys.readouterr().out
    assert "Junk" in out and "special_use" in out and "before_window" in out


def test_S8_S13_a_big_sent_copy_links_to_the_message_recorded_at_send_time(
    store, settings, password_mailbox, mailserver
):
    """send records the message from memory; the sync later reads its Sent copy spooled from
    the server (over 4 MB): one fingerprint either way, so it is linked, not a variant."""
    from mailops.store.messages import record_message

    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    raw = big_message(mb.address, "a@cust.test", 5 * MB, subject="offer with plans")
    key = record_message(store, raw, direction="outbound", mailbox=mb, customers=["c-a"])
    append(mailserver, mb.address, pw, [raw], "Sent")
    r = sync_mailbox(store, settings, mb)
    assert (r.status, r.stored, r.linked) == ("ok", 0, 1), r.one_line()
    assert store.scalar("SELECT identity FROM audit_ledger") == "linked"
    assert count(store, "messages") == 1 and count(store, "activities") == 1
    assert store.scalar("SELECT message_id FROM message_places") == key
