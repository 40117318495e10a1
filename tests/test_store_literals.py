"""store.literals (issue 14, Build 1): parameters written as literals mean what binding them
means, so the store never makes DuckDB bind (which imports pandas). Unit tests on an
in-memory DuckDB: each value and SQL shape, inlined and bound, gives the same result."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from decimal import Decimal

import duckdb
import pytest

from mailops.store import Store
from mailops.store.bulk import SMALL, append
from mailops.store.literals import inline

VALUES = [
    None,
    True,
    False,
    0,
    -7,
    2**62,
    1.5,
    1e-05,
    float("inf"),
    "",
    "plain",
    "it's",
    "a ? mark",
    "back\\slash\nnew line",
    "ünïcödé ✓",
    "-- not a comment",
    b"",
    b"\x00\xff bytes",
    datetime(2026, 12, 1, 10, 11, 12, 345678),
    datetime(1969, 12, 31, 23, 59, 59),
    date(2026, 2, 28),
    [],
    ["a", "b'c"],
    [1, 2, 3],
    [["x"], []],
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_literal_means_what_binding_means(value) -> None:
    conn = duckdb.connect()
    sql = "SELECT ?, typeof(?)"
    text = inline(sql, [value, value])
    assert text is not None and "?" not in text.replace("'a ? mark'", "")
    assert conn.execute(text).fetchall() == conn.execute(sql, [value, value]).fetchall()


def test_placeholders_inside_strings_identifiers_and_comments_stay() -> None:
    conn = duckdb.connect()
    sql = "SELECT '?' AS \"what?\", ? -- a ? here\n, /* and ? there */ ?"
    text = inline(sql, ["x", 2])
    assert text == "SELECT '?' AS \"what?\", 'x' -- a ? here\n, /* and ? there */ 2"
    assert conn.execute(text).fetchall() == [("?", "x", 2)]


def test_numbered_parameters() -> None:
    assert inline("SELECT $2, $1, $2", ["a", 1]) == "SELECT 1, 'a', 1"


@pytest.mark.parametrize(
    "sql, params",
    [
        ("SELECT ?", [Decimal("1.5")]),  # no literal with the same type
        ("SELECT ?", ["nul \x00 inside"]),
        ("SELECT ?", [datetime(2026, 1, 1, tzinfo=UTC).time()]),
        ("SELECT ?", [{"a": 1}]),
        ("SELECT ?, ?", [1]),  # the count does not match: DuckDB says so when binding
        ("SELECT $x", {"x": 1}),
        ("SELECT ? , $1", [1]),
        ("SELECT 'open", [1]),
    ],
)
def test_no_literal_means_binding(sql, params) -> None:
    assert inline(sql, params) is None


def test_store_reads_and_writes_without_pandas(tmp_path) -> None:
    """A fresh interpreter: the store's parameterized statements and bulk appends (small
    and large) never import pandas or pyarrow."""
    import subprocess

    code = f"""
import sys
from datetime import datetime
from mailops.store import Store
from mailops.store.bulk import append
s = Store({str(tmp_path / "t.duckdb")!r}, migrate=False)
s.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, s VARCHAR, l VARCHAR[], b BLOB, ts TIMESTAMP)")
s.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", [0, "x", ["a"], b"\\x00", datetime(2026, 1, 1)])
for n in (3, 500):
    ids = list(range(1 + n, 1 + 2 * n))
    append(s, "t", [("id", "BIGINT", ids), ("s", "VARCHAR", [str(i) for i in ids]),
                    ("l", "VARCHAR[]", [["q", str(i)] for i in ids]),
                    ("b", "BLOB", [bytes([i % 256]) for i in ids]),
                    ("ts", "TIMESTAMP", [datetime(2026, 1, 1, i % 24) for i in ids])],
           conflict="ON CONFLICT DO NOTHING")
assert s.scalar("SELECT count(*) FROM t WHERE id > ?", [0]) == 503
assert s.rows("SELECT s, l, b FROM t WHERE id = ?", [504]) == [("504", ["q", "504"], bytes([504 % 256]))]
print(sorted(m for m in ("pandas", "pyarrow", "numpy") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("n", [1, SMALL, SMALL + 1, 300])
def test_bulk_append_small_and_large_agree(n: int) -> None:
    s = Store(":memory:", migrate=False)
    s.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, s VARCHAR, l VARCHAR[], b BLOB, f BOOLEAN)")
    ids = list(range(n))
    cols = [
        ("id", "BIGINT", ids),
        ("s", "VARCHAR", [None if i % 5 == 0 else f"it's {i} \\ ✓" for i in ids]),
        ("l", "VARCHAR[]", [[] if i % 2 else ["x", str(i)] for i in ids]),
        ("b", "BLOB", [bytes(range(i % 7)) for i in ids]),
        ("f", "BOOLEAN", [i % 3 == 0 for i in ids]),
    ]
    assert append(s, "t", cols) == n
    assert append(s, "t", cols, conflict="ON CONFLICT DO NOTHING") == n  # nothing added
    got = s.rows("SELECT id, s, l, b, f FROM t ORDER BY id")
    assert got == [tuple(c[2][i] for c in cols) for i in ids]
