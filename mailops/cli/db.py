"""``mailops db``: the store's migrations."""

from __future__ import annotations

from typing import Any

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
    from mailops.store import Store, blobs

    store = Store(ctx.settings.db, migrate=False)
    try:
        if out.is_table:
            click.echo(f"store: {ctx.settings.db}")
        emit(store.status(), out, what="migrations")
        if out.is_table and "0010_blob_files" in store.applied():
            click.echo(_blob_lines(blobs.stats(store)))
    finally:
        store.close()


def _blob_lines(st: dict[str, Any]) -> str:
    """Where the bytes of stored mail live (S12): inline in DuckDB or in the blob folder."""
    from mailops.store.blobs import INLINE_MAX_BYTES

    lines = [
        f"blobs: {st['blob_folder']} (raw messages and attachments over"
        f" {INLINE_MAX_BYTES // 1024} KB; back it up with the store)"
    ]
    for label, key in (("raw messages", "raw"), ("attachments", "attachments")):
        lines.append(
            f"  {label}: inline: {st[f'{key}_inline']} ({_size(st[f'{key}_inline_bytes'])}),"
            f" in files: {st[f'{key}_in_files']} ({_size(st[f'{key}_in_files_bytes'])})"
        )
    lines.append(
        f"  files on disk: {st['files']} ({_size(st['files_bytes'])}), orphans: {st['orphans']}"
        + (" (left by an interrupted sync; `mailops db gc` removes them)" if st["orphans"] else "")
    )
    return "\n".join(lines)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.0f} B"


@db.command("gc")
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0),
    default=7.0,
    show_default=True,
    help="On a lake: snapshots younger than this stay (time travel); older ones expire.",
)
@pass_ctx
def gc(ctx: Context, keep_days: float) -> None:
    """Remove blob files no row refers to (left by a sync killed before its commit). On a
    lake (D1) also its maintenance: rows inlined in the catalog flushed into Parquet,
    small files merged, snapshots older than --keep-days expired, unreferenced files
    removed (run it daily from cron, beside the workers)."""
    from mailops.store import Store, blobs, lake

    store = Store(ctx.settings.db)
    try:
        n = blobs.remove_orphans(store)
        done = lake.maintain(store, keep_days=keep_days) if store.lake is not None else None
    finally:
        store.close()
    click.echo(f"removed {n} orphan blob file(s)")
    if done is not None:
        click.echo(
            f"lake: {done['flushed']} inlined row(s) flushed, {done['merged']} file(s) merged,"
            f" {done['expired']} snapshot(s) expired, {done['removed']} file(s) removed"
        )


def register(cli: click.Group) -> None:
    cli.add_command(db)
