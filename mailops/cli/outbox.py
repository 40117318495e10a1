"""``mailops outbox``: what was sent, what failed and why; retry without sending twice (E3)."""

from __future__ import annotations

import click
import pandas as pd

from mailops.cli import Context, pass_ctx
from mailops.cli.output import TABLE, Output, emit, output_options, render_table


@click.group("outbox", invoke_without_command=True)
@click.pass_context
def outbox(cctx: click.Context) -> None:
    """The outbox: queued -> sending -> sent | failed | delivery_unknown (list is the default)."""
    if cctx.invoked_subcommand is None:
        cctx.invoke(list_)


@outbox.command("list")
@click.option(
    "--state",
    type=click.Choice(["queued", "sending", "sent", "failed", "delivery_unknown"]),
    help="Only this state.",
)
@click.option("--user", help="Only this user's emails.")
@output_options
@click.option(
    "--as",
    "viewer_ref",
    envvar="MAILOPS_USER",
    default="system",
    show_default=True,
    help="Who reads it (P1): only the entries he may see.",
)
@pass_ctx
def list_(
    ctx: Context,
    state: str | None = None,
    user: str | None = None,
    out: Output = TABLE,
    viewer_ref: str = "system",
) -> None:
    """List outbox entries with their state, phase and last error."""
    from mailops.permissions import scope_for
    from mailops.store.outbox import outbox_frame

    store = ctx.store()
    df = outbox_frame(store, user_id=user, state=state, viewer=scope_for(store, viewer_ref))
    emit(df, out, empty="outbox is empty", table=_table, what="outbox entries")


def _table(df: pd.DataFrame) -> str:
    df = df.copy()
    df["recipients"] = df["recipients"].map(lambda r: ", ".join(r) if r is not None else "")
    df["sent_at"] = df["sent_at"].map(lambda t: "" if t is None or str(t) == "NaT" else str(t)[:19])
    return render_table(df.drop(columns=["message_id_header", "created_at"]).fillna(""))


@outbox.command("retry")
@click.argument("outbox_id", type=int, required=False)
@click.option(
    "--force", is_flag=True, help="Send again even if it may have gone out (one ID only)."
)
@pass_ctx
def retry(ctx: Context, outbox_id: int | None, force: bool) -> None:
    """Deliver queued / interrupted / failed entries. An interrupted one is first looked for
    in the Sent folder by its Message-ID; it is never sent twice unless --force."""
    from tqdm import tqdm

    from mailops.send.outbox import deliver
    from mailops.store.outbox import items

    if force and outbox_id is None:
        raise click.UsageError("--force needs one outbox ID")
    store = ctx.store()
    ids = (
        [outbox_id]
        if outbox_id is not None
        else [i.id for i in items(store, ("queued", "sending", "failed"))]
    )
    if not ids:
        click.echo("nothing to retry")
        return
    failed = 0
    for oid in tqdm(ids, desc="outbox", unit="email", disable=len(ids) < 2):
        item = deliver(store, ctx.settings, oid, force=force)
        note = f" [{item.error_code}]" if item.error_code else ""
        _show(item, note)
        failed += item.state != "sent"
    if failed:
        raise click.exceptions.Exit(1)


def _show(item, note: str = "") -> None:  # noqa: ANN001
    click.echo(
        f"outbox {item.id}: {item.state}{note}"
        + (f" - {item.last_error}" if item.state in ("failed", "delivery_unknown") else "")
    )


@outbox.command("resend")
@click.argument("outbox_id", type=int)
@pass_ctx
def resend_cmd(ctx: Context, outbox_id: int) -> None:
    """E3: a delivery_unknown email did not arrive (you checked): send it again."""
    from mailops.send.outbox import resend

    item = resend(ctx.store(), ctx.settings, outbox_id)
    _show(item, f" [{item.error_code}]" if item.error_code else "")
    if item.state != "sent":
        raise click.exceptions.Exit(1)


@outbox.command("mark-sent")
@click.argument("outbox_id", type=int)
@pass_ctx
def mark_sent_cmd(ctx: Context, outbox_id: int) -> None:
    """E3: a delivery_unknown email did arrive: file its Sent copy and record the activity."""
    from mailops.send.outbox import mark_sent

    item = mark_sent(ctx.store(), ctx.settings, outbox_id)
    _show(item, f" [{item.error_code}]" if item.error_code else "")


def register(cli: click.Group) -> None:
    cli.add_command(outbox)
