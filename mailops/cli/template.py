"""``mailops template``: offer templates with merge fields (customer, deal, unit, sales)."""

from __future__ import annotations

from pathlib import Path

import click

from mailops.cli import Context, pass_ctx
from mailops.cli.output import Output, emit, output_options


@click.group("template")
def template() -> None:
    """Offer templates: add, list, show, preview, delete."""


@template.command("add")
@click.argument("name")
@click.option("--subject", required=True, help="Subject (merge fields allowed).")
@click.option("--body", help="Plain-text body.")
@click.option(
    "--body-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Plain-text body file.",
)
@click.option(
    "--html-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="HTML body file.",
)
@click.option("--user", envvar="MAILOPS_USER", help="Author.")
@pass_ctx
def add(
    ctx: Context,
    name: str,
    subject: str,
    body: str | None,
    body_file: Path | None,
    html_file: Path | None,
    user: str | None,
) -> None:
    """Add or replace a template. Fields: {{ customer.name }}, {{ deal.unit }},
    {{ deal.price | money(deal.currency) }}, {{ unit.project }}, {{ sales.name }}, {{ today | date }}..."""
    from mailops.errors import SendRefused
    from mailops.send.templates import check_syntax
    from mailops.store.outbox import save_template

    text = body if body is not None else (body_file.read_text() if body_file else None)
    html = html_file.read_text() if html_file else None
    if not text and not html:
        raise SendRefused("a template needs --body, --body-file or --html-file", code="body_empty")
    check_syntax(name, subject, text, html)
    tpl = save_template(ctx.store(), name, subject, body_text=text, body_html=html, created_by=user)
    click.echo(f"template {tpl.name} saved (id {tpl.id})")


@template.command("list")
@output_options
@pass_ctx
def list_(ctx: Context, out: Output) -> None:
    """List templates."""
    from mailops.store.outbox import templates_frame

    emit(templates_frame(ctx.store()), out, empty="no templates", what="templates")


@template.command("show")
@click.argument("name")
@pass_ctx
def show(ctx: Context, name: str) -> None:
    """Show a template's source."""
    from mailops.store.outbox import get_template

    tpl = get_template(ctx.store(), name)
    click.echo(f"Subject: {tpl.subject}")
    if tpl.body_text:
        click.echo(f"\n{tpl.body_text.rstrip()}")
    if tpl.body_html:
        click.echo(f"\n[html]\n{tpl.body_html.rstrip()}")


@template.command("preview")
@click.argument("name")
@click.option("--customer", required=True, help="CRM customer id.")
@click.option("--deal", help="Deal id (default: the customer's only deal).")
@click.option("--user", envvar="MAILOPS_USER", required=True, help="Sender (CRM user id).")
@pass_ctx
def preview(ctx: Context, name: str, customer: str, deal: str | None, user: str) -> None:
    """Render a template for a customer (missing fields are listed, never left blank)."""
    from mailops.send.templates import render_template
    from mailops.store.outbox import get_template

    store = ctx.store()
    r = render_template(
        store,
        get_template(store, name),
        customer_id=customer,
        user_id=user,
        deal_id=deal,
        settings=ctx.settings,
    )
    click.echo(f"Subject: {r.subject}\n")
    if r.body_text:
        click.echo(r.body_text.rstrip())
    elif r.body_html:
        from mailops.send.compose import html_to_text

        click.echo(html_to_text(r.body_html).rstrip())


@template.command("delete")
@click.argument("name")
@pass_ctx
def delete(ctx: Context, name: str) -> None:
    """Delete a template."""
    from mailops.store.outbox import delete_template

    delete_template(ctx.store(), name)
    click.echo(f"template {name} deleted")


def register(cli: click.Group) -> None:
    cli.add_command(template)
