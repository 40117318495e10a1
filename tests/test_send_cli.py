"""The send CLI: `mailops send|draft|template|outbox`, one-line errors, every command with help."""

from __future__ import annotations

import pytest
from send_support import Party, add_deal, make_party

from mailops.cli import cli, main

pytestmark = pytest.mark.server


@pytest.fixture
def party(store, settings, mailserver, password_mailbox) -> Party:
    p = make_party(store, settings, mailserver, password_mailbox)
    p.customer("c-1", "Carla Buyer")
    add_deal(
        store, "d-1", ["c-1"], unit="A-12", project="Harbour View", price=450000, currency="EUR"
    )
    return p


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_E1_cli_refusal_is_one_line(party: Party, capsys) -> None:
    code, out, err = run(
        capsys,
        "send",
        "--from",
        party.mailbox.address,
        "--user",
        "user-1",
        "--customer",
        "c-1",
        "--subject",
        "Hi",
        "--body",
        "  ",
    )
    assert code == 7
    assert err.strip() == "error [body_empty]: the body is empty"


def test_E2_cli_send_preview_then_send_with_attachment(party: Party, capsys, tmp_path) -> None:
    f = tmp_path / "plan.pdf"
    f.write_bytes(b"%PDF-1.4")
    args = [
        "send",
        "--from",
        party.mailbox.address,
        "--user",
        "user-1",
        "--customer",
        "c-1",
        "--subject",
        "Plan",
        "--body",
        "Attached.",
        "--attach",
        str(f),
    ]
    code, out, _ = run(capsys, *args, "--preview")
    assert code == 0 and "Subject      Plan" in out and "plan.pdf (application/pdf" in out
    assert party.inbox("c-1") == []
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert out.startswith("sent outbox 1 <") and "(Sent copy: appended)" in out
    assert len(party.inbox("c-1")) == 1
    code, out, _ = run(capsys, "outbox", "list")
    assert code == 0 and "sent" in out and "Plan" in out


def test_E2_cli_template_and_draft_flow(party: Party, capsys, tmp_path) -> None:
    body = tmp_path / "offer.txt"
    body.write_text(
        "Dear {{ customer.name }}, unit {{ deal.unit }} costs {{ deal.price | money }}.\n"
    )
    code, out, err = run(
        capsys,
        "template",
        "add",
        "offer",
        "--subject",
        "Offer {{ deal.unit }}",
        "--body-file",
        str(body),
    )
    assert code == 0, err
    code, out, _ = run(
        capsys, "template", "preview", "offer", "--customer", "c-1", "--user", "user-1"
    )
    assert code == 0 and "Subject: Offer A-12" in out and "450,000.00" in out
    code, _, err = run(capsys, "template", "add", "bad", "--subject", "{{ x", "--body", "b")
    assert code == 7 and "template_invalid" in err
    code, out, _ = run(capsys, "template", "list")
    assert "offer" in out

    code, out, err = run(
        capsys,
        "draft",
        "create",
        "--user",
        "user-1",
        "--from",
        party.mailbox.address,
        "--customer",
        "c-1",
        "--template",
        "offer",
        "--deal",
        "d-1",
    )
    assert code == 0, err
    draft_id = out.split()[1]
    code, out, _ = run(capsys, "draft", "list", "--user", "user-1")
    assert draft_id in out
    code, out, err = run(capsys, "draft", "send", draft_id, "--user", "user-1")
    assert code == 0, err
    (msg,) = party.inbox("c-1")
    assert msg["Subject"] == "Offer A-12"
    code, out, _ = run(capsys, "draft", "list", "--user", "user-1")
    assert out.strip() == "no drafts"

    code, out, _ = run(capsys, "draft", "create", "--user", "user-1", "--subject", "tmp")
    did = out.split()[1]
    code, out, _ = run(capsys, "draft", "delete", did)
    assert code == 0
    code, _, err = run(capsys, "draft", "send", did)
    assert code == 1 and err.startswith("error [draft_not_found]")


def test_cli_send_commands_have_help() -> None:
    for name in ("send", "draft", "outbox", "template"):
        cmd = cli.commands[name]
        assert cmd.help, name
        for sub in getattr(cmd, "commands", {}).values():
            assert sub.help, f"{name} {sub.name}"
