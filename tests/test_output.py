"""One output convention for every listing command (issue 9): a table by default; --json (one
array), --nl (JSON lines), --csv, --tsv on stdout; --output FILE with the format from its
suffix. Each listing command runs on a synthetic company in every format, and the formats
must agree with each other row for row."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pandas as pd
import pytest
from report_support import synthetic_store

from mailops.cli import cli, main
from mailops.cli.output import Output, emit

LISTINGS = [
    ["stats", "activity", "--days", "0"],
    ["stats", "response-times", "--days", "0", "--each"],
    ["stats", "response-times", "--days", "0"],
    ["stats", "unanswered"],
    ["stats", "problematic"],
    ["stats", "problematic", "--history"],
    ["mailbox", "list"],
    ["mailbox", "conflicts", "--all"],
    ["audit"],
    ["audit", "--summary"],
    ["audit", "--runs"],
    ["audit", "--reasons"],
    ["outbox", "list"],
    ["template", "list"],
    ["draft", "list", "--all"],
    ["notifications", "list", "--as", "s1"],
    ["activities", "c1", "--as", "s1", "--no-sync"],
    ["followup", "list", "--as", "s1"],
    ["followup", "suggestions", "--as", "s1"],
    ["directory", "status"],
    ["directory", "history", "c1"],
    ["db", "status"],
    ["never-log", "list"],
    ["mailbox", "folders", "sara@corp.test"],
    ["dry-run", "--internal-policy", "off"],
    ["explain", "--subject", "offer"],
    ["erase", "--receipts", "--as", "a1"],
]
# listings that must have rows in the synthetic company (the others may be empty there)
WITH_ROWS = {"stats activity", "stats problematic", "mailbox list", "audit", "template list"}
WITH_ROWS |= {"directory status", "directory history", "db status", "activities"}


VOLATILE = {"not_synced_to"}  # "until now": moves between two runs


def _stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def _key(argv: list[str]) -> str:
    return " ".join(a for a in argv[:2] if not a.startswith("-") and a not in ("c1", "s1"))


@pytest.fixture(scope="module")
def company(tmp_path_factory):
    store, syn = synthetic_store(tmp_path_factory.mktemp("output") / "o.duckdb")
    from mailops.store import outbox as obstore

    obstore.save_template(
        store, "offer", "Offer for {{ customer.name }}", body_text="=1+1 Dear", created_by="s1"
    )
    store.close()
    return store.path


@pytest.fixture
def db(company, settings, monkeypatch):
    monkeypatch.setenv("MAILOPS_DB", company)
    return company


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _rows_csv(text: str, sep: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=sep)
    rows = list(reader)
    return list(reader.fieldnames or []), rows


@pytest.mark.parametrize("argv", LISTINGS, ids=[" ".join(a) for a in LISTINGS])
def test_listing_command_speaks_every_format(argv, db, tmp_path, capsys):
    code, table, err = _run(capsys, argv)
    assert code == 0, err
    assert table.strip(), "the default table printed nothing"

    code, out, err = _run(capsys, [*argv, "--json"])
    assert code == 0, err
    array = json.loads(out)
    assert isinstance(array, list) and all(isinstance(r, dict) for r in array)
    if _key(argv) in WITH_ROWS:
        assert array, f"{' '.join(argv)} --json gave no rows"

    code, out, err = _run(capsys, [*argv, "--nl"])
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert _stable(lines) == _stable(array)

    columns = list(array[0]) if array else None
    for flag, sep in (("--csv", ","), ("--tsv", "\t")):
        code, out, err = _run(capsys, [*argv, flag])
        assert code == 0, err
        header, rows = _rows_csv(out, sep)
        assert len(rows) == len(array)
        if columns is not None:
            assert header == columns

    for suffix in (".json", ".jsonl", ".csv", ".tsv", ".parquet"):
        path = tmp_path / f"out{suffix}"
        code, out, err = _run(capsys, [*argv, "--output", str(path)])
        assert code == 0, err
        assert out.strip().startswith(f"wrote {len(array)} ") and out.strip().endswith(str(path))
        if suffix == ".json":
            assert _stable(json.loads(path.read_text())) == _stable(array)
        elif suffix == ".jsonl":
            assert _stable([json.loads(x) for x in path.read_text().splitlines()]) == _stable(array)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
            assert len(frame) == len(array)
            if columns is not None:
                assert list(frame.columns) == columns
        else:
            header, rows = _rows_csv(path.read_text(), "," if suffix == ".csv" else "\t")
            assert len(rows) == len(array)
            if columns is not None:
                assert header == columns


@pytest.mark.parametrize(
    "extra,says",
    [
        (["--json", "--csv"], "choose one output format"),
        (["--output", "x.txt"], "unknown format .txt"),
        (["--output", "x.csv", "--json"], "--output takes its format from the file name"),
    ],
    ids=["two-formats", "unknown-suffix", "output-and-flag"],
)
def test_bad_output_options_are_one_line(extra, says, db, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, ["template", "list", *extra])
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and says in err
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "x.csv").exists()


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, cmd in group.commands.items():
        path = f"{prefix} {name}".strip()
        if isinstance(cmd, click.Group):
            out.update(_commands(cmd, path))
            if cmd.callback is not None and cmd.invoke_without_command:
                out[path] = cmd
        else:
            out[path] = cmd
    return out


def test_every_command_with_output_options_is_tested_here():
    """A new listing command uses the helper and gets a line in LISTINGS."""
    with_options = {
        path
        for path, cmd in _commands(cli).items()
        if {"out_json", "out_nl", "out_csv", "out_tsv", "out_file"}
        <= {p.name for p in cmd.params if p.name}
    }
    tested = {" ".join(a for a in argv if not a.startswith("-"))[:100] for argv in LISTINGS}
    tested_paths = {p for p in with_options if any(t.startswith(p) for t in tested)}
    assert with_options == tested_paths, sorted(with_options - tested_paths)
    assert len(with_options) >= 17


def test_no_listing_keeps_its_own_json_or_csv_flag():
    """--json/--csv mean one thing: only commands with the whole convention declare them
    (`sync --json` prints a run report and `message show --json` one message, not listings;
    `report --json` result paths; `devserver [postgres] status --json` one state; `worker --json` a
    line per mailbox synced, like `sync --watch`)."""
    not_listings = {
        "sync",
        "message show",
        "report",
        "devserver status",
        "devserver postgres status",
        "worker",
    }
    for path, cmd in _commands(cli).items():
        names = {p.name for p in cmd.params}
        flags = {o for p in cmd.params for o in getattr(p, "opts", [])}
        if path in not_listings:
            continue
        if {"--json", "--csv"} & flags:
            assert "out_file" in names, f"`mailops {path}` has its own --json/--csv"


def test_emit_formats_values_the_same_way(capsys, tmp_path):
    df = pd.DataFrame(
        {
            "id": [1, 2],
            "at": pd.to_datetime(["2026-11-30 08:00:00", None]),
            "subject": ["=HYPERLINK(1)", 'Grüße, "quoted"'],
            "customers": [["c1", "c2"], []],
            "score": [1.5, float("nan")],
        }
    )
    emit(df, "json")
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["at"].startswith("2026-11-30T08:00:00") and rows[1]["at"] is None
    assert rows[1]["score"] is None and rows[0]["customers"] == ["c1", "c2"]
    assert rows[1]["subject"] == 'Grüße, "quoted"'  # JSON stays raw
    emit(df, "csv")
    _, csv_rows = _rows_csv(capsys.readouterr().out, ",")
    assert csv_rows[0]["subject"] == "'=HYPERLINK(1)"  # spreadsheet-safe
    assert csv_rows[0]["customers"] == "c1;c2"
    emit(df, Output("parquet", tmp_path / "x.parquet"))
    assert "wrote 2 rows" in capsys.readouterr().out
    assert pd.read_parquet(tmp_path / "x.parquet")["subject"].tolist() == df["subject"].tolist()
    emit(df.iloc[0:0], "table", empty="nothing here")
    assert capsys.readouterr().out == "nothing here\n"
    assert Output.of() == Output("table") and Output.of(nl=True) == Output("nl")
    assert Output.of(output="a/b.JSONL") == Output("nl", Path("a/b.JSONL"))
