"""``mailops stats``: the report queries of the notebooks, on the command line (R3, R4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from mailops.cli import Context, pass_ctx
from mailops.cli.output import emit, output_options, render_table


def _scope(ctx: Context, viewer: str, days: int, since: str, until: str, mailbox: str) -> Any:
    from mailops.reports import Scope, open_reader

    ctx.close()
    return Scope.open(
        viewer,
        days=days,
        since=since,
        until=until,
        mailbox=mailbox,
        store=open_reader(ctx.settings.db),
    )


def _common(days_default: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option(
                "--viewer",
                "--as",
                "viewer",
                envvar="MAILOPS_USER",
                default="system",
                show_default=True,
                help="Who reads it (user id or e-mail); rows follow that user's role (P1).",
            ),
            click.option(
                "--days",
                type=int,
                default=days_default,
                show_default=True,
                help="The last N days (0 = all).",
            ),
            click.option("--since", default="", help="Period start YYYY-MM-DD (overrides --days)."),
            click.option("--until", default="", help="Period end YYYY-MM-DD, inclusive."),
            click.option("--mailbox", default="all", show_default=True, help="Address, id or all."),
        ]
        for opt in reversed(options):
            f = opt(f)
        return output_options(f)

    return deco


@click.group("stats")
def stats() -> None:
    """Activity volumes, response times, unanswered customers, problematic mailboxes."""


@stats.command("activity")
@click.option(
    "--by",
    type=click.Choice(["sales_person", "customer", "deal", "week"]),
    default="sales_person",
    show_default=True,
)
@_common(90)
@pass_ctx
def activity_cmd(ctx: Context, by: str, **kw: Any) -> None:
    """Emails per sales person / customer / deal / week, inbound and outbound (R3)."""
    from mailops.reports import activity

    out = kw.pop("out")
    emit(activity.volumes(_scope(ctx, **kw), by), out)


@stats.command("response-times")
@click.option("--business-hours", is_flag=True, help="Count Mon-Fri working hours only.")
@click.option("--work-start", type=int, default=9, show_default=True)
@click.option("--work-end", type=int, default=17, show_default=True)
@click.option("--tz", default="UTC", show_default=True, help="Time zone of the business hours.")
@click.option("--each", is_flag=True, help="One row per response instead of per sales person.")
@_common(90)
@pass_ctx
def response_times_cmd(
    ctx: Context,
    business_hours: bool,
    work_start: int,
    work_end: int,
    tz: str,
    each: bool,
    **kw: Any,
) -> None:
    """First-response and average response time per sales person (R3)."""
    from mailops.reports import activity

    out = kw.pop("out")
    rows = activity.response_times(
        _scope(ctx, **kw),
        business_hours=business_hours,
        day_start=work_start,
        day_end=work_end,
        tz=tz,
    )
    emit(rows if each else activity.response_summary(rows), out)


@stats.command("unanswered")
@click.option(
    "--waiting-days", type=float, default=3.0, show_default=True, help="Waiting longer than this."
)
@_common(0)
@pass_ctx
def unanswered_cmd(ctx: Context, waiting_days: float, **kw: Any) -> None:
    """Customers waiting for our reply for more than --waiting-days days (R3)."""
    from mailops.reports import activity

    out = kw.pop("out")
    emit(
        activity.unanswered(_scope(ctx, **kw), days=waiting_days),
        out,
        empty=f"no customer waiting longer than {waiting_days:g} days",
    )


@stats.command("problematic")
@click.option("--history", is_flag=True, help="The state changes instead of the current list.")
@_common(90)
@pass_ctx
def problematic_cmd(ctx: Context, history: bool, **kw: Any) -> None:
    """Problematic mailboxes: since when, why, last good sync, what IT should do (R4)."""
    from mailops.reports import accounts

    out = kw.pop("out")
    scope = _scope(ctx, **kw)
    if history:
        emit(accounts.history(scope), out)
        return
    cols = ["mailbox", "owner", "code", "since", "last_good_sync", "not_synced_from", "it_guidance"]
    emit(
        accounts.problematic(scope),
        out,
        empty="no problematic mailboxes",
        table=lambda df: render_table(df[cols]),
    )


def register(cli: click.Group) -> None:
    cli.add_command(stats)
