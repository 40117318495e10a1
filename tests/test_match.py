"""decide() is pure: table tests named by rule id (S2-S6, S9, S10)."""

from __future__ import annotations

from datetime import datetime

import pytest

from mailops.match import SKIP_REASONS, Directory, FolderInfo, decide
from mailops.parse import HeaderInfo

T0 = datetime(2026, 1, 1)
CHANGE = datetime(2026, 6, 1)
ME = "sales@crm.test"

DIRECTORY = Directory.build(
    addresses=[
        ("c-anna", "anna@home.test", True, T0, None),
        ("c-anna", "anna@work.test", False, T0, None),
        ("c-ben", "ben-old@x.test", True, T0, CHANGE),
        ("c-ben", "ben-new@x.test", True, CHANGE, None),
        ("c-cara", "cara@x.test", True, T0, None),
        ("c-cara", "cara-alt@x.test", False, T0, None),
        ("c-dan", "dan@x.test", True, T0, None),
        ("c-nolog", "nolog@x.test", True, T0, None),
    ],
    deals=[("d-1", "c-anna"), ("d-1", "c-cara"), ("d-2", "c-dan")],
    mailbox_addresses=[ME, "colleague@crm.test", "gone@crm.test"],
    never_log=[
        ("address", "secret@x.test", None),
        ("customer", "c-nolog", None),
        ("domain", "lawyers.test", None),
    ],
)
INBOX = FolderInfo("INBOX")


def h(frm="someone@else.test", to=(ME,), cc=(), date=datetime(2026, 7, 1)):
    return HeaderInfo(from_addr=frm, to_addrs=list(to), cc_addrs=list(cc), date=date)


CASES = [
    (
        "S3-primary",
        h("anna@home.test"),
        INBOX,
        [],
        "stored_customer",
        [("c-anna", "primary", "d-1")],
    ),
    ("S3-additional-does-not-match", h("anna@work.test"), INBOX, [], "additional_address", []),
    ("S3-no-customer", h(), INBOX, [], "no_customer", []),
    (
        "S3-old-primary-before-change",
        h("ben-old@x.test", date=datetime(2026, 5, 1)),
        INBOX,
        [],
        "stored_customer",
        [("c-ben", "primary", None)],
    ),
    ("S3-old-primary-after-change", h("ben-old@x.test"), INBOX, [], "after_address_valid", []),
    (
        "S3-new-primary-before-valid",
        h("ben-new@x.test", date=datetime(2026, 5, 1)),
        INBOX,
        [],
        "before_address_valid",
        [],
    ),
    (
        "S3-new-primary-after-change",
        h("ben-new@x.test"),
        INBOX,
        [],
        "stored_customer",
        [("c-ben", "primary", None)],
    ),
    (
        "S4-two-customers",
        h("anna@home.test", cc=["dan@x.test"]),
        INBOX,
        [],
        "stored_customer",
        [("c-anna", "primary", "d-1"), ("c-dan", "primary", "d-2")],
    ),
    (
        "S4-co-customer-primary-on-cc",
        h("anna@home.test", cc=["cara@x.test"]),
        INBOX,
        [],
        "stored_customer",
        [("c-anna", "primary", "d-1"), ("c-cara", "primary", "d-1")],
    ),
    (
        "S4-co-customer-additional-on-cc",
        h("anna@home.test", cc=["cara-alt@x.test"]),
        INBOX,
        [],
        "stored_customer",
        [("c-anna", "primary", "d-1"), ("c-cara", "co_customer", "d-1")],
    ),
    (
        "S5-internal-connected-on-cc",
        h("anna@home.test", cc=["colleague@crm.test"]),
        INBOX,
        [],
        "internal",
        [],
    ),
    ("S5-internal-from", h("gone@crm.test", to=["anna@home.test"]), INBOX, [], "internal", []),
    (
        "S5-own-address-is-fine",
        h(ME, to=["anna@home.test"]),
        INBOX,
        [],
        "stored_customer",
        [("c-anna", "primary", "d-1")],
    ),
    ("S6-draft-flag", h("anna@home.test"), INBOX, [b"\\Draft"], "draft", []),
    ("S6-drafts-folder", h("anna@home.test"), FolderInfo("Drafts", "\\Drafts"), [], "draft", []),
    ("S6-junk", h("anna@home.test"), FolderInfo("Junk", "\\Junk"), [], "excluded_folder", []),
    (
        "S2-before-window",
        h("anna@home.test", date=datetime(2026, 2, 1)),
        INBOX,
        [],
        "before_window",
        [],
    ),
    (
        "S9-never-log-address",
        h("anna@home.test", cc=["secret@x.test"]),
        INBOX,
        [],
        "never_log_address",
        [],
    ),
    (
        "S9-never-log-domain",
        h("anna@home.test", cc=["x@lawyers.test"]),
        INBOX,
        [],
        "never_log_domain",
        [],
    ),
    ("S9-never-log-subdomain", h("a@mail.lawyers.test"), INBOX, [], "never_log_domain", []),
    ("S9-never-log-customer", h("nolog@x.test"), INBOX, [], "never_log_customer", []),
    (
        "S9-never-log-customer-other-kept",
        h("nolog@x.test", cc=["anna@home.test"]),
        INBOX,
        [],
        "stored_customer",
        [("c-anna", "primary", "d-1")],
    ),
    ("S12-no-addresses", HeaderInfo(warnings=["headers unparseable"]), INBOX, [], "malformed", []),
]


@pytest.mark.parametrize(
    "headers,folder,flags,reason,customers",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decide(headers, folder, flags, reason, customers):
    d = decide(headers, folder, flags, DIRECTORY, ME, datetime(2026, 3, 1))
    assert d.reason == reason
    assert d.stored == (SKIP_REASONS[reason].decision == "stored")
    assert d.customers == customers


def test_S10_message_over_cap_is_too_large():
    d = decide(h("anna@home.test"), INBOX, [], DIRECTORY, ME, None, size=100, max_message_bytes=99)
    assert (d.stored, d.reason) == (False, "too_large")


def test_S5_policy_off_keeps_internal_mail():
    relaxed = Directory.build(
        addresses=[("c-anna", "anna@home.test", True, T0, None)],
        mailbox_addresses=["colleague@crm.test"],
        internal_policy="off",
    )
    d = decide(h("anna@home.test", cc=["colleague@crm.test"]), INBOX, [], relaxed, ME, None)
    assert d.stored


def test_direction_outbound_from_own_address_or_sent():
    assert (
        decide(h(ME, to=["anna@home.test"]), INBOX, [], DIRECTORY, ME, None).direction == "outbound"
    )
    sent = FolderInfo("Sent", "\\Sent")
    assert decide(h("anna@home.test"), sent, [], DIRECTORY, ME, None).direction == "outbound"
    assert decide(h("anna@home.test"), INBOX, [], DIRECTORY, ME, None).direction == "inbound"


def test_S11_every_reason_has_rule_and_description():
    for r in SKIP_REASONS.values():
        assert r.decision in ("stored", "skipped") and r.rule and r.description
