"""R2-R5: every report notebook runs headless under papermill; the values it glued
(scrapbook) equal the direct queries and the figures computed by hand."""

from __future__ import annotations

import json
import re

import papermill as pm
import pytest
from report_support import executed_reports, notebooks_path, scraps

from mailops.cli import main
from mailops.errors import ReportError
from mailops.notebook import list_notebooks, run_report
from mailops.reports import Scope, accounts, activity, audit, open_reader, records

pytestmark = pytest.mark.notebook

REPORTS = ("sync_audit", "activity_report", "problematic_accounts", "scheduled_sync")


@pytest.fixture(scope="session")
def ran(tmp_path_factory):
    return executed_reports(tmp_path_factory.mktemp("notebooks"))


@pytest.fixture
def scope(ran):
    store = open_reader(ran["store_path"])
    yield Scope(store, now=ran["syn"].now)
    store.close()


def test_R2_sync_audit_notebook_values_equal_queries(ran, scope):
    got = scraps(ran["sync_audit"].ipynb_path)
    direct = records(audit.reason_counts(scope), "reason", "messages")
    assert got["counts_by_reason"] == direct == ran["syn"].expected["counts_by_reason"]
    assert got["runs"] == len(audit.runs(scope)) == 4
    assert got["ledger_rows"] == len(audit.ledger(scope, customer="c1"))
    assert got["stored_for_customer"] == len(audit.customer_emails(scope, "c1")) == 6
    assert got["flagged_days"] == int(audit.reconciliation(scope)["flagged"].sum())
    assert got["flagged_days"] == ran["syn"].expected["flagged_days"]
    assert got["viewer_scope"] == "all"
    # S11 / S15 sections: the same figures as the queries
    assert got["not_accounted"] == int(audit.accounting(scope)["not_accounted"].fillna(0).sum())
    assert got["message_errors"] == len(audit.message_errors(scope))


def test_R2_sync_audit_exports_beside_the_report(ran):
    res = ran["sync_audit"]
    names = sorted(p.name.split("_", 2)[-1] for p in res.exports)
    assert names == sorted(
        f"{t}.{ext}" for t in ("ledger", "runs", "reconciliation") for ext in ("csv", "parquet")
    )
    assert all(p.parent == res.ipynb_path.parent for p in res.exports)


def test_R3_activity_notebook_values_equal_queries(ran, scope):
    got = scraps(ran["activity_report"].ipynb_path)
    syn = ran["syn"]
    direct = records(activity.volumes(scope, "sales_person"), "sales_person_id", "total")
    assert got["emails_per_sales_person"] == direct == syn.expected["emails_per_sales_person"]
    assert got["inbound_per_sales_person"]["s1"] == 4
    assert got["outbound_per_sales_person"]["s1"] == 3
    hours = {}
    for r in got["responses"]:
        hours.setdefault((r["customer_id"], r["thread"]), []).append(r["hours"])
    assert hours == syn.expected["responses"]  # 3.5 h and 24 h by hand for thread a1
    assert got["waiting_customers"] == syn.expected["waiting"]


def test_R4_problematic_notebook_lists_the_mailbox_with_its_reason(ran, scope):
    got = scraps(ran["problematic_accounts"].ipynb_path)
    direct = records(accounts.problematic(scope), "mailbox", "code")
    assert got["problematic"] == direct == {"sue@corp.test": "token_revoked"}
    assert got["states"] == {"connected": 2, "problematic": 1}
    html = ran["problematic_accounts"].html_path.read_text()
    assert "The user must reconnect the mailbox" in html  # IT guidance from problems.py


def test_R5_outputs_land_in_reports_name_timestamp(ran):
    for name in ("sync_audit", "activity_report", "problematic_accounts"):
        res = ran[name]
        assert res.ipynb_path.parent == ran["reports_dir"].resolve() / name
        assert re.fullmatch(r"\d{8}T\d{6}Z(-\d+)?(_[\w.@-]+)?", res.ipynb_path.stem)
        assert res.html_path == res.ipynb_path.with_suffix(".html")
    assert ran["sync_audit"].ipynb_path.stem.endswith("_c1")  # the scope is in the name


def test_R5_html_hides_code_by_default(ran):
    html = ran["sync_audit"].html_path.read_text()
    assert "audit.reason_counts(" not in html
    assert "stored_customer" in html
    assert "scrapbook" not in html  # glued test values are not shown to readers


@pytest.mark.parametrize("name", REPORTS)
def test_R5_parameters_cell_is_typed_and_commented(name):
    path = notebooks_path() / f"{name}.ipynb"
    params = pm.inspect_notebook(str(path))
    assert params, "a parameters cell tagged 'parameters'"
    for p in params.values():
        assert p["inferred_type_name"] in ("str", "int", "float", "bool"), p
        assert p["help"], f"{p['name']} has no comment"
        assert not re.search(r"pass|secret|token|key", p["name"], re.I)
    assert "VIEWER" in params  # P1: every report names who reads it


def test_R5_list_shows_notebooks_and_parameters(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILOPS_DB", str(tmp_path / "m.duckdb"))
    assert main(["report", "--list", "--json"]) == 0
    listed = {n["name"]: n for n in json.loads(capsys.readouterr().out)}
    assert set(REPORTS) <= set(listed)
    assert listed["sync_audit"]["parameters"]["CUSTOMER"]["inferred_type_name"] == "str"
    assert [i.name for i in list_notebooks() if i.kind in ("job", "report")][0] == "scheduled_sync"


def test_R5_unknown_or_secret_parameter_is_refused(ran):
    with pytest.raises(ReportError, match="no parameter"):
        run_report("sync_audit", {"NOPE": "1"}, settings=ran["settings"])
    with pytest.raises(ReportError, match="looks like a secret"):
        run_report("sync_audit", {"PASSWORD": "x"}, settings=ran["settings"])
    with pytest.raises(ReportError, match="no notebook"):
        run_report("nope", {}, settings=ran["settings"])


def test_R5_failing_notebook_exits_non_zero_with_one_line(ran, capsys, monkeypatch):
    monkeypatch.setenv("MAILOPS_DB", ran["store_path"])
    rc = main(
        [
            "report",
            "problematic_accounts",
            "-p",
            "VIEWER",
            "nobody",
            "--reports-dir",
            str(ran["reports_dir"]),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == ReportError.exit_code
    assert len(err.splitlines()) == 1
    assert "PermissionDenied" in err and "unknown user 'nobody'" in err
    assert "Traceback" not in err


def test_P1_report_for_a_sales_person_shows_only_his_mail(ran):
    res = run_report("activity_report", {"DAYS": 0, "VIEWER": "s1"}, settings=ran["settings"])
    got = scraps(res.ipynb_path)
    assert got["viewer_scope"] == "s1"
    assert got["emails_per_sales_person"] == {"s1": 7}
    assert set(got["emails_per_customer"]) == {"c1", "c2"}
    assert res.ipynb_path.stem.endswith("_s1")


# -- R5 on a real server: the scheduled notebook syncs, then summarises ------------------------
@pytest.mark.server
def test_R5_scheduled_sync_notebook_syncs_and_summarises(
    mailserver, store, settings, password_mailbox, tmp_path
):
    from sync_support import add_customer, make_msg

    from mailops.secrets import SecretStore
    from mailops.store import mailboxes

    good, _ = password_mailbox(owner="user-1")
    broken, _ = password_mailbox(owner="user-2")
    SecretStore(settings).put(broken.secret_ref, "wrong password")
    add_customer(store, "cust-1", "buyer@customers.test")
    mailserver.deliver(
        "buyer@customers.test",
        good.address,
        make_msg("buyer@customers.test", good.address, subject="Unit 7?"),
    )
    mailserver.deliver(
        "news@shop.test", good.address, make_msg("news@shop.test", good.address, subject="Sale")
    )
    store.close()

    run_settings = _run_settings(settings, tmp_path)
    with pytest.raises(ReportError) as failed:  # O1: a failed mailbox fails the job ...
        run_report("scheduled_sync", {"TRIGGER": "schedule"}, settings=run_settings)
    assert (failed.value.code, failed.value.exit_code) == ("sync_failed", 9)
    assert broken.address in failed.value.message
    [ipynb] = sorted((tmp_path / "reports" / "scheduled_sync").glob("*.ipynb"))
    got = scraps(ipynb)  # ... after every cell above the last one ran and was rendered
    assert ipynb.with_suffix(".html").exists()

    assert got["outcomes"] == {good.address: "ok", broken.address: "failed"}
    assert got["runs"] == 2
    assert got["run_status"] == {good.address: "ok", broken.address: "failed"}
    assert got["counts_by_reason"] == {"stored_customer": 1, "no_customer": 1}
    assert got["problematic"] == {broken.address: "auth_failed"}
    reader = open_reader(settings.db)
    try:
        assert mailboxes.get(reader, broken.id).state == "problematic"
        triggers = {r[0] for r in reader.rows("SELECT DISTINCT trigger FROM sync_runs")}
        assert triggers == {"schedule"}
        direct = records(audit.reason_counts(Scope(reader)), "reason", "messages")
        assert direct == got["counts_by_reason"]
    finally:
        reader.close()

    # the next scheduled run: the problematic mailbox is skipped (waits for the user): 10
    rc = main(
        ["--db", settings.db, "report", "scheduled_sync", "--reports-dir", str(tmp_path / "r2")]
    )
    assert rc == 10


def _run_settings(settings, tmp_path):  # noqa: N802 - a tiny factory used above
    from dataclasses import replace

    return replace(
        settings, reports_dir=str(tmp_path / "reports"), notebooks_dir=str(notebooks_path())
    )
