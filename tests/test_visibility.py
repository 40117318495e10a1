"""P2 / P1 against the real devserver: one customer email synced into Sara's mailbox and one
sent from it; each role x each visibility level x each query and report shows the rows
the scope allows, the subject where the level allows and the body only at ``everything``
(or to the owner); IT never reads a body."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sync_support import add_customer, append, make_msg, utcnow

from mailops.cli import main
from mailops.config import Settings
from mailops.errors import PermissionDenied
from mailops.permissions import scope_for
from mailops.reports import Scope
from mailops.reports import activity as activity_report
from mailops.reports import audit as audit_report
from mailops.store import Store
from mailops.store import messages as msgstore
from mailops.store import outbox as obstore
from mailops.store import sync as syncstore

SUBJECT = "Offer for unit B-204 (private)"
BODY = "Dear Sara, our budget is 410000 EUR at most."

USERS = [
    ("s1", "sara@corp.test", "Sara Sales", "sales", "north"),
    ("s2", "sam@corp.test", "Sam Sales", "sales", "north"),
    ("s3", "sue@corp.test", "Sue Sales", "sales", "south"),
    ("m1", "mia@corp.test", "Mia Manager", "manager", "north"),
    ("it1", "ian@corp.test", "Ian IT", "it", None),
    ("a1", "ada@corp.test", "Ada Admin", "admin", None),
]


@dataclass
class World:
    settings: Settings
    db: str
    mailbox_id: int
    message_id: str
    outbox_id: int


@pytest.fixture(scope="module")
def world(mailserver, tmp_path_factory) -> World:
    from conftest import add_password_mailbox

    from mailops.send import EmailRequest, send_email
    from mailops.sync import sync_mailbox

    tmp = tmp_path_factory.mktemp("p2")
    mp = pytest.MonkeyPatch()
    mp.setenv("MAILOPS_DB", str(tmp / "mailops.duckdb"))
    mp.setenv("MAILOPS_SECRETS_DIR", str(tmp / "secrets"))
    mp.setenv("MAILOPS_KEYRING", "0")
    mp.setenv("MAILOPS_SECRET_KEY", "p2-test-key")
    settings = Settings.load()
    address, password = mailserver.new_user()
    customer, _ = mailserver.new_user()
    with Store(settings.db) as store:
        store.executemany(
            "INSERT INTO users (id, email, name, role, team) VALUES (?,?,?,?,?)", USERS
        )
        add_customer(store, "c1", customer, name="Carla Buyer")
        store.execute("UPDATE customers SET owner_user_id = 's1' WHERE id = 'c1'")
        mb = add_password_mailbox(
            store,
            settings,
            mailserver,
            address,
            password,
            "s1",
            connected_at=utcnow() - timedelta(hours=1),
        )
        raw = make_msg(customer, address, subject=SUBJECT, body=BODY + "\n")
        append(mailserver, address, password, [raw])
        result = sync_mailbox(store, settings, mb)
        assert result.stored == 1, result
        mid = store.scalar("SELECT id FROM messages")
        item = send_email(
            store,
            settings,
            EmailRequest(
                user_id="s1",
                mailbox=mb.id,
                customer_id="c1",
                reply_to=mid,  # a response in the thread (R3)
                body_text="Thank you, 405000 EUR then.",
            ),
        )
        assert item.state == "sent", item.last_error
    yield World(settings, settings.db, mb.id, mid, item.id)
    mp.undo()


VIEWERS = ["s1", "s2", "s3", "m1", "it1", "a1", "system"]
LEVELS = ["everything", "subject", "metadata"]
SEES_ROWS = {
    "s1": True,
    "s2": False,
    "s3": False,
    "m1": True,
    "it1": True,
    "a1": True,
    "system": True,
}


def expected(viewer: str, level: str) -> tuple[bool, bool, bool]:
    """(row visible, subject shown, body readable)."""
    rows = SEES_ROWS[viewer]
    if not rows:
        return False, False, False
    if viewer == "s1":  # the owner sees his own mail whole
        return True, True, True
    subject = level in ("everything", "subject")
    body = level == "everything" and viewer != "it1"
    return True, subject, body


def _store_at(world: World, level: str) -> Store:
    store = Store(world.db)
    store.execute("UPDATE mailboxes SET visibility = ? WHERE id = ?", [level, world.mailbox_id])
    return store


def _subjects(df, col: str = "subject") -> set:
    return {s for s in df[col] if isinstance(s, str)}


QUERIES = [
    "customer_activities",
    "message_activities",
    "get_message",
    "raw_bytes",
    "message_places",
    "ledger_store",
    "notifications",
    "outbox",
    "report_ledger",
    "report_customer_emails",
    "report_runs",
    "report_unanswered",
    "report_volumes",
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("who", VIEWERS)
def test_P2_role_x_level_x_query(world: World, who: str, level: str, query: str) -> None:
    rows_ok, subject_ok, body_ok = expected(who, level)
    store = _store_at(world, level)
    try:
        viewer = scope_for(store, who)
        scope = Scope(store=store, viewer=viewer)
        if query == "customer_activities":
            df = msgstore.customer_activities(store, "c1", viewer=viewer)
            assert (len(df) == 2) is rows_ok
            if rows_ok:
                assert (SUBJECT in _subjects(df)) is subject_ok
                assert set(df["shown"]) == {
                    "everything" if body_ok else "subject" if subject_ok else "metadata"
                }
        elif query == "message_activities":
            df = msgstore.message_activities(store, world.message_id, viewer=viewer)
            assert (len(df) == 1) is rows_ok
        elif query == "get_message":
            msg = msgstore.get_message(store, world.message_id, viewer=viewer)
            assert (msg is not None) is rows_ok
            if msg is not None:
                assert (msg["subject"] == SUBJECT) is subject_ok
                assert (BODY in (msg["body_text"] or "")) is body_ok
                assert msg["from_addr"]  # who: always
        elif query == "raw_bytes":
            raw = msgstore.raw_bytes(store, world.message_id, viewer=viewer)
            assert (raw is not None and BODY.encode() in raw) is body_ok
        elif query == "message_places":
            df = msgstore.message_places(store, world.message_id, viewer=viewer)
            assert (len(df) >= 1) is rows_ok
        elif query == "ledger_store":
            df = syncstore.audit(store, viewer=viewer)
            assert (len(df) >= 1) is rows_ok
            if rows_ok:
                assert (SUBJECT in _subjects(df)) is subject_ok
        elif query == "notifications":
            from mailops.store import notifications as nstore

            df = nstore.notification_frame(store, viewer=viewer)
            # a notification is its recipient's (his team manager, admin, the scheduler)
            mine = who in ("s1", "m1", "a1", "system")
            assert (len(df) == 1) is mine
            if mine:
                assert (SUBJECT in _subjects(df)) is subject_ok
        elif query == "outbox":
            df = obstore.outbox_frame(store, viewer=viewer)
            assert (len(df) == 1) is rows_ok
            if rows_ok:
                assert (("Re: " + SUBJECT) in _subjects(df)) is subject_ok
        elif query == "report_ledger":
            df = audit_report.ledger(scope)
            assert (len(df) >= 1) is rows_ok
            if rows_ok:
                assert (SUBJECT in _subjects(df)) is subject_ok
            # a hidden subject is never searchable either
            hits = audit_report.ledger(scope, subject="B-204")
            assert (len(hits) >= 1) is subject_ok
        elif query == "report_customer_emails":
            df = audit_report.customer_emails(scope, "c1")
            assert (len(df) == 2) is rows_ok
            if rows_ok:
                assert (SUBJECT in _subjects(df)) is subject_ok
        elif query == "report_runs":
            assert (len(audit_report.runs(scope)) >= 1) is rows_ok
        elif query == "report_unanswered":
            # inbound then our answer: nobody waits; the response carries the subject
            responses = activity_report.response_times(scope)
            assert (len(responses) == 1) is rows_ok
            if rows_ok:
                assert (SUBJECT in _subjects(responses)) is subject_ok
            assert activity_report.unanswered(scope, days=0).empty
        elif query == "report_volumes":
            df = activity_report.volumes(scope, by="customer")
            assert (int(df["total"].sum()) if len(df) else 0) == (2 if rows_ok else 0)
    finally:
        store.close()


def test_P2_levels_follow_the_company_policy_and_the_owner_chooses(world: World, capsys):
    with Store(world.db) as store:
        store.execute("UPDATE mailboxes SET visibility = NULL WHERE id = ?", [world.mailbox_id])
    ref = str(world.mailbox_id)
    assert main(["mailbox", "visibility", ref]) == 0
    assert "everything (company default)" in capsys.readouterr().out
    assert main(["policy", "set", "visibility", "metadata", "--as", "s1"]) != 0  # not an admin
    assert main(["policy", "set", "visibility", "metadata", "--as", "a1"]) == 0
    capsys.readouterr()
    with Store(world.db) as store:
        msg = msgstore.get_message(store, world.message_id, viewer=scope_for(store, "m1"))
        assert msg is not None and msg["subject"] is None and msg["shown"] == "metadata"
    # only the owner chooses his mailbox's level; an admin may not
    assert main(["mailbox", "visibility", ref, "everything", "--as", "a1"]) != 0
    assert "permission_denied" in capsys.readouterr().err
    assert main(["mailbox", "visibility", ref, "subject", "--as", "s1"]) == 0
    capsys.readouterr()
    with Store(world.db) as store:
        msg = msgstore.get_message(store, world.message_id, viewer=scope_for(store, "m1"))
        assert msg is not None and msg["subject"] == SUBJECT and msg["body_text"] is None
        changes = store.query("SELECT scope, new_value, by_user_id FROM policy_changes ORDER BY id")
        assert list(changes["by_user_id"]) == ["a1", "s1"]
    assert main(["mailbox", "visibility", ref, "default", "--as", "s1"]) == 0
    assert main(["policy", "set", "visibility", "everything", "--as", "a1"]) == 0
    assert main(["mailbox", "visibility", ref, "secret", "--as", "s1"]) != 0


def test_P1_audit_cli_as_a_user_shows_only_his_rows(world: World, capsys):
    assert main(["audit", "--as", "s1"]) == 0
    assert SUBJECT[:20] in capsys.readouterr().out
    assert main(["audit", "--as", "s2"]) == 0
    assert "no messages examined yet" in capsys.readouterr().out
    assert main(["audit", "--as", "nobody"]) != 0


def test_P1_compose_choices_go_through_the_check(world: World):
    from mailops.compose_widgets import choices

    def customers(who: str) -> set:
        return {c for _, c in choices(world.settings, who)["customers"]}

    assert customers("s1") == {"c1"}
    assert customers("s2") == set()  # a colleague's customer
    assert customers("s3") == set()
    assert customers("m1") == {"c1"}  # his team's
    assert choices(world.settings, "it1")["mailboxes"] == []  # IT sends nothing
    assert [a for a, _ in choices(world.settings, "s1")["mailboxes"]]
    assert choices(world.settings, "m1")["mailboxes"] == []  # never someone else's mailbox


def test_P1_reply_to_a_message_one_may_not_see_is_refused(world: World):
    from mailops.errors import SendRefused
    from mailops.send import reply

    with Store(world.db) as store:
        with pytest.raises(SendRefused):
            reply.load_original(store, world.message_id, viewer=scope_for(store, "s3"))
        orig = reply.load_original(store, world.message_id, viewer=scope_for(store, "s1"))
        assert BODY in (orig.body_text or "")


def test_P1_unknown_viewer_is_refused(world: World):
    with Store(world.db) as store, pytest.raises(PermissionDenied):
        scope_for(store, "ghost")


def test_P2_the_matrix_covers_every_guarded_store_read():
    """Every store function that takes ``viewer=`` and reads mail is in QUERIES (by name)."""
    import inspect

    covered = {
        "customer_activities",
        "message_activities",
        "get_message",
        "raw_bytes",
        "message_places",
    }
    for name, fn in inspect.getmembers(msgstore, inspect.isfunction):
        if fn.__module__ == msgstore.__name__ and "viewer" in inspect.signature(fn).parameters:
            if name.startswith("_") or name in (
                "mark_notifications_read",
                "newest_inbound_from_customer",
            ):
                continue
            assert name in covered and name in QUERIES, name
    assert Path(__file__).read_text().count("@pytest.mark.parametrize") >= 3
