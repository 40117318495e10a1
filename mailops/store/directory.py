"""The CRM directory in the store: users, customers, their addresses (S3 history), deals.

Reads are for everyone (sync matching, sending, reports, permissions); writes are for
``mailops.directory.import_directory`` only. ``customer_addresses`` holds one row per
(customer, address, period): a primary address is valid from ``valid_from`` until
``valid_to`` (NULL = still primary); additional (non-primary) addresses have
``is_primary = false`` rows with the same period semantics. Rows are appended and closed,
never rewritten or deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mailops.errors import DirectoryError
from mailops.permissions import Viewer, visible
from mailops.store import Store

ROLES = ("sales", "manager", "it", "admin")

#: valid_from of a primary address whose start the CRM did not give on the customer's first
#: import: "primary since always" (so backfilled mail matches).
SINCE_ALWAYS = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Now as naive UTC (the store's time convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(at: datetime | None) -> datetime:
    """AT as naive UTC (aware datetimes are converted); None means now."""
    if at is None:
        return utcnow()
    if at.tzinfo is not None:
        return at.astimezone(UTC).replace(tzinfo=None)
    return at


@dataclass(frozen=True)
class User:
    id: str
    email: str
    name: str | None
    role: str
    team: str | None
    can_send: bool
    active: bool


USER_COLUMNS = ["id", "email", "name", "role", "team", "can_send", "active"]


# -- reads ------------------------------------------------------------------------------------
def users_frame(store: Store) -> pd.DataFrame:
    """Every user: id, email, name, role, team, can_send, active, updated_at."""
    return store.query(f"SELECT {', '.join(USER_COLUMNS)}, updated_at FROM users ORDER BY id")


def find_user(store: Store, user_id: str) -> User | None:
    rows = store.rows(f"SELECT {', '.join(USER_COLUMNS)} FROM users WHERE id = ?", [user_id])
    return User(*rows[0]) if rows else None


def find_user_by_ref(store: Store, ref: str) -> User | None:
    """A user by CRM id, else by e-mail address (case-insensitive)."""
    rows = store.rows(
        f"SELECT {', '.join(USER_COLUMNS)} FROM users WHERE id = ? OR lower(email) = ?"
        " ORDER BY id = ? DESC LIMIT 1",
        [ref, ref.lower(), ref],
    )
    return User(*rows[0]) if rows else None


def active_user_emails(store: Store) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in store.rows("SELECT id, lower(email) FROM users WHERE active ORDER BY id")
    ]


def team_members(store: Store, team: str) -> list[str]:
    return [r[0] for r in store.rows("SELECT id FROM users WHERE team = ? ORDER BY id", [team])]


def get_user(store: Store, user_id: str) -> User:
    """The user with this CRM id; DirectoryError(code="unknown_user") when there is none."""
    user = find_user(store, user_id)
    if user is None:
        raise DirectoryError(f"no user with id {user_id!r}", code="unknown_user")
    return user


def user_by_email(store: Store, address: str) -> User | None:
    rows = store.rows(
        f"SELECT {', '.join(USER_COLUMNS)} FROM users WHERE email = ? ORDER BY id LIMIT 1",
        [address.strip().lower()],
    )
    return User(*rows[0]) if rows else None


def customers_frame(store: Store, at: datetime | None = None) -> pd.DataFrame:
    """Every customer with the primary address valid at AT (naive UTC, default now):
    id, name, owner_user_id, never_log, primary_address, primary_since, updated_at."""
    at = naive_utc(at)
    cond = "a.valid_from <= ? AND (a.valid_to IS NULL OR a.valid_to > ?)"
    params = [at, at]
    return store.query(
        "SELECT c.id, c.name, c.owner_user_id, c.never_log,"
        " a.address AS primary_address, a.valid_from AS primary_since, c.updated_at"
        " FROM customers c LEFT JOIN ("
        "   SELECT customer_id, address, valid_from,"
        "          row_number() OVER (PARTITION BY customer_id ORDER BY valid_from DESC, id DESC) AS rn"
        f"   FROM customer_addresses a WHERE a.is_primary AND {cond}"
        " ) a ON a.customer_id = c.id AND a.rn = 1"
        " ORDER BY c.id",
        params,
    )


def get_customer(store: Store, customer_id: str) -> dict[str, Any] | None:
    """One row of ``customers_frame`` as a dict, or None."""
    df = customers_frame(store)
    hit = df[df["id"] == customer_id]
    return None if hit.empty else hit.iloc[0].to_dict()


def primary_addresses(store: Store) -> pd.DataFrame:
    """Every primary period of every customer (S3): customer_id, address, valid_from, valid_to
    (NULL/NaT = still primary). A customer appears once per period; an address may appear
    for several customers (shared addresses) and several periods."""
    return store.query(
        "SELECT customer_id, address, valid_from, valid_to FROM customer_addresses"
        " WHERE is_primary ORDER BY customer_id, valid_from, id"
    )


def address_history(store: Store, customer_id: str | None = None) -> pd.DataFrame:
    """All address rows (primary and additional), oldest first: id, customer_id, address,
    is_primary, valid_from, valid_to, recorded_at."""
    sql = (
        "SELECT id, customer_id, address, is_primary, valid_from, valid_to, recorded_at"
        " FROM customer_addresses"
    )
    if customer_id is None:
        return store.query(sql + " ORDER BY customer_id, valid_from, id")
    return store.query(sql + " WHERE customer_id = ? ORDER BY valid_from, id", [customer_id])


def customer_primary_address(
    store: Store, customer_id: str, at: datetime | None = None
) -> str | None:
    """The customer's primary address at AT (naive UTC; default now), or None."""
    at = naive_utc(at)
    return store.scalar(  # type: ignore[no-any-return]
        "SELECT address FROM customer_addresses WHERE customer_id = ? AND is_primary"
        " AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?)"
        " ORDER BY valid_from DESC, id DESC LIMIT 1",
        [customer_id, at, at],
    )


def customers_by_primary(store: Store, address: str, at: datetime | None = None) -> list[str]:
    """Ids of the customers whose primary address at AT (default now) is ADDRESS (S3)."""
    address = address.strip().lower()
    at = naive_utc(at)
    rows = store.rows(
        "SELECT DISTINCT customer_id FROM customer_addresses WHERE address = ? AND is_primary"
        " AND valid_from <= ? AND (valid_to IS NULL OR valid_to > ?) ORDER BY 1",
        [address, at, at],
    )
    return [r[0] for r in rows]


def customer_choices(store: Store, *, viewer: Viewer) -> list[tuple[str, str]]:
    """("Name <primary address>", id) of the customers VIEWER may see (P1), by label."""
    acc = visible(viewer, "customer", customer_owner="c.owner_user_id")
    rows = store.rows(
        "SELECT coalesce(c.name, c.id) || ' <' || coalesce(a.address, 'no email') || '>', c.id"
        " FROM customers c LEFT JOIN customer_addresses a ON a.customer_id = c.id AND a.is_primary"
        f" AND a.valid_to IS NULL WHERE {acc.where} ORDER BY 1",
        acc.params,
    )
    return [(r[0], r[1]) for r in rows]


def deal_choices(store: Store, *, viewer: Viewer) -> list[tuple[str, str]]:
    """("project unit (id)", id) of the deals with a customer VIEWER may see (P1)."""
    acc = visible(viewer, "customer", customer_owner="c.owner_user_id")
    rows = store.rows(
        "SELECT coalesce(d.project, '') || ' ' || coalesce(d.unit, '') || ' (' || d.id || ')', d.id"
        " FROM deals d WHERE EXISTS (SELECT 1 FROM deal_customers dc"
        " JOIN customers c ON c.id = dc.customer_id"
        f" WHERE dc.deal_id = d.id AND {acc.where}) ORDER BY d.id",
        acc.params,
    )
    return [(r[0], r[1]) for r in rows]


def customer_with_priced_deal(store: Store, owner: str) -> tuple[str, str] | None:
    """(customer, deal): a customer of OWNER with an address and a deal with unit and price."""
    rows = store.rows(
        "SELECT dc.customer_id, d.id FROM deals d JOIN deal_customers dc ON dc.deal_id = d.id"
        " JOIN customers c ON c.id = dc.customer_id"
        " JOIN customer_addresses a ON a.customer_id = c.id AND a.is_primary AND a.valid_to IS NULL"
        " WHERE c.owner_user_id = ? AND d.unit IS NOT NULL AND d.price IS NOT NULL"
        "   AND d.project IS NOT NULL AND c.name IS NOT NULL"
        " ORDER BY d.id, dc.customer_id LIMIT 1",
        [owner],
    )
    return (rows[0][0], rows[0][1]) if rows else None


def first_customer_with_address(store: Store, owner: str) -> str | None:
    rows = store.rows(
        "SELECT c.id FROM customers c JOIN customer_addresses a ON a.customer_id = c.id"
        " AND a.is_primary AND a.valid_to IS NULL WHERE c.owner_user_id = ? ORDER BY c.id LIMIT 1",
        [owner],
    )
    return rows[0][0] if rows else None


def other_customer_names(store: Store, customer_id: str) -> list[str]:
    """Every other customer's name (what a model must not be shown, F1)."""
    return [
        r[0]
        for r in store.rows(
            "SELECT name FROM customers WHERE id <> ? AND name IS NOT NULL", [customer_id]
        )
    ]


def get_deal(store: Store, deal_id: str) -> dict[str, Any] | None:
    df = store.query("SELECT * FROM deals WHERE id = ?", [deal_id])
    return None if df.empty else dict(df.iloc[0].to_dict())


def deal_member_ids(store: Store, deal_id: str) -> set[str]:
    return {
        r[0]
        for r in store.rows("SELECT customer_id FROM deal_customers WHERE deal_id = ?", [deal_id])
    }


def customer_ids(store: Store) -> set[str]:
    return {r[0] for r in store.rows("SELECT id FROM customers")}


def deals_frame(store: Store) -> pd.DataFrame:
    return store.query(
        "SELECT id, name, owner_user_id, project, unit, price, currency, stage, created_at,"
        " expected_close, updated_at FROM deals ORDER BY id"
    )


def deal_members_frame(store: Store) -> pd.DataFrame:
    """Every deal membership: deal_id, customer_id, role (buyer | co_buyer)."""
    return store.query(
        "SELECT deal_id, customer_id, role FROM deal_customers ORDER BY deal_id, role, customer_id"
    )


def deal_customers(store: Store, customer_id: str) -> pd.DataFrame:
    """Every member of every deal CUSTOMER_ID belongs to (S4), the customer itself included:
    deal_id, customer_id, role. Co-customers are the rows whose customer_id differs."""
    return store.query(
        "SELECT m.deal_id, m.customer_id, m.role FROM deal_customers m"
        " WHERE m.deal_id IN (SELECT deal_id FROM deal_customers WHERE customer_id = ?)"
        " ORDER BY m.deal_id, m.role, m.customer_id",
        [customer_id],
    )


def co_customers(store: Store, customer_id: str) -> set[str]:
    """Customers sharing a deal with CUSTOMER_ID (not itself)."""
    df = deal_customers(store, customer_id)
    return set(df.loc[df["customer_id"] != customer_id, "customer_id"])


def counts(store: Store) -> dict[str, int]:
    """Row counts of the directory tables (for CLI output)."""
    out: dict[str, int] = {}
    for table in ("users", "customers", "customer_addresses", "deals", "deal_customers"):
        out[table] = int(store.scalar(f"SELECT count(*) FROM {table}"))
    out["primary_changes"] = int(
        store.scalar(
            "SELECT count(*) FROM customer_addresses WHERE is_primary AND valid_to IS NOT NULL"
        )
    )
    return out


# -- writes (used by mailops.directory) -------------------------------------------------------
# An import stages each file in a TEMP table (typed, one row per CSV row, ``n`` = its row
# number) and applies it with set-based statements: a CRM export may hold a million
# customers, and DuckDB does in one join what Python would do row by row (and holds it in
# its bounded buffer pool instead of Python objects).
STAGE_COLUMNS: dict[str, dict[str, str]] = {
    "users": {
        "id": "VARCHAR", "email": "VARCHAR", "name": "VARCHAR", "role": "VARCHAR",
        "team": "VARCHAR", "can_send": "BOOLEAN", "active": "BOOLEAN",
    },
    "customers": {
        "id": "VARCHAR", "name": "VARCHAR", "owner_user_id": "VARCHAR", "email": "VARCHAR",
        "primary_since": "TIMESTAMP", "additional_emails": "VARCHAR[]", "never_log": "BOOLEAN",
    },
    "deals": {
        "id": "VARCHAR", "name": "VARCHAR", "owner_user_id": "VARCHAR", "project": "VARCHAR",
        "unit": "VARCHAR", "price": "DECIMAL(14, 2)", "currency": "VARCHAR", "stage": "VARCHAR",
        "created_at": "TIMESTAMP", "expected_close": "DATE", "customer_ids": "VARCHAR[]",
    },
}  # fmt: skip
#: Table columns an import writes, and the value a new row gets for an absent column.
TABLE_DEFAULTS: dict[str, dict[str, str]] = {
    "users": {"email": "NULL", "name": "NULL", "role": "NULL", "team": "NULL",
              "can_send": "TRUE", "active": "TRUE"},
    "customers": {"name": "NULL", "owner_user_id": "NULL", "never_log": "FALSE"},
    "deals": {"name": "NULL", "owner_user_id": "NULL", "project": "NULL", "unit": "NULL",
              "price": "NULL", "currency": "'EUR'", "stage": "NULL", "created_at": "NULL",
              "expected_close": "NULL"},
}  # fmt: skip


def stage_table(kind: str) -> str:
    return f"_stage_{kind}"


def create_stage(store: Store, kind: str) -> None:
    cols = ", ".join(f"{c} {t}" for c, t in STAGE_COLUMNS[kind].items())
    store.execute(f"CREATE OR REPLACE TEMP TABLE {stage_table(kind)} (n BIGINT, {cols})")


def stage_rows(store: Store, kind: str, table: Any) -> None:
    """Append a chunk (a pyarrow Table: n, then the STAGE_COLUMNS) to KIND's stage."""
    name = f"_chunk_{kind}"
    store.conn.register(name, table)
    try:
        store.execute(f"INSERT INTO {stage_table(kind)} SELECT * FROM {name}")
    finally:
        store.conn.unregister(name)


def drop_stages(store: Store) -> None:
    for name in (
        *(stage_table(k) for k in STAGE_COLUMNS),
        "_plan_users", "_plan_customers", "_plan_deals", "_force_customers", "_force_deals",
        "_addr_state", "_wanted_members",
    ):  # fmt: skip
        store.execute(f"DROP TABLE IF EXISTS {name}")


def first_duplicate(store: Store, kind: str) -> tuple[int, str] | None:
    """(row, id) of the first row whose id an earlier row of the same file has."""
    stage = stage_table(kind)
    rows = store.rows(  # an aggregate, not a window: DuckDB spills it under the memory cap
        f"WITH firsts AS (SELECT id, min(n) AS first FROM {stage} GROUP BY id"
        "  HAVING count(*) > 1)"
        f" SELECT s.n, s.id FROM {stage} s JOIN firsts f ON f.id = s.id WHERE s.n > f.first"
        " ORDER BY s.n LIMIT 1"
    )
    return (int(rows[0][0]), rows[0][1]) if rows else None


def first_unknown_owner(store: Store, kind: str, users_staged: bool) -> tuple[int, str, str] | None:
    """(row, id, owner) of the first row whose owner_user_id is neither stored nor imported."""
    imported = f" UNION ALL SELECT id FROM {stage_table('users')}" if users_staged else ""
    rows = store.rows(
        f"SELECT s.n, s.id, s.owner_user_id FROM {stage_table(kind)} s"
        " WHERE s.owner_user_id IS NOT NULL AND s.owner_user_id NOT IN"
        f" (SELECT id FROM users{imported}) ORDER BY s.n LIMIT 1"
    )
    return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None


def first_unknown_deal_customer(
    store: Store, customers_staged: bool
) -> tuple[int, str, str] | None:
    """(row, deal id, customer id) of the first deal member that is no known customer."""
    imported = f" UNION ALL SELECT id FROM {stage_table('customers')}" if customers_staged else ""
    rows = store.rows(
        "SELECT n, id, cid FROM (SELECT s.n, s.id, u.cid, u.pos FROM"
        f" {stage_table('deals')} s, unnest(s.customer_ids) WITH ORDINALITY AS u(cid, pos))"
        f" WHERE cid NOT IN (SELECT id FROM customers{imported}) ORDER BY n, pos LIMIT 1"
    )
    return (int(rows[0][0]), rows[0][1], rows[0][2]) if rows else None


def plan_upsert(store: Store, kind: str, present: Sequence[str], force: str | None = None) -> None:
    """``_plan_<kind>``: per staged id the row to write (absent columns keep the stored
    value, or take the default for a new row), whether it is new, and whether it changed
    (a present column differs, or the id is in the FORCE table)."""
    cols = list(TABLE_DEFAULTS[kind])
    values = ", ".join(
        f"s.{c} AS {c}"
        if c in present
        else f"CASE WHEN t.id IS NULL THEN {d} ELSE t.{c} END AS {c}"
        for c, d in TABLE_DEFAULTS[kind].items()
    )
    differs = [f"s.{c} IS DISTINCT FROM t.{c}" for c in cols if c in present]
    if force:
        differs.append("f.id IS NOT NULL")
    changed = " OR ".join(differs) or "FALSE"
    join_force = f" LEFT JOIN {force} f ON f.id = s.id" if force else ""
    store.execute(
        f"CREATE OR REPLACE TEMP TABLE _plan_{kind} AS SELECT s.id, t.id IS NULL AS is_new,"
        f" (t.id IS NOT NULL AND ({changed})) AS is_changed, {values}"
        f" FROM {stage_table(kind)} s LEFT JOIN {kind} t ON t.id = s.id{join_force}"
    )


def apply_upsert(
    store: Store, kind: str, at: datetime, sample: int = 10
) -> tuple[int, int, int, list[str], list[str]]:
    """Write ``_plan_<kind>``; returns (inserted, updated, unchanged) and the first SAMPLE
    inserted and updated ids."""
    cols = list(TABLE_DEFAULTS[kind])
    [(inserted, updated, unchanged, new_ids, changed_ids)] = store.rows(
        "SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE is_changed),"
        " count(*) FILTER (WHERE NOT is_new AND NOT is_changed),"
        f" (SELECT coalesce(list(id), []) FROM (SELECT id FROM _plan_{kind} WHERE is_new"
        "   ORDER BY id LIMIT ?)),"
        f" (SELECT coalesce(list(id), []) FROM (SELECT id FROM _plan_{kind} WHERE is_changed"
        "   ORDER BY id LIMIT ?))"
        f" FROM _plan_{kind}",
        [sample, sample],
    )
    if inserted:
        store.execute(
            f"INSERT INTO {kind} (id, {', '.join(cols)}, updated_at)"
            f" SELECT id, {', '.join(cols)}, ? FROM _plan_{kind} WHERE is_new ORDER BY id",
            [at],
        )
    if updated:
        sets = ", ".join(f"{c} = p.{c}" for c in cols)
        store.execute(
            f"UPDATE {kind} SET {sets}, updated_at = ? FROM _plan_{kind} p"
            f" WHERE {kind}.id = p.id AND p.is_changed",
            [at],
        )
    return int(inserted), int(updated), int(unchanged), list(new_ids), list(changed_ids)


def plan_addresses(store: Store, email: bool, additional: bool, slice_rows: int = 100_000) -> None:
    """``_addr_state``: per staged customer its open primary (``current``), open additional
    addresses, whether it ever had a primary, and what the file wants. ``simple`` customers
    (no open address, never a primary) get their rows by ``append_simple_addresses``;
    ``differs`` marks the others whose addresses change (planned row by row)."""
    s = stage_table("customers")
    want_primary = "s.email" if email else "o.current"
    want_additional = (
        f"list_filter(coalesce(s.additional_emails, []), lambda a: a IS DISTINCT FROM {want_primary})"
        if additional
        else "NULL::VARCHAR[]"
    )
    primary_differs = "s.email IS DISTINCT FROM o.current" if email else "FALSE"
    additional_differs = (
        f"list_sort(list_distinct({want_additional}))"
        " IS DISTINCT FROM list_sort(list_distinct(coalesce(o.additional, [])))"
        if additional
        else "FALSE"
    )
    # Per slice of the file: the per-customer aggregates (lists) of a million customers at
    # once do not fit the import's memory cap, and DuckDB cannot spill them.
    select = (
        f" WITH part AS (SELECT * FROM {s} WHERE n > ? AND n <= ?),"
        " open_rows AS ("
        "  SELECT a.customer_id,"
        "   arg_max(a.address, {'f': a.valid_from, 'i': a.id}) FILTER (WHERE a.is_primary)"
        "    AS current,"
        "   list(a.address ORDER BY a.valid_from, a.id) FILTER (WHERE NOT a.is_primary) AS additional"
        "  FROM customer_addresses a SEMI JOIN part s ON s.id = a.customer_id"
        "  WHERE a.valid_to IS NULL GROUP BY 1),"
        " history AS (SELECT DISTINCT a.customer_id FROM customer_addresses a"
        "  SEMI JOIN part s ON s.id = a.customer_id WHERE a.is_primary)"
        " SELECT s.n, s.id, (o.customer_id IS NULL AND h.customer_id IS NULL) AS simple,"
        f"  {want_primary} AS want_primary, {want_additional} AS want_additional,"
        f"  ({primary_differs} OR {additional_differs}) AS differs"
        " FROM part s LEFT JOIN open_rows o ON o.customer_id = s.id"
        " LEFT JOIN history h ON h.customer_id = s.id"
    )
    last = int(store.scalar(f"SELECT coalesce(max(n), 0) FROM {s}"))
    store.execute(f"CREATE OR REPLACE TEMP TABLE _addr_state AS {select}", [0, slice_rows])
    for lo in range(slice_rows, last, slice_rows):
        store.execute(f"INSERT INTO _addr_state {select}", [lo, lo + slice_rows])


def append_simple_addresses(store: Store, at: datetime, since_always: datetime) -> int:
    """Address rows of customers without any open address or primary history: the primary
    from ``primary_since`` (else since always), additional ones from AT. Returns the count;
    the customers who got a row land in ``_force_customers``."""
    s = stage_table("customers")
    store.execute(
        "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from, recorded_at)"
        " SELECT customer_id, address, is_primary, valid_from, ? FROM ("
        f"  SELECT st.n, 0 AS k, st.id AS customer_id, st.want_primary AS address, TRUE AS is_primary,"
        "    coalesce(s.primary_since, ?) AS valid_from"
        f"  FROM _addr_state st JOIN {s} s ON s.n = st.n"
        "  WHERE st.simple AND st.want_primary IS NOT NULL"
        "  UNION ALL"
        "  SELECT st.n, 1 + u.pos, st.id, u.address, FALSE, ?"
        "  FROM _addr_state st, unnest(st.want_additional) WITH ORDINALITY AS u(address, pos)"
        "  WHERE st.simple"
        " ) ORDER BY n, k",
        [at, since_always, at],
    )
    store.execute(
        "INSERT INTO _force_customers SELECT id FROM _addr_state WHERE simple"
        " AND (want_primary IS NOT NULL OR len(coalesce(want_additional, [])) > 0)"
    )
    return int(
        store.scalar(
            "SELECT count(*) FILTER (WHERE want_primary IS NOT NULL)"
            " + coalesce(sum(len(coalesce(want_additional, []))), 0)"
            " FROM _addr_state WHERE simple"
        )
    )


def changed_address_batches(
    store: Store, columns: Sequence[str], size: int
) -> Iterator[pd.DataFrame]:
    """The staged rows (n, id and COLUMNS) of customers whose addresses change and need the
    row-by-row plan, in file order, SIZE at a time."""
    s = stage_table("customers")
    cols = ", ".join(f"s.{c}" for c in columns)
    last = -1
    while True:
        batch = store.query(
            f"SELECT s.n, s.id, {cols} FROM _addr_state st JOIN {s} s ON s.n = st.n"
            " WHERE NOT st.simple AND st.differs AND st.n > ? ORDER BY st.n LIMIT ?",
            [last, size],
        )
        if batch.empty:
            return
        last = int(batch["n"].iloc[-1])
        yield batch


def force(store: Store, table: str, ids: Iterable[str]) -> None:
    keys = _ids_frame(ids)
    if not keys.empty:
        with _registered(store, "_force_ids", keys):
            store.execute(f"INSERT INTO {table} SELECT id FROM _force_ids")


def create_force(store: Store, table: str) -> None:
    store.execute(f"CREATE OR REPLACE TEMP TABLE {table} (id VARCHAR)")


def plan_members(store: Store) -> None:
    """``_wanted_members`` of the staged deals (the first customer is the buyer), and the
    deals whose members or roles change in ``_force_deals``."""
    s = stage_table("deals")
    store.execute(
        "CREATE OR REPLACE TEMP TABLE _wanted_members AS"
        " SELECT s.id AS deal_id, u.cid AS customer_id,"
        "  CASE WHEN u.pos = 1 THEN 'buyer' ELSE 'co_buyer' END AS role"
        f" FROM {s} s, unnest(s.customer_ids) WITH ORDINALITY AS u(cid, pos)"
    )
    store.execute(
        "INSERT INTO _force_deals SELECT DISTINCT coalesce(w.deal_id, c.deal_id) FROM _wanted_members w"
        " FULL JOIN (SELECT d.* FROM deal_customers d"
        f"  SEMI JOIN {s} s ON s.id = d.deal_id) c"
        " ON c.deal_id = w.deal_id AND c.customer_id = w.customer_id"
        " WHERE w.deal_id IS NULL OR c.deal_id IS NULL OR w.role IS DISTINCT FROM c.role"
    )


def apply_members(store: Store) -> None:
    """Make the members of the deals in ``_force_deals`` exactly ``_wanted_members``: remove,
    re-role and add rows (never delete and re-insert one key: DuckDB refuses that in a
    transaction)."""
    store.execute(
        "DELETE FROM deal_customers WHERE deal_id IN (SELECT id FROM _force_deals)"
        " AND NOT EXISTS (SELECT 1 FROM _wanted_members w"
        "  WHERE w.deal_id = deal_customers.deal_id AND w.customer_id = deal_customers.customer_id)"
    )
    store.execute(
        "UPDATE deal_customers SET role = w.role FROM _wanted_members w"
        " WHERE deal_customers.deal_id = w.deal_id AND deal_customers.customer_id = w.customer_id"
        " AND deal_customers.role IS DISTINCT FROM w.role"
    )
    store.execute(
        "INSERT INTO deal_customers (deal_id, customer_id, role)"
        " SELECT w.deal_id, w.customer_id, w.role FROM _wanted_members w"
        " SEMI JOIN _force_deals f ON f.id = w.deal_id"
        " WHERE NOT EXISTS (SELECT 1 FROM deal_customers d"
        "  WHERE d.deal_id = w.deal_id AND d.customer_id = w.customer_id)"
        " ORDER BY w.deal_id, w.role, w.customer_id"
    )


@contextmanager
def _registered(store: Store, name: str, frame: pd.DataFrame) -> Iterator[None]:
    store.conn.register(name, frame)
    try:
        yield
    finally:
        store.conn.unregister(name)


def _ids_frame(ids: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": pd.Series(list(ids), dtype="object")})


def open_addresses(store: Store, customer_ids: Iterable[str]) -> pd.DataFrame:
    """Open (valid_to IS NULL) address rows of these customers."""
    keys = _ids_frame(customer_ids)
    with _registered(store, "_wanted_ids", keys):
        return store.query(
            "SELECT a.id, a.customer_id, a.address, a.is_primary, a.valid_from"
            " FROM customer_addresses a JOIN _wanted_ids w ON w.id = a.customer_id"
            " WHERE a.valid_to IS NULL ORDER BY a.valid_from, a.id"
        )


def customers_with_primary_history(store: Store, customer_ids: Iterable[str]) -> set[str]:
    keys = _ids_frame(customer_ids)
    with _registered(store, "_wanted_ids", keys):
        return {
            r[0]
            for r in store.rows(
                "SELECT DISTINCT a.customer_id FROM customer_addresses a"
                " JOIN _wanted_ids w ON w.id = a.customer_id WHERE a.is_primary"
            )
        }


def close_addresses(store: Store, closings: Sequence[tuple[int, datetime]]) -> None:
    """Close address rows: [(row id, valid_to), ...]. Only ever sets valid_to on open rows."""
    if not closings:
        return
    frame = pd.DataFrame(closings, columns=["id", "valid_to"]).astype({"id": "int64"})
    frame["valid_to"] = pd.to_datetime(frame["valid_to"])
    with _registered(store, "_closings", frame):
        store.execute(
            "UPDATE customer_addresses SET valid_to = c.valid_to FROM _closings c"
            " WHERE customer_addresses.id = c.id AND customer_addresses.valid_to IS NULL"
        )


def append_addresses(
    store: Store, rows: Sequence[tuple[str, str, bool, datetime]], recorded_at: datetime
) -> None:
    """Append address rows: [(customer_id, address, is_primary, valid_from), ...]."""
    if not rows:
        return
    frame = pd.DataFrame(rows, columns=["customer_id", "address", "is_primary", "valid_from"])
    frame["valid_from"] = pd.to_datetime(frame["valid_from"])
    frame["recorded_at"] = pd.Timestamp(recorded_at)
    store.insert_df("customer_addresses", frame)
