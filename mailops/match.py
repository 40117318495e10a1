"""Which messages are customer email: ``decide()`` is pure, ``Directory`` is its snapshot.

``Directory.load(store)`` reads the CRM directory once per sync run; ``decide()`` then
answers, for one message seen in one folder of one mailbox, *stored* (with the customers
and deals whose activities it joins) or *skipped* with a reason code from ``SKIP_REASONS``.

Order of the checks (the first that applies gives the reason): folder excluded, draft (S6),
too large (S10), before the backfill window (S2), an erased person on it (G1), never-log
address, then domain (S9), internal (S5), customer match (S3, S4), never-log customer (S9).
All of them read headers only: the sync fetches a body only for a message stored here.

S4 reading: every customer whose primary address (valid at the message date) is on
From/To/Cc gets the activity (``match_kind='primary'``). Other customers of a matched
customer's deals who appear on To/Cc with *any* of their known addresses get it too
(``match_kind='co_customer'``). ``deal_id`` is a deal shared with another customer on the
message when there is one, else the customer's only deal, else NULL.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailops.parse import HeaderInfo
    from mailops.store import Store

__all__ = [
    "SKIP_REASONS",
    "Decision",
    "Directory",
    "FolderInfo",
    "SkipReason",
    "address_hash",
    "decide",
]


@dataclass(frozen=True)
class SkipReason:
    code: str
    decision: str  # stored | skipped
    rule: str
    description: str


SKIP_REASONS: dict[str, SkipReason] = {
    r.code: r
    for r in [
        SkipReason(
            "stored_customer",
            "stored",
            "S3",
            "From/To/Cc holds a customer's primary address valid at the message date",
        ),
        SkipReason("no_customer", "skipped", "S3", "no customer address on From/To/Cc"),
        SkipReason(
            "additional_address",
            "skipped",
            "S3",
            "only a customer's additional (non-primary) address matched",
        ),
        SkipReason(
            "before_address_valid",
            "skipped",
            "S3",
            "the address became the customer's primary address after the message date",
        ),
        SkipReason(
            "after_address_valid",
            "skipped",
            "S3",
            "the address had stopped being the customer's primary address at the message date",
        ),
        SkipReason(
            "internal",
            "skipped",
            "S5",
            "another mailbox ever connected to the CRM is on From/To/Cc",
        ),
        SkipReason("draft", "skipped", "S6", "flagged \\Draft or in the Drafts folder"),
        SkipReason(
            "excluded_folder",
            "skipped",
            "S6/S9",
            "the folder is not synced (Junk, Trash, or deselected)",
        ),
        SkipReason("before_window", "skipped", "S2", "older than the backfill window"),
        SkipReason(
            "never_log_address",
            "skipped",
            "S9",
            "an address on From/To/Cc is on a never-log list (company-wide or the user's)",
        ),
        SkipReason(
            "never_log_domain",
            "skipped",
            "S9",
            "an address on From/To/Cc is in a never-log domain (company-wide or the user's)",
        ),
        SkipReason(
            "never_log_customer",
            "skipped",
            "S9",
            "every customer it matched is marked never-log (company-wide or by the user)",
        ),
        SkipReason(
            "never_log",
            "skipped",
            "S9",
            "an address or customer on the message is marked never-log (before the codes split)",
        ),
        SkipReason(
            "erased",
            "skipped",
            "G1",
            "a person on From/To/Cc was erased on request; nothing of him is stored again",
        ),
        SkipReason(
            "too_large", "skipped", "S10/S12", "the message is larger than the message size cap"
        ),
        SkipReason("malformed", "skipped", "S12", "headers unreadable; no address could be found"),
    ]
}

INTERNAL_POLICIES = ("strict", "off")


@dataclass(frozen=True)
class FolderInfo:
    name: str
    special_use: str | None = None  # \Sent, \Drafts, \Junk, \Trash, \All, \Archive, None
    excluded: bool = False


@dataclass
class _Period:
    valid_from: datetime
    valid_to: datetime | None
    customer_id: str

    def contains(self, when: datetime) -> bool:
        return self.valid_from <= when and (self.valid_to is None or when < self.valid_to)


@dataclass
class Directory:
    """A snapshot of what ``decide`` needs; build it once per run (``Directory.load``)."""

    primary: dict[str, list[_Period]] = field(default_factory=dict)  # address -> periods
    additional: dict[str, set[str]] = field(default_factory=dict)  # address -> customers
    customer_deals: dict[str, list[str]] = field(default_factory=dict)
    deal_customers: dict[str, list[str]] = field(default_factory=dict)
    mailbox_addresses: frozenset[str] = frozenset()  # every address ever connected (S5)
    never_log_addresses: dict[str | None, set[str]] = field(default_factory=dict)  # user -> set
    never_log_customers: dict[str | None, set[str]] = field(default_factory=dict)
    never_log_domains: dict[str | None, set[str]] = field(default_factory=dict)
    erased: frozenset[str] = frozenset()  # G1: sha256 of erased addresses
    internal_policy: str = "strict"

    # -- building ---------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        addresses: Iterable[tuple[str, str, bool, datetime, datetime | None]] = (),
        deals: Iterable[tuple[str, str]] = (),
        mailbox_addresses: Iterable[str] = (),
        never_log: Iterable[tuple[str, str, str | None]] = (),
        internal_policy: str = "strict",
        erased: Iterable[str] = (),
    ) -> Directory:
        """From plain rows: addresses ``(customer, address, is_primary, valid_from, valid_to)``,
        deals ``(deal_id, customer_id)``, never_log ``(kind, value, user_id or None)`` with
        kind ``address`` / ``domain`` / ``customer``; ERASED the address hashes of G1."""
        d = cls(internal_policy=internal_policy, erased=frozenset(erased))
        for customer, address, is_primary, valid_from, valid_to in addresses:
            addr = address.strip().lower()
            if is_primary:
                d.primary.setdefault(addr, []).append(_Period(valid_from, valid_to, customer))
            else:
                d.additional.setdefault(addr, set()).add(customer)
        for periods in d.primary.values():
            periods.sort(key=lambda p: p.valid_from)
        for deal, customer in deals:
            d.customer_deals.setdefault(customer, []).append(deal)
            d.deal_customers.setdefault(deal, []).append(customer)
        d.mailbox_addresses = frozenset(a.strip().lower() for a in mailbox_addresses)
        targets = {
            "address": d.never_log_addresses,
            "domain": d.never_log_domains,
            "customer": d.never_log_customers,
        }
        for kind, value, user in never_log:
            text = value if kind == "customer" else value.strip().lower().lstrip("@")
            targets[kind].setdefault(user, set()).add(text)
        return d

    @classmethod
    def load(cls, store: Store, *, internal_policy: str = "strict") -> Directory:
        from mailops.store.sync import directory_rows

        rows = directory_rows(store)
        return cls.build(internal_policy=internal_policy, **rows)

    # -- lookups ----------------------------------------------------------------------
    def customers_of(self, address: str) -> set[str]:
        """Every customer that ever had ADDRESS, primary or not (for co-customers)."""
        out = {p.customer_id for p in self.primary.get(address, [])}
        return out | self.additional.get(address, set())

    def never_logged_address(self, address: str, user: str | None) -> bool:
        return address in self.never_log_addresses.get(None, ()) or (
            user is not None and address in self.never_log_addresses.get(user, ())
        )

    def never_logged_domain(self, address: str, user: str | None) -> bool:
        domain = address.rpartition("@")[2]
        if not domain:
            return False
        parts = domain.split(".")
        suffixes = {".".join(parts[i:]) for i in range(len(parts) - 1)}  # sub.x.test -> x.test
        return bool(
            suffixes & self.never_log_domains.get(None, set())
            or (user is not None and suffixes & self.never_log_domains.get(user, set()))
        )

    def is_erased(self, address: str) -> bool:
        return bool(self.erased) and address_hash(address) in self.erased

    def never_logged_customer(self, customer: str, user: str | None) -> bool:
        return customer in self.never_log_customers.get(None, ()) or (
            user is not None and customer in self.never_log_customers.get(user, ())
        )


def address_hash(address: str) -> str:
    """G1: how an erased address is remembered (its sha256, lower-cased): enough to block
    it, not to read it back."""
    import hashlib

    return hashlib.sha256(address.strip().lower().encode()).hexdigest()


@dataclass
class Decision:
    stored: bool
    reason: str
    customers: list[tuple[str, str, str | None]] = field(default_factory=list)
    direction: str = "inbound"
    msg_date: datetime | None = None

    @property
    def decision(self) -> str:
        return "stored" if self.stored else "skipped"


def _skip(reason: str, direction: str, when: datetime | None) -> Decision:
    return Decision(False, reason, [], direction, when)


def _primary_status(
    periods: Sequence[_Period], when: datetime | None
) -> tuple[list[str], str | None]:
    """Customers whose primary period holds WHEN, else why not (before/after)."""
    if when is None:  # no usable date: the current primary owner counts
        live = [p.customer_id for p in periods if p.valid_to is None]
        return live, None if live else "after_address_valid"
    hits = [p.customer_id for p in periods if p.contains(when)]
    if hits:
        return hits, None
    starts = [p.valid_from for p in periods]
    return [], "before_address_valid" if bisect_right(starts, when) == 0 else "after_address_valid"


def decide(
    headers: HeaderInfo,
    folder: FolderInfo,
    flags: Iterable[str | bytes],
    directory: Directory,
    mailbox_address: str,
    window_start: datetime | None,
    *,
    user_id: str | None = None,
    internaldate: datetime | None = None,
    size: int | None = None,
    max_message_bytes: int | None = None,
) -> Decision:
    """Stored or skipped (with a reason code) for one message in one folder. No I/O."""
    own = mailbox_address.strip().lower()
    when = headers.date or internaldate
    direction = (
        "outbound" if headers.from_addr == own or folder.special_use == "\\Sent" else "inbound"
    )
    if folder.excluded or folder.special_use in ("\\Junk", "\\Trash"):
        return _skip("excluded_folder", direction, when)
    flagset = {f.decode() if isinstance(f, bytes) else f for f in flags}
    if "\\Draft" in flagset or folder.special_use == "\\Drafts":
        return _skip("draft", direction, when)
    if max_message_bytes is not None and size is not None and size > max_message_bytes:
        return _skip("too_large", direction, when)
    arrived = internaldate or headers.date
    if window_start is not None and arrived is not None and arrived < window_start:
        return _skip("before_window", direction, when)
    people = headers.participants
    if not people:
        return _skip("malformed" if headers.warnings else "no_customer", direction, when)
    if any(directory.is_erased(a) for a in people):
        return _skip("erased", direction, when)
    if any(directory.never_logged_address(a, user_id) for a in people):
        return _skip("never_log_address", direction, when)
    if any(directory.never_logged_domain(a, user_id) for a in people):
        return _skip("never_log_domain", direction, when)
    if directory.internal_policy == "strict" and any(
        a != own and a in directory.mailbox_addresses for a in people
    ):
        return _skip("internal", direction, when)

    matched: dict[str, str] = {}  # customer -> match kind
    why_not: str | None = None
    for a in people:
        periods = directory.primary.get(a)
        if periods:
            hits, miss = _primary_status(periods, when)
            for c in hits:
                matched.setdefault(c, "primary")
            why_not = why_not or miss
        elif a in directory.additional:
            why_not = why_not or "additional_address"
    if not matched:
        return _skip(why_not or "no_customer", direction, when)

    # S4: other customers of the matched customers' deals on To/Cc, with any known address
    deals_of_matched = {d for c in matched for d in directory.customer_deals.get(c, [])}
    if deals_of_matched:
        for a in [*headers.to_addrs, *headers.cc_addrs]:
            for c in directory.customers_of(a):
                if c not in matched and deals_of_matched.intersection(
                    directory.customer_deals.get(c, [])
                ):
                    matched[c] = "co_customer"

    kept = {c: k for c, k in matched.items() if not directory.never_logged_customer(c, user_id)}
    if not kept:
        return _skip("never_log_customer", direction, when)
    out = []
    for c, kind in kept.items():
        deals = directory.customer_deals.get(c, [])
        shared = [
            d
            for d in deals
            if any(o != c and o in kept for o in directory.deal_customers.get(d, []))
        ]
        deal = shared[0] if shared else (deals[0] if len(deals) == 1 else None)
        out.append((c, kind, deal))
    out.sort()
    return Decision(True, "stored_customer", out, direction, when)
