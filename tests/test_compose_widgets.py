"""The compose form calls the same functions as the CLI (E1 refusals shown as one line)."""

from __future__ import annotations

import pytest
from send_support import Party, make_party

pytestmark = pytest.mark.server


@pytest.fixture
def party(store, settings, mailserver, password_mailbox) -> Party:
    p = make_party(store, settings, mailserver, password_mailbox)
    p.customer("c-1", "Carla Buyer")
    store.close()  # the panel opens the store per action, like in a notebook
    return p


def test_E2_compose_panel_preview_refusal_and_send(party: Party) -> None:
    from mailops.compose_widgets import ComposePanel

    panel = ComposePanel(party.settings, "user-1", customer_id="c-1")
    assert panel.mailbox.value == party.mailbox.id
    panel.subject.value = "From the form"
    panel.on_send()  # no body: E1 refusal, nothing sent
    assert "body_empty" in panel.last
    panel.body.value = "<p>Hello <b>Carla</b></p><script>x()</script>"
    panel.is_html.value = True
    panel.on_preview()
    shown = panel.last
    assert "<b>Carla</b>" in shown and "x()" not in shown
    assert party.inbox("c-1") == []
    panel.on_send()
    assert "Sent:" in panel.last
    (msg,) = party.inbox("c-1")
    assert msg["Subject"] == "From the form"
