"""R1/E2 widgets without friction (issue 13): port and security fields, the way to the demo
server, errors in the panel's words, wide From/To/Cc, To prefilled, the customer's deals
only, no "None" on screen. The same panels in a real JupyterLab: test_widgets_lab.py."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest
from send_support import Party, add_deal, make_party

from mailops.compose_widgets import ComposePanel
from mailops.widgets import PANEL_WORDS, ConnectPanel, demo_hint, for_panel, split_host

CLI_WORDS = re.compile(r"(?<![\w-])--[a-z][a-z-]+|\bmailops (?:mailbox|outbox|send|draft) ")


@pytest.mark.parametrize(
    "line",
    [
        "error [config]: no IMAP/SMTP host for generic (guidance: give --imap-host/--smtp-host (or --devserver))",
        "error [password_required]: a password is needed (use the hidden prompt, --password-stdin or --password-env VAR)",
        "error [already_connected]: x@y.test is already connected (to sign in again use: mailops mailbox reconnect x@y.test)",
        "error [mailbox_problematic]: mailbox x is problematic (reconnect the mailbox (mailops mailbox reconnect), then send again)",
        "error [template_missing_fields]: needs deal.price (fill them in the CRM (or pick the deal with --deal) and try again)",
        "retry with mailops outbox retry 12",
    ],
)
def test_R1_panel_errors_name_fields_and_buttons_not_cli_flags(line: str) -> None:
    said = for_panel(line)
    assert not CLI_WORDS.search(said), said


def test_R1_every_panel_word_rule_applies() -> None:
    for pattern, words in PANEL_WORDS:
        assert not CLI_WORDS.search(words), words
        assert re.compile(pattern)


@pytest.mark.parametrize(
    ("typed", "port", "expected"),
    [
        ("mail.example.com:1993", 993, ("mail.example.com", 1993)),
        ("mail.example.com", 993, ("mail.example.com", 993)),
        (" 127.0.0.1:2525 ", 587, ("127.0.0.1", 2525)),
        ("[::1]:993", 143, ("::1", 993)),
    ],
)
def test_R1_host_port_typed_in_the_host_field(typed, port, expected) -> None:
    assert split_host(typed, port) == expected


@pytest.mark.server
def test_R1_generic_form_with_port_and_security_connects(settings, mailserver) -> None:
    if not os.path.exists(os.path.join(mailserver.root, "endpoints.json")):
        mailserver.state.save()  # what `mailops devserver start` writes for the product
    settings = dataclasses.replace(settings, devserver_dir=mailserver.root)
    address, password = mailserver.new_user()
    panel = ConnectPanel(settings, user_id="u-1", provider="generic", address=address, timeout=20)
    assert panel.server_box.layout.display == ""
    assert (
        "Use the demo server" in panel.hint.value and str(mailserver.smtp_port) in panel.hint.value
    )
    # without a host: the panel says which fields to fill, not which flags to pass
    panel.password.value = password
    missing = panel.on_connect()
    assert not missing.ok and "IMAP host" in panel.result.value
    assert not CLI_WORDS.search(panel.result.value), panel.result.value
    # the demo button fills host, ports and security; host:port typed by hand works too
    panel.use_demo_server()
    assert panel.imap_port.value == mailserver.imaps_port and panel.imap_security.value == "ssl"
    assert panel.smtp_port.value == mailserver.smtp_port and panel.smtp_security.value == "starttls"
    panel.imap_host.value = f"127.0.0.1:{mailserver.imaps_port}"
    panel.imap_port.value = 1
    panel.password.value = password
    ok = panel.on_connect()
    assert ok.ok, ok.line
    assert "None" not in panel.table.value and address in panel.table.value


@pytest.fixture
def party(store, settings, mailserver, password_mailbox) -> Party:
    p = make_party(store, settings, mailserver, password_mailbox)
    p.customer("c-1", "Carla Buyer")
    p.customer("c-2", "Carl Cobuyer")
    p.customer("c-3", "Dora Other")
    add_deal(store, "d-1", ["c-1", "c-2"], unit="A-12", project="Harbour View")
    add_deal(store, "d-2", ["c-3"], unit=None, project=None)
    add_deal(store, "d-3", ["c-3"], unit="B-1", project="Linden Park")
    store.close()
    return p


@pytest.mark.server
def test_E2_compose_to_prefilled_deals_of_the_customer_wide_fields(party: Party) -> None:
    panel = ComposePanel(party.settings, "user-1", customer_id="c-1")
    assert panel.customer.value == "c-1"
    assert panel.customer.label == f"Carla Buyer <{party.customers['c-1'][0]}>"
    assert [v for _, v in panel.deal.options] == [None, "d-1"]
    assert panel.deal.value == "d-1"  # his only deal, picked
    assert "c-1" not in [c for _, c in panel.cc.options]  # To is not offered again on Cc
    panel.cc.value = ("c-2",)
    panel.customer.value = "c-3"
    assert [v for _, v in panel.deal.options] == [None, "d-2", "d-3"] and panel.deal.value is None
    assert panel.cc.value == ("c-2",) and "c-3" not in [c for _, c in panel.cc.options]
    labels = [label for label, _ in panel.deal.options]
    assert not any("None" in label or "nan" in label for label in labels), labels
    for field in (panel.mailbox, panel.customer, panel.cc):
        assert int(field.layout.width.rstrip("px")) >= 600
    panel.customer.value = "c-1"
    panel.subject.value = "Hello"
    panel.body.value = "Dear Carla"
    panel.on_preview()
    assert "None" not in panel.last and "Hello" in panel.last


def test_R1_demo_hint_without_a_running_server(settings, tmp_path) -> None:
    settings = dataclasses.replace(settings, devserver_dir=str(tmp_path / "nothing"))
    hint = demo_hint(settings)
    assert "make demo" in hint and "Use the demo server" in hint
