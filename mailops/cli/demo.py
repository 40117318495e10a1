"""``mailops demo``: seed the demo company into the devserver and the store."""

from __future__ import annotations

from typing import Any

import click

from mailops.cli import Context, pass_ctx


@click.group("demo")
def demo() -> None:
    """The demo company (Northwind Homes): directory, mailboxes and mail on the devserver."""


def _mailbox_table(manifest: dict[str, Any]) -> list[str]:
    from mailops.demo.mail import FOLDERS

    width = max(len(m["address"]) for m in manifest["mailboxes"])
    lines = [f"{'mailbox':{width}}  " + "  ".join(f"{f:>7}" for f in FOLDERS) + "    total"]
    for m in manifest["mailboxes"]:
        lines.append(
            f"{m['address']:{width}}  "
            + "  ".join(f"{m['folders'].get(f, 0):>7}" for f in FOLDERS)
            + f"  {m['messages']:>7}"
        )
    return lines


@demo.command("seed")
@click.option(
    "--seed",
    default=2026,
    show_default=True,
    help="Random seed (same seed, same day: same company).",
)
@click.option(
    "--customers",
    default=200,
    show_default=True,
    type=click.IntRange(min=5),
    help="Number of customers.",
)
@click.option(
    "--messages",
    default=3000,
    show_default=True,
    type=click.IntRange(min=50),
    help="Approximate number of messages.",
)
@click.option("--dir", "root", help="Devserver directory (default $MAILOPS_DEVSERVER_DIR).")
@click.option("--csv-dir", help="Where to write the CRM CSV exports (default DIR/demo-crm).")
@click.option("--force", is_flag=True, help="Empty the demo mailboxes and seed again.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_ctx
def seed(
    ctx: Context,
    seed: int,
    customers: int,
    messages: int,
    root: str | None,
    csv_dir: str | None,
    force: bool,
    no_progress: bool,
) -> None:
    """Create the demo accounts on the running devserver, append the demo mail (IMAP
    MULTIAPPEND), write the CRM exports as CSV and import them into the store.

    Safe to re-run: when the same seed is already on the server (manifest and Dovecot's
    counts agree) the mail is left alone; the directory import is idempotent."""
    from mailops.demo import seed_demo

    report = seed_demo(
        ctx.store(),
        root or ctx.settings.devserver_dir,
        seed=seed,
        customers=customers,
        messages=messages,
        force=force,
        csv_dir=csv_dir,
        progress=not no_progress,
    )
    m = report.manifest
    if report.skipped:
        click.echo(
            f"already seeded: {report.messages} messages in {len(m['mailboxes'])} mailboxes"
            f" (seed {m['seed']}, {m['seeded_at']}); --force reseeds"
        )
    else:
        click.echo(
            f"seeded {report.messages} messages into {len(m['mailboxes'])} demo mailboxes"
            f" (seed {m['seed']})"
        )
    for line in _mailbox_table(m):
        click.echo("  " + line)
    kinds = ", ".join(f"{k} {n}" for k, n in m["counts"]["kinds"].items())
    click.echo(f"  by kind: {kinds}")
    click.echo(f"directory import (CSV exports in {m['csv_dir']}):")
    for name, result in report.imports:
        click.echo(f"  {name}: {result.summary()}")
    counts = ", ".join(f"{k} {v}" for k, v in report.directory_counts.items())
    click.echo(f"directory in the store {ctx.settings.db}: {counts}")
    click.echo(f"manifest: {report.manifest_path}  ({report.seconds:.1f} s)")


@demo.command("status")
@click.option("--dir", "root", help="Devserver directory (default $MAILOPS_DEVSERVER_DIR).")
@pass_ctx
def status(ctx: Context, root: str | None) -> None:
    """What the demo seed put on the devserver (from its manifest)."""
    from mailops.demo import load_manifest
    from mailops.errors import MailopsError

    folder = root or ctx.settings.devserver_dir
    m = load_manifest(folder)
    if m is None:
        raise MailopsError(
            f"no demo manifest in {folder}",
            code="demo_not_seeded",
            guidance="run `mailops demo seed`",
        )
    click.echo(
        f"{m['company']}: seed {m['seed']}, seeded {m['seeded_at']}, {m['counts']['messages']} messages,"
        f" {m['counts']['customers']} customers, {m['counts']['deals']} deals"
    )
    for line in _mailbox_table(m):
        click.echo("  " + line)


def register(cli: click.Group) -> None:
    cli.add_command(demo)
