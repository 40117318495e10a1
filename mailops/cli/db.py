"""``mailops db``: the store's migrations."""

from __future__ import annotations

import click

from mailops.cli import Context, pass_ctx
from mailops.cli.output import Output, emit, output_options


@click.group("db")
def db() -> None:
    """The DuckDB store: migrations and status."""


@db.command("migrate")
@pass_ctx
def migrate(ctx: Context) -> None:
    """Apply pending migrations (opening the store does this too)."""
    from mailops.store import Store, ownership

    store = Store(ctx.settings.db, migrate=False)
    try:
        names = store.migrate()
        doubles = ownership.open_conflicts_count(store)
    finally:
        store.close()
    click.echo(f"applied {len(names)} migration(s)" + (": " + ", ".join(names) if names else ""))
    if doubles:  # C6: links made before the one-owner rule
        click.echo(
            f"{doubles} address(es) are linked to more than one user: see `mailops mailbox"
            " conflicts`; an admin resolves each with `mailops mailbox transfer`"
        )


@db.command("status")
@output_options
@pass_ctx
def status(ctx: Context, out: Output) -> None:
    """List migrations, applied or pending, and table row counts."""
    from mailops.store import Store

    store = Store(ctx.settings.db, migrate=False)
    try:
        if out.is_table:
            click.echo(f"store: {ctx.settings.db}")
        emit(store.status(), out, what="migrations")
    finally:
        store.close()


def register(cli: click.Group) -> None:
    cli.add_command(db)
