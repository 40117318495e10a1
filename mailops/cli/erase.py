"""``mailops erase``: G1, erase everything stored for a person, with a receipt."""

from __future__ import annotations

import json

import click

from mailops.cli import Context, pass_ctx


@click.command("erase")
@click.option("--address", help="The person's email address.")
@click.option("--customer", help="A CRM customer id: every address he ever had, and the customer.")
@click.option("--dry-run", is_flag=True, help="Only count what would be erased.")
@click.option("--as", "actor", envvar="MAILOPS_USER", required=True, help="An admin (G1).")
@click.option("--json", "as_json", is_flag=True, help="The receipt as JSON.")
@click.option(
    "--receipts", "list_receipts", is_flag=True, help="List the erasure receipts instead."
)
@pass_ctx
def erase_cmd(
    ctx: Context,
    address: str | None,
    customer: str | None,
    dry_run: bool,
    actor: str,
    as_json: bool,
    list_receipts: bool,
) -> None:
    """G1: erase a person's messages, raw bytes, attachments, activities, notifications,
    outbox entries and drafts; write a receipt without personal data (counts, content
    hashes, who, when); block the address so no later sync or import brings it back."""
    from mailops.erasure import erase
    from mailops.store import erasure as erstore

    store = ctx.store()
    if list_receipts:
        from mailops.permissions import scope_for

        viewer = scope_for(store, actor)
        if viewer.role not in ("admin", "it"):
            raise click.UsageError("receipts are for admins and IT (--as)")
        click.echo(json.dumps(erstore.receipts(store), indent=1))
        return
    result = erase(store, actor, address=address, customer=customer, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(result.receipt(), indent=1))
    else:
        click.echo(result.line())


def register(cli: click.Group) -> None:
    cli.add_command(erase_cmd)
