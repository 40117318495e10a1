"""``mailops followup``: the follow-up assistant (F1) -- waiting threads, drafts, outcomes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
import pandas as pd

from mailops.cli import Context, pass_ctx
from mailops.cli.activities import as_option
from mailops.cli.output import Output, emit, output_options


def _thresholds(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option(
                "--reply-hours",
                type=float,
                default=None,
                help="Customer wrote last, unanswered for N business hours (default: followup_reply_hours, 8).",
            ),
            click.option(
                "--customer-days",
                type=float,
                default=None,
                help="We wrote last, no answer for N business days (default: followup_customer_days, 3).",
            ),
            click.option(
                "--work-start",
                type=int,
                default=9,
                show_default=True,
                help="Business day start hour.",
            ),
            click.option(
                "--work-end", type=int, default=17, show_default=True, help="Business day end hour."
            ),
            click.option(
                "--tz", default="UTC", show_default=True, help="Time zone of the business hours."
            ),
        ]
    ):
        f = opt(f)
    return f


def _kw(
    ctx: Context,
    reply_hours: float | None,
    customer_days: float | None,
    work_start: int,
    work_end: int,
    tz: str,
) -> dict[str, Any]:
    s = ctx.settings
    return {
        "reply_hours": s.followup_reply_hours if reply_hours is None else reply_hours,
        "customer_days": s.followup_customer_days if customer_days is None else customer_days,
        "day_start": work_start,
        "day_end": work_end,
        "tz": tz,
    }


@click.group("followup")
def followup() -> None:
    """Threads waiting for our reply or for the customer; follow-up drafts (never sent by mailops)."""


@followup.command("list")
@as_option
@_thresholds
@click.option("--limit", type=int, default=0, help="The N longest waiting (0 = all).")
@output_options
@pass_ctx
def list_cmd(ctx: Context, viewer: str, limit: int, out: Output, **th: Any) -> None:
    """Threads waiting for our reply (customer wrote last) and for the customer (we wrote
    last), longest waiting first, with the suggestion already drafted for them, if any."""
    from mailops.followup import refresh_outcomes, waiting_threads

    store = ctx.store()
    refresh_outcomes(store)
    df = waiting_threads(store, viewer, **_kw(ctx, **th))
    if limit:
        df = df.head(limit)
    if out.is_table and not df.empty:
        df = pd.DataFrame(
            {
                "waiting for": ["us" if k == "our_reply" else "customer" for k in df["kind"]],
                "customer": df["customer"],
                "user": df["user_id"],
                "last": [f"{pd.Timestamp(x):%Y-%m-%d %H:%M}" for x in df["last_at"]],
                "biz h": df["business_hours"],
                "subject": [str(s or "")[:45] for s in df["last_subject"]],
                "suggestion": [
                    f"{int(i)} {o}" if pd.notna(i) else ""
                    for i, o in zip(df["suggestion_id"], df["outcome"], strict=True)
                ],
            }
        )
    emit(df, out, empty="(no thread is waiting)")


@followup.command("draft")
@click.argument("customer", required=False)
@click.option(
    "--user",
    "viewer",
    envvar="MAILOPS_USER",
    required=True,
    help="Your CRM user id ($MAILOPS_USER): drafts for your threads.",
)
@click.option(
    "--all", "all_", is_flag=True, help="Every waiting thread of yours (else CUSTOMER's)."
)
@click.option(
    "--limit", type=int, default=0, help="At most N drafts, longest waiting first (0 = no limit)."
)
@_thresholds
@pass_ctx
def draft_cmd(
    ctx: Context, customer: str | None, viewer: str, all_: bool, limit: int, **th: Any
) -> None:
    """Draft a follow-up for each waiting thread of yours (of CUSTOMER, or --all) that has
    none yet: saved as a draft to review, edit and send (`mailops draft send ID`); never sent."""
    from mailops.errors import MailopsError
    from mailops.followup import draft_waiting

    if bool(customer) == all_:
        raise MailopsError("give a CUSTOMER or --all", code="usage")
    made = draft_waiting(
        ctx.store(), ctx.settings, viewer, customer=customer, limit=limit or None, **_kw(ctx, **th)
    )
    if not made:
        click.echo("nothing to draft (no waiting thread without a suggestion)")
    for s in made:
        extra = f" -- {s.note}" if s.note else ""
        click.echo(
            f"suggestion {s.id}: draft {s.draft_id} for {s.customer_id} ({s.kind}, {s.model}): {s.subject}{extra}"
        )


@followup.command("suggestions")
@as_option
@click.option(
    "--limit", type=int, default=0, help="Show the newest N (the measure counts all; 0 = all)."
)
@output_options
@pass_ctx
def suggestions_cmd(ctx: Context, viewer: str, limit: int, out: Output) -> None:
    """The suggestion log with each outcome (pending / sent_as_is / edited / discarded) and the measure."""
    from mailops.followup import refresh_outcomes, suggestions, usefulness

    store = ctx.store()
    refresh_outcomes(store)
    log = suggestions(store, viewer)
    shown = log.drop(columns=["thread", "last_message_id"])
    if out.is_table:
        cols = ["id", "created_at", "user_id", "customer", "kind", "language", "model"]
        shown = shown[[*cols, "draft_id", "outcome", "subject"]].assign(
            created_at=[f"{pd.Timestamp(x):%Y-%m-%d %H:%M}" for x in shown["created_at"]]
        )
    emit(shown.head(limit) if limit else shown, out, empty="(no suggestions yet)")
    if out.is_table and not log.empty:
        u = usefulness(log)
        rate = "n/a" if u["sent_as_is_rate"] is None else f"{u['sent_as_is_rate']:.0%}"
        click.echo(
            f"\n{u['suggested']} suggested: {u['sent_as_is']} sent as is, {u['edited']} edited, "
            f"{u['discarded']} discarded, {u['pending']} pending; sent as is: {rate} of decided"
        )


@followup.command("discard")
@click.argument("suggestion_id", type=int)
@as_option
@pass_ctx
def discard_cmd(ctx: Context, suggestion_id: int, viewer: str) -> None:
    """Discard a suggestion: its draft is deleted, the outcome logged."""
    from mailops.followup import discard

    discard(ctx.store(), viewer, suggestion_id)
    click.echo(f"suggestion {suggestion_id} discarded")


@followup.command("llm-key")
@click.option(
    "--stdin", "from_stdin", is_flag=True, help="Read the key from the first line of stdin."
)
@click.option("--delete", is_flag=True, help="Remove the stored key.")
@pass_ctx
def llm_key_cmd(ctx: Context, from_stdin: bool, delete: bool) -> None:
    """Store the API key of the MAILOPS_LLM_URL endpoint in the encrypted secrets store
    (prompted, never an argument)."""
    from mailops.followup import LLM_KEY_REF
    from mailops.secrets import SecretStore

    secrets = SecretStore(ctx.settings)
    if delete:
        secrets.delete(LLM_KEY_REF)
        click.echo("model key removed")
        return
    key = sys.stdin.readline().strip() if from_stdin else click.prompt("API key", hide_input=True)
    if not key:
        from mailops.errors import MailopsError

        raise MailopsError("the key is empty", code="usage")
    secrets.put(LLM_KEY_REF, key)
    click.echo("model key stored (encrypted)")


def register(cli: click.Group) -> None:
    cli.add_command(followup)
