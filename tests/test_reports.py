"""R2-R4 report queries on a synthetic company whose figures are computed by hand
(tests/report_support.py), and the same queries through `mailops stats`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pandas as pd
import pytest
from report_support import synthetic_store

from mailops.cli import main
from mailops.reports import Scope, accounts, activity, audit, parse_when, records
from mailops.reports.activity import business_hours_between


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    store, syn = synthetic_store(tmp_path_factory.mktemp("reports") / "r.duckdb")
    yield store, syn
    store.close()


@pytest.fixture
def scope(syn):
    store, s = syn
    return Scope(store, now=s.now)


# -- R2 / S11: sync audit ------------------------------------------------------------------
def test_R2_counts_by_reason(syn, scope):
    _, s = syn
    df = audit.reason_counts(scope)
    assert records(df, "reason", "messages") == s.expected["counts_by_reason"]
    assert "primary address" in df.set_index("reason").loc["stored_customer", "description"]


def test_R2_runs_have_duration_and_counts(syn, scope):
    _, s = syn
    runs = audit.runs(scope).set_index("run_id")
    assert len(runs) == 4  # Sara's run yesterday, and today's three
    sara = runs.loc[s.runs["sara@corp.test"]]
    assert (sara["mailbox"], sara["duration_s"], sara["stored"]) == ("sara@corp.test", 3.0, 7)
    assert runs.loc[s.runs["sue@corp.test"], "error_code"] == "token_revoked"
    one = audit.runs(scope, run_id=s.runs["sam@corp.test"])
    assert list(one["mailbox"]) == ["sam@corp.test"]


@pytest.mark.parametrize(
    "kw, expected",
    [
        (
            {"subject": "4b"},
            {"a1@buyer.test", "a2@buyer.test", "a3@corp.test", "a4@buyer.test", "a5@corp.test"},
        ),
        ({"message_id": "<A3@corp.test>"}, {"a3@corp.test"}),
        ({"customer": "Colin"}, {"b1@corp.test", "b2@buyer.test"}),
        ({"customer": "cora@south.test"}, set()),  # Sue's mailbox never synced: no ledger rows
        ({"reason": "internal"}, {"skip10@x.test"}),
        ({"address": "colin@buyer.test"}, {"b1@corp.test", "b2@buyer.test"}),
        ({"search": "newsletter"}, {"skip9@x.test"}),
    ],
    ids=[
        "S11-subject",
        "S11-message-id",
        "S11-customer-name",
        "S11-customer-address",
        "S11-reason",
        "S11-to-address",
        "S11-free-text",
    ],
)
def test_S11_ledger_is_searchable(scope, kw, expected):
    assert set(audit.ledger(scope, **kw)["message_id"]) == expected


def test_S11_emails_stored_for_a_customer_and_from_which_mailbox(scope):
    df = audit.customer_emails(scope, "c1")
    assert len(df) == 6  # five in the thread, plus the offer to the co-customer (S4)
    assert set(df["stored_from"]) == {"sara@corp.test"}
    row = df.set_index("message_id").loc["b1@corp.test"]
    assert row["match_kind"] == "co_customer" and row["seen_in"] == "sara@corp.test Sent"


def test_R2_reconciliation_flags_the_gap(syn, scope):
    _, s = syn
    df = audit.reconciliation(scope)
    today = df[df["last_run"] == s.runs["sara@corp.test"]].iloc[0]
    # INBOX: 2 on the server yesterday, 10 today, 7 examined in between -> 1 unexplained
    assert (today["server_messages"], today["ledger_examined"]) == (13, 10)
    assert (today["unexplained"], today["baseline_folders"]) == (1, 1)  # Sent: first listing
    assert today["flagged"] and "1 new on the server but never examined" in today["note"]
    yesterday = df[(df["mailbox"] == "sara@corp.test") & (df["last_run"] != today["last_run"])]
    assert not yesterday["flagged"].iloc[0]  # baseline: mail before the window, by design
    assert "older than the window" in yesterday["note"].iloc[0]
    by_box = df.drop_duplicates("mailbox").set_index("mailbox")
    assert not by_box.loc["sam@corp.test", "flagged"]  # first listing, all examined
    assert by_box.loc["sue@corp.test", "flagged"]  # failed run: no listing to reconcile
    assert "token_revoked" in by_box.loc["sue@corp.test", "note"]
    assert int(df["flagged"].sum()) == s.expected["flagged_days"]


def test_R2_reconciliation_counts_removed_mail(syn, scope):
    store, s = syn
    run = s.runs["sam@corp.test"]
    store.execute("UPDATE sync_folder_reports SET server_messages = 0 WHERE run_id = ?", [run])
    earlier = store.scalar(  # an earlier run (run ids grow with time, as the sync makes them)
        "INSERT INTO sync_runs (id, mailbox_id, trigger, started_at, status)"
        " VALUES (0, ?, 'x', ?, 'ok') RETURNING id",
        [s.mailboxes["sam@corp.test"], s.now - timedelta(days=3)],
    )
    store.execute(
        "INSERT INTO sync_folder_reports (run_id, mailbox_id, folder, uidvalidity, server_messages)"
        " VALUES (?, ?, 'INBOX', 1, 0)",
        [earlier, s.mailboxes["sam@corp.test"]],
    )
    try:
        row = audit.reconciliation(scope).set_index("last_run").loc[run]
        # 0 before, 2 examined since, 0 on the server now: two were deleted there (S7)
        assert (row["removed"], row["unexplained"], row["flagged"]) == (2, 0, False)
        assert "2 removed or moved away" in row["note"]
    finally:
        store.execute("DELETE FROM sync_folder_reports WHERE run_id = ?", [earlier])
        store.execute("DELETE FROM sync_runs WHERE id = ?", [earlier])
        store.execute("UPDATE sync_folder_reports SET server_messages = 2 WHERE run_id = ?", [run])


def test_R2_export_csv_and_parquet(scope, tmp_path):
    ledger = audit.ledger(scope)
    paths = audit.export(ledger, tmp_path / "x.y@z", "ledger")
    assert [p.name for p in paths] == ["x.y@z_ledger.csv", "x.y@z_ledger.parquet"]
    assert len(pd.read_parquet(paths[1])) == len(ledger) == len(pd.read_csv(paths[0]))
    assert audit.export(ledger, "", "ledger") == []


def test_R2_period_filters_runs(syn):
    store, s = syn
    later = Scope(store, since=s.now + timedelta(days=1), now=s.now)
    assert audit.runs(later).empty and audit.reason_counts(later).empty


# -- R3: activity ----------------------------------------------------------------------------
def test_R3_emails_per_sales_person(syn, scope):
    _, s = syn
    df = activity.volumes(scope, "sales_person")
    assert records(df, "sales_person_id", "total") == s.expected["emails_per_sales_person"]
    sara = df.set_index("sales_person_id").loc["s1"]
    assert (sara["inbound"], sara["outbound"], sara["sales_person"]) == (4, 3, "Sara Sales")


def test_R3_emails_per_customer_deal_week(syn, scope):
    _, s = syn
    cust = records(activity.volumes(scope, "customer"), "customer_id", "total")
    assert cust == {"c1": 6, "c2": 2, "c3": 2, "c4": 1}
    deals = activity.volumes(scope, "deal")
    assert records(deals, "deal_id", "total") == {"d1": 7, "d2": 2}
    weeks = activity.volumes(scope, "week")
    assert weeks["total"].sum() == 10
    assert list(weeks["week_id"])[0] == s.base.date()
    assert len(weeks) == 3 and weeks["total"].iloc[1] == 0  # an empty week is shown as zero
    top = activity.most_active_deals(scope, top=1)
    assert list(top["deal_id"]) == ["d1"] and top["customers"].iloc[0] == 2


def test_R3_response_time_computed_by_hand(syn, scope):
    _, s = syn
    df = activity.response_times(scope)
    got = {k: list(g["hours"]) for k, g in df.groupby(["customer_id", "thread"])}
    assert got == s.expected["responses"]
    first = df[df["first_response"]].set_index("thread")["hours"].to_dict()
    assert first == {"a1@buyer.test": 3.5, "c1@south.test": 0.5}
    summary = activity.response_summary(df).set_index("user_id")
    assert summary.loc["s1", "avg_hours"] == 13.75
    assert summary.loc["s1", "avg_first_response_hours"] == 3.5


def test_R3_response_time_in_business_hours(scope):
    df = activity.response_times(scope, business_hours=True)
    # asked Tuesday 09:00, answered Wednesday 09:00: one working day of 8 hours
    assert list(df[df["thread"] == "a1@buyer.test"]["hours"]) == [3.5, 8.0]


@pytest.mark.parametrize(
    "start, end, kw, hours",
    [
        ("2026-11-20 16:00", "2026-11-23 10:00", {}, 2.0),  # Friday 16:00 -> Monday 10:00
        ("2026-11-21 10:00", "2026-11-22 10:00", {}, 0.0),  # a weekend
        ("2026-11-23 07:00", "2026-11-23 20:00", {}, 8.0),
        ("2026-11-23 07:00", "2026-11-23 20:00", {"tz": "Europe/Berlin"}, 8.0),
        ("2026-11-23 07:30", "2026-11-23 08:30", {"tz": "Europe/Berlin"}, 0.5),  # 08:30-09:30 local
        ("2026-11-23 12:00", "2026-11-23 11:00", {}, 0.0),
    ],
)
def test_R3_business_hours_between(start, end, kw, hours):
    assert (
        business_hours_between(
            pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime(), **kw
        )
        == hours
    )


def test_R3_customers_waiting_for_a_reply(syn, scope):
    _, s = syn
    df = activity.unanswered(scope, days=3)
    assert list(df["customer_id"]) == s.expected["waiting"]
    assert df["owner"].iloc[0] == "Sara Sales"
    assert list(activity.unanswered(scope, days=0.5)["customer_id"]) == ["c2", "c4"]


def test_R3_unlinked_activities_are_left_out(syn, scope):
    store, _ = syn
    store.execute(
        "UPDATE activities SET unlinked_at = now()::TIMESTAMP WHERE message_id = 'd1@north.test'"
    )
    try:
        assert "c4" not in set(activity.volumes(scope, "customer")["customer_id"])
    finally:
        store.execute("UPDATE activities SET unlinked_at = NULL WHERE message_id = 'd1@north.test'")


# -- R4: problematic accounts ----------------------------------------------------------------
def test_R4_problematic_mailbox_with_reason_and_guidance(syn, scope):
    _, s = syn
    df = accounts.problematic(scope)
    assert records(df, "mailbox", "code") == s.expected["problematic"]
    row = df.iloc[0]
    assert row["days_problematic"] == 3.0
    assert row["not_synced_from"] == row["last_good_sync"]
    assert "reconnect" in row["it_guidance"]
    assert "revoked" in row["reason"]


def test_R4_history_of_state_changes(scope):
    df = accounts.history(scope)
    sue = df[df["mailbox"] == "sue@corp.test"]
    assert list(sue["to_state"]) == ["problematic", "connected"]  # newest first
    assert records(accounts.state_counts(scope), "state", "mailboxes") == {
        "connected": 2,
        "problematic": 1,
    }


def test_R2_parse_when_end_day_is_inclusive():
    assert parse_when("2026-11-20", end=True) == datetime(2026, 11, 21)
    assert parse_when("2026-11-20T10:00") == datetime(2026, 11, 20, 10)
    assert parse_when("") is None


# -- the same queries from the CLI ----------------------------------------------------------
def test_R3_stats_cli_csv_json(syn, capsys, monkeypatch):
    store, s = syn
    store.release()  # the CLI opens the file read-only from this same process
    monkeypatch.setenv("MAILOPS_DB", store.path)
    assert main(["stats", "activity", "--days", "0", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["sales_person_id"]: r["total"] for r in rows} == s.expected["emails_per_sales_person"]
    assert (
        main(["stats", "activity", "--by", "customer", "--csv", "--as", "s1", "--days", "0"]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "customer_id,customer,inbound,outbound,total" and len(out) == 3
    assert main(["stats", "response-times", "--days", "0", "--each", "--json"]) == 0
    assert sorted(r["hours"] for r in json.loads(capsys.readouterr().out)) == [0.5, 3.5, 24.0]
    assert main(["stats", "unanswered", "--json"]) == 0
    assert [r["customer_id"] for r in json.loads(capsys.readouterr().out)] == ["c2"]
    assert main(["stats", "problematic"]) == 0
    assert "sue@corp.test" in capsys.readouterr().out
    assert main(["stats", "problematic", "--history", "--csv"]) == 0
    assert "token_revoked" in capsys.readouterr().out


def test_P1_stats_cli_unknown_viewer_is_one_line(syn, capsys, monkeypatch):
    store, _ = syn
    store.release()
    monkeypatch.setenv("MAILOPS_DB", store.path)
    assert main(["stats", "activity", "--as", "nobody"]) == 6
    err = capsys.readouterr().err
    assert err.startswith("error [permission_denied]") and len(err.strip().splitlines()) == 1


def test_R5_report_and_stats_commands_are_documented():
    """Docs that cannot drift: every report/stats command has help and a README row."""
    from pathlib import Path

    import click

    from mailops.cli import cli

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    report = cli.commands["report"]
    assert report.help and "`mailops report NAME" in readme
    stats = cli.commands["stats"]
    assert isinstance(stats, click.Group)
    for name, cmd in stats.commands.items():
        assert cmd.help, name
        assert f"`mailops stats {name}" in readme, name


def test_R6_table_text_is_cut_like_its_html():
    """The executed notebook keeps a table's text/plain twin too: the top ROWS and how many
    more, never the whole frame (a 1M-activity report was 35 MB of it)."""
    from mailops.reports import show

    df = pd.DataFrame({"customer": [f"c{i}" for i in range(500)], "total": range(500)})
    text = repr(show(df, 25))
    assert len(text.splitlines()) == 1 + 25 + 1
    assert "c24" in text and "c25" not in text
    assert text.endswith("475 more rows (see the export)")
    assert len(repr(show(df, None)).splitlines()) == 501
    assert repr(show(df.head(0))) == "(nothing to show)"
