"""E2 bounded templates: a hostile template is refused in one line naming it, never a hang.

Each case must come back within a few seconds (the render deadline is 2 s per part), and
the renderer must still work for the next, honest template.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from mailops import sandbox
from mailops.errors import SendRefused
from mailops.send.templates import Fields, Limits, render

CTX = {
    "customer": Fields("customer", {"name": "Carla Buyer", "first_name": "Carla"}),
    "deal": Fields("deal", {"unit": "A-12", "price": Decimal("450000"), "currency": "EUR"}),
}

HOSTILE = [
    pytest.param("{{ 9**(9**10) }}", "power", id="E2-huge-power"),
    pytest.param("{{ 2**100000 }}", "power", id="E2-big-power"),
    pytest.param(
        "{% for a in range(100000) %}{% for b in range(100000) %}.{% endfor %}{% endfor %}",
        "range",
        id="E2-nested-range-100000",
    ),
    pytest.param(
        "{% for a in range(10000) %}{% for b in range(10000) %}.{% endfor %}{% endfor %}",
        "loops more than",
        id="E2-nested-loops-budget",
    ),
    pytest.param("{{ ('x'*4000000000) }}", "repeating", id="E2-huge-repetition"),
    pytest.param("{{ [1]*10**9 }}", "repeating", id="E2-list-repetition"),
    pytest.param("{{ range(10**9) | list }}", "range", id="E2-range-10**9"),
    pytest.param("{{ range(10**9) }}", "range", id="E2-range-10**9-bare"),
    pytest.param(
        "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
        "took longer than",
        id="E2-time-bound",
    ),
    pytest.param("{{ 'x' | center(400000000) }}", "memory", id="E2-memory-bound"),
    pytest.param("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "itself", id="E2-recursion"),
]


@pytest.mark.parametrize(("source", "says"), HOSTILE)
def test_E2_hostile_template_refused_in_one_line(source: str, says: str) -> None:
    started = time.monotonic()
    with pytest.raises(SendRefused) as info:
        render("Offer", source, None, CTX, name="offer")
    took = time.monotonic() - started
    err = info.value
    assert took < 8, f"took {took:.1f} s"
    assert err.code == "template_limit", err.message
    assert err.message.startswith("template 'offer' (text) "), err.message
    assert says in err.message, err.message
    assert "\n" not in err.one_line()
    # the renderer still serves the next, honest template
    ok = render("Offer {{ deal.unit }}", "Dear {{ customer.first_name }}", None, CTX)
    assert ok.subject == "Offer A-12" and ok.body_text == "Dear Carla"


def test_E2_hostile_subject_and_html_named_by_part() -> None:
    with pytest.raises(SendRefused) as info:
        render("{{ 9**(9**10) }}", "fine", None, CTX, name="offer")
    assert info.value.message.startswith("template 'offer' (subject) ")
    with pytest.raises(SendRefused) as info:
        render("s", None, "<p>{{ 'y' * 10**8 }}</p>", CTX, name="offer")
    assert info.value.message.startswith("template 'offer' (html) ")


def test_E2_honest_arithmetic_and_loops_still_work() -> None:
    r = render(
        "{{ 2**10 }} {{ 'ab' * 3 }}",
        "{% for i in range(3) %}{{ i }}{% endfor %}|{{ (deal.price * 2) | money }}|"
        "{{ range(5) | list | length }}|{% for i in range(10)|reverse %}{{ i }}{% endfor %}",
        None,
        CTX,
    )
    assert r.subject == "1024 ababab"
    assert r.body_text == "012|900,000.00|5|9876543210"


def test_E2_limits_configurable() -> None:
    source = "{% set s = 'x' * 20000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(SendRefused) as info:
        render("s", source, None, CTX, name="slow", limits=Limits(timeout=0.5))
    assert "0.5 s" in info.value.message
    assert time.monotonic() - started < 5


def test_E2_worker_holds_no_pandas(tmp_path) -> None:
    """The renderer is a small process: jinja2 only (quick to start again after a kill)."""
    render("s", "x", None, CTX)
    assert sandbox._worker is not None
    pid = sandbox._worker.proc.pid
    maps = open(f"/proc/{pid}/maps").read()
    assert "pandas" not in maps and "duckdb" not in maps


def test_E2_cli_preview_of_hostile_template_is_one_line(settings, store, capsys) -> None:
    from mailops.cli import main
    from mailops.store.outbox import save_template

    store.execute(
        "INSERT INTO users (id, email, role, name) VALUES ('u-1', 'u1@x.test', 'sales', 'U')"
    )
    store.execute(
        "INSERT INTO customers (id, name, owner_user_id) VALUES ('c-1', 'Carla Buyer', 'u-1')"
    )
    save_template(store, "bomb", "Offer", body_text="{{ 9**(9**10) }}")
    store.close()
    code = main(["template", "preview", "bomb", "--customer", "c-1", "--user", "u-1"])
    out = capsys.readouterr()
    assert code != 0
    lines = [ln for ln in (out.out + out.err).splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error [template_limit]: template 'bomb' (text) is refused")
