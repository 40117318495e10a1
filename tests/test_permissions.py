"""P1: the viewer hook every report query filters through (roles sales/manager/it/admin)."""

from __future__ import annotations

import pytest
from report_support import synthetic_store

from mailops.errors import PermissionDenied
from mailops.permissions import SYSTEM, can_send, can_view_mailbox, scope_for
from mailops.reports import Scope, accounts, activity, audit


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    store, syn = synthetic_store(tmp_path_factory.mktemp("perm") / "p.duckdb")
    yield store, syn
    store.close()


@pytest.mark.parametrize(
    "user, role, scope, visible",
    [
        ("s1", "sales", "s1", {"s1"}),
        ("sara@corp.test", "sales", "s1", {"s1"}),
        ("m1", "manager", "team-north", {"m1", "s1", "s2", "x1"}),
        ("it1", "it", "all", None),
        ("a1", "admin", "all", None),
        ("system", "admin", "all", None),
        ("", "admin", "all", None),
    ],
    ids=[
        "P1-sales",
        "P1-sales-by-email",
        "P1-manager-team",
        "P1-it",
        "P1-admin",
        "P1-system",
        "P1-empty-is-system",
    ],
)
def test_P1_scope_for_roles(syn, user, role, scope, visible):
    store, _ = syn
    viewer = scope_for(store, user)
    assert viewer.role == role
    assert viewer.scope == scope
    assert viewer.visible_users == (frozenset(visible) if visible is not None else None)


def test_P1_unknown_and_inactive_users_are_refused(syn):
    store, _ = syn
    with pytest.raises(PermissionDenied, match="unknown user"):
        scope_for(store, "nobody")
    with pytest.raises(PermissionDenied, match="not active"):
        scope_for(store, "x1")


def test_P1_can_send_follows_role_and_flag(syn):
    store, _ = syn
    assert can_send(store, "s1")
    assert not can_send(store, "it1")  # IT audits, never sends
    assert not can_send(store, "x1")  # inactive
    assert not can_send(store, "nobody")
    assert not SYSTEM.may_send


def test_P1_can_view_mailbox(syn):
    store, s = syn
    sara, sue = s.mailboxes["sara@corp.test"], s.mailboxes["sue@corp.test"]
    assert can_view_mailbox(store, "s1", sara)
    assert not can_view_mailbox(store, "s1", sue)
    assert can_view_mailbox(store, "m1", sara)
    assert not can_view_mailbox(store, "m1", sue)  # another team
    assert can_view_mailbox(store, "it1", sue)


def test_P1_it_reads_no_bodies(syn):
    store, _ = syn
    assert not scope_for(store, "it1").reads_bodies
    assert scope_for(store, "s1").reads_bodies


def _scope(store, user, now):
    return Scope(store, viewer=scope_for(store, user), now=now)


def test_P1_reports_follow_the_viewer(syn):
    store, s = syn
    per = {u: activity.volumes(_scope(store, u, s.now)) for u in ("s1", "m1", "s3", "a1")}
    assert set(per["s1"]["sales_person_id"]) == {"s1"}
    assert set(per["m1"]["sales_person_id"]) == {"s1", "s2"}
    assert set(per["s3"]["sales_person_id"]) == {"s3"}
    assert set(per["a1"]["sales_person_id"]) == {"s1", "s2", "s3"}
    # the ledger and runs of other people's mailboxes stay hidden
    assert set(audit.ledger(_scope(store, "s1", s.now))["mailbox"]) == {"sara@corp.test"}
    assert set(audit.runs(_scope(store, "m1", s.now))["mailbox"]) == {
        "sara@corp.test",
        "sam@corp.test",
    }
    # the problematic mailbox is Sue's: her manager is another team's
    assert accounts.problematic(_scope(store, "m1", s.now)).empty
    assert list(accounts.problematic(_scope(store, "s3", s.now))["mailbox"]) == ["sue@corp.test"]
    assert list(accounts.problematic(_scope(store, "it1", s.now))["mailbox"]) == ["sue@corp.test"]


def test_P1_sales_sees_own_customer_mail_synced_by_a_colleague(syn):
    """A customer's owner sees that customer's activities even through another mailbox."""
    store, s = syn
    store.execute("UPDATE customers SET owner_user_id = 's1' WHERE id = 'c4'")
    try:
        per = activity.volumes(_scope(store, "s1", s.now), "customer")
        assert "c4" in set(per["customer_id"])
    finally:
        store.execute("UPDATE customers SET owner_user_id = 's2' WHERE id = 'c4'")
