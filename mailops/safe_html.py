"""HTML from mail, safe to store and to show: no script, no handler, no remote load (A1, S12).

``sanitize_html`` is nh3 (ammonia's allow-list: no ``<script>``, ``<style>``, ``<link>``,
event handlers, ``javascript:``) plus what ammonia lets through and a mail client must not
load when a message is opened:

- every ``<img>`` whose ``src`` is not ``cid:`` (an attachment of the message) or an inline
  ``data:image/...`` becomes a placeholder naming the host, e.g.
  ``<span class="mailops-blocked" title="remote image blocked">[image blocked: cdn.example]</span>``
  (1x1 images say "tracking image"). Relative and protocol-relative sources are blocked
  too: under a notebook server a relative URL is a request to that server.
- inline ``style`` keeps a short list of layout properties; a declaration that could load
  anything (``url(``, ``image-set(``, ``@import``, CSS escapes) drops the whole attribute.
- loaders that nh3 drops silently (``<link href>``, ``<style>`` ``url()``, ``background``
  attributes, ``srcset``, ``<video poster>`` …) are listed in one notice at the top:
  ``<p class="mailops-blocked">Remote content blocked: a.example, b.example</p>``.

The result is stable under a second pass (``sanitize_html(sanitize_html(x)) ==
sanitize_html(x)``), so HTML stored by an older version is simply sanitized again when it
is shown (``store.messages.message_html``), which also resolves ``cid:`` images.
"""

from __future__ import annotations

import html as _html
import re
from urllib.parse import urlsplit

import nh3

__all__ = ["BLOCKED_CLASS", "blocked_hosts", "sanitize_html"]

BLOCKED_CLASS = "mailops-blocked"

_STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "text-align", "text-decoration", "text-indent", "text-transform",
    "line-height", "letter-spacing", "white-space", "vertical-align", "width", "height",
    "max-width", "min-width", "margin", "margin-top", "margin-right", "margin-bottom",
    "margin-left", "padding", "padding-top", "padding-right", "padding-bottom",
    "padding-left", "border", "border-top", "border-right", "border-bottom", "border-left",
    "border-color", "border-style", "border-width", "border-collapse", "border-spacing",
}  # fmt: skip
_STYLE_LOADER_RE = re.compile(r"url|image|expression|import|\\|/\*|&|behavior|binding", re.I)
_INLINE_IMAGE_RE = re.compile(r"data:image/(?:png|gif|jpe?g|webp|bmp);base64,", re.I)

_ATTRIBUTES = {k: set(v) for k, v in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES.setdefault("*", set()).add("style")
_ATTRIBUTES.setdefault("span", set()).add("title")  # class: through _CLASSES only
_SCHEMES = set(nh3.ALLOWED_URL_SCHEMES) | {"cid", "data"}
_CLASSES = {"span": {BLOCKED_CLASS}, "p": {BLOCKED_CLASS}}

# nh3's serializer double-quotes every attribute and escapes '"' inside values, so a tag is
# `<img` + (unquoted text | "quoted value")* + `>`; text "<img" is always escaped as &lt;img.
_IMG_RE = re.compile(r'<img\b((?:[^>"]|"[^"]*")*)>')
_ATTR_RE = re.compile(r'([\w:-]+)="([^"]*)"')
_NOTICE_RE = re.compile(rf'^<p class="{BLOCKED_CLASS}">Remote content blocked:[^<]*</p>')

# Remote references in the raw HTML, for the notice (nh3 is what removes them). Linear
# scans only: hostile HTML must not make this quadratic.
_URL = r"((?:[a-z][a-z0-9+.-]*:)?//[^\s\"'<>),]+)"
_NOTICE_SOURCES = [
    re.compile(
        r"<(?!img\b)[a-z][\w:-]*\b[^>]{0,4000}?\b(?:src|poster|data|dynsrc|lowsrc)\s*=\s*[\"']?\s*"
        + _URL,
        re.I,
    ),
    re.compile(
        r"<(?:link|image|use|feimage)\b[^>]{0,4000}?\b(?:xlink:)?href\s*=\s*[\"']?\s*" + _URL, re.I
    ),
    re.compile(r"\b(?:srcset|background|xlink:href)\s*=\s*[\"']?\s*" + _URL, re.I),
    re.compile(r"url\(\s*[\"']?\s*" + _URL, re.I),
    re.compile(r"@import\s+[\"']?\s*" + _URL, re.I),
]


def _host(url: str) -> str | None:
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return host or None


def blocked_hosts(raw_html: str) -> list[str]:
    """Hosts the raw HTML would load from, outside ``<img src>`` (links are not loads)."""
    if "//" not in raw_html:
        return []
    hosts: dict[str, None] = {}
    for rx in _NOTICE_SOURCES:
        for url in rx.findall(raw_html):
            if h := _host(url):
                hosts.setdefault(h, None)
    return list(hosts)


def _filter(tag: str, attr: str, value: str) -> str | None:
    if attr == "style":
        return None if _STYLE_LOADER_RE.search(value) else value
    if attr in ("href", "cite") and value.strip().lower().startswith(("data:", "cid:")):
        return None  # data:/cid: only as image sources
    return value


def _placeholder(attrs: str) -> str:
    values = {k.lower(): _html.unescape(v) for k, v in _ATTR_RE.findall(attrs)}
    src = values.get("src", "").strip()
    if src.lower().startswith("cid:") or _INLINE_IMAGE_RE.match(src):
        return f"<img{attrs}>"
    host = _host(src) if "//" in src else None
    tiny = values.get("width", "").strip() in ("0", "1", "2") or values.get(
        "height", ""
    ).strip() in ("0", "1", "2")
    what = "tracking image" if tiny else "image"
    label = f"[{what} blocked: {host}]" if host else f"[{what} blocked]"
    return (
        f'<span class="{BLOCKED_CLASS}" title="remote {what} blocked">{_html.escape(label)}</span>'
    )


def sanitize_html(raw_html: str) -> str:
    """HTML from mail, safe to show: no script or handler, no remote load (see module doc)."""
    hosts = blocked_hosts(raw_html)
    try:
        clean = nh3.clean(
            raw_html,
            attributes=_ATTRIBUTES,
            attribute_filter=_filter,
            url_schemes=_SCHEMES,
            allowed_classes=_CLASSES,
            filter_style_properties=_STYLE_PROPERTIES,
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - a Rust panic is a BaseException: show text only
        return "<pre>" + _html.escape(raw_html) + "</pre>"
    if "<img" in clean:
        clean = _IMG_RE.sub(lambda m: _placeholder(m.group(1)), clean)
    if hosts:
        shown = ", ".join(_html.escape(h) for h in hosts[:20])
        more = f" and {len(hosts) - 20} more" if len(hosts) > 20 else ""
        clean = f'<p class="{BLOCKED_CLASS}">Remote content blocked: {shown}{more}</p>' + (
            _NOTICE_RE.sub("", clean)
        )
    return clean
