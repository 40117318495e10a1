"""Import the CRM directory (users, customers with their addresses, deals with their members).

``import_directory(store, users=df, customers=df, deals=df, at=None)`` upserts by CRM id in
one transaction. It is idempotent: importing the same data again touches nothing (no
``updated_at``, no address rows). A customer's primary-address change (S3) closes the open
primary period at the change time (``primary_since`` of the new address, or the import time)
and appends a new period; history rows are never rewritten or deleted.

Rules that the CSV formats in the README spell out:

* A column absent from a file leaves that field of existing rows alone (another part of
  mailops may own it, e.g. ``never_log``); a present column is authoritative, a blank cell
  means "empty / default".
* Rows absent from a file are left alone (imports may be partial); nothing is deleted.
* The first primary address of a customer without ``primary_since`` counts as primary
  "since always" (``SINCE_ALWAYS``), so mail already in the mailboxes matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from email.headerregistry import Address
from pathlib import Path
from typing import Any

import pandas as pd

from mailops.errors import DirectoryError
from mailops.store import Store
from mailops.store import directory as q

USER_COLUMNS = ("id", "email", "name", "role", "team", "can_send", "active")
CUSTOMER_COLUMNS = (
    "id",
    "name",
    "owner_user_id",
    "email",
    "primary_since",
    "additional_emails",
    "never_log",
)
DEAL_COLUMNS = (
    "id",
    "name",
    "owner_user_id",
    "project",
    "unit",
    "price",
    "currency",
    "stage",
    "created_at",
    "expected_close",
    "customer_ids",
)
REQUIRED = {
    "users": ("id", "email", "role"),
    "customers": ("id",),
    "deals": ("id",),
}
KEEP: Any = object()  # "column absent: leave the stored value alone"


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __str__(self) -> str:
        return f"{self.inserted} inserted, {self.updated} updated, {self.unchanged} unchanged"


@dataclass(frozen=True)
class PrimaryChange:
    customer_id: str
    old_address: str | None
    new_address: str | None
    at: datetime


@dataclass
class ImportResult:
    users: Counts = field(default_factory=Counts)
    customers: Counts = field(default_factory=Counts)
    deals: Counts = field(default_factory=Counts)
    primary_changes: list[PrimaryChange] = field(default_factory=list)
    addresses_added: int = 0
    addresses_closed: int = 0
    at: datetime | None = None

    @property
    def changed(self) -> bool:
        return any(c.inserted or c.updated for c in (self.users, self.customers, self.deals))

    def summary(self) -> str:
        return (
            f"users: {self.users}; customers: {self.customers}; deals: {self.deals};"
            f" primary address changes: {len(self.primary_changes)}"
        )


# -- cell parsing -----------------------------------------------------------------------------
class _RowError(Exception):
    pass


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, (list, tuple, set)) and pd.isna(value) is True:
        return None  # pd.NA, pd.NaT, numpy nan
    text = str(value).strip()
    return text or None


def normalize_address(value: str) -> str:
    """Lower-cased addr-spec; ``_RowError`` naming the address when it is not one."""
    address = value.strip().lower()
    try:
        parsed = Address(addr_spec=address)
    except Exception:  # noqa: BLE001 - the stdlib raises several kinds for bad input
        parsed = None
    if parsed is None or not parsed.username or "." not in parsed.domain.strip("."):
        raise _RowError(f"bad email address {value.strip()!r}")
    return address


def _email(value: Any) -> str | None:
    text = _text(value)
    return None if text is None else normalize_address(text)


def _emails(value: Any) -> list[str]:
    text = _text(value)
    out: list[str] = []
    for part in (text or "").replace(",", ";").split(";"):
        if part.strip():
            address = normalize_address(part)
            if address not in out:
                out.append(address)
    return out


def _bool(default: bool) -> Callable[[Any], bool]:
    def parse(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = _text(value)
        if text is None:
            return default
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "y", "t", "on"):
            return True
        if lowered in ("0", "false", "no", "n", "f", "off"):
            return False
        raise _RowError(f"{text!r} is not true/false")

    return parse


def _datetime(value: Any) -> datetime | None:
    if value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return q.naive_utc(pd.Timestamp(value).to_pydatetime())
    text = _text(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _RowError(f"{text!r} is not an ISO date/time") from None
    return q.naive_utc(parsed)


def _date(value: Any) -> date | None:
    if value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise _RowError(f"{text!r} is not an ISO date") from None


def _price(value: Any) -> Decimal | None:
    text = _text(value)
    if text is None:
        return None
    try:
        price = Decimal(text.replace("_", "").replace(" ", ""))
    except InvalidOperation:
        raise _RowError(f"price {text!r} is not a number") from None
    if not price.is_finite() or price < 0:
        raise _RowError(f"price {text!r} is not a non-negative number")
    return price.quantize(Decimal("0.01"))


def _role(value: Any) -> str:
    text = (_text(value) or "").lower()
    if text not in q.ROLES:
        raise _RowError(f"unknown role {text or '(blank)'!r} (one of {', '.join(q.ROLES)})")
    return text


def _ids(value: Any) -> list[str]:
    out: list[str] = []
    for part in (_text(value) or "").split(";"):
        if part.strip() and part.strip() not in out:
            out.append(part.strip())
    return out


# -- reading a frame into validated records -------------------------------------------------
def _records(
    df: pd.DataFrame, label: str, kind: str, parsers: dict[str, Callable[[Any], Any]]
) -> list[dict[str, Any]]:
    """Validated records, one per row; absent columns are KEEP. DirectoryError names the
    file, the row (1 = first row after the header) and the problem."""
    columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in REQUIRED[kind] if c not in columns]
    if missing:
        raise DirectoryError(
            f"{label}: missing column(s) {', '.join(missing)}",
            code="bad_file",
            guidance="see `mailops directory import --help` for the CSV columns",
        )
    frame = df.copy()
    frame.columns = columns
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, row in enumerate(frame.to_dict("records"), start=1):
        rid = _text(row.get("id"))
        where = f"{label} row {n}" + (f" (id {rid})" if rid else "")
        if rid is None:
            raise DirectoryError(f"{where}: missing id", code="bad_row")
        if rid in seen:
            raise DirectoryError(f"{where}: duplicate id {rid!r}", code="bad_row")
        seen.add(rid)
        rec: dict[str, Any] = {"id": rid, "_where": where}
        for col, parse in parsers.items():
            if col not in columns:
                rec[col] = KEEP
                continue
            try:
                rec[col] = parse(row.get(col))
            except _RowError as e:
                raise DirectoryError(f"{where}: {col}: {e}", code="bad_row") from None
        out.append(rec)
    return out


def _frame(value: pd.DataFrame | Iterable[dict[str, Any]] | None) -> pd.DataFrame | None:
    if value is None or isinstance(value, pd.DataFrame):
        return value
    return pd.DataFrame(list(value))


# -- the import -------------------------------------------------------------------------------
def import_directory(
    store: Store,
    users: pd.DataFrame | None = None,
    customers: pd.DataFrame | None = None,
    deals: pd.DataFrame | None = None,
    at: datetime | None = None,
    *,
    labels: dict[str, str] | None = None,
) -> ImportResult:
    """Upsert the given directory frames (any subset) in one transaction.

    AT (naive UTC, default now) is the import time: ``updated_at`` of changed rows and the
    change time of a primary address without ``primary_since``. LABELS name the sources in
    error messages (the CLI passes file names). Raises DirectoryError (nothing written) for
    a malformed row.
    """
    labels = {"users": "users", "customers": "customers", "deals": "deals", **(labels or {})}
    at = q.naive_utc(at).replace(microsecond=0)
    frames = {"users": _frame(users), "customers": _frame(customers), "deals": _frame(deals)}
    user_recs = (
        _records(
            frames["users"],
            labels["users"],
            "users",
            {
                "email": _email,
                "name": _text,
                "role": _role,
                "team": _text,
                "can_send": _bool(True),
                "active": _bool(True),
            },
        )
        if frames["users"] is not None
        else []
    )
    for rec in user_recs:
        if rec["email"] is None:
            raise DirectoryError(f"{rec['_where']}: email: missing", code="bad_row")
    cust_recs = (
        _records(
            frames["customers"],
            labels["customers"],
            "customers",
            {
                "name": _text,
                "owner_user_id": _text,
                "email": _email,
                "primary_since": _datetime,
                "additional_emails": _emails,
                "never_log": _bool(False),
            },
        )
        if frames["customers"] is not None
        else []
    )
    deal_recs = (
        _records(
            frames["deals"],
            labels["deals"],
            "deals",
            {
                "name": _text,
                "owner_user_id": _text,
                "project": _text,
                "unit": _text,
                "price": _price,
                "currency": lambda v: (_text(v) or "EUR").upper(),
                "stage": _text,
                "created_at": _datetime,
                "expected_close": _date,
                "customer_ids": _ids,
            },
        )
        if frames["deals"] is not None
        else []
    )

    result = ImportResult(at=at)
    with store.transaction():
        known_users = set(q.users_frame(store)["id"]) | {r["id"] for r in user_recs}
        known_customers = set(store.query("SELECT id FROM customers")["id"]) | {
            r["id"] for r in cust_recs
        }
        for rec in [*cust_recs, *deal_recs]:
            owner = rec.get("owner_user_id")
            if owner not in (None, KEEP) and owner not in known_users:
                raise DirectoryError(
                    f"{rec['_where']}: owner_user_id {owner!r} is not a known user", code="bad_row"
                )
        for rec in deal_recs:
            for cid in rec["customer_ids"] if rec["customer_ids"] is not KEEP else []:
                if cid not in known_customers:
                    raise DirectoryError(
                        f"{rec['_where']}: customer_ids: {cid!r} is not a known customer",
                        code="bad_row",
                    )
        _upsert(store, "users", USER_COLUMNS, user_recs, result.users, at)
        _import_customers(store, cust_recs, result, at)
        _import_deals(store, deal_recs, result, at)
    return result


_DEFAULTS: dict[str, dict[str, Any]] = {
    "users": {"name": None, "team": None, "can_send": True, "active": True},
    "customers": {"name": None, "owner_user_id": None, "never_log": False},
    "deals": {
        "name": None,
        "owner_user_id": None,
        "project": None,
        "unit": None,
        "price": None,
        "currency": "EUR",
        "stage": None,
        "created_at": None,
        "expected_close": None,
    },
}


def _upsert(
    store: Store,
    table: str,
    columns: Iterable[str],
    recs: list[dict[str, Any]],
    counts: Counts,
    at: datetime,
    force: set[str] | None = None,
) -> None:
    """Insert new ids, update changed ones (absent columns keep their stored value), and
    count the rest unchanged. FORCE: ids to update even when their columns are equal."""
    cols = list(columns)
    if not recs:
        return
    existing = {
        r[0]: dict(zip(cols, r, strict=True))
        for r in q.existing_rows(store, table, cols, [r["id"] for r in recs])
    }
    rows = []
    for rec in recs:
        old = existing.get(rec["id"])
        base = old if old is not None else {"id": rec["id"], **_DEFAULTS[table]}
        new = {c: (base[c] if rec.get(c, KEEP) is KEEP else rec[c]) for c in cols}
        if old is None:
            counts.inserted += 1
        elif new != old or rec["id"] in (force or set()):
            counts.updated += 1
        else:
            counts.unchanged += 1
            continue
        rows.append([new[c] for c in cols])
    q.upsert_rows(store, table, cols, rows, at, existing=set(existing))


def _import_customers(
    store: Store, recs: list[dict[str, Any]], result: ImportResult, at: datetime
) -> None:
    if not recs:
        return
    open_rows = q.open_addresses(store, [r["id"] for r in recs])
    history = q.customers_with_primary_history(store, [r["id"] for r in recs])
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for row in open_rows.to_dict("records"):
        by_customer.setdefault(row["customer_id"], []).append(row)
    closings: list[tuple[int, datetime]] = []
    appends: list[tuple[str, str, bool, datetime]] = []
    address_changed: set[str] = set()
    for rec in recs:
        before = (len(closings), len(appends))
        _plan_addresses(
            rec,
            by_customer.get(rec["id"], []),
            rec["id"] in history,
            at,
            closings,
            appends,
            result,
        )
        if (len(closings), len(appends)) != before:
            address_changed.add(rec["id"])
    _upsert(
        store,
        "customers",
        ("id", "name", "owner_user_id", "never_log"),
        recs,
        result.customers,
        at,
        force=address_changed,
    )
    q.close_addresses(store, closings)
    q.append_addresses(store, appends, at)
    result.addresses_added += len(appends)
    result.addresses_closed += len(closings)


def _plan_addresses(
    rec: dict[str, Any],
    open_rows: list[dict[str, Any]],
    had_primary: bool,
    at: datetime,
    closings: list[tuple[int, datetime]],
    appends: list[tuple[str, str, bool, datetime]],
    result: ImportResult,
) -> None:
    """Plan the address rows of one customer: which open rows to close, which to append."""
    cid = rec["id"]
    want_primary = rec["email"]
    want_additional = rec["additional_emails"]
    since = rec["primary_since"] if rec["primary_since"] is not KEEP else None
    primaries = [r for r in open_rows if r["is_primary"]]
    additional = {r["address"]: r for r in open_rows if not r["is_primary"]}
    current = primaries[-1]["address"] if primaries else None

    def close(row: dict[str, Any], when: datetime) -> None:
        closings.append((int(row["id"]), max(when, _ts(row["valid_from"]))))

    primary_now = current
    change_at = since or at
    if want_primary is not KEEP and want_primary != current:
        if primaries:
            start = _ts(primaries[-1]["valid_from"])
            if change_at <= start:
                raise DirectoryError(
                    f"{rec['_where']}: primary_since {change_at:%Y-%m-%d %H:%M:%S} is not after"
                    f" the start of the current primary address {current}"
                    f" ({start:%Y-%m-%d %H:%M:%S})",
                    code="bad_row",
                )
            for row in primaries:
                closings.append((int(row["id"]), change_at))
            result.primary_changes.append(PrimaryChange(cid, current, want_primary, change_at))
        if want_primary is not None:
            valid_from = since or (at if had_primary else q.SINCE_ALWAYS)
            if want_primary in additional:  # an additional address is promoted
                close(additional.pop(want_primary), valid_from)
            appends.append((cid, want_primary, True, valid_from))
        primary_now = want_primary
    if want_additional is KEEP:
        return
    wanted = [a for a in want_additional if a != primary_now]
    for address, row in additional.items():
        if address not in wanted:
            close(row, at)
    for address in wanted:
        if address not in additional:
            # a demoted primary is additional from the moment it stopped being primary
            appends.append((cid, address, False, change_at if address == current else at))


def _ts(value: Any) -> datetime:
    return pd.Timestamp(value).to_pydatetime()


def _import_deals(
    store: Store, recs: list[dict[str, Any]], result: ImportResult, at: datetime
) -> None:
    if not recs:
        return
    members = q.deal_members_frame(store)
    current: dict[str, dict[str, str]] = {}
    for row in members.to_dict("records"):
        current.setdefault(row["deal_id"], {})[row["customer_id"]] = row["role"]
    member_changed: set[str] = set()
    plans: dict[str, list[tuple[str, str]]] = {}
    for rec in recs:
        if rec["customer_ids"] is KEEP:
            continue
        wanted = [
            (cid, "buyer" if i == 0 else "co_buyer") for i, cid in enumerate(rec["customer_ids"])
        ]
        if dict(wanted) != current.get(rec["id"], {}):
            member_changed.add(rec["id"])
            plans[rec["id"]] = wanted
    _upsert(
        store,
        "deals",
        [c for c in DEAL_COLUMNS if c != "customer_ids"],
        recs,
        result.deals,
        at,
        force=member_changed,
    )
    q.set_deal_members(store, plans)


# -- CSV files --------------------------------------------------------------------------------
def read_csv(path: str | Path, kind: str) -> pd.DataFrame:
    """A directory CSV as strings (UTF-8, BOM tolerated); DirectoryError when unreadable."""
    p = Path(path)
    if not p.is_file():
        raise DirectoryError(f"{kind} file {p} does not exist", code="bad_file")
    try:
        return pd.read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DirectoryError(
            f"{p}: not UTF-8 ({e.reason} at byte {e.start})", code="bad_file"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        text = " ".join(str(e).split())
        raise DirectoryError(f"{p}: not a readable CSV: {text}", code="bad_file") from None


def import_csv(
    store: Store,
    users: str | Path | None = None,
    customers: str | Path | None = None,
    deals: str | Path | None = None,
    at: datetime | None = None,
) -> ImportResult:
    """``import_directory`` from CSV files (any subset); errors name the file."""
    paths = {"users": users, "customers": customers, "deals": deals}
    if not any(paths.values()):
        raise DirectoryError(
            "nothing to import", code="usage", guidance="give --users, --customers and/or --deals"
        )
    frames = {k: read_csv(v, k) if v else None for k, v in paths.items()}
    labels = {k: Path(v).name for k, v in paths.items() if v}
    return import_directory(
        store, frames["users"], frames["customers"], frames["deals"], at, labels=labels
    )
