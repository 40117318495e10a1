"""A1/S12: HTML from mail makes no remote load; attachment names never become paths."""

from __future__ import annotations

import pytest

from mailops.filenames import safe_basename
from mailops.safe_html import sanitize_html

HOSTILE = {
    "img-src": ('<img src="https://img.example/a.png">', "img.example"),
    "tracking-pixel": ('<img src="http://px.example/o.gif" width="1" height="1">', "px.example"),
    "protocol-relative": ('<img src="//rel.example/x.png">', "rel.example"),
    "srcset": ('<img srcset="https://set.example/a.png 2x">', "set.example"),
    "css-url": ('<div style="background:url(https://css.example/b.png)">x</div>', "css.example"),
    "style-block": ("<style>body{background:url('//blk.example/c')}</style>x", "blk.example"),
    "import": ('<style>@import "https://imp.example/s.css";</style>x', "imp.example"),
    "link": ('<link rel="stylesheet" href="https://lnk.example/s.css">x', "lnk.example"),
    "background-attr": ('<table background="http://bg.example/t.png"><tr><td>x</td></tr></table>', "bg.example"),
    "video-poster": ('<video poster="https://vid.example/p.jpg"></video>x', "vid.example"),
    "iframe": ('<iframe src="https://frm.example/"></iframe>x', "frm.example"),
}  # fmt: skip


@pytest.mark.parametrize("html,host", list(HOSTILE.values()), ids=[f"A1-{k}" for k in HOSTILE])
def test_A1_remote_content_becomes_a_placeholder_naming_the_host(html, host):
    out = sanitize_html(html)
    assert host in out  # named in a placeholder or the notice
    for loader in ("src=", "srcset", "url(", "href=", "background=", "poster=", "@import"):
        if loader in out:
            assert f"{host}/" not in out.split(loader, 1)[1][:80], out
    assert "mailops-blocked" in out
    assert sanitize_html(out) == out  # stable: shown HTML is sanitized again


@pytest.mark.parametrize(
    "html,gone",
    [
        ("<script>alert(1)</script><p>x</p>", "alert"),
        ('<p onclick="steal()">x</p>', "steal"),
        ('<a href="javascript:steal()">x</a>', "javascript"),
        ('<a href="data:text/html,<script>x</script>">x</a>', "data:"),
        ('<img src="x" onerror="steal()">', "steal"),
        ('<svg><script>steal()</script></svg>', "steal"),
        ('<p style="color:red;behavior:url(x.htc)">x</p>', "behavior"),
    ],
    ids=["A1-script", "A1-handler", "A1-javascript-url", "A1-data-link", "A1-onerror", "A1-svg-script", "A1-css-behavior"],
)  # fmt: skip
def test_A1_scripts_and_handlers_removed(html, gone):
    assert gone not in sanitize_html(html)


def test_A1_links_and_inline_images_stay():
    out = sanitize_html(
        '<p style="color:blue">Hi <a href="https://crm.example/x">offer</a>'
        '<img src="cid:plan@x" alt="plan"><img src="data:image/png;base64,iVBORw0KGgo="></p>'
    )
    assert 'href="https://crm.example/x"' in out and 'style="color:blue"' in out
    assert 'src="cid:plan@x"' in out and 'src="data:image/png;base64,' in out
    assert "mailops-blocked" not in out


@pytest.mark.parametrize(
    "name,expected",
    [
        ("invoice\u202efdp.exe", "invoice_fdp.exe"),
        ("zero\u200bwidth.pdf", "zero_width.pdf"),
        ('re:port?<1>|*".pdf', "re_port__1____.pdf"),
        ("a\x00b.pdf", "a_b.pdf"),
    ],
    ids=["A1-bidi-override", "A1-zero-width", "A1-reserved-chars", "A1-nul"],
)
def test_A1_safe_basename_format_characters(name, expected):
    assert safe_basename(name) == expected
