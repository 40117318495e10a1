"""``mailops audit``: which messages the sync stored or skipped, and why (S11)."""

from __future__ import annotations

from datetime import datetime

import click
import pandas as pd

from mailops.cli import Context, pass_ctx
from mailops.cli.output import Output, emit, output_options, render_table


@click.command("audit")
@click.option("--run", "run_id", type=int, help="Only this sync run.")
@click.option("--mailbox", help="Only this mailbox (address or id).")
@click.option("--since", type=click.DateTime(), help="Only rows examined since (UTC).")
@click.option("--summary", is_flag=True, help="Counts by decision and reason.")
@click.option("--runs", "show_runs", is_flag=True, help="List sync runs instead of messages.")
@click.option("--reasons", "show_reasons", is_flag=True, help="List the reason codes.")
@click.option(
    "--folders",
    "show_folders",
    is_flag=True,
    help="Per folder: what the server holds, what is before the window, what was not"
    " examined and why (S11).",
)
@click.option(
    "--errors",
    "show_errors",
    is_flag=True,
    help="Messages that could not be fetched, parsed or stored, with attempts and state (S15).",
)
@output_options
@click.option(
    "--as",
    "viewer_ref",
    envvar="MAILOPS_USER",
    default="system",
    show_default=True,
    help="Who reads it (P1): a user id or address; the rows and subjects he may see.",
)
@pass_ctx
def audit_cmd(
    ctx: Context,
    run_id: int | None,
    mailbox: str | None,
    since: datetime | None,
    summary: bool,
    show_runs: bool,
    show_reasons: bool,
    show_folders: bool,
    show_errors: bool,
    out: Output,
    viewer_ref: str,
) -> None:
    """The audit ledger: one row per message each sync run examined, stored or skipped with a
    reason code. A table (the newest 200 rows), or every row with --json/--nl/--csv/--tsv,
    or exported with --output FILE (.csv .tsv .json .jsonl .parquet)."""
    from mailops.match import SKIP_REASONS
    from mailops.store import mailboxes as mailbox_store
    from mailops.store import sync as q

    if show_reasons:
        from mailops.poison import ERROR_REASONS

        df = pd.DataFrame(
            [(r.code, r.decision, r.rule, r.description) for r in SKIP_REASONS.values()]
            + [(r.code, "error", r.rule, r.description) for r in ERROR_REASONS.values()],
            columns=["reason", "decision", "rule", "description"],
        )
        emit(df, out)
        return
    from mailops.permissions import scope_for

    store = ctx.store()
    viewer = scope_for(store, viewer_ref)
    mailbox_id = (
        mailbox_store.find(store, mailbox, include_disconnected=True).id if mailbox else None
    )
    if show_runs:
        emit(
            q.runs(store, mailbox_id, viewer=viewer),
            out,
            empty="no sync runs yet",
            what="sync runs",
        )
        return
    if show_folders:
        df = q.folder_accounting(store, mailbox_id, viewer=viewer)
        emit(df, out, empty="no folders listed yet", table=_folders_table, what="folders")
        return
    if show_errors:
        df = q.message_errors(store, mailbox_id)
        emit(df, out, empty="no message errors", table=_errors_table, what="message errors")
        return
    if summary:
        df = q.audit_summary(
            store, viewer=viewer, run_id=run_id, mailbox_id=mailbox_id, since=since
        )
        emit(df, out, empty="no messages examined yet", table=_summary_lines)
        return
    df = q.audit(store, viewer=viewer, run_id=run_id, mailbox_id=mailbox_id, since=since)
    emit(df, out, empty="no messages examined yet", table=_ledger_table, what="ledger rows")


LEDGER_COLUMNS = [
    "run_id",
    "mailbox",
    "folder",
    "uid",
    "decision",
    "reason",
    "from_addr",
    "subject",
]


def _ledger_table(df: pd.DataFrame) -> str:
    return render_table(df[LEDGER_COLUMNS].tail(200))


FOLDER_COLUMNS = [
    "mailbox", "folder", "state", "not_examined_reason", "server_messages", "before_window",
    "examined_ever", "errors_ever", "not_accounted", "error",
]  # fmt: skip
ERROR_COLUMNS = ["mailbox", "folder", "uid", "reason", "attempts", "state", "error"]


def _folders_table(df: pd.DataFrame) -> str:
    return render_table(df[FOLDER_COLUMNS])


def _errors_table(df: pd.DataFrame) -> str:
    return render_table(df[ERROR_COLUMNS])


def _summary_lines(df: pd.DataFrame) -> str:
    return "\n".join(
        f"{rec.decision:8} {rec.reason:22} {rec.messages:>8}" for rec in df.itertuples(index=False)
    )


def register(cli: click.Group) -> None:
    cli.add_command(audit_cmd)
