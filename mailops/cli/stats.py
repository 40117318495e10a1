"""``mailops stats``: the report queries of the notebooks, on the command line (R3, R4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import pandas as pd

from mailops.cli import Context, pass_ctx
from mailops.exports import to_csv


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


def _emit(df: pd.DataFrame, as_csv: bool, as_json: bool, empty: str = "(nothing)") -> None:
    if as_csv:
        click.echo(to_csv(df), nl=False)  # cells a spreadsheet would run are neutralized
    elif as_json:
        click.echo(df.to_json(orient="records", date_format="iso", indent=2))
    elif df.empty:
        click.echo(empty)
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            click.echo(df.to_string(index=False))


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
            click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout."),
            click.option("--json", "as_json", is_flag=True, help="JSON records on stdout."),
        ]
        for opt in reversed(options):
            f = opt(f)
        return f

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

    as_csv, as_json = kw.pop("as_csv"), kw.pop("as_json")
    _emit(activity.volumes(_scope(ctx, **kw), by), as_csv, as_json)


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

    as_csv, as_json = kw.pop("as_csv"), kw.pop("as_json")
    rows = activity.response_times(
        _scope(ctx, **kw),
        business_hours=business_hours,
        day_start=work_start,
        day_end=work_end,
        tz=tz,
    )
    _emit(rows if each else activity.response_summary(rows), as_csv, as_json)


@stats.command("unanswered")
@click.option(
    "--waiting-days", type=float, default=3.0, show_default=True, help="Waiting longer than this."
)
@_common(0)
@pass_ctx
def unanswered_cmd(ctx: Context, waiting_days: float, **kw: Any) -> None:
    """Customers waiting for our reply for more than --waiting-days days (R3)."""
    from mailops.reports import activity

    as_csv, as_json = kw.pop("as_csv"), kw.pop("as_json")
    _emit(
        activity.unanswered(_scope(ctx, **kw), days=waiting_days),
        as_csv,
        as_json,
        empty=f"no customer waiting longer than {waiting_days:g} days",
    )


@stats.command("problematic")
@click.option("--history", is_flag=True, help="The state changes instead of the current list.")
@_common(90)
@pass_ctx
def problematic_cmd(ctx: Context, history: bool, **kw: Any) -> None:
    """Problematic mailboxes: since when, why, last good sync, what IT should do (R4)."""
    from mailops.reports import accounts

    as_csv, as_json = kw.pop("as_csv"), kw.pop("as_json")
    scope = _scope(ctx, **kw)
    if history:
        _emit(accounts.history(scope), as_csv, as_json)
        return
    df = accounts.problematic(scope)
    if not (as_csv or as_json):
        df = df[
            [
                "mailbox",
                "owner",
                "code",
                "since",
                "last_good_sync",
                "not_synced_from",
                "it_guidance",
            ]
        ]
    _emit(df, as_csv, as_json, empty="no problematic mailboxes")


def register(cli: click.Group) -> None:
    cli.add_command(stats)
