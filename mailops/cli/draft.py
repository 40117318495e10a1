"""``mailops draft``: drafts kept in the store (never on the server, S6), sent later."""

from __future__ import annotations

from pathlib import Path

import click

from mailops.cli import Context, pass_ctx
from mailops.cli.output import Output, emit, output_options
from mailops.cli.send import bodies, content_options, report


@click.group("draft")
def draft() -> None:
    """Drafts: create, list, edit, send, delete."""


@draft.command("create")
@click.option(
    "--user", envvar="MAILOPS_USER", required=True, help="Your CRM user id ($MAILOPS_USER)."
)
@click.option("--from", "mailbox", help="Your mailbox (address or id).")
@content_options
@pass_ctx
def create(
    ctx: Context,
    user: str,
    mailbox: str | None,
    customer: str | None,
    cc_customers: tuple[str, ...],
    bcc_customers: tuple[str, ...],
    subject: str | None,
    body: str | None,
    body_file: Path | None,
    html_file: Path | None,
    template: str | None,
    deal: str | None,
    attachments: tuple[Path, ...],
    reply_to: str | None,
    reply_all: bool,
) -> None:
    """Save a draft (it may be incomplete; E1 is checked when it is sent)."""
    from mailops.send import drafts

    text, html = bodies(body, body_file, html_file)
    d = drafts.create(
        ctx.store(),
        user,
        mailbox=mailbox,
        customer_id=customer,
        subject=subject,
        body_text=text,
        body_html=html,
        deal_id=deal,
        cc_customers=cc_customers,
        bcc_customers=bcc_customers,
        template=template,
        reply_to=reply_to,
        reply_all=reply_all,
        attachments=list(attachments),
    )
    click.echo(f"draft {d.id} saved")


@draft.command("list")
@click.option("--user", envvar="MAILOPS_USER", help="Only this user's drafts.")
@click.option("--all", "include_sent", is_flag=True, help="Include drafts already sent.")
@output_options
@pass_ctx
def list_(ctx: Context, user: str | None, include_sent: bool, out: Output) -> None:
    """List drafts, newest first (P1: a user sees his own)."""
    from mailops.permissions import scope_for
    from mailops.store.outbox import drafts_frame

    store = ctx.store()
    df = drafts_frame(store, user, viewer=scope_for(store, user), include_sent=include_sent)
    emit(df, out, empty="no drafts")


@draft.command("show")
@click.argument("draft_id", type=int)
@click.option(
    "--as", "viewer_ref", envvar="MAILOPS_USER", help="Who reads it (P1: the draft's author)."
)
@pass_ctx
def show(ctx: Context, draft_id: int, viewer_ref: str | None) -> None:
    """Show one draft."""
    from mailops.permissions import scope_for
    from mailops.store.outbox import draft_for

    store = ctx.store()
    d = draft_for(store, draft_id, viewer=scope_for(store, viewer_ref))
    for key, value in vars(d).items():
        if value not in (None, [], ""):
            click.echo(f"{key:20} {value}")


@draft.command("edit")
@click.argument("draft_id", type=int)
@click.option("--from", "mailbox", help="Your mailbox (address or id).")
@content_options
@pass_ctx
def edit(
    ctx: Context,
    draft_id: int,
    mailbox: str | None,
    customer: str | None,
    cc_customers: tuple[str, ...],
    bcc_customers: tuple[str, ...],
    subject: str | None,
    body: str | None,
    body_file: Path | None,
    html_file: Path | None,
    template: str | None,
    deal: str | None,
    attachments: tuple[Path, ...],
    reply_to: str | None,
    reply_all: bool,
) -> None:
    """Change the given fields of a draft (others stay)."""
    from mailops.send import drafts

    text, html = bodies(body, body_file, html_file)
    d = drafts.edit(
        ctx.store(),
        draft_id,
        mailbox=mailbox,
        customer_id=customer,
        subject=subject,
        body_text=text,
        body_html=html,
        deal_id=deal,
        template=template,
        reply_to=reply_to,
        cc_customers=cc_customers or None,
        bcc_customers=bcc_customers or None,
        attachments=list(attachments) or None,
        reply_all=reply_all or None,
    )
    click.echo(f"draft {d.id} updated")


@draft.command("send")
@click.argument("draft_id", type=int)
@click.option("--user", envvar="MAILOPS_USER", help="Your CRM user id (must own the draft).")
@pass_ctx
def send(ctx: Context, draft_id: int, user: str | None) -> None:
    """Send a draft through the outbox (E1 checks apply now)."""
    from mailops.send.drafts import send_draft

    report(send_draft(ctx.store(), ctx.settings, draft_id, user_id=user))


@draft.command("delete")
@click.argument("draft_id", type=int)
@pass_ctx
def delete(ctx: Context, draft_id: int) -> None:
    """Delete a draft."""
    from mailops.store.outbox import delete_draft

    delete_draft(ctx.store(), draft_id)
    click.echo(f"draft {draft_id} deleted")


def register(cli: click.Group) -> None:
    cli.add_command(draft)
