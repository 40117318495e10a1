"""E2/S6 drafts: kept in the store only (never on the server), edited, sent later, once."""

from __future__ import annotations

import pytest
from send_support import Party, make_party

from mailops.errors import SendRefused
from mailops.permissions import SYSTEM
from mailops.send import Attachment, drafts
from mailops.store import outbox as obstore

pytestmark = pytest.mark.server


@pytest.fixture
def party(store, settings, mailserver, password_mailbox) -> Party:
    p = make_party(store, settings, mailserver, password_mailbox)
    p.customer("c-1", "Carla Buyer")
    return p


def test_S6_draft_saved_in_store_only_then_sent(party: Party) -> None:
    from mailops.sync import sync_mailbox

    d = drafts.create(
        party.store,
        "user-1",
        mailbox=party.mailbox.address,
        customer_id="c-1",
        subject="Draft offer",
        attachments=[Attachment.from_bytes("plan.pdf", b"%PDF-x")],
    )
    assert d.id and d.body_text is None
    assert party.own("Drafts") == [] and party.sent() == []  # nothing on the server
    result = sync_mailbox(party.store, party.settings, party.mailbox.id)
    assert result.status == "ok"
    assert party.store.scalar("SELECT count(*) FROM messages") == 0  # never synced back
    assert party.store.scalar("SELECT count(*) FROM activities") == 0

    with pytest.raises(SendRefused) as info:  # E1 applies when sending
        drafts.send_draft(party.store, party.settings, d.id)
    assert info.value.code == "body_empty"
    assert party.inbox("c-1") == []

    drafts.edit(party.store, d.id, body_text="Please find the plan attached.")
    item = drafts.send_draft(party.store, party.settings, d.id, user_id="user-1")
    assert item.state == "sent", item.last_error
    assert item.draft_id == d.id
    assert obstore.get_draft(party.store, d.id).sent_outbox_id == item.id
    (msg,) = party.inbox("c-1")
    assert msg["Subject"] == "Draft offer"
    assert [a.get_filename() for a in msg.iter_attachments()] == ["plan.pdf"]
    # sending the draft again does not send twice
    again = drafts.send_draft(party.store, party.settings, d.id)
    assert again.id == item.id and len(party.inbox("c-1")) == 1
    assert obstore.drafts_frame(
        party.store, "user-1", viewer=SYSTEM
    ).empty  # sent drafts leave the list
    with pytest.raises(SendRefused):
        drafts.edit(party.store, d.id, subject="changed")


def test_E2_draft_list_edit_delete(party: Party) -> None:
    a = drafts.create(party.store, "user-1", customer_id="c-1", subject="one")
    b = drafts.create(party.store, "user-1", customer_id="c-1", subject="two")
    drafts.create(party.store, "user-2", customer_id="c-1", subject="not mine")
    listed = obstore.drafts_frame(party.store, "user-1", viewer=SYSTEM)
    assert sorted(listed["subject"]) == ["one", "two"]
    drafts.edit(party.store, a.id, subject="one (edited)", cc_customers=["c-1"])
    assert obstore.get_draft(party.store, a.id).subject == "one (edited)"
    obstore.delete_draft(party.store, b.id)
    assert obstore.drafts_frame(party.store, "user-1", viewer=SYSTEM)["subject"].tolist() == [
        "one (edited)"
    ]


def test_E2_draft_of_another_user_not_sent(party: Party) -> None:
    d = drafts.create(
        party.store,
        "user-1",
        mailbox=party.mailbox.id,
        customer_id="c-1",
        subject="s",
        body_text="b",
    )
    with pytest.raises(SendRefused) as info:
        drafts.send_draft(party.store, party.settings, d.id, user_id="user-2")
    assert info.value.code == "draft_not_owned"
