"""``mailops send``: an email to a customer from the user's own mailbox (E1-E3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mailops.cli import Context, pass_ctx
from mailops.errors import MailopsError, SendRefused

F = Callable[..., Any]


def content_options(f: F) -> F:
    """Options shared by ``send`` and ``draft create|edit``."""
    for opt in reversed(
        [
            click.option(
                "--customer", "customer", help="CRM customer id (To: their primary address)."
            ),
            click.option(
                "--cc-customer",
                "cc_customers",
                multiple=True,
                help="Co-customer on Cc (repeatable).",
            ),
            click.option(
                "--bcc-customer",
                "bcc_customers",
                multiple=True,
                help="Customer on Bcc (repeatable).",
            ),
            click.option("--subject", help="Subject line."),
            click.option("--body", help="Plain-text body."),
            click.option(
                "--body-file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="Plain-text body from a file.",
            ),
            click.option(
                "--html-file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="HTML body (sanitized; a text alternative is added).",
            ),
            click.option("--template", help="Template name (offer) to render."),
            click.option("--deal", help="Deal id for the template's deal/unit fields."),
            click.option(
                "--attach",
                "attachments",
                multiple=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="File to attach (repeatable).",
            ),
            click.option(
                "--reply-to", "reply_to", help="Stored message id / Message-ID to reply to."
            ),
            click.option(
                "--reply-all",
                is_flag=True,
                help="Reply to every customer on the original (and you).",
            ),
        ]
    ):
        f = opt(f)
    return f


def bodies(
    body: str | None, body_file: Path | None, html_file: Path | None
) -> tuple[str | None, str | None]:
    if body is not None and body_file is not None:
        raise click.UsageError("give --body or --body-file, not both")
    text = body if body is not None else (body_file.read_text() if body_file else None)
    html = html_file.read_text() if html_file else None
    return text, html


def print_preview(view: dict[str, Any]) -> None:
    for key in ("from", "to", "cc", "bcc", "subject", "message_id", "in_reply_to"):
        if view.get(key):
            click.echo(f"{key.replace('_', '-').title():12} {view[key]}")
    for name, ctype, size in view["attachments"]:
        click.echo(f"{'Attachment':12} {name} ({ctype}, {size:,} bytes)")
    click.echo(f"{'Size':12} {view['size']:,} bytes")
    click.echo("")
    click.echo(view["text"].rstrip("\n"))


def report(item: Any) -> None:
    """One line for a delivered entry; a failed one becomes a one-line error."""
    if item.state == "delivery_unknown":  # E3: never shown as sent; the user decides
        err = MailopsError(
            f"outbox {item.id} delivery_unknown: {item.last_error or 'no answer after the data'}",
            code="delivery_unknown",
        )
        err.exit_code = 12
        raise err
    if item.state != "sent":
        raise MailopsError(
            f"outbox {item.id} {item.state}: {item.last_error or 'not sent'}",
            code=item.error_code or "send_failed",
            guidance=f"mailops outbox retry {item.id}",
        )
    note = f" [{item.error_code}]" if item.error_code else ""
    click.echo(
        f"sent outbox {item.id} {item.message_id_header} to {', '.join(item.recipients)}"
        f" (Sent copy: {item.sent_copy}){note}"
    )


@click.command("send")
@click.option("--from", "mailbox", required=True, help="Your mailbox (address or id).")
@click.option(
    "--user", envvar="MAILOPS_USER", required=True, help="Your CRM user id ($MAILOPS_USER)."
)
@content_options
@click.option(
    "--inline-image",
    "inline_images",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Image the HTML shows as <img src="cid:FILENAME"> (a signature logo; repeatable).',
)
@click.option("--preview", is_flag=True, help="Show the email; send nothing.")
@pass_ctx
def send(
    ctx: Context,
    mailbox: str,
    user: str,
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
    inline_images: tuple[Path, ...],
    preview: bool,
) -> None:
    """Send an email to a customer from your own mailbox (checks E1 first; never sends twice)."""
    from mailops.send import EmailRequest, deliver, prepare, queue
    from mailops.send import preview as make_preview

    if customer is None and reply_to is None:
        raise SendRefused(
            "name the customer (--customer) or the message to reply to (--reply-to)",
            code="unknown_customer",
        )
    text, html = bodies(body, body_file, html_file)
    request = EmailRequest(
        user_id=user,
        mailbox=mailbox,
        customer_id=customer,
        subject=subject,
        body_text=text,
        body_html=html,
        template=template,
        deal_id=deal,
        cc_customers=cc_customers,
        bcc_customers=bcc_customers,
        attachments=list(attachments),
        inline_images=list(inline_images),
        reply_to=reply_to,
        reply_all=reply_all,
    )
    store = ctx.store()
    prepared = prepare(store, ctx.settings, request)
    if preview:
        print_preview(make_preview(prepared))
        return
    item = queue(store, prepared)
    report(deliver(store, ctx.settings, item.id))


def register(cli: click.Group) -> None:
    cli.add_command(send)
