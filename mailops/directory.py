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
* The header row decides the columns. A row with more fields than the header is refused,
  unless the extra fields are empty (a spreadsheet's trailing comma): those are dropped with
  one note naming the file and the first such row. A line break inside a cell is refused.

How it scales: rows are read as a stream (``csv`` module or ``DataFrame.itertuples``),
checked and typed in Python, and staged ``CHUNK_ROWS`` at a time into TEMP tables; the
upserts, the S3 address plan of unchanged and new customers and the deal members are
set-based SQL (``mailops.store.directory``). Only customers whose addresses change go
through the row-by-row S3 planner, ``PLAN_BATCH`` at a time. DuckDB's memory is capped
during the import (``IMPORT_MEMORY_LIMIT``; it spills to disk beyond), so a million
customers import in bounded memory. ``check=True`` runs the same import and rolls it back.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from email.headerregistry import Address
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from mailops.errors import DirectoryError
from mailops.store import Store
from mailops.store import directory as q
from mailops.store import erasure as erstore

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
log = logging.getLogger(__name__)
KEEP: Any = object()  # "column absent: leave the stored value alone"
KINDS = ("users", "customers", "deals")
CHUNK_ROWS = 50_000  # rows staged per INSERT
PLAN_BATCH = 20_000  # customers with changed addresses planned at a time
PLAN_SLICE = 100_000  # staged customers whose address state is aggregated at a time
# DuckDB's memory during an import (it spills beyond); an import that needs more is run
# again with the next one (a store of millions of customers: its indexes must fit).
IMPORT_MEMORY_LIMITS: tuple[str | None, ...] = ("256MB", "1GB", "4GB")


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    inserted_ids: list[str] = field(default_factory=list, compare=False)  # the first few
    updated_ids: list[str] = field(default_factory=list, compare=False)

    def examples(self) -> str:
        """The counts with the first ids, e.g. ``2 inserted (c7, c8), 1 updated (c2)``."""

        def part(n: int, what: str, ids: list[str]) -> str:
            shown = ", ".join(ids) + (", ..." if n > len(ids) else "")
            return f"{n} {what}" + (f" ({shown})" if ids else "")

        return (
            f"{part(self.inserted, 'inserted', self.inserted_ids)},"
            f" {part(self.updated, 'updated', self.updated_ids)}, {self.unchanged} unchanged"
        )

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
    checked: bool = False  # a dry run (``check=True``): nothing was written
    notes: list[str] = field(default_factory=list)  # e.g. trailing empty fields dropped

    @property
    def changed(self) -> bool:
        return any(c.inserted or c.updated for c in (self.users, self.customers, self.deals))

    def summary(self, examples: bool = False) -> str:
        """One line of counts; EXAMPLES adds the first inserted / updated ids."""
        users, customers, deals = (
            (c.examples() if examples else str(c)) for c in (self.users, self.customers, self.deals)
        )
        return (
            f"users: {users}; customers: {customers}; deals: {deals};"
            f" primary address changes: {len(self.primary_changes)}"
        )


# -- cell parsing -----------------------------------------------------------------------------
class _RowError(Exception):
    pass


def _text(value: Any) -> str | None:
    if type(value) is str:
        return value.strip() or None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, (list, tuple, set)) and pd.isna(value) is True:
        return None  # pd.NA, pd.NaT, numpy nan
    text = str(value).strip()
    return text or None


# A dot-atom local part at a dotted host name: always a valid addr-spec (the common case,
# checked without the stdlib parser, which costs ~20 us an address).
_SIMPLE_ADDRESS = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+"
)


def normalize_address(value: str) -> str:
    """Lower-cased addr-spec; ``_RowError`` naming the address when it is not one."""
    address = value.strip().lower()
    if _SIMPLE_ADDRESS.fullmatch(address):
        return address
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
    if text is None:
        return []
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
    if price >= 10**12:
        raise _RowError(f"price {text!r} is too large")
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


# -- reading rows -----------------------------------------------------------------------------
PARSERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "users": {
        "email": _email,
        "name": _text,
        "role": _role,
        "team": _text,
        "can_send": _bool(True),
        "active": _bool(True),
    },
    "customers": {
        "name": _text,
        "owner_user_id": _text,
        "email": _email,
        "primary_since": _datetime,
        "additional_emails": _emails,
        "never_log": _bool(False),
    },
    "deals": {
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
}


@dataclass
class Rows:
    """One input: its label (file name) for messages, the header's column names (lower
    case) and the rows as (row number, cells aligned with the header)."""

    kind: str
    label: str
    header: list[str]
    open: Callable[[], Iterable[tuple[int, Sequence[Any]]]]  # the rows, from the start
    notes: list[str] = field(default_factory=list)
    text: bool = False  # every cell is a str (a CSV file)
    width: int = 0  # fields of the header row, trailing empty names included


def _frame_rows(df: pd.DataFrame | Iterable[dict[str, Any]], kind: str, label: str) -> Rows:
    frame = df if isinstance(df, pd.DataFrame) else pd.DataFrame(list(df))
    header = [str(c).strip().lower() for c in frame.columns]
    return Rows(
        kind, label, header, lambda: enumerate(frame.itertuples(index=False, name=None), start=1)
    )


def _has_line_break(text: str) -> bool:
    return "\n" in text or "\r" in text


def _refuse_line_breaks(
    label: str,
    n: int,
    rid: str,
    cells: Sequence[Any],
    id_index: int,
    at_index: Sequence[tuple[str, int, Any]],
) -> None:
    """DirectoryError for the first imported cell of the row holding CR or LF (a CRM name
    that would break every one-line output); cells of ignored columns may hold them."""
    for col, i in [("id", id_index), *((c, i) for c, i, _ in at_index)]:
        value = cells[i]
        if type(value) is str and _has_line_break(value):
            where = f"{label} row {n}" + ("" if col == "id" else f" (id {rid})")
            raise DirectoryError(
                f"{where}: {col}: contains a line break (CR/LF); one line per cell",
                code="bad_row",
            )


def _pa_type(sql_type: str) -> Any:
    import pyarrow as pa

    return {
        "VARCHAR": pa.string(),
        "BOOLEAN": pa.bool_(),
        "TIMESTAMP": pa.timestamp("us"),
        "DATE": pa.date32(),
        "DECIMAL(14, 2)": pa.decimal128(14, 2),
        "VARCHAR[]": pa.list_(pa.string()),
    }[sql_type]


def _stage(store: Store, source: Rows) -> list[str]:
    """Check and type every row of SOURCE into its TEMP stage; returns the present columns.
    DirectoryError names the file, the row (1 = first row after the header) and the problem."""
    import pyarrow as pa

    kind, label, header = source.kind, source.label, source.header
    missing = [c for c in REQUIRED[kind] if c not in header]
    if missing:
        raise DirectoryError(
            f"{label}: missing column(s) {', '.join(missing)}",
            code="bad_file",
            guidance="see `mailops directory import --help` for the CSV columns",
        )
    parsers = PARSERS[kind]
    present = [c for c in parsers if c in header]
    at_index = [(c, header.index(c), parsers[c]) for c in present]
    id_index = header.index("id")
    stage_cols = list(q.STAGE_COLUMNS[kind])
    schema = pa.schema(
        [("n", pa.int64())] + [(c, _pa_type(t)) for c, t in q.STAGE_COLUMNS[kind].items()]
    )
    need_email = kind == "users"
    q.create_stage(store, kind)
    columns: dict[str, list[Any]] = {c: [] for c in ["n", *stage_cols]}
    absent = [c for c in stage_cols if c != "id" and c not in present]

    def flush() -> None:
        if not columns["n"]:
            return
        size = len(columns["n"])
        arrays = [
            pa.nulls(size, schema.field(c).type)
            if c in absent
            else pa.array(columns[c], type=schema.field(c).type)
            for c in schema.names
        ]
        q.stage_rows(store, kind, pa.Table.from_arrays(arrays, schema=schema))
        for values in columns.values():
            values.clear()

    text_cells = source.text
    for n, cells in source.open():
        rid = _text(cells[id_index])
        if rid is None:
            raise DirectoryError(f"{label} row {n}: missing id", code="bad_row")
        # one test per row (str.join and `in` run in C); the cell is found only on a hit
        if not text_cells or _has_line_break("".join(cells)):
            _refuse_line_breaks(label, n, rid, cells, id_index, at_index)
        columns["n"].append(n)
        columns["id"].append(rid)
        for col, i, parse in at_index:
            value = cells[i]
            if parse is _text:
                columns[col].append(value.strip() or None if type(value) is str else _text(value))
                continue
            try:
                columns[col].append(parse(value))
            except _RowError as e:
                raise DirectoryError(
                    f"{label} row {n} (id {rid}): {col}: {e}", code="bad_row"
                ) from None
        if need_email and columns["email"][-1] is None:
            raise DirectoryError(f"{label} row {n} (id {rid}): email: missing", code="bad_row")
        if len(columns["n"]) >= CHUNK_ROWS:
            flush()
    flush()
    duplicate = q.first_duplicate(store, kind)
    if duplicate:
        n, rid = duplicate
        raise DirectoryError(f"{label} row {n} (id {rid}): duplicate id {rid!r}", code="bad_row")
    return present


# -- the import -------------------------------------------------------------------------------
class _DryRun(Exception):
    """Raised inside the import transaction of a check, so that it rolls back."""


def import_directory(
    store: Store,
    users: pd.DataFrame | None = None,
    customers: pd.DataFrame | None = None,
    deals: pd.DataFrame | None = None,
    at: datetime | None = None,
    *,
    labels: dict[str, str] | None = None,
    check: bool = False,
) -> ImportResult:
    """Upsert the given directory frames (any subset) in one transaction.

    AT (naive UTC, default now) is the import time: ``updated_at`` of changed rows and the
    change time of a primary address without ``primary_since``. LABELS name the sources in
    error messages (the CLI passes file names). Raises DirectoryError (nothing written) for
    a malformed row. CHECK: compute what would change, write nothing.
    """
    labels = {k: k for k in KINDS} | (labels or {})
    given = {"users": users, "customers": customers, "deals": deals}
    sources = [_frame_rows(v, k, labels[k]) for k, v in given.items() if v is not None]
    return import_rows(store, sources, at, check=check)


def import_rows(
    store: Store, sources: Sequence[Rows], at: datetime | None = None, *, check: bool = False
) -> ImportResult:
    """The import of opened inputs (``Rows``): staged, checked, applied (or, with CHECK,
    rolled back). DuckDB's memory is capped; an import that needs more (the indexes of a
    store of millions of customers must fit) is rolled back and run again with a larger cap."""
    at = q.naive_utc(at).replace(microsecond=0)
    limits = IMPORT_MEMORY_LIMITS if store.path != ":memory:" else (None,)
    for i, limit in enumerate(limits):
        try:
            return _import_once(store, sources, at, check, limit)
        except duckdb.OutOfMemoryException:
            if i + 1 == len(limits):
                raise DirectoryError(
                    f"the import ran out of memory with DuckDB's limit at {limit}",
                    code="out_of_memory",
                    guidance="split the files, or free memory on this machine",
                ) from None
            log.warning(
                "directory import: DuckDB needed more than %s; again with %s", limit, limits[i + 1]
            )
    raise AssertionError("unreachable")


def _import_once(
    store: Store, sources: Sequence[Rows], at: datetime, check: bool, limit: str | None
) -> ImportResult:
    result = ImportResult(at=at, checked=check)
    by_kind = {s.kind: s for s in sources}
    for source in sources:
        source.notes.clear()
    try:
        with _memory_capped(store, limit), store.transaction():
            present = {
                s.kind: _stage(store, s) for s in sorted(sources, key=lambda s: KINDS.index(s.kind))
            }
            left_out = erstore.drop_erased_from_stages(
                store, "customers" in present, "deals" in present
            )
            if left_out:  # G1: an erased person never comes back through an import
                result.notes.append(f"{left_out} customer row(s) left out: erased on request (G1)")
            _check_references(store, by_kind, present)
            if "users" in present:
                q.plan_upsert(store, "users", present["users"])
                result.users = Counts(*q.apply_upsert(store, "users", at))
            if "customers" in present:
                _import_customers(
                    store, by_kind["customers"].label, present["customers"], result, at
                )
            if "deals" in present:
                _import_deals(store, present["deals"], result, at)
            q.drop_stages(store)
            for source in sources:
                result.notes.extend(source.notes)
            if check:
                raise _DryRun
    except _DryRun:
        pass
    return result


@contextmanager
def _memory_capped(store: Store, limit: str | None) -> Iterator[None]:
    """DuckDB keeps every block it touched cached up to its memory limit (80% of RAM by
    default): cap it for the import at LIMIT (None: leave it), restore it after."""
    store.execute("SET enable_progress_bar = false")  # no bar on the CLI's output
    if limit is None:
        yield
        return
    before = store.setting("memory_limit")
    try:  # (a SET that cannot free enough memory raises, yet leaves the new limit set)
        store.execute(f"SET memory_limit = '{limit}'")
        store.execute("SET preserve_insertion_order = false")  # less to hold; we ORDER BY
        yield
    finally:
        store.execute("RESET memory_limit")  # exact when it was the default
        if store.setting("memory_limit") != before:
            store.execute(f"SET memory_limit = '{before}'")
        store.execute("RESET preserve_insertion_order")


def _check_references(
    store: Store, sources: dict[str, Rows], present: dict[str, list[str]]
) -> None:
    for kind in ("customers", "deals"):
        if "owner_user_id" in present.get(kind, ()):
            bad = q.first_unknown_owner(store, kind, users_staged="users" in present)
            if bad:
                n, rid, owner = bad
                raise DirectoryError(
                    f"{sources[kind].label} row {n} (id {rid}): owner_user_id {owner!r} is not a"
                    " known user",
                    code="bad_row",
                )
    if "customer_ids" in present.get("deals", ()):
        bad = q.first_unknown_deal_customer(store, customers_staged="customers" in present)
        if bad:
            n, rid, cid = bad
            raise DirectoryError(
                f"{sources['deals'].label} row {n} (id {rid}): customer_ids: {cid!r} is not a"
                " known customer",
                code="bad_row",
            )


def _import_customers(
    store: Store, label: str, present: list[str], result: ImportResult, at: datetime
) -> None:
    q.create_force(store, "_force_customers")
    email, additional = "email" in present, "additional_emails" in present
    if email or additional:
        q.plan_addresses(store, email, additional, PLAN_SLICE)
        result.addresses_added += q.append_simple_addresses(store, at, q.SINCE_ALWAYS)
        cols = [c for c in ("email", "primary_since", "additional_emails") if c in present]
        for batch in q.changed_address_batches(store, cols, PLAN_BATCH):
            _plan_batch(store, label, batch, present, result, at)
    q.plan_upsert(store, "customers", present, force="_force_customers")
    result.customers = Counts(*q.apply_upsert(store, "customers", at))


def _plan_batch(
    store: Store,
    label: str,
    batch: pd.DataFrame,
    present: list[str],
    result: ImportResult,
    at: datetime,
) -> None:
    """The S3 plan, row by row, of customers whose open addresses change."""
    ids = list(batch["id"])
    by_customer: dict[str, list[dict[str, Any]]] = {}
    for row in q.open_addresses(store, ids).to_dict("records"):
        by_customer.setdefault(row["customer_id"], []).append(row)
    history = q.customers_with_primary_history(store, ids)
    closings: list[tuple[int, datetime]] = []
    appends: list[tuple[str, str, bool, datetime]] = []
    changed: list[str] = []
    for rec in batch.to_dict("records"):
        rid = rec["id"]
        since = rec.get("primary_since")
        extra = rec.get("additional_emails")
        plan = {
            "id": rid,
            "_where": f"{label} row {rec['n']} (id {rid})",
            "email": (rec["email"] if isinstance(rec["email"], str) else None)
            if "email" in present
            else KEEP,
            "primary_since": (None if pd.isna(since) else _ts(since))
            if "primary_since" in present
            else KEEP,
            "additional_emails": (list(extra) if extra is not None else [])
            if "additional_emails" in present
            else KEEP,
        }
        before = (len(closings), len(appends))
        _plan_addresses(
            plan, by_customer.get(rid, []), rid in history, at, closings, appends, result
        )
        if (len(closings), len(appends)) != before:
            changed.append(rid)
    q.close_addresses(store, closings)
    q.append_addresses(store, appends, at)
    q.force(store, "_force_customers", changed)
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


def _import_deals(store: Store, present: list[str], result: ImportResult, at: datetime) -> None:
    q.create_force(store, "_force_deals")
    if "customer_ids" in present:
        q.plan_members(store)
    q.plan_upsert(store, "deals", present, force="_force_deals")
    result.deals = Counts(*q.apply_upsert(store, "deals", at))
    if "customer_ids" in present:
        q.apply_members(store)


# -- CSV files --------------------------------------------------------------------------------
def csv_rows(path: str | Path, kind: str) -> Rows:
    """A directory CSV (UTF-8, BOM tolerated) as a stream of rows: the header decides the
    columns; empty trailing fields are dropped (noted), other extra fields refused."""
    p = Path(path)
    if not p.is_file():
        raise DirectoryError(f"{kind} file {p} does not exist", code="bad_file")
    label = p.name
    try:
        with p.open(encoding="utf-8-sig", newline="") as f:
            raw = next(csv.reader(f), None)
    except UnicodeDecodeError as e:
        raise DirectoryError(
            f"{p}: not UTF-8 ({e.reason} at byte {e.start})", code="bad_file"
        ) from None
    except csv.Error as e:
        raise DirectoryError(f"{p}: not a readable CSV: {e}", code="bad_file") from None
    if not raw or not any(c.strip() for c in raw):
        raise DirectoryError(f"{p}: no header row (an empty file?)", code="bad_file")
    names = [c.strip().lower() for c in raw]
    while names and not names[-1]:
        names.pop()
    repeated = sorted({c for c in names if c and names.count(c) > 1})
    if repeated:
        raise DirectoryError(
            f"{label}: column(s) {', '.join(repeated)} twice in the header", code="bad_file"
        )
    source = Rows(kind, label, names, lambda: _csv_records(p, source), text=True)
    source.width = len(raw)
    return source


def _csv_records(p: Path, source: Rows) -> Iterator[tuple[int, list[str]]]:
    label, width = source.label, source.width
    named = len(source.header)  # the header's trailing empty names are not columns
    unnamed = [i for i, name in enumerate(source.header) if not name] + list(range(named, width))
    trimmed, first_trimmed, n = 0, 0, 0
    try:
        with p.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            next(reader, None)
            for n, row in enumerate(reader, start=1):
                if len(row) > width:
                    extra = next((c for c in row[width:] if c.strip()), None)
                    if extra is not None:
                        raise DirectoryError(
                            f"{label} row {n}: {len(row)} fields but the header has {width}"
                            f" column(s) (extra value {extra[:40]!r})",
                            code="bad_row",
                            guidance="every row must have the header's columns: remove the"
                            " extra cells or give them a column name",
                        )
                    trimmed += 1
                    first_trimmed = first_trimmed or n
                    del row[width:]
                if not "".join(row).strip():
                    continue  # a blank line or a row of empty cells
                for i in unnamed:
                    if i < len(row) and row[i].strip():
                        raise DirectoryError(
                            f"{label} row {n}: a value in column {i + 1}, which has no name"
                            " in the header",
                            code="bad_row",
                        )
                if len(row) < named:
                    row.extend([""] * (named - len(row)))
                yield n, row[:named] if len(row) > named else row
    except UnicodeDecodeError as e:
        raise DirectoryError(
            f"{p}: not UTF-8 ({e.reason}, after row {n})", code="bad_file"
        ) from None
    except csv.Error as e:
        raise DirectoryError(
            f"{p}: not a readable CSV: row {n + 1}: {e}", code="bad_file"
        ) from None
    if trimmed:
        source.notes.append(
            f"{label}: dropped empty fields past the header's {width} column(s) in"
            f" {trimmed} row(s) (trailing commas), first in row {first_trimmed}"
        )


def import_csv(
    store: Store,
    users: str | Path | None = None,
    customers: str | Path | None = None,
    deals: str | Path | None = None,
    at: datetime | None = None,
    *,
    check: bool = False,
) -> ImportResult:
    """``import_directory`` from CSV files (any subset); errors name the file."""
    paths = {"users": users, "customers": customers, "deals": deals}
    if not any(paths.values()):
        raise DirectoryError(
            "nothing to import", code="usage", guidance="give --users, --customers and/or --deals"
        )
    sources = [csv_rows(v, k) for k, v in paths.items() if v]
    return import_rows(store, sources, at, check=check)
