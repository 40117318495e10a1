"""HTML -> the plain-text alternative of an outgoing email, as plain prose (E2).

What a reader sees in a text-only client, not Markdown: paragraphs separated by a blank
line, links as ``text <url>``, list items with ``•`` or ``1.``, tables as aligned columns
(layout tables as their content), quotes with ``> ``, no ``**``, ``#`` or trailing spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

__all__ = ["html_to_text"]

_BLOCK = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "dd",
        "details",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hgroup",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
        "caption",
    ]
)
_SKIP = frozenset({"script", "style", "head", "title", "template"})
_VOID = frozenset({"br", "hr", "img", "wbr", "meta", "link", "input", "col", "area", "base"})


@dataclass
class _Cell:
    parts: list[str] = field(default_factory=list)


@dataclass
class _Table:
    rows: list[list[str]] = field(default_factory=list)
    cell: _Cell | None = None


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []  # the text being written (top level, or the current cell)
        self.stack: list[list[str]] = []
        self.skip = 0
        self.pre = 0
        self.quote = 0
        self.lists: list[list[int | None]] = []  # per open list: [next number] or [None]
        self.links: list[tuple[str | None, int]] = []
        self.tables: list[_Table] = []
        self.marker = ""  # a list item's marker, written with the item's first text

    # -- writing -----------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        if self.marker and text.strip():
            self.out.append(self.marker)
            self.marker = ""
            text = text.lstrip()
        self.out.append(text)

    def _break(self, n: int = 2) -> None:
        if self.lists:
            n = 1  # list items follow each other line by line
        if not self.marker:  # <li><p>x</p></li>: the item's text stays on the marker's line
            # block boundary: \x00 a paragraph, \x03 a line; resolved in _finish()
            self.out.append("\x00" if n > 1 else "\x03")

    # -- tags --------------------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in _SKIP:
            self.skip += 1
            return
        if self.skip:
            return
        if tag == "br":
            self._write("\n")
        elif tag == "hr":
            self._break()
            self._write("-" * 24)
            self._break()
        elif tag == "img":
            alt = (a.get("alt") or "").strip()
            if alt:
                self._write(alt)
        elif tag == "a":
            self.links.append((a.get("href"), len(self.out)))
        elif tag == "pre":
            self._break()
            self.pre += 1
        elif tag == "blockquote":
            self._break()
            self.stack.append(self.out)
            self.out = []
        elif tag in ("ul", "ol"):
            self._break(1 if self.lists else 2)
            start = a.get("start")
            self.lists.append(
                [int(start) if start and start.isdigit() else 1 if tag == "ol" else None]
            )
        elif tag == "li":
            self._break(1)
            depth = max(len(self.lists) - 1, 0)
            marker = "•"
            if self.lists and self.lists[-1][0] is not None:
                n = self.lists[-1][0]
                marker = f"{n}."
                self.lists[-1][0] = n + 1
            self.marker = "\x02\x02" * depth + marker + " "  # \x02: a space kept at line start
        elif tag == "table":
            self._break()
            self.tables.append(_Table())
            self.stack.append(self.out)
            self.out = []
        elif tag == "tr" and self.tables:
            self.tables[-1].rows.append([])
        elif tag in ("td", "th") and self.tables:
            self._close_cell()
            self.tables[-1].cell = _Cell()
            self.stack.append(self.out)
            self.out = self.tables[-1].cell.parts
        elif tag in _BLOCK:
            self._break()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(self.skip - 1, 0)
            return
        if self.skip:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            self._link(href, "".join(self.out[start:]))
        elif tag == "pre":
            self.pre = max(self.pre - 1, 0)
            self._break()
        elif tag == "blockquote" and self.stack:
            inner = _finish(self.out)
            self.out = self.stack.pop()
            quoted = "\n".join(f"> {ln}" if ln else ">" for ln in inner.splitlines())
            self._write(quoted)
            self._break()
        elif tag in ("ul", "ol") and self.lists:
            self.marker = ""
            self.lists.pop()
            self._break(1 if self.lists else 2)
        elif tag == "li":
            self._break(1)
        elif tag in ("td", "th") and self.tables:
            self._close_cell()
        elif tag == "table" and self.tables:
            self._close_cell()
            table = self.tables.pop()
            if self.stack:
                self.out = self.stack.pop()
            self._write(_render_table(table.rows))
            self._break()
        elif tag in _BLOCK:
            self._break()

    def _close_cell(self) -> None:
        table = self.tables[-1]
        if table.cell is None:
            return
        text = _finish(table.cell.parts)
        if not table.rows:
            table.rows.append([])
        table.rows[-1].append(text)
        table.cell = None
        self.out = self.stack.pop()

    def _link(self, href: str | None, text: str) -> None:
        if not href or href.startswith(("#", "javascript:", "cid:")):
            return
        target = href[len("mailto:") :] if href.lower().startswith("mailto:") else href
        shown = " ".join(text.split())
        if target and target.rstrip("/") != shown.rstrip("/"):
            self._write(f" <{target}>" if shown else f"<{target}>")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            # kept as is: \x01 = a line break, \x02 = a space that survives line trimming
            self._write(data.replace("\n", "\x01").replace(" ", "\x02"))
        else:
            self._write(re.sub(r"\s+", " ", data))


def _finish(parts: list[str]) -> str:
    """Resolve block markers, collapse spaces, drop trailing ones, at most one blank line."""
    text = "".join(parts)
    text = re.sub(
        r"[ \t]*[\x00\x03][\x00\x03 \t]*",
        lambda m: "\n\n" if "\x00" in m.group() else "\n",
        text,
    )
    text = re.sub(r" *\n *", "\n", text)
    text = text.replace("\x01", "\n").replace("\x02", " ")
    lines = [ln.rstrip() for ln in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip("\n")


def _render_table(rows: list[list[str]]) -> str:
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return ""
    if max(len(r) for r in rows) <= 1:  # a layout table: its content, block after block
        return "\n\n".join(r[0] for r in rows if r)
    flat = [[" ".join(c.split()) for c in r] for r in rows]
    width = max(len(r) for r in flat)
    flat = [r + [""] * (width - len(r)) for r in flat]
    sizes = [max(len(r[i]) for r in flat) for i in range(width)]
    if sum(sizes) + 2 * (width - 1) > 100:  # too wide to align: one "label: value" per cell
        head = flat[0]
        blocks = []
        for r in flat[1:] or flat:
            blocks.append(
                "\n".join(
                    f"{h}: {v}" if h and h != v else v for h, v in zip(head, r, strict=True) if v
                )
            )
        return "\n\n".join(blocks)
    return "\n".join("  ".join(c.ljust(sizes[i]) for i, c in enumerate(r)).rstrip() for r in flat)


def html_to_text(html: str) -> str:
    conv = _Converter()
    conv.feed(html)
    conv.close()
    while conv.tables:  # unclosed tables: flush what they hold
        conv.handle_endtag("table")
    while conv.stack:
        inner = conv.out
        conv.out = conv.stack.pop()
        conv.out.extend(inner)
    return _finish(conv.out) + "\n"
