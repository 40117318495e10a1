"""``mailops activities``, ``message show``, ``attachment save``: the customer's timeline (A1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pandas as pd

from mailops.cli import Context, pass_ctx
from mailops.cli.output import Output, emit, output_options


def as_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--as",
        "viewer",
        envvar="MAILOPS_USER",
        default="system",
        show_default=True,
        help="Who reads it (user id or e-mail, $MAILOPS_USER); rows follow that user's role (P1).",
    )(f)


def _short(v: Any, n: int) -> str:
    s = "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)
    return s if len(s) <= n else s[: n - 1] + "…"


@click.command("activities")
@click.argument("customer")
@as_option
@click.option("--limit", type=int, default=50, show_default=True, help="Newest N (0 = all).")
@click.option("--no-sync", is_flag=True, help="Show what is stored; no on-demand sync first.")
@click.option(
    "--max-age",
    type=float,
    default=300.0,
    show_default=True,
    help="Sync the mailboxes behind the timeline first when their last sync is older (s).",
)
@click.option(
    "--sync-timeout",
    type=float,
    default=8.0,
    show_default=True,
    help="Wait at most this long for that sync, then show what is stored (s).",
)
@output_options
@pass_ctx
def activities(
    ctx: Context,
    customer: str,
    viewer: str,
    limit: int,
    no_sync: bool,
    max_age: float,
    sync_timeout: float,
    out: Output,
) -> None:
    """CUSTOMER's emails (id, address or name), both ways, newest first: deal, mailbox,
    direction, subject, a short preview and the number of attachments."""
    from mailops.timeline import open_timeline

    store = ctx.store()
    t = open_timeline(
        store,
        ctx.settings,
        viewer,
        customer,
        sync=not no_sync,
        max_age_s=max_age,
        bound_s=sync_timeout,
        limit=limit or None,
    )
    try:
        note = t.freshness.note()
        if note:
            click.echo(f"note: {note}", err=True)
        df = t.frame
        if out.is_table:
            click.echo(f"{t.customer_name or t.customer_id} ({t.customer_id}): {len(df)} email(s)")
            df = pd.DataFrame(
                {
                    "at": [
                        f"{pd.Timestamp(x):%Y-%m-%d %H:%M}" if pd.notna(x) else "" for x in df["at"]
                    ],
                    "dir": ["in" if d == "inbound" else "out" for d in df["direction"]],
                    "deal": [_short(x, 18) for x in df["deal"]],
                    "mailbox": [_short(x, 30) for x in df["mailbox"]],
                    "subject": [
                        ("* " if u else "") + _short(s, 40)
                        for s, u in zip(df["subject"], df["unread"], strict=True)
                    ],
                    "preview": [_short(x, 50) for x in df["preview"]],
                    "att": df["attachments"].astype(int),
                    "id": df["message_id"],
                }
            )
        emit(
            df.drop(columns=["deal_id", "mailbox_id"], errors="ignore"),
            out,
            empty="(no emails)",
        )
    finally:
        if t.pending is not None and t.pending.thread.is_alive():
            click.echo("finishing the sync in the background (Ctrl-C is safe)…", err=True)
        t.finish()


@click.group("message")
def message() -> None:
    """One stored message."""


@message.command("show")
@click.argument("message_id")
@as_option
@click.option(
    "--html",
    "show_html",
    is_flag=True,
    help="Print the sanitized HTML (remote content blocked) instead of text.",
)
@click.option("--json", "as_json", is_flag=True, help="Headers, text and attachments as JSON.")
@click.option("--keep-unread", is_flag=True, help="Leave your notification of it unread.")
@pass_ctx
def message_show(
    ctx: Context, message_id: str, viewer: str, show_html: bool, as_json: bool, keep_unread: bool
) -> None:
    """Headers, the text body (or the sanitized HTML as text) and the attachments of
    MESSAGE_ID (the id in `mailops activities`, or a Message-ID)."""
    import json

    from mailops.timeline import open_message

    v = open_message(ctx.store(), viewer, message_id, mark_read=not keep_unread)
    atts = [
        {
            "id": f"{v.id}#{int(r.part_index)}",
            "filename": r.filename,
            "content_type": r.content_type,
            "size": int(r.size or 0),
            "skipped": r.skipped_reason if isinstance(r.skipped_reason, str) else None,
        }
        for r in v.attachments.itertuples()
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": v.id,
                    "headers": v.headers,
                    "text": v.text,
                    "html": v.html,
                    "attachments": atts,
                    "warnings": v.warnings,
                },
                indent=2,
                default=str,
            )
        )
        return
    for k, val in v.headers.items():
        click.echo(f"{k}: {val}")
    click.echo("")
    if v.text is None:
        click.echo("(body hidden: this user sees metadata only, P1)")
    elif show_html and v.html:
        click.echo(v.html)
    else:
        click.echo(v.text.rstrip("\n") or "(empty body)")
    if atts:
        click.echo("")
        click.echo(f"attachments ({len(atts)}): save with `mailops attachment save ID [--to DIR]`")
        for a in atts:
            extra = f", not stored: {a['skipped']}" if a["skipped"] else ""
            click.echo(
                f"  {a['id']}  {a['filename'] or '(no name)'}  {a['content_type']}  {a['size']:,} bytes{extra}"
            )
    if v.warnings:
        click.echo("")
        click.echo("parse warnings: " + "; ".join(v.warnings))


@click.group("attachment")
def attachment() -> None:
    """Attachments of stored messages."""


@attachment.command("save")
@click.argument("attachment_id")
@as_option
@click.option(
    "--to",
    "to_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory to write into (created if missing).",
)
@pass_ctx
def attachment_save(ctx: Context, attachment_id: str, viewer: str, to_dir: Path) -> None:
    """Write attachment ATTACHMENT_ID (MESSAGE_ID#PART from `mailops message show`; a bare
    message id saves all of them) under a safe file name: never a path from the mail, never
    over an existing file."""
    from mailops.timeline import save_attachments

    for p in save_attachments(ctx.store(), viewer, attachment_id, to_dir):
        click.echo(str(p))


def register(cli: click.Group) -> None:
    cli.add_command(activities)
    cli.add_command(message)
    cli.add_command(attachment)
