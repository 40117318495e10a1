"""``mailops notifications``: new inbound customer mail (N1) -- list, mark read, digest."""

from __future__ import annotations

import click
import pandas as pd

from mailops.cli import Context, pass_ctx
from mailops.cli.activities import as_option
from mailops.cli.output import Output, emit, output_options


@click.group("notifications")
def notifications() -> None:
    """Notifications of new customer email: list, mark read, digest email."""


@notifications.command("list")
@as_option
@click.option("--unread", is_flag=True, help="Only unread ones.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most N (0 = all).")
@output_options
@pass_ctx
def list_cmd(ctx: Context, viewer: str, unread: bool, limit: int, out: Output) -> None:
    """Your notifications (a manager: his team's), unread first, newest first."""
    from mailops.notifications import list_notifications

    df = list_notifications(ctx.store(), viewer, unread=unread, limit=limit or None)
    if out.is_table and not df.empty:
        df = pd.DataFrame(
            {
                "id": df["id"],
                "user": df["user_id"],
                "new": ["*" if u else "" for u in df["unread"]],
                "at": [f"{pd.Timestamp(x):%Y-%m-%d %H:%M}" for x in df["created_at"]],
                "why": df["reason"],
                "customer": df["customer"],
                "from": df["from_addr"],
                "subject": [str(s or "")[:50] for s in df["subject"]],
                "mailbox": df["mailbox"],
            }
        )
    emit(df, out, empty="(no notifications)")


@notifications.command("read")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "all_", is_flag=True, help="Every unread notification of yours.")
@as_option
@pass_ctx
def read_cmd(ctx: Context, ids: tuple[int, ...], all_: bool, viewer: str) -> None:
    """Mark notifications IDS (or --all) read."""
    from mailops.errors import MailopsError
    from mailops.notifications import mark_read

    if bool(ids) == all_:
        raise MailopsError("give notification ids or --all", code="usage")
    n = mark_read(ctx.store(), viewer, None if all_ else list(ids))
    click.echo(f"marked {n} notification(s) read")


@notifications.command("digest")
@click.option(
    "--user", envvar="MAILOPS_USER", required=True, help="Your CRM user id ($MAILOPS_USER)."
)
@click.option(
    "--from", "mailbox", help="Your mailbox to send it from (default: your first connected one)."
)
@click.option("--dry-run", is_flag=True, help="Print the digest; send nothing.")
@pass_ctx
def digest_cmd(ctx: Context, user: str, mailbox: str | None, dry_run: bool) -> None:
    """Email yourself, through your own mailbox, the unread notifications not yet in a digest."""
    from mailops.notifications import send_digest

    r = send_digest(ctx.store(), ctx.settings, user, mailbox=mailbox, dry_run=dry_run)
    if r.count == 0:
        click.echo("nothing new for a digest")
        return
    if dry_run:
        click.echo(r.text, nl=False)
        return
    click.echo(f"digest of {r.count} notification(s) to {r.to}: {r.state} (outbox {r.outbox_id})")
    if r.state != "sent":
        from mailops.errors import MailopsError

        raise MailopsError(
            f"the digest was not sent ({r.state})",
            code="digest_not_sent",
            guidance=f"mailops outbox retry {r.outbox_id}",
        )


def register(cli: click.Group) -> None:
    cli.add_command(notifications)
