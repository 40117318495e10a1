"""``mailops erase``: G1, erase everything stored for a person, with a receipt."""

from __future__ import annotations

import json

import click
import pandas as pd

from mailops.cli import Context, pass_ctx
from mailops.cli.output import Output, emit, output_options


def _frame(receipts: list[dict]) -> pd.DataFrame:  # type: ignore[type-arg]
    cols = [
        "receipt",
        "target_kind",
        "target_sha256",
        "counts",
        "content_sha256",
        "by",
        "erased_at",
    ]
    rows = [
        {c: (json.dumps(r[c], sort_keys=True) if c == "counts" else r.get(c)) for c in cols}
        for r in receipts
    ]
    return pd.DataFrame(rows, columns=cols)


@click.command("erase")
@click.option("--address", help="The person's email address.")
@click.option("--customer", help="A CRM customer id: every address he ever had, and the customer.")
@click.option("--dry-run", is_flag=True, help="Only count what would be erased.")
@click.option(
    "--receipts", "list_receipts", is_flag=True, help="List the erasure receipts instead."
)
@click.option("--as", "actor", envvar="MAILOPS_USER", required=True, help="An admin (G1).")
@output_options
@pass_ctx
def erase_cmd(
    ctx: Context,
    address: str | None,
    customer: str | None,
    dry_run: bool,
    list_receipts: bool,
    actor: str,
    out: Output,
) -> None:
    """G1: erase a person's messages, raw bytes, attachments, activities, notifications,
    outbox entries and drafts; write a receipt without personal data (counts, content
    hashes, who, when); block the address so no later sync or import brings it back.
    Prints the receipt (--json etc. for the whole of it); --receipts lists them all."""
    from mailops.erasure import erase
    from mailops.store import erasure as erstore

    store = ctx.store()
    if list_receipts:
        from mailops.permissions import scope_for

        viewer = scope_for(store, actor)
        if viewer.role not in ("admin", "it") or viewer.is_system:
            raise click.UsageError("receipts are for admins and IT (--as)")
        emit(_frame(erstore.receipts(store)), out, empty="no erasure yet", what="receipts")
        return
    result = erase(store, actor, address=address, customer=customer, dry_run=dry_run)
    if out.is_table:
        click.echo(result.line())
        return
    emit(_frame([result.receipt() | {"erased_at": None}]), out, what="receipt")


def register(cli: click.Group) -> None:
    cli.add_command(erase_cmd)
