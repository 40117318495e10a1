"""``mailops directory``: import the CRM's users, customers and deals; inspect them."""

from __future__ import annotations

from typing import Any

import click

from mailops.cli import Context, pass_ctx
from mailops.cli.output import Output, emit, output_options

IMPORT_HELP = """Upsert CRM users, customers and deals from CSV files (any subset), by CRM id.

\b
One transaction: a malformed row (missing id, bad email, unknown role, unknown owner or
customer id, a line break in a cell, more fields than the header ...) is reported as one
line naming file, row and problem, and nothing is written. Importing the same files again
changes nothing. --check shows what an import would change and writes nothing. Columns
(UTF-8, header row; the header decides the columns; extra columns are ignored; empty
fields past the header, a spreadsheet's trailing commas, are dropped with a note; a column
left out keeps the stored values):

\b
  users:     id, email, role (sales|manager|it|admin), name, team, can_send, active
  customers: id, name, owner_user_id, email (the primary address),
             primary_since (ISO date/time, UTC unless an offset is given),
             additional_emails (';'-separated), never_log
  deals:     id, name, owner_user_id, project, unit, price, currency, stage,
             created_at, expected_close, customer_ids (';'-separated; the first is the
             buyer, the rest co-buyers)

\b
S3: when a customer's email (primary address) changes, the open primary period is closed
at primary_since (or the import time when blank) and a new one starts; history is kept.
"""


@click.group("directory")
def directory() -> None:
    """The CRM directory: users, customers (primary address history, S3), deals."""


@directory.command("import", help=IMPORT_HELP)
@click.option("--users", "users", metavar="CSV", help="Users file.")
@click.option("--customers", "customers", metavar="CSV", help="Customers file.")
@click.option("--deals", "deals", metavar="CSV", help="Deals file.")
@click.option(
    "--at",
    "at",
    metavar="ISO",
    help="Import time (UTC) used for changes without primary_since; default now.",
)
@click.option(
    "--check", is_flag=True, help="Dry run: show what the import would change, write nothing."
)
@pass_ctx
def import_(
    ctx: Context,
    users: str | None,
    customers: str | None,
    deals: str | None,
    at: str | None,
    check: bool,
) -> None:
    from datetime import datetime

    from mailops.directory import import_csv
    from mailops.errors import DirectoryError
    from mailops.store.directory import naive_utc

    when = None
    if at:
        try:
            when = naive_utc(datetime.fromisoformat(at))
        except ValueError:
            raise DirectoryError(f"--at {at!r} is not an ISO date/time", code="usage") from None
    result = import_csv(
        ctx.store(), users=users, customers=customers, deals=deals, at=when, check=check
    )
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if check:
        click.echo(
            f"check only, nothing written; the import would change: {result.summary(examples=True)}"
        )
    else:
        click.echo(f"imported {result.summary()}")
    for change in result.primary_changes[:20]:
        click.echo(
            f"  {change.customer_id}: {change.old_address or '-'} -> {change.new_address or '-'}"
            f" from {change.at:%Y-%m-%d %H:%M}"
        )
    if len(result.primary_changes) > 20:
        click.echo(f"  ... and {len(result.primary_changes) - 20} more")


@directory.command("status")
@output_options
@pass_ctx
def status(ctx: Context, out: Output) -> None:
    """Row counts of the directory tables."""
    import pandas as pd

    from mailops.store.directory import counts

    df = pd.DataFrame(list(counts(ctx.store()).items()), columns=["table", "rows"])
    emit(df, out, table=lambda d: "\n".join(f"{t:20} {n}" for t, n in d.itertuples(index=False)))


@directory.command("history")
@click.argument("customer_id")
@output_options
@pass_ctx
def history(ctx: Context, customer_id: str, out: Output) -> None:
    """A customer's address periods (primary and additional), oldest first (S3)."""
    from mailops.errors import DirectoryError
    from mailops.store.directory import address_history

    df = address_history(ctx.store(), customer_id)
    if df.empty:
        raise DirectoryError(f"no addresses for customer {customer_id!r}", code="unknown_customer")
    df["kind"] = df["is_primary"].map({True: "primary", False: "additional"})
    emit(df[["address", "kind", "valid_from", "valid_to"]], out, table=_history_table)


def _history_table(df: Any) -> str:
    df = df.copy()
    df["valid_to"] = df["valid_to"].astype(object).where(df["valid_to"].notna(), "-")
    return str(df.to_string(index=False))


def register(cli: click.Group) -> None:
    cli.add_command(directory)
