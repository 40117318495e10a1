"""``mailops dry-run`` (X1: which examined emails a rule change would decide otherwise)
and ``mailops explain`` (X1: why one email is or is not in the CRM)."""

from __future__ import annotations

import click

from mailops.cli import Context, pass_ctx
from mailops.cli.output import emit, output_options


def _viewer_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "--as",
        "viewer_ref",
        envvar="MAILOPS_USER",
        default="system",
        show_default=True,
        help="Who asks (P1): only the mailboxes and subjects he may see.",
    )(f)


@click.command("dry-run")
@click.option(
    "--never-log",
    "add",
    multiple=True,
    metavar="KIND:VALUE",
    help="Add a company-wide never-log entry (address:, domain:, customer:).",
)
@click.option(
    "--user-never-log",
    "add_user",
    multiple=True,
    metavar="USER=KIND:VALUE",
    help="Add a never-log entry for one user.",
)
@click.option(
    "--drop-never-log",
    "drop",
    multiple=True,
    metavar="KIND:VALUE",
    help="Remove a never-log entry (company-wide and every user's).",
)
@click.option("--backfill-days", type=int, help="Another backfill window (S2), every mailbox.")
@click.option(
    "--folders",
    "folders",
    multiple=True,
    metavar="MAILBOX=F1,F2",
    help="Another folder choice for a mailbox (`MAILBOX=default` for the default set).",
)
@click.option(
    "--internal-policy",
    type=click.Choice(["strict", "off"]),
    help="Another internal-mail policy (S5).",
)
@click.option(
    "--limit",
    type=int,
    default=200,
    show_default=True,
    help="Messages listed (the counts cover all).",
)
@output_options
@_viewer_option
@pass_ctx
def dry_run_cmd(
    ctx: Context,
    add,
    add_user,
    drop,
    backfill_days,
    folders,
    internal_policy,
    limit,
    out,
    viewer_ref,
) -> None:  # type: ignore[no-untyped-def]
    """X1: which emails the sync already examined would change decision under a proposed
    rule change -- from the ledger and the stored headers; nothing is written and no
    server is asked."""
    from mailops.dryrun import RuleChange, dry_run, parse_entry
    from mailops.permissions import scope_for
    from mailops.reports import open_reader
    from mailops.store import mailboxes

    change = RuleChange(backfill_days=backfill_days, internal_policy=internal_policy)
    change.add_never_log = [parse_entry(e) for e in add]
    for item in add_user:
        user, sep, entry = item.partition("=")
        if not sep:
            raise click.UsageError(f"--user-never-log wants USER=KIND:VALUE, not {item!r}")
        change.add_never_log.append(parse_entry(entry, user.strip()))
    change.drop_never_log = [parse_entry(e) for e in drop]
    store = open_reader(ctx.settings.db)
    for item in folders:
        ref, sep, names = item.partition("=")
        if not sep:
            raise click.UsageError(f"--folders wants MAILBOX=F1,F2, not {item!r}")
        mb = mailboxes.find(store, ref.strip(), include_disconnected=True)
        chosen = [n.strip() for n in names.split(",") if n.strip()]
        change.folders[mb.id] = None if chosen in ([], ["default"]) else chosen
    result = dry_run(store, ctx.settings, change, viewer=scope_for(store, viewer_ref))
    if not out.is_table:  # the messages whose decision would change, every one
        emit(result.changed, out, what="messages")
        return
    click.echo(f"proposed: {change.describe()}")
    click.echo(result.summary())
    for r in result.changed.head(limit).itertuples(index=False):
        when = (
            f"{r.msg_date:%Y-%m-%d}" if r.msg_date is not None and r.msg_date == r.msg_date else "?"
        )
        sure = "" if r.certain else " (From only)"
        click.echo(
            f"  {r.mailbox} {r.folder} uid {r.uid} {when} {r.from_addr or ''}"
            f" {r.subject or ''!r}: {r.now} -> {r.would}{sure}"
        )
    if len(result.changed) > limit:
        click.echo(f"  ... {len(result.changed) - limit} more (--json / --csv for all)")


@click.command("explain")
@click.option("--message-id", help="The email's Message-ID (with or without <>).")
@click.option("--address", help="An address on its From, To or Cc.")
@click.option("--date", "on", help="The day it is dated (YYYY-MM-DD), with --address or --subject.")
@click.option("--subject", help="Words of its subject (all must appear).")
@click.option("--server", is_flag=True, help="Also search every folder on the server, at any date.")
@output_options
@_viewer_option
@pass_ctx
def explain_cmd(ctx: Context, message_id, address, on, subject, server, out, viewer_ref) -> None:  # type: ignore[no-untyped-def]
    """X1: why an email is or is not in the CRM -- stored (where, for whom, since which
    run), skipped (rule, reason, run) or not examined (folder not synced, before the
    window, never-log, erased) -- one paragraph per email found."""
    from mailops.explain import explain, findings_frame
    from mailops.permissions import scope_for

    store = ctx.store()
    found = explain(
        store,
        ctx.settings,
        scope_for(store, viewer_ref),
        message_id=message_id,
        address=address,
        on=on,
        subject=subject,
        server=server,
    )
    emit(
        findings_frame(found),
        out,
        table=lambda df: "\n\n".join(df["paragraph"]),
        what="emails",
    )


def register(cli: click.Group) -> None:
    cli.add_command(dry_run_cmd)
    cli.add_command(explain_cmd)
