"""How report tables and key figures look in the notebook and in the HTML report (R6).

A table is an ordinary escaped HTML ``<table>`` (``DataFrame.to_html(escape=True)``: mail
subjects and names are untrusted text), so the report reads with JavaScript off. A small
inline script, written into the page itself (no network, works from ``file://``), adds a
search box that filters the rows and column headers that sort on click; it reads only the
table's text and never turns text into markup. Long tables show their top rows with links
to the full export beside the report; wide tables wrap their cells and scroll inside their
own box, so the page fits a laptop screen.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

__all__ = ["ASSETS", "figures_html", "table_html"]

_ids = itertools.count(1)

#: (doubled class names outrank nbconvert's ``:not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td``)
STYLE = """
.mailops-table{max-width:100%;overflow-x:auto;margin:.3em 0 1em}
.mailops-table table{border-collapse:collapse;font-size:12px;line-height:1.35;width:auto;
  table-layout:auto}
.mailops-table.mailops-table table th,.mailops-table.mailops-table table td{border-bottom:1px solid #e3e3e3;
  padding:3px 6px;text-align:left;vertical-align:top;max-width:24em;
  overflow-wrap:anywhere;white-space:normal}
.mailops-table.mailops-table table thead th{position:sticky;top:0;background:#f6f7f9;
  cursor:pointer;user-select:none;overflow-wrap:normal}
.mailops-table thead th[aria-sort=ascending]::after{content:" \\25B2";font-size:9px}
.mailops-table thead th[aria-sort=descending]::after{content:" \\25BC";font-size:9px}
.mailops-table tbody tr:nth-child(even){background:#fafbfc}
.mailops-tools{display:flex;gap:1em;align-items:center;margin:.2em 0;font-size:12.5px;
  color:#555}
.mailops-tools[hidden]{display:none}
.mailops-search{font:inherit;padding:3px 6px;border:1px solid #bbb;border-radius:3px;
  width:18em}
.mailops-more{font-size:12.5px;color:#555;margin:.2em 0 1em}
.mailops-figures{display:flex;flex-wrap:wrap;gap:12px;margin:.5em 0 1.2em}
.mailops-figure{border:1px solid #dde1e6;border-radius:6px;padding:10px 14px;min-width:9em;
  max-width:16em;background:#f8fafc}
.mailops-figure .value{font-size:26px;font-weight:600;color:#1f3b63;line-height:1.2;
  overflow-wrap:anywhere}
.mailops-figure .value.words{font-size:18px;line-height:1.3}
.mailops-figure .label{font-size:12.5px;color:#333;margin-top:2px}
.mailops-figure .note{font-size:11.5px;color:#666;margin-top:2px;overflow-wrap:anywhere}
"""

SCRIPT = """
(function () {
  function key(cell) {
    var t = (cell.textContent || "").trim();
    var n = t.replace(/,/g, "");
    if (n !== "" && /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?$/i.test(n)) { return [0, parseFloat(n)]; }
    return [1, t.toLowerCase()];
  }
  function compare(a, b) {
    if (a[0] !== b[0]) { return a[0] - b[0]; }
    return a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
  }
  function setup(box) {
    if (box.getAttribute("data-ready")) { return; }
    box.setAttribute("data-ready", "1");
    var table = box.querySelector("table");
    if (!table || !table.tBodies.length || !table.tHead) { return; }
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var tools = box.querySelector(".mailops-tools");
    var input = box.querySelector("input.mailops-search");
    var count = box.querySelector(".mailops-count");
    if (tools) { tools.hidden = false; }
    function filter() {
      var q = input.value.trim().toLowerCase(), shown = 0;
      rows.forEach(function (r) {
        var ok = !q || (r.textContent || "").toLowerCase().indexOf(q) !== -1;
        r.style.display = ok ? "" : "none";
        if (ok) { shown += 1; }
      });
      var n = rows.length + (rows.length === 1 ? " row" : " rows");
      count.textContent = q ? shown + " of " + n + " match" : n;
    }
    if (input) { input.addEventListener("input", filter); filter(); }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.setAttribute("tabindex", "0");
      th.setAttribute("aria-sort", "none");
      th.title = "sort by this column";
      function sort() {
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (o) {
          o.setAttribute("aria-sort", "none");
        });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        rows.sort(function (a, b) { return dir * compare(key(a.cells[i]), key(b.cells[i])); });
        rows.forEach(function (r) { body.appendChild(r); });
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
    });
  }
  function scan() { Array.prototype.forEach.call(document.querySelectorAll(".mailops-table"), setup); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", scan); }
  else { scan(); }
  window.mailopsTables = scan;
})();
"""

#: written with every table (a notebook output stands alone in JupyterLab); the script is
#: idempotent, a page with ten tables sets each up once
ASSETS = f"<style>{STYLE}</style><script>{SCRIPT}</script>"


def table_html(
    df: pd.DataFrame,
    *,
    total: int | None = None,
    export: Sequence[str | Path] = (),
    what: str = "rows",
) -> str:
    """DF (already cut to its top rows) as a searchable, sortable table; TOTAL rows exist,
    EXPORT files beside the report hold them all."""
    n = next(_ids)
    total = len(df) if total is None else total
    body = _headers_wrap(df.to_html(index=False, escape=True, na_rep="", border=0))
    body = _column_style(n, df) + body
    tools = (
        f'<div class="mailops-tools" hidden><input type="search" class="mailops-search" '
        f'placeholder="Search this table" aria-label="Search this table" '
        f'id="mailops-search-{n}"><span class="mailops-count"></span></div>'
    )
    more = ""
    if total > len(df) or export:
        links = " · ".join(
            f'<a href="{html.escape(Path(p).name, quote=True)}">{html.escape(Path(p).name)}</a>'
            for p in export
        )
        shown = (
            f"the first {len(df):,} of {total:,} {what} shown"
            if total > len(df)
            else f"all {total:,} {what} shown"
        )
        more = f'<p class="mailops-more">{shown}' + (f"; every row: {links}" if links else "")
        more += "</p>"
    return f'{ASSETS}<div class="mailops-table" id="mailops-table-{n}">{tools}{body}</div>{more}'


def _column_style(n: int, df: pd.DataFrame) -> str:
    """This table's column rules: numbers right-aligned; short values (dates, codes) kept
    on one line, so only long text wraps (anywhere, if it must: an address or a Message-ID
    is one long word, and the table must fit the screen)."""

    def cells(indexes: list[int], tag: str = "td") -> str:
        return ",".join(f"#mailops-table-{n} {tag}:nth-child({i})" for i in indexes)

    numeric = [i + 1 for i, c in enumerate(df.columns) if _is_numeric(df[c])]
    short = [
        i + 1
        for i, c in enumerate(df.columns)
        if not df.empty and int(df[c].astype(str).str.len().max()) <= 20
    ]
    rules = ""
    if numeric:
        rules += f"{cells(numeric)},{cells(numeric, 'th')}{{text-align:right;font-variant-numeric:tabular-nums}}"
    if short:
        rules += f"{cells(short)}{{white-space:nowrap}}"
    return f"<style>{rules}</style>" if rules else ""


def _is_numeric(col: pd.Series) -> bool:
    values = col.dropna()
    values = values[values.astype(str) != ""]
    if values.empty:
        return False
    if pd.api.types.is_bool_dtype(values) or values.map(lambda v: isinstance(v, bool)).any():
        return False
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def _headers_wrap(table: str) -> str:
    """Long column names (``examined_that_day``) may wrap after their underscores, so a
    wide table's header does not push it past the screen; the text itself is unchanged."""
    return re.sub(
        r"<th>([^<]*)</th>",
        lambda m: "<th>" + m.group(1).replace("_", "_<wbr>") + "</th>",
        table,
    )


def figures_html(items: Sequence[tuple[str, str, str]]) -> str:
    """Key figures as cards: (label, value, note)."""
    cards = "".join(
        '<div class="mailops-figure">'
        f'<div class="value{"" if value[:1].isdigit() else " words"}">{html.escape(value)}</div>'
        f'<div class="label">{html.escape(label)}</div>'
        + (f'<div class="note">{html.escape(note)}</div>' if note else "")
        + "</div>"
        for label, value, note in items
    )
    return f'<style>{STYLE}</style><div class="mailops-figures">{cards}</div>'
