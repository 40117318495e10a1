"""Directory import (issue 2, item 3): idempotent upsert by CRM id and S3 address history."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from mailops.cli import main
from mailops.directory import import_directory
from mailops.errors import DirectoryError
from mailops.store import Store
from mailops.store import directory as q

T0 = datetime(2026, 9, 1, 12, 0)
T1 = datetime(2026, 10, 1, 12, 0)
T2 = datetime(2026, 11, 1, 12, 0)
T3 = datetime(2026, 11, 20, 12, 0)


def users_df() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"id": "u1", "email": "Anna@Acme.test", "name": "Anna Berg", "role": "sales"},
            {"id": "u2", "email": "bo@acme.test", "name": "Bo Chef", "role": "manager"},
        ]
    ).assign(team="north", can_send="true")


def customers_df(**override: dict[str, object]) -> pd.DataFrame:
    rows = {
        "c1": {
            "name": "Zoë Müller",
            "owner_user_id": "u1",
            "email": "Zoe@Mail.test",
            "primary_since": "",
            "additional_emails": "zoe.work@corp.test",
        },
        "c2": {
            "name": "José Núñez",
            "owner_user_id": "u1",
            "email": "jose@mail.test",
            "primary_since": "2026-08-01",
            "additional_emails": "",
        },
        "c3": {
            "name": "Łukasz Wiśniewski",
            "owner_user_id": "u2",
            "email": "lukasz@mail.test",
            "primary_since": "",
            "additional_emails": "",
        },
    }
    for cid, values in override.items():
        rows[cid] = {**rows[cid], **values}
    return pd.DataFrame([{"id": cid, **values} for cid, values in rows.items()])


def deals_df(members: str = "c1;c2") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": "d1",
                "name": "Harbour View B-204",
                "owner_user_id": "u1",
                "project": "Harbour View",
                "unit": "B-204",
                "price": "349000.50",
                "currency": "eur",
                "stage": "offer",
                "created_at": "2026-09-15T10:00:00",
                "expected_close": "2026-12-31",
                "customer_ids": members,
            }
        ]
    )


def snapshot(store: Store) -> dict[str, list[tuple]]:
    return {
        t: store.rows(f"SELECT * FROM {t} ORDER BY ALL")
        for t in ("users", "customers", "customer_addresses", "deals", "deal_customers")
    }


def test_directory_import_is_idempotent(store: Store) -> None:
    first = import_directory(store, users_df(), customers_df(), deals_df(), at=T0)
    assert (first.users.inserted, first.customers.inserted, first.deals.inserted) == (2, 3, 1)
    before = snapshot(store)
    again = import_directory(store, users_df(), customers_df(), deals_df(), at=T1)
    assert not again.changed
    assert (again.users.unchanged, again.customers.unchanged, again.deals.unchanged) == (2, 3, 1)
    assert again.primary_changes == []
    assert snapshot(store) == before  # not even updated_at or address rows


def test_directory_import_values_are_normalised(store: Store) -> None:
    import_directory(store, users_df(), customers_df(), deals_df(), at=T0)
    anna = q.get_user(store, "u1")
    assert (anna.email, anna.role, anna.team, anna.can_send) == (
        "anna@acme.test",
        "sales",
        "north",
        True,
    )
    assert q.customer_primary_address(store, "c1") == "zoe@mail.test"
    deal = q.deals_frame(store).iloc[0]
    assert (deal["currency"], float(deal["price"])) == ("EUR", 349000.5)
    assert q.co_customers(store, "c1") == {"c2"}
    members = q.deal_customers(store, "c2")
    assert dict(zip(members["customer_id"], members["role"], strict=True)) == {
        "c1": "buyer",
        "c2": "co_buyer",
    }
    with pytest.raises(DirectoryError, match="unknown_user|no user"):
        q.get_user(store, "nobody")


def test_directory_import_accepts_typed_dataframes(store: Store) -> None:
    users = pd.DataFrame(
        {"id": [7], "email": ["x@acme.test"], "role": ["it"], "can_send": [False], "team": [None]}
    )
    customers = pd.DataFrame(
        {
            "id": [1, 2],
            "owner_user_id": ["7", float("nan")],
            "email": ["a@b.test", "c@d.test"],
            "primary_since": [pd.Timestamp("2026-10-01 08:00", tz="Europe/Berlin"), pd.NaT],
        }
    )
    result = import_directory(store, users=users, customers=customers, at=T1)
    assert (result.users.inserted, result.customers.inserted) == (1, 2)
    assert q.get_user(store, "7").can_send is False
    periods = q.primary_addresses(store).set_index("customer_id")
    assert periods.loc["1", "valid_from"] == pd.Timestamp("2026-10-01 06:00")  # UTC
    assert periods.loc["2", "valid_from"] == pd.Timestamp(q.SINCE_ALWAYS)


def test_S3_primary_change_closes_old_period_at_primary_since(store: Store) -> None:
    import_directory(store, users_df(), customers_df(), at=T0)
    result = import_directory(
        store,
        customers=customers_df(
            c1={"email": "zoe.new@mail.test", "primary_since": "2026-11-10T09:00:00+01:00"}
        ),
        at=T3,
    )
    change_at = datetime(2026, 11, 10, 8, 0)
    assert [
        (c.customer_id, c.old_address, c.new_address, c.at) for c in result.primary_changes
    ] == [("c1", "zoe@mail.test", "zoe.new@mail.test", change_at)]
    assert (result.customers.updated, result.customers.unchanged) == (1, 2)
    periods = q.primary_addresses(store)
    c1 = periods[periods["customer_id"] == "c1"].reset_index(drop=True)
    assert list(c1["address"]) == ["zoe@mail.test", "zoe.new@mail.test"]
    assert c1.loc[0, "valid_to"] == pd.Timestamp(change_at)
    assert c1.loc[1, "valid_from"] == pd.Timestamp(change_at) and pd.isna(c1.loc[1, "valid_to"])
    assert (
        q.customer_primary_address(store, "c1", at=datetime(2026, 11, 10, 7, 59)) == "zoe@mail.test"
    )
    assert q.customer_primary_address(store, "c1", at=change_at) == "zoe.new@mail.test"
    assert q.customers_by_primary(store, "zoe@mail.test", at=datetime(2026, 11, 1)) == ["c1"]
    assert q.customers_by_primary(store, "zoe@mail.test", at=datetime(2026, 11, 11)) == []


def test_S3_primary_change_without_since_uses_import_time(store: Store) -> None:
    import_directory(store, users_df(), customers_df(), at=T0)
    import_directory(store, customers=customers_df(c3={"email": "l.w@mail.test"}), at=T2)
    hist = q.address_history(store, "c3")
    assert list(hist["address"]) == ["lukasz@mail.test", "l.w@mail.test"]
    assert hist.loc[0, "valid_to"] == pd.Timestamp(T2) and hist.loc[
        1, "valid_from"
    ] == pd.Timestamp(T2)


def test_S3_history_kept_over_several_imports(store: Store) -> None:
    import_directory(store, users_df(), customers_df(), at=T0)
    for address, at in (("b@mail.test", T1), ("c@mail.test", T2), ("zoe@mail.test", T3)):
        import_directory(store, customers=customers_df(c1={"email": address}), at=at)
        import_directory(store, customers=customers_df(c1={"email": address}), at=at)  # no-op
    periods = q.primary_addresses(store)
    c1 = periods[periods["customer_id"] == "c1"].reset_index(drop=True)
    assert list(c1["address"]) == ["zoe@mail.test", "b@mail.test", "c@mail.test", "zoe@mail.test"]
    assert list(c1["valid_to"].iloc[:3]) == [pd.Timestamp(T1), pd.Timestamp(T2), pd.Timestamp(T3)]
    assert pd.isna(c1["valid_to"].iloc[3])
    assert q.customer_primary_address(store, "c1", at=datetime(2026, 10, 15)) == "b@mail.test"
    assert q.counts(store)["primary_changes"] == 3


def test_S3_additional_address_is_kept_non_primary(store: Store) -> None:
    import_directory(store, users_df(), customers_df(), at=T0)
    hist = q.address_history(store, "c1")
    extra = hist[hist["address"] == "zoe.work@corp.test"]
    assert len(extra) == 1 and not extra["is_primary"].iloc[0]
    assert "zoe.work@corp.test" not in set(q.primary_addresses(store)["address"])
    assert q.customers_by_primary(store, "zoe.work@corp.test", at=T1) == []
    assert (
        q.customers_frame(store, at=T1).set_index("id").loc["c1", "primary_address"]
        == "zoe@mail.test"
    )


def test_S3_demoted_primary_becomes_additional_and_promotion_closes_additional(
    store: Store,
) -> None:
    import_directory(store, users_df(), customers_df(), at=T0)
    # the work address becomes primary, the old primary stays as an additional address
    import_directory(
        store,
        customers=customers_df(
            c1={
                "email": "zoe.work@corp.test",
                "additional_emails": "zoe@mail.test",
                "primary_since": "2026-10-05",
            }
        ),
        at=T2,
    )
    hist = q.address_history(store, "c1")
    rows = {(r.address, r.is_primary, pd.isna(r.valid_to)) for r in hist.itertuples()}
    assert rows == {
        ("zoe@mail.test", True, False),  # closed primary period
        ("zoe.work@corp.test", False, False),  # closed additional period
        ("zoe.work@corp.test", True, True),  # open primary
        ("zoe@mail.test", False, True),  # open additional, since the change
    }
    demoted = hist[(hist["address"] == "zoe@mail.test") & ~hist["is_primary"]].iloc[0]
    assert demoted["valid_from"] == pd.Timestamp("2026-10-05")
    assert q.customer_primary_address(store, "c1", at=T2) == "zoe.work@corp.test"


def test_directory_absent_column_keeps_stored_value(store: Store) -> None:
    import_directory(store, users_df(), customers_df(), at=T0)
    store.execute("UPDATE customers SET never_log = TRUE WHERE id = 'c2'")  # set elsewhere (S9)
    result = import_directory(store, customers=customers_df(), at=T1)
    assert result.customers.unchanged == 3
    assert store.scalar("SELECT never_log FROM customers WHERE id = 'c2'") is True
    result = import_directory(store, customers=customers_df().assign(never_log="no"), at=T1)
    assert result.customers.updated == 1
    assert store.scalar("SELECT never_log FROM customers WHERE id = 'c2'") is False


def test_directory_deal_members_change(store: Store) -> None:
    import_directory(store, users_df(), customers_df(), deals_df("c1;c2"), at=T0)
    result = import_directory(store, deals=deals_df("c2;c3"), at=T1)
    assert result.deals.updated == 1
    members = q.deal_members_frame(store)
    assert list(zip(members["customer_id"], members["role"], strict=True)) == [
        ("c2", "buyer"),
        ("c3", "co_buyer"),
    ]


@pytest.mark.parametrize(
    ("frame", "column", "value", "message"),
    [
        ("users", "id", "", "users row 1: missing id"),
        (
            "users",
            "email",
            "not-an-address",
            "users row 1 (id u1): email: bad email address 'not-an-address'",
        ),
        ("users", "role", "boss", "users row 1 (id u1): role: unknown role 'boss'"),
        ("customers", "email", "zoe@", "customers row 1 (id c1): email: bad email address 'zoe@'"),
        (
            "customers",
            "additional_emails",
            "a@b.test;x y@z.test",
            "customers row 1 (id c1): additional_emails: bad email",
        ),
        (
            "customers",
            "owner_user_id",
            "u9",
            "customers row 1 (id c1): owner_user_id 'u9' is not a known user",
        ),
        (
            "customers",
            "primary_since",
            "yesterday",
            "customers row 1 (id c1): primary_since: 'yesterday' is not an ISO",
        ),
        ("customers", "id", "c2", "customers row 2 (id c2): duplicate id 'c2'"),
        (
            "deals",
            "customer_ids",
            "c1;c404",
            "deals row 1 (id d1): customer_ids: 'c404' is not a known customer",
        ),
        ("deals", "price", "cheap", "deals row 1 (id d1): price: price 'cheap' is not a number"),
    ],
    ids=[
        "missing-id",
        "bad-email",
        "unknown-role",
        "bad-primary",
        "bad-additional",
        "unknown-owner",
        "bad-date",
        "duplicate-id",
        "unknown-customer",
        "bad-price",
    ],
)
def test_directory_bad_row_is_one_line_and_writes_nothing(
    store: Store, frame: str, column: str, value: str, message: str
) -> None:
    import_directory(store, users_df(), customers_df(), deals_df(), at=T0)
    store.execute("UPDATE users SET name = 'changed' WHERE id = 'u2'")
    before = snapshot(store)
    frames = {"users": users_df(), "customers": customers_df(), "deals": deals_df()}
    frames["users"].loc[1, "name"] = "Bo Renamed"  # a valid change that must not be written
    frames[frame].loc[0, column] = value
    with pytest.raises(DirectoryError) as err:
        import_directory(store, **frames, at=T1)
    assert err.value.one_line().startswith(f"error [bad_row]: {message}")
    assert "\n" not in err.value.one_line()
    assert snapshot(store) == before


def test_S3_primary_since_before_current_period_is_refused(store: Store) -> None:
    import_directory(store, users_df(), customers_df(), at=T0)
    before = snapshot(store)
    with pytest.raises(DirectoryError, match="c2.*primary_since 2026-07-01 00:00:00 is not after"):
        import_directory(
            store,
            customers=customers_df(
                c1={"email": "ok@mail.test"},
                c2={"email": "new@mail.test", "primary_since": "2026-07-01"},
            ),
            at=T1,
        )
    assert snapshot(store) == before  # c1's valid change rolled back too


# -- CLI ----------------------------------------------------------------------------------------
def write_csvs(folder: Path, **override: dict[str, object]) -> dict[str, Path]:
    paths = {
        "users": folder / "users.csv",
        "customers": folder / "customers.csv",
        "deals": folder / "deals.csv",
    }
    users_df().to_csv(paths["users"], index=False)
    customers_df(**override).to_csv(paths["customers"], index=False)
    deals_df().to_csv(paths["deals"], index=False)
    return paths


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_directory_import(settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_csvs(tmp_path)
    args = [
        "directory",
        "import",
        "--users",
        str(p["users"]),
        "--customers",
        str(p["customers"]),
        "--deals",
        str(p["deals"]),
    ]
    code, out, err = run(capsys, *args, "--at", "2026-09-01T12:00:00")
    assert (code, err) == (0, "")
    assert (
        "users: 2 inserted" in out and "customers: 3 inserted" in out and "deals: 1 inserted" in out
    )
    code, out, _ = run(capsys, *args)
    assert code == 0 and "customers: 0 inserted, 0 updated, 3 unchanged" in out
    p = write_csvs(
        tmp_path, c2={"email": "jose.n@mail.test", "primary_since": "2026-11-02T10:00:00"}
    )
    code, out, _ = run(capsys, "directory", "import", "--customers", str(p["customers"]))
    assert code == 0 and "primary address changes: 1" in out
    assert "c2: jose@mail.test -> jose.n@mail.test from 2026-11-02 10:00" in out
    code, out, _ = run(capsys, "directory", "history", "c2")
    assert code == 0 and "jose.n@mail.test" in out and "2026-11-02 10:00:00" in out
    code, out, _ = run(capsys, "directory", "status")
    assert code == 0 and "primary_changes      1" in out
    with Store(settings.db) as store:
        assert q.customer_primary_address(store, "c2") == "jose.n@mail.test"


def test_cli_directory_import_errors_are_one_line(
    settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_csvs(tmp_path, c3={"email": "lukasz@@mail"})
    code, out, err = run(
        capsys,
        "directory",
        "import",
        "--users",
        str(p["users"]),
        "--customers",
        str(p["customers"]),
    )
    assert code == 2 and out == ""
    assert (
        err
        == "error [bad_row]: customers.csv row 3 (id c3): email: bad email address 'lukasz@@mail'\n"
    )
    with Store(settings.db) as store:
        assert q.counts(store)["users"] == 0  # the valid users file was not written either
    code, _, err = run(capsys, "directory", "import", "--deals", str(tmp_path / "missing.csv"))
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    code, _, err = run(capsys, "directory", "import")
    assert code == 2 and err.startswith("error [usage]: nothing to import")
    (tmp_path / "bad.csv").write_text("name,email\nx,y@z.test\n")
    code, _, err = run(capsys, "directory", "import", "--users", str(tmp_path / "bad.csv"))
    assert code == 2 and err.startswith("error [bad_file]: bad.csv: missing column(s) id, role")
    code, out, _ = run(capsys, "directory", "import", "--help")
    assert code == 0 and "additional_emails" in out and "customer_ids" in out


def test_S3_cleared_primary_closes_the_period(store: Store) -> None:
    import_directory(store, users_df(), customers_df(), at=T0)
    result = import_directory(store, customers=customers_df(c3={"email": ""}), at=T2)
    assert [(c.old_address, c.new_address, c.at) for c in result.primary_changes] == [
        ("lukasz@mail.test", None, T2)
    ]
    assert q.customer_primary_address(store, "c3") is None
    assert q.customer_primary_address(store, "c3", at=T1) == "lukasz@mail.test"
    again = import_directory(store, customers=customers_df(c3={"email": ""}), at=T3)
    assert not again.changed


# -- import hygiene: the header decides the columns, one line per cell, dry run, chunks ------
def _cli_import(capsys, kind: str, path: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "directory", "import", f"--{kind}", str(path), *extra)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_directory_trailing_comma_rows_import_by_the_header_with_a_note(
    settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spreadsheet's trailing comma on every row once imported as id 'Alice', name
    'alice@b.test', no email, exit 0. The header decides: the empty extra fields are dropped
    with one note naming the file and the first such row."""
    path = _write(
        tmp_path / "customers.csv",
        "id,name,email\r\nc1,Alice,alice@b.test,\r\nc2,Bob,bob@b.test,\r\n",
    )
    code, out, err = _cli_import(capsys, "customers", path)
    assert code == 0 and "customers: 2 inserted" in out
    assert err == (
        "note: customers.csv: dropped empty fields past the header's 3 column(s) in 2 row(s)"
        " (trailing commas), first in row 1\n"
    )
    with Store(settings.db) as store:
        rows = store.rows("SELECT id, name FROM customers ORDER BY id")
        assert rows == [("c1", "Alice"), ("c2", "Bob")]
        assert q.customer_primary_address(store, "c1") == "alice@b.test"


def test_directory_header_with_trailing_comma_too(settings, tmp_path: Path, capsys) -> None:
    path = _write(tmp_path / "customers.csv", "id,name,email,\nc1,Alice,alice@b.test,\n")
    code, out, err = _cli_import(capsys, "customers", path)
    assert (code, err) == (0, "") and "customers: 1 inserted" in out
    with Store(settings.db) as store:
        assert q.customer_primary_address(store, "c1") == "alice@b.test"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "id,name,email\nc1,Alice,alice@b.test\nc2,Bob,bob@b.test,x\n",
            "error [bad_row]: customers.csv row 2: 4 fields but the header has 3 column(s)"
            " (extra value 'x')",
        ),
        (
            "id,name,email\nc1,Alice,alice@b.test,,Berlin\n",
            "error [bad_row]: customers.csv row 1: 5 fields but the header has 3 column(s)"
            " (extra value 'Berlin')",
        ),
        (
            "id,,email\nc1,Alice,alice@b.test\n",
            "error [bad_row]: customers.csv row 1: a value in column 2, which has no name in"
            " the header",
        ),
        (
            'id,name,email\nc1,"Alice\nSmith",alice@b.test\n',
            "error [bad_row]: customers.csv row 1 (id c1): name: contains a line break (CR/LF)",
        ),
        (
            'id,name,email\nc1,Alice,alice@b.test\nc2,"Bob\rBrown",bob@b.test\n',
            "error [bad_row]: customers.csv row 2 (id c2): name: contains a line break (CR/LF)",
        ),
        ("id,name,id\nc1,Alice,c1\n", "error [bad_file]: customers.csv: column(s) id twice"),
        ("", "error [bad_file]: "),
    ],
    ids=[
        "extra-field",
        "extra-fields",
        "unnamed-column",
        "lf-in-name",
        "cr-in-name",
        "dup-col",
        "empty",
    ],
)
def test_directory_malformed_rows_are_refused_in_one_line_and_nothing_is_written(
    settings, tmp_path: Path, capsys, text: str, message: str
) -> None:
    users = _write(tmp_path / "users.csv", "id,email,role\nu1,u1@acme.test,sales\n")
    path = _write(tmp_path / "customers.csv", text)
    code, out, err = run(
        capsys, "directory", "import", "--users", str(users), "--customers", str(path)
    )
    assert code == 2 and out == "" and err.startswith(message) and err.count("\n") == 1
    with Store(settings.db) as store:
        assert q.counts(store)["users"] == 0 and q.counts(store)["customers"] == 0


def test_directory_line_break_in_an_ignored_column_is_fine(settings, tmp_path, capsys) -> None:
    path = _write(
        tmp_path / "customers.csv", 'id,name,email,notes\nc1,Alice,alice@b.test,"two\nlines"\n'
    )
    code, out, _ = _cli_import(capsys, "customers", path)
    assert code == 0 and "customers: 1 inserted" in out


def test_directory_line_break_in_a_dataframe_name_is_refused(store: Store) -> None:
    with pytest.raises(DirectoryError) as err:
        import_directory(store, users_df(), customers_df(c2={"name": "José\r\nNúñez"}), at=T0)
    assert err.value.one_line().startswith(
        "error [bad_row]: customers row 2 (id c2): name: contains a line break"
    )
    assert q.counts(store)["customers"] == 0


def test_directory_check_shows_what_would_change_and_writes_nothing(
    settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write_csvs(tmp_path)
    files = ["--users", str(p["users"]), "--customers", str(p["customers"])]
    code, out, _ = run(capsys, "directory", "import", *files, "--check")
    assert code == 0 and out.startswith("check only, nothing written")
    assert "customers: 3 inserted (c1, c2, c3), 0 updated" in out
    with Store(settings.db) as store:
        assert q.counts(store)["customers"] == 0 and q.counts(store)["users"] == 0
    assert run(capsys, "directory", "import", *files, "--at", "2026-09-01T12:00:00")[0] == 0
    with Store(settings.db) as store:
        before = snapshot(store)
    p = write_csvs(
        tmp_path,
        c2={"email": "jose.n@mail.test", "primary_since": "2026-11-02T10:00:00"},
        c3={"name": "Łukasz W."},
    )
    code, out, _ = run(capsys, "directory", "import", "--customers", str(p["customers"]), "--check")
    assert code == 0
    assert "customers: 0 inserted, 2 updated (c2, c3), 1 unchanged" in out
    assert "primary address changes: 1" in out
    assert "c2: jose@mail.test -> jose.n@mail.test from 2026-11-02 10:00" in out
    with Store(settings.db) as store:
        assert snapshot(store) == before


def test_directory_chunked_import_equals_one_chunk(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """Chunks of one row (staging and the S3 planner) give the same store as one chunk."""
    import mailops.directory as directory

    def history(store: Store) -> dict[str, list[tuple]]:
        import_directory(store, users_df(), customers_df(), deals_df(), at=T0)
        import_directory(
            store,
            customers=customers_df(
                c1={"email": "zoe.work@corp.test", "additional_emails": "zoe@mail.test"},
                c2={
                    "email": "",
                    "primary_since": "",
                    "additional_emails": "jose@mail.test;jp@x.test",
                },
                c3={"additional_emails": "l@x.test"},
            ),
            deals=deals_df("c3;c1"),
            at=T1,
        )
        import_directory(
            store, customers=customers_df(c2={"email": "jose@new.test", "primary_since": ""}), at=T2
        )
        snap = snapshot(store)
        snap["customer_addresses"] = sorted(r[1:] for r in snap["customer_addresses"])
        return snap

    with Store(tmp_path / "one.duckdb") as one:
        expected = history(one)
    monkeypatch.setattr(directory, "CHUNK_ROWS", 1)
    monkeypatch.setattr(directory, "PLAN_BATCH", 1)
    monkeypatch.setattr(directory, "PLAN_SLICE", 1)
    with Store(tmp_path / "many.duckdb") as many:
        assert history(many) == expected


def test_directory_import_out_of_memory_runs_again_with_a_larger_cap(
    tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """DuckDB cannot spill everything (the indexes of a big store must fit): an import that
    runs out of memory is rolled back and run again with the next cap, the last one gives
    one line and writes nothing."""
    import duckdb

    import mailops.directory as directory

    caps: list[str] = []
    real = q.plan_addresses

    def plan_addresses(store: Store, *args: object) -> None:
        caps.append(store.scalar("SELECT current_setting('memory_limit')"))
        if len(caps) == 1 or directory.IMPORT_MEMORY_LIMITS == ("64MB",):
            raise duckdb.OutOfMemoryException("could not allocate block (test)")
        real(store, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(q, "plan_addresses", plan_addresses)
    monkeypatch.setattr(directory, "IMPORT_MEMORY_LIMITS", ("64MB", "256MB"))
    with Store(tmp_path / "s.duckdb") as store:
        with caplog.at_level("WARNING", logger="mailops.directory"):
            result = import_directory(store, users_df(), customers_df(), deals_df(), at=T0)
        assert "DuckDB needed more than 64MB; again with 256MB" in caplog.text
        assert caps == ["61.0 MiB", "244.1 MiB"]
        assert (result.customers.inserted, q.counts(store)["customer_addresses"]) == (3, 4)
        assert (result.users.inserted, q.counts(store)["users"]) == (2, 2)  # not twice
        before = store.scalar("SELECT current_setting('memory_limit')")
        monkeypatch.setattr(directory, "IMPORT_MEMORY_LIMITS", ("64MB",))
        with pytest.raises(DirectoryError) as err:
            import_directory(store, customers=customers_df(c1={"name": "Zoe"}), at=T1)
        assert err.value.code == "out_of_memory"
        assert q.get_customer(store, "c1")["name"] != "Zoe"
        assert store.scalar("SELECT current_setting('memory_limit')") == before  # restored
