"""Parameters written into the SQL text as literals, so DuckDB binds none.

DuckDB's Python client (1.5) imports pandas, and numpy with it, the first time it converts
a parameter value (it checks every value against ``pandas.NaT`` and ``pandas.NA``): ~0.2 s
of a sync that otherwise never needs pandas. ``inline(sql, params)`` returns SQL in which
every ``?`` (or ``$1``..) is the literal of its value, for the values whose literal means
exactly what the bound value means (None, bool, int, float, str, bytes, datetime, date and
lists of them); for anything else (a dict, a Decimal, a string holding NUL, named ``$x``
parameters, a count that does not match) it returns None and the caller binds as before.

Strings are quoted SQL-standard ('' for '); DuckDB takes backslashes in '...' literally.
Bytes become ``from_base64('...')``, floats ``CAST('<repr>' AS DOUBLE)``, datetimes
``TIMESTAMP '...'`` (naive) or ``TIMESTAMPTZ '...'`` (aware): the types a bound value has.
"""

from __future__ import annotations

import base64
import datetime as _dt
from collections.abc import Sequence
from typing import Any

__all__ = ["inline", "literal", "NoLiteral"]

MAX_SQL_CHARS = 8 * 1024 * 1024  # beyond this, binding is cheaper than parsing the text


class NoLiteral(ValueError):
    """A value without a literal that means the same as binding it."""


def literal(v: Any) -> str:
    """The SQL literal of V (raises ``NoLiteral``)."""
    if v is None:
        return "NULL"
    t = type(v)
    if t is str:
        if "\x00" in v:
            raise NoLiteral("NUL in a string")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise NoLiteral("not UTF-8") from None
        return "'" + v.replace("'", "''") + "'"
    if t is bool:
        return "TRUE" if v else "FALSE"
    if t is int:
        return str(v)
    if t is float:
        return f"CAST('{v!r}' AS DOUBLE)"
    if t is _dt.datetime:
        if v.tzinfo is None:
            return f"TIMESTAMP '{v.isoformat(' ')}'"
        return f"TIMESTAMPTZ '{v.isoformat(' ')}'"
    if t is _dt.date:
        return f"DATE '{v.isoformat()}'"
    if t in (bytes, bytearray, memoryview):
        return "from_base64('" + base64.b64encode(bytes(v)).decode("ascii") + "')"
    if t in (list, tuple):
        return "[" + ", ".join(literal(x) for x in v) + "]"
    raise NoLiteral(f"no literal for {t.__name__}")


def inline(sql: str, params: Sequence[Any] | dict[str, Any] | None) -> str | None:
    """SQL with its positional parameters as literals, or None (bind them instead)."""
    if not params:
        return sql
    if isinstance(params, dict) or not isinstance(params, (list, tuple)):
        return None
    out: list[str] = []
    i, n, start, used = 0, len(sql), 0, 0
    numbered = False
    size = 0
    try:
        while i < n:
            ch = sql[i]
            if ch == "'" or ch == '"':  # a string or a quoted identifier ('' / "" doubled)
                j = sql.find(ch, i + 1)
                while j != -1 and j + 1 < n and sql[j + 1] == ch:
                    j = sql.find(ch, j + 2)
                if j == -1:
                    return None
                i = j + 1
                continue
            if ch == "-" and sql.startswith("--", i):
                j = sql.find("\n", i)
                i = n if j == -1 else j + 1
                continue
            if ch == "/" and sql.startswith("/*", i):
                j = sql.find("*/", i + 2)
                if j == -1:
                    return None
                i = j + 2
                continue
            if ch == "?":
                if numbered or used >= len(params):
                    return None
                text = literal(params[used])
                used += 1
                out.append(sql[start:i])
                out.append(text)
                size += len(text)
                i += 1
                start = i
                continue
            if ch == "$":
                j = i + 1
                while j < n and sql[j].isdigit():
                    j += 1
                if j == i + 1 or used:  # $name, $$..$$, or mixed with ?
                    return None
                numbered = True
                k = int(sql[i + 1 : j]) - 1
                if not 0 <= k < len(params):
                    return None
                text = literal(params[k])
                out.append(sql[start:i])
                out.append(text)
                size += len(text)
                i = start = j
                continue
            i += 1
    except NoLiteral:
        return None
    if not numbered and used != len(params):
        return None
    if size > MAX_SQL_CHARS:
        return None
    out.append(sql[start:])
    return "".join(out)
