"""Report queries (R2-R5): plain functions taking a ``Scope`` and returning DataFrames.

A ``Scope`` is who is looking (a ``permissions.Viewer``), the period and the mailbox
filter, plus the store to read. Notebooks, the CLI (``mailops stats``) and tests call the
same functions; every one of them filters rows through the viewer (P1).

Reports read while a sync may be writing. DuckDB allows one writing process or many
reading ones, so ``ReadStore`` opens the file read-only, retries while a writer holds it,
and lets go of the file after each query: a report never blocks a sync for longer than one
query, and a sync that releases the file between batches never fails a report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from mailops.errors import ReportError
from mailops.permissions import SYSTEM, Access, Viewer, scope_for, visible
from mailops.store import Store, store_exists

__all__ = [
    "GLUE_ROWS",
    "ReadStore",
    "glue",
    "Scope",
    "Table",
    "open_reader",
    "parse_when",
    "records",
    "show",
    "table",
    "utcnow",
    "where",
]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ReadStore(Store):
    """A read-only Store that holds the DuckDB file only while a query runs."""

    def __init__(self, path: str | os.PathLike[str] | None = None, busy_timeout: float = 120.0):
        super().__init__(path, read_only=True, busy_timeout=busy_timeout, migrate=False)

    # Poll every ~10 ms while a writer holds the file: a writer that lets go only briefly
    # between transactions (a sync between batches) must not starve reports, so no
    # exponential backoff here (a failed attempt is one fcntl call).
    retry_delays = (0.005, 0.005)
    busy_guidance = "a sync is writing and did not let go; retry later"

    def release(self) -> None:
        """Let go of the file after each query; a lake (D1) has no file to hand over, and
        its session (extensions, catalog) is worth keeping."""
        if self.lake is None:
            super().release()

    close = Store.release

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        try:
            return super().query(sql, params)
        finally:
            self.release()

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> list[tuple]:
        try:
            return super().rows(sql, params)
        finally:
            self.release()

    def scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:
        try:
            return super().scalar(sql, params)
        finally:
            self.release()


def open_reader(db: str | os.PathLike[str] | None = None) -> ReadStore:
    """A ReadStore on DB (default: settings), refusing a file that does not exist."""
    from mailops.config import Settings

    path = str(db) if db else Settings.load().db
    if not store_exists(path):
        raise ReportError(
            f"no store at {path}", guidance="run `mailops db migrate` or a sync first"
        )
    return ReadStore(path)


def parse_when(value: str | date | datetime | None, *, end: bool = False) -> datetime | None:
    """``"2026-11-01"`` -> that midnight; with END a bare date means the *next* midnight
    (an inclusive end day becomes an exclusive bound). ``""``/None -> None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else _naive_utc(value)
    if isinstance(value, date):
        day = datetime(value.year, value.month, value.day)
        return day + timedelta(days=1) if end else day
    text = str(value).strip()
    try:
        ts = pd.Timestamp(text)
    except ValueError:
        raise ReportError(f"not a date: {value!r}", guidance="use YYYY-MM-DD") from None
    when = ts.to_pydatetime()
    if when.tzinfo is not None:
        when = _naive_utc(when)
    if end and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        when += timedelta(days=1)
    return when


def _naive_utc(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None)


@dataclass
class Scope:
    """Who looks at what: the viewer, the period ``[since, until)`` and a mailbox filter."""

    store: Store
    viewer: Viewer = SYSTEM
    since: datetime | None = None
    until: datetime | None = None
    mailbox: str = "all"  # address, mailbox id, or "all"
    now: datetime = field(default_factory=utcnow)

    @classmethod
    def open(
        cls,
        viewer: str | None = "system",
        *,
        days: int | None = None,
        since: str | date | datetime | None = "",
        until: str | date | datetime | None = "",
        mailbox: str = "all",
        db: str | os.PathLike[str] | None = None,
        store: Store | None = None,
    ) -> Scope:
        """What a notebook's first cell calls: a read-only store and the resolved viewer."""
        st = store if store is not None else open_reader(db)
        start = parse_when(since)
        now = utcnow()
        if start is None and days:
            start = now - timedelta(days=int(days))
        return cls(
            store=st,
            viewer=scope_for(st, viewer),
            since=start,
            until=parse_when(until, end=True),
            mailbox=(mailbox or "all").strip().lower(),
            now=now,
        )

    @property
    def label(self) -> str:
        frm = self.since.strftime("%Y-%m-%d %H:%M") if self.since else "the beginning"
        to = self.until.strftime("%Y-%m-%d %H:%M") if self.until else "now"
        box = "all mailboxes" if self.mailbox in ("", "all") else self.mailbox
        return f"viewer {self.viewer.user_id} ({self.viewer.role}, scope {self.viewer.scope}); {box}; {frm} to {to} (UTC)"

    # -- SQL building blocks ------------------------------------------------------------
    def access(self, kind: str, **cols: str) -> Access:
        """The one permission check (P1/P2) for a report query: ``permissions.visible``."""
        return visible(self.viewer, kind, **cols)

    def period(self, col: str) -> tuple[str, list[Any]]:
        parts, params = ["TRUE"], []
        if self.since is not None:
            parts.append(f"{col} >= ?")
            params.append(self.since)
        if self.until is not None:
            parts.append(f"{col} < ?")
            params.append(self.until)
        return " AND ".join(parts), params

    def mailbox_filter(self, id_col: str, address_col: str) -> tuple[str, list[Any]]:
        box = self.mailbox
        if box in ("", "all"):
            return "TRUE", []
        if box.isdigit():
            return f"{id_col} = ?", [int(box)]
        return f"{address_col} = ?", [box]


def where(*clauses: tuple[str, list[Any]]) -> tuple[str, list[Any]]:
    """AND together (sql, params) pairs, keeping parameter order."""
    sql = " AND ".join(f"({c})" for c, _ in clauses)
    params: list[Any] = []
    for _, p in clauses:
        params.extend(p)
    return sql, params


#: rows of a table a notebook glues for tests at most (a store of a million activities would
#: otherwise put tens of MB of scraps into the executed notebook: 64 MB, 20 s of a 23 s run)
GLUE_ROWS = 1000


def records(df: pd.DataFrame, key: str, value: str) -> dict[str, Any]:
    """A small JSON-able mapping from two columns (what notebooks glue for tests)."""
    out: dict[str, Any] = {}
    for k, v in zip(df[key], df[value], strict=True):
        out[str(k)] = _plain(v)
    return out


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, pd.Timestamp | datetime | date):
        return v.isoformat()
    return v.item() if hasattr(v, "item") else v


def table(df: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Rows of DF (those COLUMNS) as JSON-able dicts."""
    return [
        {c: _plain(v) for c, v in zip(columns, row, strict=True)}
        for row in df[columns].itertuples(index=False)
    ]


#: rows a report table shows when the notebook does not say (the export holds them all)
DEFAULT_ROWS = 50


class Table:
    """A DataFrame shown as an escaped HTML table without the index (mail subjects and
    names are untrusted text: ``to_html`` escapes them), searchable and sortable in the
    browser, cut to its top ROWS with links to the EXPORT files that hold every row (R6)."""

    def __init__(
        self,
        df: pd.DataFrame | None,
        rows: int | None = DEFAULT_ROWS,
        export: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self.df = df if df is not None else pd.DataFrame()
        self.rows = rows
        self.export = [Path(p) for p in export if str(p).endswith((".csv", ".parquet"))]

    def _repr_html_(self) -> str:
        from mailops.reports.html import table_html

        if self.df.empty:
            return "<p><em>nothing to show</em></p>"
        df = _readable(self.df.head(self.rows) if self.rows else self.df)
        return table_html(df, total=len(self.df), export=self.export)

    def __repr__(self) -> str:
        # the text/plain twin of the HTML in the executed notebook: the same top ROWS (the
        # whole frame here made a 1M-activity report's notebook 35 MB and 10 s slower)
        if self.df.empty:
            return "(nothing to show)"
        shown = self.df.head(self.rows) if self.rows else self.df
        text = shown.to_string(index=False)
        if len(shown) < len(self.df):
            text += f"\n... {len(self.df) - len(shown):,} more rows (see the export)"
        return text


def show(
    df: pd.DataFrame | None,
    rows: int | None = DEFAULT_ROWS,
    export: Sequence[str | os.PathLike[str]] = (),
) -> Table:
    """What a notebook cell ends with to display a report table (top ROWS; EXPORT: the
    files beside the report with every row)."""
    return Table(df, rows, export)


GLUE_MIME = "application/scrapbook.scrap.json+json"


def glue(name: str, value: Any) -> None:
    """Record VALUE (JSON-able) in the running notebook as a scrapbook scrap.

    The output is exactly what ``scrapbook.glue(name, value, encoder="json")`` writes, so
    ``scrapbook.read_notebook(path).scraps`` reads it back; importing scrapbook inside the
    kernel costs ~6 s (papermill -> nbformat -> jsonschema -> rfc3987_syntax builds a
    grammar at import), which would double every report's run time."""
    from IPython.display import display

    payload = {"name": name, "data": value, "encoder": "json", "version": 1}
    display(
        {GLUE_MIME: payload},
        metadata={"scrapbook": {"name": name, "data": True, "display": False}},
        raw=True,
    )


def _readable(df: pd.DataFrame) -> pd.DataFrame:
    """Times to the second, missing values blank: what a person reads in the report."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            values = out[col].dropna()
            days = not values.empty and bool((values == values.dt.normalize()).all())
            out[col] = out[col].dt.strftime("%Y-%m-%d" if days else "%Y-%m-%d %H:%M:%S")
    return out.astype(object).where(out.notna(), "")
