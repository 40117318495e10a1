"""The CRM directory in the store: users, customers, their addresses (S3 history), deals.

Reads are for everyone (sync matching, sending, reports, permissions); writes are for
``mailops.directory.import_directory`` only. ``customer_addresses`` holds one row per
(customer, address, period): a primary address is valid from ``valid_from`` until
``valid_to`` (NULL = still primary); additional (non-primary) addresses have
``is_primary = false`` rows with the same period semantics. Rows are appended and closed,
never rewritten or deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mailops.errors import DirectoryError
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
# Bulk statements over registered DataFrames: a CRM export has tens of thousands of rows and
# DuckDB's executemany runs one statement per row.
@contextmanager
def _registered(store: Store, name: str, frame: pd.DataFrame) -> Iterator[None]:
    store.conn.register(name, frame)
    try:
        yield
    finally:
        store.conn.unregister(name)


def _ids_frame(ids: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": pd.Series(list(ids), dtype="object")})


def existing_rows(
    store: Store, table: str, columns: Sequence[str], ids: Iterable[str]
) -> list[tuple]:
    """Rows of TABLE (id first) whose id is in IDS."""
    keys = _ids_frame(ids)
    if keys.empty:
        return []
    with _registered(store, "_wanted_ids", keys):
        return store.rows(
            f"SELECT {', '.join('t.' + c for c in columns)} FROM {table} t"
            " JOIN _wanted_ids w ON w.id = t.id"
        )


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


def upsert_rows(
    store: Store,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    at: datetime,
    existing: set[str] | None = None,
) -> None:
    """Insert new ids and update EXISTING ones (whole rows, first column = ``id``), setting
    updated_at."""
    if not rows:
        return
    cols = [*columns, "updated_at"]
    frame = pd.DataFrame([[*r, at] for r in rows], columns=cols, dtype="object")
    known = existing or set()
    updates = frame[frame["id"].isin(known)]
    inserts = frame[~frame["id"].isin(known)]
    types = _column_types(store, table)
    select = ", ".join(f'CAST(f."{c}" AS {types[c]}) AS "{c}"' for c in cols)
    if not inserts.empty:
        with _registered(store, "_upsert_rows", inserts):
            store.execute(
                f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM _upsert_rows f"
            )
    if not updates.empty:
        sets = ", ".join(f'"{c}" = CAST(f."{c}" AS {types[c]})' for c in cols[1:])
        with _registered(store, "_upsert_rows", updates):
            store.execute(f"UPDATE {table} SET {sets} FROM _upsert_rows f WHERE {table}.id = f.id")


def _column_types(store: Store, table: str) -> dict[str, str]:
    return {
        r[0]: r[1]
        for r in store.rows(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
            [table],
        )
    }


def set_deal_members(store: Store, plans: Mapping[str, Sequence[tuple[str, str]]]) -> None:
    """Make each deal's members exactly the planned [(customer_id, role), ...]: remove, add and
    re-role rows (never delete and re-insert one key: DuckDB refuses that in a transaction)."""
    if not plans:
        return
    wanted = pd.DataFrame(
        [(d, c, r) for d, members in plans.items() for c, r in members],
        columns=["deal_id", "customer_id", "role"],
        dtype="object",
    )
    deals = _ids_frame(plans)
    with _registered(store, "_plan_deals", deals), _registered(store, "_wanted_members", wanted):
        store.execute(
            "DELETE FROM deal_customers WHERE deal_id IN (SELECT id FROM _plan_deals)"
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
            " WHERE NOT EXISTS (SELECT 1 FROM deal_customers d"
            "  WHERE d.deal_id = w.deal_id AND d.customer_id = w.customer_id)"
        )
