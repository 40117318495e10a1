"""E3: a crash between SMTP acceptance and the outbox update, then a retry: never twice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from send_support import Party, make_party

from mailops import faults
from mailops.send import EmailRequest, outbox, prepare, queue
from mailops.store import outbox as obstore

pytestmark = pytest.mark.server


@pytest.fixture
def party(store, settings, mailserver, password_mailbox) -> Party:
    p = make_party(store, settings, mailserver, password_mailbox)
    p.customer("c-1", "Carla Buyer")
    return p


def _queued(p: Party) -> obstore.OutboxItem:
    prepared = prepare(
        p.store,
        p.settings,
        EmailRequest(
            user_id=p.user_id,
            mailbox=p.mailbox.id,
            customer_id="c-1",
            subject="Reservation",
            body_text="Your reservation is confirmed.",
        ),
    )
    return queue(p.store, prepared)


def _crash_at(point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "hook", faults.raise_at(f"outbox.{point}"))


def test_E3_message_id_fixed_before_first_attempt(party: Party) -> None:
    item = _queued(party)
    assert item.state == "queued" and item.attempts == 0
    assert item.message_id_header.encode() in item.raw
    done = outbox.deliver(party.store, party.settings, item.id)
    assert done.message_id_header == item.message_id_header
    (msg,) = party.inbox("c-1")
    assert msg["Message-ID"] == item.message_id_header


def test_E3_crash_after_smtp_accept_then_retry_delivers_exactly_once(
    party: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = _queued(party)
    _crash_at("after_smtp_accept", monkeypatch)
    with pytest.raises(faults.SimulatedCrash):
        outbox.deliver(party.store, party.settings, item.id)
    crashed = obstore.get_item(party.store, item.id)
    assert (crashed.state, crashed.phase) == ("sending", "accepted")  # as a crash leaves it
    assert len(party.inbox("c-1")) == 1  # the server had accepted it
    monkeypatch.setattr(faults, "hook", None)

    (after,) = outbox.retry(party.store, party.settings)
    assert after.state == "sent"
    assert after.attempts == 1  # no second SMTP attempt
    assert after.error_code is None  # the 250 was recorded: sent, not assumed (E3)
    assert len(party.inbox("c-1")) == 1  # exactly one copy delivered
    assert [m["Message-ID"] for m in party.sent()] == [item.message_id_header]
    assert party.store.scalar("SELECT count(*) FROM activities") == 1
    # and a second retry changes nothing
    assert outbox.retry(party.store, party.settings) == []
    assert len(party.inbox("c-1")) == 1 and len(party.sent()) == 1


def test_E3_crash_after_sent_copy_retry_finds_it_in_sent(
    party: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = _queued(party)
    _crash_at("after_sent_copy", monkeypatch)
    with pytest.raises(faults.SimulatedCrash):
        outbox.deliver(party.store, party.settings, item.id)
    assert obstore.get_item(party.store, item.id).state == "sending"
    monkeypatch.setattr(faults, "hook", None)

    after = outbox.deliver(party.store, party.settings, item.id)
    assert (after.state, after.sent_copy, after.attempts) == ("sent", "found", 1)
    assert after.error_code is None
    assert len(party.inbox("c-1")) == 1
    assert len(party.sent()) == 1  # not appended a second time


def test_E3_crash_before_smtp_retry_sends_it(party: Party, monkeypatch: pytest.MonkeyPatch) -> None:
    item = _queued(party)
    _crash_at("before_smtp", monkeypatch)
    with pytest.raises(faults.SimulatedCrash):
        outbox.deliver(party.store, party.settings, item.id)
    assert party.inbox("c-1") == []
    monkeypatch.setattr(faults, "hook", None)
    after = outbox.deliver(party.store, party.settings, item.id)
    assert (after.state, after.attempts, after.sent_copy) == ("sent", 2, "appended")
    assert len(party.inbox("c-1")) == 1 and len(party.sent()) == 1


def test_E3_force_retry_sends_again_on_request(
    party: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = _queued(party)
    _crash_at("after_smtp_accept", monkeypatch)
    with pytest.raises(faults.SimulatedCrash):
        outbox.deliver(party.store, party.settings, item.id)
    monkeypatch.setattr(faults, "hook", None)
    forced = outbox.deliver(party.store, party.settings, item.id, force=True)
    assert forced.state == "sent" and forced.attempts == 2
    assert len(party.inbox("c-1")) == 2  # a person asked for it explicitly


def test_E3_problematic_mailbox_at_delivery_fails_with_reason(party: Party) -> None:
    from mailops.store import mailboxes

    item = _queued(party)
    mailboxes.set_state(
        party.store, party.mailbox.id, "problematic", code="auth_failed", message="x"
    )
    after = outbox.deliver(party.store, party.settings, item.id)
    assert (after.state, after.error_code, after.attempts) == ("failed", "mailbox_problematic", 0)
    assert party.inbox("c-1") == []


def test_E3_cli_process_killed_after_accept_then_outbox_retry(party: Party, tmp_path) -> None:
    """The real thing: the `mailops` process is killed (SIGKILL) right after SMTP acceptance."""
    item = _queued(party)
    party.store.close()  # let the child process open the DuckDB file
    env = {**os.environ, faults.FAULT_ENV: "outbox.after_smtp_accept"}
    exe = [sys.executable, "-m", "mailops.cli"]
    crashed = subprocess.run(
        [*exe, "outbox", "retry", str(item.id)], env=env, capture_output=True, text=True
    )
    assert crashed.returncode == -9, crashed.stderr
    env.pop(faults.FAULT_ENV)
    ok = subprocess.run(
        [*exe, "outbox", "retry", str(item.id)], env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "sent" in ok.stdout
    assert len(party.inbox("c-1")) == 1 and len(party.sent()) == 1
    assert obstore.get_item(party.store, item.id).state == "sent"


def test_E3_who_files_the_sent_copy() -> None:
    from mailops.store.mailboxes import Mailbox

    def mb(provider: str, host: str | None) -> Mailbox:
        return Mailbox(
            id=1,
            owner_user_id="u",
            address="a@x.test",
            provider=provider,
            auth_kind="oauth",
            smtp_host=host,
        )

    assert outbox.files_sent_itself(mb("microsoft", "smtp.office365.com"))
    assert outbox.files_sent_itself(mb("google", "smtp.gmail.com"))
    assert not outbox.files_sent_itself(mb("microsoft", "127.0.0.1"))  # devserver stand-in
    assert not outbox.files_sent_itself(mb("generic", "mail.example.test"))


def test_E3_retry_cannot_check_sent_folder_waits_and_never_resends(
    party: Party, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailops.store import mailboxes

    item = _queued(party)
    _crash_at("after_sent_copy", monkeypatch)
    with pytest.raises(faults.SimulatedCrash):
        outbox.deliver(party.store, party.settings, item.id)
    monkeypatch.setattr(faults, "hook", None)
    good_port = party.mailbox.imap_port
    mailboxes.update(party.store, party.mailbox.id, imap_port=1)  # IMAP unreachable now
    waiting = outbox.deliver(party.store, party.settings, item.id)
    assert waiting.state == "failed" and waiting.attempts == 1  # no SMTP attempt without the check
    assert "Sent folder" in (waiting.last_error or "")
    mailboxes.update(party.store, party.mailbox.id, imap_port=good_port)
    done = outbox.deliver(party.store, party.settings, item.id)
    assert (done.state, done.sent_copy, done.attempts) == ("sent", "found", 1)
    assert len(party.inbox("c-1")) == 1 and len(party.sent()) == 1


def test_E3_refused_login_fails_the_entry_and_marks_mailbox_problematic(party: Party) -> None:
    """C4 + E1: a wrong password fails the attempt with a reason, the mailbox turns
    problematic, and the next send is refused before anything is queued."""
    from mailops.errors import SendRefused
    from mailops.secrets import SecretStore
    from mailops.send import EmailRequest, send_email
    from mailops.store import mailboxes

    SecretStore(party.settings).put(party.mailbox.secret_ref, "wrong-password")
    item = _queued(party)
    failed = outbox.deliver(party.store, party.settings, item.id)
    assert failed.state == "failed" and failed.phase == "connect"
    assert failed.error_code and failed.error_code != "send_failed"
    assert mailboxes.get(party.store, party.mailbox.id).state == "problematic"
    with pytest.raises(SendRefused) as info:
        send_email(
            party.store,
            party.settings,
            EmailRequest(
                user_id=party.user_id,
                mailbox=party.mailbox.id,
                customer_id="c-1",
                subject="s",
                body_text="b",
            ),
        )
    assert info.value.code == "mailbox_problematic"
    assert party.inbox("c-1") == []
