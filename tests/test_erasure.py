"""G1 against the real devserver: erase a customer (every address he had) after a sync, a
send, a draft and a notification; the receipt holds no personal data; a later sync (new
mail, and a first sync of another mailbox holding his old mail) and a re-import bring
nothing back: nothing of him is left in the store but the receipt."""

from __future__ import annotations

import json
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sync_support import add_customer, append, make_msg, utcnow

from mailops.cli import main
from mailops.erasure import erase
from mailops.errors import MailopsError, PermissionDenied
from mailops.store import Store
from mailops.sync import sync_mailbox

ZOE = "zoe.private@home.test"
ZOE_WORK = "zoe.w@work.test"
NEEDLES = ("zoe.private", "zoe.w@", "home.test", "Zoe Private", "Kellerstrasse 9")


def _with_attachment(frm: str, to: str, subject: str) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = f"Zoe Private <{frm}>", to, subject
    m["Message-ID"] = f"<{subject.replace(' ', '-')}@home.test>"
    m["Date"] = "Mon, 30 Nov 2026 10:00:00 +0000"
    m.set_content("My address is Kellerstrasse 9.\n")
    m.add_attachment(
        b"%PDF-1.4 passport of Zoe Private " + b"0" * 1_500_000,  # > 1 MB: the blob folder
        maintype="application",
        subtype="pdf",
        filename="passport.pdf",
    )
    return m.as_bytes()


def _text_anywhere(store: Store) -> list[str]:
    """Every table, every column cast to text, searched for the needles."""
    hits = []
    tables = [
        r[0]
        for r in store.rows(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        )
    ]
    for t in tables:
        cols = [
            r[0]
            for r in store.rows(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [t]
            )
        ]
        for c in cols:
            for needle in NEEDLES:
                n = store.scalar(
                    f'SELECT count(*) FROM "{t}" WHERE lower(CAST("{c}" AS VARCHAR)) LIKE ?',
                    [f"%{needle.lower()}%"],
                )
                if n:
                    hits.append(f"{t}.{c}: {needle} x{n}")
    return hits


@pytest.fixture
def world(store, settings, password_mailbox, mailserver):
    store.execute(
        "INSERT INTO users (id, email, name, role) VALUES ('u-1', 'one@corp.test', 'One', 'sales'),"
        " ('u-2', 'two@corp.test', 'Two', 'sales'), ('u-adm', 'adm@corp.test', 'Adm', 'admin')"
    )
    if ZOE not in mailserver.state.users():
        mailserver.state.add_users({ZOE: "pw-zoe"})  # so the send to her is delivered
    mb, pw = password_mailbox(owner="u-1", connected_at=utcnow() - timedelta(hours=1))
    add_customer(store, "c-z", ZOE, name="Zoe Private", additional=[ZOE_WORK])
    add_customer(store, "c-a", "anna@cust.test", name="Anna Other")
    store.execute("UPDATE customers SET owner_user_id = 'u-1'")
    append(
        mailserver,
        mb.address,
        pw,
        [
            _with_attachment(ZOE, mb.address, "my papers"),
            make_msg("anna@cust.test", mb.address, subject="anna alone"),
            make_msg("anna@cust.test", mb.address, cc=[ZOE], subject="anna with zoe"),
            make_msg(ZOE_WORK, mb.address, subject="from work"),
        ],
    )
    assert sync_mailbox(store, settings, mb).status == "ok"
    from mailops.send import EmailRequest, drafts, send_email

    item = send_email(
        store,
        settings,
        EmailRequest(
            user_id="u-1",
            mailbox=mb.id,
            customer_id="c-z",
            subject="Your offer",
            body_text="Dear Zoe Private",
        ),
    )
    assert item.state == "sent", item.last_error
    drafts.create(
        store, "u-1", mailbox=mb.id, customer_id="c-z", subject="draft to zoe", body_text="hi"
    )
    from mailops.store.sync import add_never_log

    add_never_log(store, "address", ZOE_WORK, user_id="u-2")
    return mb, pw


def test_G1_erase_customer_receipt_block_then_sync_and_reimport_bring_nothing_back(
    world, store, settings, mailserver, password_mailbox, tmp_path, capsys
):
    mb, pw = world
    assert _text_anywhere(store)  # the check can see him before
    assert store.scalar("SELECT count(*) FROM notifications WHERE customer_id = 'c-z'") >= 1
    # another user's mailbox holds his old mail too, not synced yet
    other, opw = password_mailbox(owner="u-2", connected_at=utcnow())
    append(mailserver, other.address, opw, [make_msg(ZOE, other.address, subject="old zoe mail")])
    store.close()
    db = Path(settings.db)
    assert b"zoe.private@home.test" in db.read_bytes() + _wal(db)

    assert main(["erase", "--customer", "c-z", "--as", "u-1"]) == 6  # admins only
    assert main(["erase", "--customer", "c-z", "--dry-run", "--as", "u-adm"]) == 0
    assert "would erase: 3 messages" in capsys.readouterr().out
    with Store(settings.db) as s:
        assert s.scalar("SELECT count(*) FROM messages") == 4  # the dry run removed nothing
    assert main(["erase", "--customer", "c-z", "--as", "u-adm", "--json"]) == 0
    (receipt,) = json.loads(capsys.readouterr().out)
    receipt["counts"] = json.loads(receipt["counts"])
    text = json.dumps(receipt)
    assert not any(n.lower() in text.lower() for n in NEEDLES)  # no personal data
    assert receipt["counts"]["messages"] == 3 and receipt["counts"]["outbox"] == 1
    assert receipt["counts"]["drafts"] == 1 and receipt["counts"]["attachment_blobs"] == 1
    assert receipt["counts"]["notifications"] >= 1 and receipt["counts"]["customers"] == 1
    assert len(receipt["content_sha256"]) == 4  # 3 messages + the passport
    assert receipt["by"] == "u-adm" and receipt["target_kind"] == "customer"

    # later: new mail from both addresses, a first sync of the other mailbox, a re-import
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg(ZOE, mb.address, subject="zoe again"),
            make_msg(ZOE_WORK, mb.address, subject="work again"),
        ],
    )
    csv = tmp_path / "customers.csv"
    csv.write_text(
        f"id,name,owner_user_id,email,additional_emails\nc-z,Zoe Private,u-1,{ZOE},{ZOE_WORK}\nc-a,Anna Other,u-1,anna@cust.test,\n"
    )
    assert main(["directory", "import", "--customers", str(csv)]) == 0
    capsys.readouterr()
    with Store(settings.db) as s:
        r1 = sync_mailbox(s, settings, mb.id)
        r2 = sync_mailbox(s, settings, other.id)
        reasons = [
            r[0]
            for r in s.rows(
                "SELECT reason FROM audit_ledger WHERE list_contains(?, run_id)",
                [[r1.run_id, r2.run_id]],
            )
        ]
        # zoe again, work again, the Sent copy of our offer, and the other mailbox's old mail
        assert reasons == ["erased"] * 4
        assert s.scalar("SELECT count(*) FROM customers WHERE id = 'c-z'") == 0
        assert s.scalar("SELECT count(*) FROM messages") == 1  # "anna alone"; nothing of zoe
        assert _text_anywhere(s) == []
        assert s.scalar("SELECT count(*) FROM erasure_receipts") == 1
    data = db.read_bytes() + _wal(db)
    assert b"zoe.private@home.test" not in data and b"Kellerstrasse" not in data
    blob_dir = Path(str(db) + ".blobs")
    for f in blob_dir.rglob("*") if blob_dir.exists() else []:
        if f.is_file():
            assert b"passport of Zoe" not in f.read_bytes(), f
    assert receipt["counts"]["blob_files"] >= 1


def _wal(db: Path) -> bytes:
    wal = Path(str(db) + ".wal")
    return wal.read_bytes() if wal.exists() else b""


def test_G1_erase_one_address_and_refusals(world, store, settings):
    with pytest.raises(PermissionDenied):
        erase(store, "u-1", address=ZOE_WORK)
    with pytest.raises(MailopsError):
        erase(store, "u-adm")  # nobody named
    mb, _ = world
    with pytest.raises(MailopsError) as e:
        erase(store, "u-adm", address=mb.address)  # a mailbox of the CRM
    assert e.value.code == "erase_mailbox"
    done = erase(store, "u-adm", address=ZOE_WORK, compact_file=False)
    # his work address only ever wrote from an additional address: skipped, never stored,
    # but the ledger named it and his colleague's never-log list held it
    assert done.counts["messages"] == 0 and done.counts["never_log_entries"] == 1
    assert done.counts["ledger_rows_scrubbed"] == 1
    assert (
        store.scalar("SELECT count(*) FROM messages WHERE from_addr = ?", [ZOE]) == 1
    )  # the other address stays
    assert store.scalar("SELECT count(*) FROM customers WHERE id = 'c-z'") == 1
    ledger = store.rows(
        "SELECT message_id, from_addr, subject FROM audit_ledger WHERE message_id = 'erased'"
    )
    assert ledger == [("erased", None, None)]  # the row stays (run counts), its content goes


def test_G1_reimported_deal_leaves_the_erased_customer_out(world, store, settings, tmp_path):
    from mailops.directory import import_csv

    erase(store, "u-adm", customer="c-z", compact_file=False)
    deals = tmp_path / "deals.csv"
    deals.write_text("id,name,owner_user_id,customer_ids\nd-1,Harbour,u-1,c-z;c-a\n")
    customers = tmp_path / "customers.csv"
    customers.write_text(f"id,name,owner_user_id,email\nc-z,Zoe Private,u-1,{ZOE}\n")
    result = import_csv(store, customers=customers, deals=deals)
    assert any("erased on request" in n for n in result.notes)
    assert store.rows("SELECT customer_id FROM deal_customers WHERE deal_id = 'd-1'") == [("c-a",)]
    assert store.scalar("SELECT count(*) FROM customers WHERE id = 'c-z'") == 0
