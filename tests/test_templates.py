"""E2 templates (offers): merge fields rendered in a sandbox; missing fields refused, all listed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from send_support import Party, add_deal, make_party

from mailops.errors import SendRefused
from mailops.send import EmailRequest, send_email
from mailops.send.templates import Fields, check_syntax, merge_context, render
from mailops.store.outbox import save_template

CTX = {
    "customer": Fields("customer", {"name": "Carla Buyer", "first_name": "Carla"}),
    "deal": Fields(
        "deal", {"unit": "A-12", "price": Decimal("450000"), "currency": "EUR", "project": None}
    ),
    "today": date(2026, 11, 26),
}


def test_E2_template_renders_fields_and_filters() -> None:
    r = render(
        "Offer {{ deal.unit }}",
        "Dear {{ customer.first_name }}, {{ deal.price | money(deal.currency) }} on {{ today | date }}",
        None,
        CTX,
    )
    assert r.subject == "Offer A-12"
    assert r.body_text == "Dear Carla, 450,000.00 EUR on 26 November 2026"


def test_E2_template_missing_fields_refused_listing_all() -> None:
    with pytest.raises(SendRefused) as info:
        render(
            "Offer {{ deal.unit }} in {{ deal.project }}",
            "Dear {{ customer.name }}, {{ unit.number }} costs {{ deal.price | money }}; call {{ customer.phone }}",
            "<p>{{ sales.name }}</p>",
            CTX,
            name="offer",
        )
    err = info.value
    assert err.code == "template_missing_fields"
    for missing in ("deal.project", "unit.number", "customer.phone", "sales.name"):
        assert missing in err.message
    assert "deal.unit" not in err.message and "deal.price" not in err.message


def test_E2_template_missing_field_in_condition_or_loop_counts() -> None:
    with pytest.raises(SendRefused) as info:
        render(
            "x",
            "{% if deal.parking %}P{% endif %}{% for r in deal.rooms %}{{ r }}{% endfor %}",
            None,
            CTX,
        )
    assert "deal.parking" in info.value.message and "deal.rooms" in info.value.message


def test_E2_template_is_sandboxed() -> None:
    with pytest.raises(SendRefused) as info:
        render("x", "{{ customer.__class__.__mro__[1].__subclasses__() }}", None, CTX)
    assert info.value.code == "template_invalid"


def test_E2_template_html_escaped_and_sanitized() -> None:
    ctx = {**CTX, "customer": Fields("customer", {"name": "<script>x()</script>Eve"})}
    r = render("s", None, "<p onclick='y()'>Dear {{ customer.name }}</p><script>z()</script>", ctx)
    assert r.body_html is not None
    assert (
        "<script" not in r.body_html and "onclick" not in r.body_html and "z()" not in r.body_html
    )
    assert "Eve" in r.body_html


def test_E2_template_syntax_error_refused() -> None:
    with pytest.raises(SendRefused) as info:
        check_syntax("bad", "Offer {{ deal.unit", None, None)
    assert info.value.code == "template_invalid"


@pytest.fixture
def party(store, settings, mailserver, password_mailbox) -> Party:
    p = make_party(store, settings, mailserver, password_mailbox)
    p.customer("c-1", "Carla Buyer")
    add_deal(
        store,
        "d-1",
        ["c-1"],
        unit="A-12",
        project="Harbour View",
        price=Decimal("450000"),
        currency="EUR",
    )
    save_template(
        store,
        "offer",
        "Offer for unit {{ deal.unit }} at {{ unit.project }}",
        body_text="Dear {{ customer.name }},\nunit {{ unit.number }}: {{ deal.price | money(deal.currency) }}.\n{{ sales.name }}\n",
        body_html="<p>Dear {{ customer.name }}, unit <b>{{ deal.unit }}</b></p>",
    )
    return p


@pytest.mark.server
def test_E2_template_offer_sent_with_merged_fields(party: Party) -> None:
    ctx = merge_context(party.store, customer_id="c-1", user_id="user-1")
    assert ctx["deal"]["id"] == "d-1"  # the customer's only deal is taken
    item = send_email(
        party.store,
        party.settings,
        EmailRequest(
            user_id="user-1",
            mailbox=party.mailbox.id,
            customer_id="c-1",
            template="offer",
            deal_id="d-1",
        ),
    )
    assert item.state == "sent", item.last_error
    (msg,) = party.inbox("c-1")
    assert msg["Subject"] == "Offer for unit A-12 at Harbour View"
    text = msg.get_body(("plain",)).get_content()
    assert "Dear Carla Buyer" in text and "450,000.00 EUR" in text and "Sam Seller" in text
    assert "<b>A-12</b>" in msg.get_body(("html",)).get_content()
    assert "{{" not in msg.as_string()
    acts = party.store.query("SELECT deal_id FROM activities WHERE customer_id = 'c-1'")
    assert acts["deal_id"].tolist() == ["d-1"]


@pytest.mark.server
def test_E2_template_with_empty_crm_field_refused_nothing_sent(party: Party) -> None:
    party.store.execute("UPDATE deals SET price = NULL, project = NULL WHERE id = 'd-1'")
    with pytest.raises(SendRefused) as info:
        send_email(
            party.store,
            party.settings,
            EmailRequest(
                user_id="user-1", mailbox=party.mailbox.id, customer_id="c-1", template="offer"
            ),
        )
    assert info.value.code == "template_missing_fields"
    assert "deal.price" in info.value.message and "unit.project" in info.value.message
    assert party.store.scalar("SELECT count(*) FROM outbox") == 0
    assert party.inbox("c-1") == []


@pytest.mark.server
def test_E2_template_needs_a_deal_when_customer_has_several(party: Party) -> None:
    add_deal(party.store, "d-2", ["c-1"], unit="B-3", project="Park Side", price=1, currency="EUR")
    with pytest.raises(SendRefused) as info:
        send_email(
            party.store,
            party.settings,
            EmailRequest(
                user_id="user-1", mailbox=party.mailbox.id, customer_id="c-1", template="offer"
            ),
        )
    assert "deal.unit" in info.value.message  # no deal chosen: deal fields are missing, listed
