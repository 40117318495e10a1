"""G1: the SQL of an erasure -- what a person's data is, removing it, the receipt, the block.

Every statement takes the person's addresses as a list parameter (``?``): nothing of them
is ever pasted into SQL text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailops.store import Store, blobs

__all__ = [
    "Plan",
    "block",
    "block_customer",
    "blocked_customers",
    "copy_database",
    "customer_addresses",
    "customer_exists",
    "is_blocked",
    "mailbox_addresses",
    "plan",
    "receipts",
    "remove",
    "write_receipt",
]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def customer_addresses(store: Store, customer_id: str) -> list[str]:
    """Every address the customer ever had, primary or not."""
    return [
        r[0]
        for r in store.rows(
            "SELECT DISTINCT lower(address) FROM customer_addresses WHERE customer_id = ? ORDER BY 1",
            [customer_id],
        )
    ]


def customer_exists(store: Store, customer_id: str) -> bool:
    return bool(store.scalar("SELECT count(*) FROM customers WHERE id = ?", [customer_id]))


def mailbox_addresses(store: Store) -> set[str]:
    return {r[0] for r in store.rows("SELECT DISTINCT lower(address) FROM mailboxes")}


_MSG = (
    "(m.from_addr IN (SELECT unnest(?::VARCHAR[])) OR list_has_any(m.to_addrs, ?::VARCHAR[])"
    " OR list_has_any(m.cc_addrs, ?::VARCHAR[])"
    " OR m.id IN (SELECT message_id FROM activities WHERE customer_id = ?))"
)


@dataclass
class Plan:
    """What belongs to the person (ids and hashes), computed before anything is removed."""

    message_ids: list[str] = field(default_factory=list)
    raw_sha256: list[str] = field(default_factory=list)  # raw bytes only these messages use
    message_hashes: list[str] = field(default_factory=list)  # every removed message's raw hash
    attachment_sha256: list[str] = field(default_factory=list)  # blobs nothing else uses
    attachment_hashes: list[str] = field(default_factory=list)
    blob_files: list[str] = field(default_factory=list)  # of those, the ones in the blob folder
    counted: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return dict(self.counted)

    def content_sha256(self) -> list[str]:
        return sorted(set(self.message_hashes) | set(self.attachment_hashes))


def _where_params(addresses: list[str], customer: str | None) -> list[Any]:
    return [addresses, addresses, addresses, customer or "\0"]


def plan(store: Store, addresses: list[str], customer: str | None) -> Plan:
    p = Plan()
    params = _where_params(addresses, customer)
    rows = store.rows(f"SELECT m.id, m.raw_sha256 FROM messages m WHERE {_MSG}", params)
    p.message_ids = [r[0] for r in rows]
    p.message_hashes = sorted({r[1] for r in rows if r[1]})
    ids = p.message_ids
    p.raw_sha256 = [
        r[0]
        for r in store.rows(
            "SELECT DISTINCT raw_sha256 FROM messages WHERE list_contains(?, id) AND raw_sha256"
            " NOT IN (SELECT raw_sha256 FROM messages WHERE NOT list_contains(?, id)"
            "  AND raw_sha256 IS NOT NULL)",
            [ids, ids],
        )
        if r[0]
    ]
    p.attachment_hashes = sorted(
        {
            r[0]
            for r in store.rows(
                "SELECT sha256 FROM attachments WHERE list_contains(?, message_id) AND sha256 IS NOT NULL",
                [ids],
            )
        }
    )
    p.attachment_sha256 = [
        r[0]
        for r in store.rows(
            "SELECT sha256 FROM attachment_blobs WHERE list_contains(?, sha256)"
            " AND sha256 NOT IN (SELECT sha256 FROM attachments"
            "  WHERE NOT list_contains(?, message_id) AND sha256 IS NOT NULL)"
            " AND NOT EXISTS (SELECT 1 FROM drafts d WHERE contains(coalesce(d.attachments, ''), sha256))",
            [p.attachment_hashes, ids],
        )
    ]
    p.blob_files = [
        r[0]
        for r in store.rows(
            "SELECT sha256 FROM message_raw WHERE in_file AND list_contains(?, sha256)"
            " UNION SELECT sha256 FROM attachment_blobs WHERE in_file AND list_contains(?, sha256)",
            [p.raw_sha256, p.attachment_sha256],
        )
    ]
    c = p.counted
    c["messages"] = len(ids)
    c["blob_files"] = len(p.blob_files)
    c["raw"] = len(p.raw_sha256)
    c["attachments"] = _count(store, "attachments", "list_contains(?, message_id)", [ids])
    c["attachment_blobs"] = len(p.attachment_sha256)
    c["places"] = _count(store, "message_places", "list_contains(?, message_id)", [ids])
    c["activities"] = _count(
        store,
        "activities",
        "list_contains(?, message_id) OR customer_id = ?",
        [ids, customer or "\0"],
    )
    c["notifications"] = _count(
        store,
        "notifications",
        "list_contains(?, message_id) OR customer_id = ?",
        [ids, customer or "\0"],
    )
    c["followup_suggestions"] = _count(
        store,
        "followup_suggestions",
        "list_contains(?, last_message_id) OR customer_id = ?",
        [ids, customer or "\0"],
    )
    c["outbox"] = _count(store, "outbox", _OUTBOX, [addresses, customer or "\0"])
    c["drafts"] = _count(
        store, "drafts", _DRAFTS, [addresses, addresses, addresses, customer or "\0"]
    )
    c["ledger_rows_scrubbed"] = _count(
        store, "audit_ledger", _LEDGER, _ledger_params(ids, addresses)
    )
    c["never_log_entries"] = _count(store, "never_log", _NEVER_LOG, [addresses, customer or "\0"])
    c["link_changes"] = _count(
        store,
        "link_changes",
        "list_contains(?, message_id) OR customer_id = ?",
        [ids, customer or "\0"],
    )
    if customer is not None:
        c["customers"] = _count(store, "customers", "id = ?", [customer])
        c["customer_addresses"] = _count(store, "customer_addresses", "customer_id = ?", [customer])
        c["deal_memberships"] = _count(store, "deal_customers", "customer_id = ?", [customer])
    return p


_OUTBOX = "(list_has_any(recipients, ?::VARCHAR[]) OR list_contains(customer_ids, ?))"
_DRAFTS = (
    "(list_has_any(to_addrs, ?::VARCHAR[]) OR list_has_any(cc_addrs, ?::VARCHAR[])"
    " OR list_has_any(bcc_addrs, ?::VARCHAR[]) OR customer_id = ?)"
)
_LEDGER = (
    "(list_contains(?, message_id) OR from_addr IN (SELECT unnest(?::VARCHAR[]))"
    " OR list_has_any(to_addrs, ?::VARCHAR[]) OR list_has_any(cc_addrs, ?::VARCHAR[]))"
)
_NEVER_LOG = "((kind = 'address' AND list_contains(?, value)) OR (kind = 'customer' AND value = ?))"


def _ledger_params(ids: list[str], addresses: list[str]) -> list[Any]:
    return [ids, addresses, addresses, addresses]


def _count(store: Store, table: str, where: str, params: list[Any]) -> int:
    return int(store.scalar(f"SELECT count(*) FROM {table} WHERE {where}", params) or 0)


def remove(store: Store, p: Plan, addresses: list[str], customer: str | None) -> dict[str, int]:
    """Delete / scrub what PLAN found (inside the caller's transaction); the counts."""
    ids, cust = p.message_ids, customer or "\0"
    counts = p.counts()
    store.execute(
        "UPDATE audit_ledger SET message_id = 'erased', from_addr = NULL, subject = NULL,"
        " to_addrs = NULL, cc_addrs = NULL, customers = list_filter(customers, lambda x: x <> ?)"
        f" WHERE {_LEDGER}",
        [cust, *_ledger_params(ids, addresses)],
    )
    for table, where, params in (
        ("notifications", "list_contains(?, message_id) OR customer_id = ?", [ids, cust]),
        (
            "followup_suggestions",
            "list_contains(?, last_message_id) OR customer_id = ?",
            [ids, cust],
        ),
        ("link_changes", "list_contains(?, message_id) OR customer_id = ?", [ids, cust]),
        ("activities", "list_contains(?, message_id) OR customer_id = ?", [ids, cust]),
        ("message_places", "list_contains(?, message_id)", [ids]),
        ("attachments", "list_contains(?, message_id)", [ids]),
        ("messages", "list_contains(?, id)", [ids]),
        ("outbox", _OUTBOX, [addresses, cust]),
        ("drafts", _DRAFTS, [addresses, addresses, addresses, cust]),
        ("never_log", _NEVER_LOG, [addresses, cust]),
    ):
        store.execute(f"DELETE FROM {table} WHERE {where}", params)
    # raw bytes and attachment contents: rows here, files of the blob folder after the commit
    blobs.erase(store, raw=p.raw_sha256, attachments=p.attachment_sha256)
    if customer is not None:
        store.execute("DELETE FROM deal_customers WHERE customer_id = ?", [customer])
        store.execute("DELETE FROM customer_addresses WHERE customer_id = ?", [customer])
        store.execute("DELETE FROM customers WHERE id = ?", [customer])
    return counts


def remove_blob_files(store: Store, p: Plan) -> int:
    """After the erasure committed: delete its files of the blob folder that no row names."""
    gone = blobs.orphans(store, on_disk=[(sha, 0) for sha in p.blob_files])
    return sum(store.blobs.delete(sha) for sha in gone)


def write_receipt(
    store: Store, kind: str, target: str, counts: dict[str, int], hashes: list[str], by: str
) -> int:
    return int(
        store.scalar(
            "INSERT INTO erasure_receipts (target_kind, target_sha256, counts, content_sha256,"
            " by_user_id, erased_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            [kind, target, json.dumps(counts, sort_keys=True), hashes, by, _now()],
        )
    )


def block(store: Store, address_hashes: list[str], receipt_id: int) -> None:
    for h in address_hashes:
        store.execute(
            "INSERT INTO erasure_blocks (address_sha256, receipt_id, blocked_at) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [h, receipt_id, _now()],
        )


def block_customer(store: Store, customer_hash: str, receipt_id: int) -> None:
    store.execute(
        "INSERT INTO erased_customers (customer_sha256, receipt_id) VALUES (?, ?)"
        " ON CONFLICT DO NOTHING",
        [customer_hash, receipt_id],
    )


def is_blocked(store: Store, address_hashes: list[str]) -> set[str]:
    return {
        r[0]
        for r in store.rows(
            "SELECT address_sha256 FROM erasure_blocks WHERE list_contains(?, address_sha256)",
            [address_hashes],
        )
    }


def blocked_customers(store: Store) -> set[str]:
    return {r[0] for r in store.rows("SELECT customer_sha256 FROM erased_customers")}


def blocked_addresses(store: Store) -> set[str]:
    return {r[0] for r in store.rows("SELECT address_sha256 FROM erasure_blocks")}


def drop_erased_from_stages(store: Store, customers: bool, deals: bool) -> int:
    """G1 at import: leave out the staged customers that were erased (by id, primary or
    additional address), and their ids from staged deals; returns how many customers."""
    if not customers and not deals:
        return 0
    erased_ids: list[str] = []
    if customers:
        erased_ids = [
            r[0]
            for r in store.rows(
                "SELECT id FROM _stage_customers WHERE sha256(id) IN"
                " (SELECT customer_sha256 FROM erased_customers)"
                " OR sha256(lower(trim(email))) IN (SELECT address_sha256 FROM erasure_blocks)"
                " OR list_has_any(list_transform(coalesce(additional_emails, []),"
                "   lambda x: sha256(lower(trim(x)))),"
                "   (SELECT coalesce(list(address_sha256), []) FROM erasure_blocks))"
            )
        ]
        if erased_ids:
            store.execute("DELETE FROM _stage_customers WHERE list_contains(?, id)", [erased_ids])
    hashes = sorted(blocked_customers(store))
    if deals and (erased_ids or hashes):
        store.execute(
            "UPDATE _stage_deals SET customer_ids = list_filter(customer_ids, lambda c:"
            " NOT list_contains(?, c) AND NOT list_contains(?, sha256(c)))"
            " WHERE customer_ids IS NOT NULL",
            [erased_ids, hashes],
        )
    return len(erased_ids)


def receipts(store: Store) -> list[dict[str, Any]]:
    df = store.query(
        "SELECT id, target_kind, target_sha256, counts, content_sha256, by_user_id, erased_at"
        " FROM erasure_receipts ORDER BY id"
    )
    out = []
    for r in df.itertuples(index=False):
        out.append(
            {
                "receipt": int(r.id),
                "target_kind": r.target_kind,
                "target_sha256": r.target_sha256,
                "counts": json.loads(r.counts),
                "content_sha256": list(r.content_sha256 if r.content_sha256 is not None else []),
                "by": r.by_user_id,
                "erased_at": str(r.erased_at),
            }
        )
    return out


def copy_database(store: Store, target: str) -> None:
    """Every table, sequence and index of STORE into a fresh file TARGET."""
    name = store.scalar("SELECT current_database()")
    store.execute("CHECKPOINT")
    quoted = "'" + target.replace("'", "''") + "'"  # ATTACH takes no parameter
    store.execute(f"ATTACH {quoted} AS erase_fresh")
    try:
        store.execute(f'COPY FROM DATABASE "{name}" TO erase_fresh')
    finally:
        store.execute("DETACH erase_fresh")
