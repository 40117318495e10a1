"""``mailops never-log``, ``mailops unlink`` / ``relink`` and ``mailops mailbox folders``: S9."""

from __future__ import annotations

import click

from mailops.cli import Context, pass_ctx
from mailops.cli.output import Output, emit, output_options

_AS = click.option("--as", "actor", envvar="MAILOPS_USER", required=True, help="Who does it (P1).")


def _target(address: str | None, domain: str | None, customer: str | None) -> tuple[str, str]:
    given = [
        (k, v) for k, v in (("address", address), ("domain", domain), ("customer", customer)) if v
    ]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --address, --domain, --customer")
    return given[0]


def _entry_options(f):  # type: ignore[no-untyped-def]
    for opt in reversed(
        [
            click.option("--address", help="Never log mail with this address on From/To/Cc."),
            click.option(
                "--domain", help="... with any address of this domain (and its subdomains)."
            ),
            click.option("--customer", help="... of this customer (a CRM customer id)."),
            click.option("--company", is_flag=True, help="For everyone (admins only)."),
            click.option("--user", "for_user", help="For this user (admins; default: yourself)."),
            _AS,
        ]
    ):
        f = opt(f)
    return f


@click.group("never-log")
def never_log() -> None:
    """S9: addresses, domains and customers whose mail is never logged (company-wide or
    per user); applied on the headers, before any body is fetched."""


@never_log.command("add")
@_entry_options
@pass_ctx
def add(ctx: Context, address, domain, customer, company, for_user, actor) -> None:  # type: ignore[no-untyped-def]
    """Add a never-log entry (from the next sync on; stored mail stays until unlinked or erased)."""
    from mailops.selective import add_never_log

    kind, value = _target(address, domain, customer)
    new = add_never_log(ctx.store(), actor, kind, value, company=company, user=for_user)
    scope = "company-wide" if company else f"for {for_user or actor}"
    click.echo(f"never-log {kind} {value} {scope}" + ("" if new else " (already listed)"))


@never_log.command("remove")
@_entry_options
@pass_ctx
def remove(ctx: Context, address, domain, customer, company, for_user, actor) -> None:  # type: ignore[no-untyped-def]
    """Remove a never-log entry."""
    from mailops.selective import remove_never_log

    kind, value = _target(address, domain, customer)
    gone = remove_never_log(ctx.store(), actor, kind, value, company=company, user=for_user)
    click.echo(f"removed never-log {kind} {value}" if gone else f"no such entry: {kind} {value}")


@never_log.command("list")
@click.option("--user", "for_user", help="The company's entries and this user's (default: all).")
@output_options
@pass_ctx
def list_(ctx: Context, for_user: str | None, out: Output) -> None:
    """The never-log entries: kind, value, scope (company or user), who added them, when."""
    from mailops.store.sync import never_log_frame

    emit(never_log_frame(ctx.store(), for_user), out, empty="no never-log entries", what="entries")


@click.command("unlink")
@click.argument("message")
@click.option("--customer", required=True, help="The customer to unlink it from.")
@click.option("--reason", help="Why (kept with the record).")
@_AS
@pass_ctx
def unlink_cmd(ctx: Context, message: str, customer: str, reason: str | None, actor: str) -> None:
    """S9: hide stored MESSAGE (its id or Message-ID) from CUSTOMER's activities; recorded,
    and a later sync does not link it again. An admin can undo it with `mailops relink`."""
    from mailops.selective import unlink

    done = unlink(ctx.store(), actor, message, customer, reason=reason)
    click.echo(f"unlinked {message} from {customer}" if done else "already unlinked")


@click.command("relink")
@click.argument("message")
@click.option("--customer", required=True, help="The customer to link it back to.")
@click.option("--reason", help="Why (kept with the record).")
@_AS
@pass_ctx
def relink_cmd(ctx: Context, message: str, customer: str, reason: str | None, actor: str) -> None:
    """S9: an admin links an unlinked message back to the customer (recorded)."""
    from mailops.selective import relink

    done = relink(ctx.store(), actor, message, customer, reason=reason)
    click.echo(f"linked {message} back to {customer}" if done else "it was not unlinked")


@click.command("folders")
@click.argument("ref")
@click.option("--only", "only", multiple=True, help="Sync only this folder (repeatable).")
@click.option("--default", "reset", is_flag=True, help="Back to the default set of folders.")
@click.option("--server", is_flag=True, help="List the server's folders and which are synced.")
@click.option("--as", "actor", envvar="MAILOPS_USER", help="You: the mailbox's owner.")
@output_options
@pass_ctx
def folders_cmd(
    ctx: Context,
    ref: str,
    only: tuple[str, ...],
    reset: bool,
    server: bool,
    actor: str | None,
    out: Output,
) -> None:
    """S9: show or choose which folders of mailbox REF are synced (the owner chooses);
    --server lists every folder on the server, synced or why not."""
    import pandas as pd

    from mailops.selective import server_folders, set_folders
    from mailops.store import mailboxes

    store = ctx.store()
    if only or reset:
        if not actor:
            raise click.UsageError("--as USER (the mailbox's owner) is needed to choose")
        mb = set_folders(store, actor, ref, list(only) if only else None)
    else:
        mb = mailboxes.find(store, ref, include_disconnected=True)
    if server:
        rows = server_folders(mb, ctx.settings)
    else:
        rows = [
            {"folder": f, "special_use": "", "synced": True, "why": "chosen by the owner"}
            for f in mb.folders or []
        ] or [{"folder": "(default)", "special_use": "", "synced": True, "why": "default folders"}]
    df = pd.DataFrame(rows, columns=["folder", "special_use", "synced", "why"])

    def table(frame: pd.DataFrame) -> str:
        return "\n".join(
            f"{r.folder:<32} {r.special_use:<9} "
            + ("synced" if r.synced else f"not synced ({r.why})")
            for r in frame.itertuples()
        )

    if out.is_table:
        click.echo(f"{mb.address}:")
    emit(df, out, table=table, what="folders")


def register(cli: click.Group) -> None:
    cli.add_command(never_log)
    cli.add_command(unlink_cmd)
    cli.add_command(relink_cmd)
    mailbox = cli.commands.get("mailbox")
    if isinstance(mailbox, click.Group):
        mailbox.add_command(folders_cmd)
