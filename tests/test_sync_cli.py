"""`mailops sync` and `mailops audit` through the real CLI entry point (S1, S11)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sync_support import add_customer, append, make_msg

from mailops.cli import main

pytestmark = pytest.mark.server


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_S11_sync_then_audit_summary_and_exports(
    store, settings, password_mailbox, mailserver, capsys, tmp_path
):
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test")
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address), make_msg("n@n.test", mb.address)],
    )
    store.close()

    code, out, err = run(capsys, "sync", "--all", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["summary"]["stored"] == 1 and data["summary"]["by_reason"] == {
        "stored_customer": 1,
        "no_customer": 1,
    }

    code, out, _ = run(capsys, "sync", mb.address)
    assert code == 0 and out.startswith("synced 1 mailbox(es)") and "examined 0" in out

    code, out, _ = run(capsys, "audit", "--summary")
    assert code == 0
    assert [line.split() for line in out.strip().splitlines()] == [
        ["stored", "stored_customer", "1"],
        ["skipped", "no_customer", "1"],
    ]
    files = {k: tmp_path / f"ledger.{k}" for k in ("csv", "json", "parquet")}
    for path in files.values():
        code, out, _ = run(capsys, "audit", "--mailbox", mb.address, "--output", str(path))
        assert code == 0 and out.strip() == f"wrote 2 ledger rows to {path}"
    assert len(pd.read_csv(files["csv"])) == 2
    assert {r["reason"] for r in json.loads(files["json"].read_text())} == {
        "stored_customer",
        "no_customer",
    }
    pq = pd.read_parquet(files["parquet"])
    assert set(pq.columns) >= {
        "run_id",
        "mailbox",
        "folder",
        "uid",
        "message_id",
        "decision",
        "reason",
        "customers",
    }

    code, out, _ = run(capsys, "audit", "--runs")
    assert code == 0 and "ok" in out


def test_S1_sync_of_a_problematic_mailbox_is_one_line(store, settings, password_mailbox, capsys):
    from mailops.store import mailboxes

    mb, _ = password_mailbox()
    mailboxes.set_state(store, mb.id, "problematic", code="auth_failed", message="wrong password")
    store.close()
    code, out, err = run(capsys, "sync", mb.address)
    assert code != 0
    assert err.startswith("error [not_connected]") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_sync_and_audit_commands_are_documented_with_help():
    from pathlib import Path

    from mailops.cli import cli

    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    block = readme.split("<!-- section:cli-sync -->")[1].split("<!-- /section:cli-sync -->")[0]
    for name in ("sync", "audit"):
        cmd = cli.commands[name]
        assert cmd.help and f"`mailops {name}" in block
        for p in cmd.params:
            if getattr(p, "hidden", False) or not getattr(p, "opts", None):
                continue
            flag = (
                next(o for o in p.opts if o.startswith("--"))
                if any(o.startswith("--") for o in p.opts)
                else None
            )
            if flag:
                assert flag in block, f"{name} {flag} missing from README cli-sync"
