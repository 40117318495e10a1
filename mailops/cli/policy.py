"""``mailops policy`` (company settings an admin decides) and ``mailops mailbox visibility``
(what others see of one mailbox, the owner's choice): P2."""

from __future__ import annotations

import click

from mailops.cli import Context, pass_ctx


@click.group("policy")
def policy_group() -> None:
    """Company policy: the default visibility of mailboxes (P2)."""


@policy_group.command("show")
@pass_ctx
def show(ctx: Context) -> None:
    """The company policy values and their history of changes."""
    from mailops.store import policy

    store = ctx.store()
    click.echo(f"visibility {policy.visibility_default(store)}")
    hist = policy.history(store)
    for r in hist.itertuples(index=False):
        click.echo(
            f"  {r.changed_at:%Y-%m-%d %H:%M} {r.scope} {r.key}: {r.old_value or '-'} ->"
            f" {r.new_value or 'default'} by {r.by_user_id}"
        )


@policy_group.command("set")
@click.argument("key", type=click.Choice(["visibility"]))
@click.argument("value")
@click.option("--as", "actor", required=True, envvar="MAILOPS_USER", help="An admin.")
@pass_ctx
def set_(ctx: Context, key: str, value: str, actor: str) -> None:
    """Set a company policy value (admins only; recorded). visibility: everything | subject
    | metadata, for every mailbox whose owner did not choose."""
    from mailops.visibility import set_company_default

    old = set_company_default(ctx.store(), value, actor=actor)
    click.echo(f"visibility: {old or 'everything'} -> {value.strip().lower()}")


@click.command("visibility")
@click.argument("ref")
@click.argument("level", required=False)
@click.option("--as", "actor", envvar="MAILOPS_USER", help="You: the mailbox's owner.")
@pass_ctx
def visibility_cmd(ctx: Context, ref: str, level: str | None, actor: str | None) -> None:
    """Show or choose what others see of mailbox REF: everything, subject (headers and
    subject, no body or attachments), metadata (who, when, direction) or default (the
    company policy). Only the owner chooses (P2)."""
    from mailops.visibility import mailbox_level, set_mailbox_level

    store = ctx.store()
    if level is None:
        value, is_default = mailbox_level(store, ref)
        click.echo(f"{ref}: {value}" + (" (company default)" if is_default else ""))
        return
    if not actor:
        raise click.UsageError("--as USER (the mailbox's owner) is needed to choose")
    click.echo(f"{ref}: {set_mailbox_level(store, ref, level, actor=actor)}")


def register(cli: click.Group) -> None:
    cli.add_command(policy_group)
    mailbox = cli.commands.get("mailbox")
    if isinstance(mailbox, click.Group):
        mailbox.add_command(visibility_cmd)
