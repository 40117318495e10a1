"""``mailops audit``: which messages the sync stored or skipped, and why (S11)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
import pandas as pd

from mailops.cli import Context, pass_ctx
from mailops.exports import write_csv


def _write(df: pd.DataFrame, path: str, kind: str) -> None:
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    out = df.copy()
    if kind == "csv":
        if "customers" in out:
            out["customers"] = out["customers"].map(
                lambda v: ";".join(v) if v is not None and len(v) else ""
            )
        write_csv(out, target)  # cells a spreadsheet would run are neutralized
    elif kind == "json":
        records = json.loads(out.to_json(orient="records", date_format="iso"))
        target.write_text(json.dumps(records, indent=1, ensure_ascii=False))
    else:
        out.to_parquet(target, index=False)


@click.command("audit")
@click.option("--run", "run_id", type=int, help="Only this sync run.")
@click.option("--mailbox", help="Only this mailbox (address or id).")
@click.option("--since", type=click.DateTime(), help="Only rows examined since (UTC).")
@click.option("--summary", is_flag=True, help="Counts by decision and reason.")
@click.option("--runs", "show_runs", is_flag=True, help="List sync runs instead of messages.")
@click.option("--reasons", "show_reasons", is_flag=True, help="List the reason codes.")
@click.option("--csv", "csv_path", metavar="FILE", help="Write the ledger as CSV.")
@click.option("--json", "json_path", metavar="FILE", help="Write the ledger as JSON.")
@click.option("--parquet", "parquet_path", metavar="FILE", help="Write the ledger as Parquet.")
@pass_ctx
def audit_cmd(
    ctx: Context,
    run_id: int | None,
    mailbox: str | None,
    since: datetime | None,
    summary: bool,
    show_runs: bool,
    show_reasons: bool,
    csv_path: str | None,
    json_path: str | None,
    parquet_path: str | None,
) -> None:
    """The audit ledger: one row per message each sync run examined, stored or skipped with a
    reason code. Prints a table, or exports it with --csv/--json/--parquet."""
    from mailops.match import SKIP_REASONS
    from mailops.store import mailboxes as mailbox_store
    from mailops.store import sync as q

    if show_reasons:
        df = pd.DataFrame(
            [(r.code, r.decision, r.rule, r.description) for r in SKIP_REASONS.values()],
            columns=["reason", "decision", "rule", "description"],
        )
        click.echo(df.to_string(index=False))
        return
    store = ctx.store()
    mailbox_id = (
        mailbox_store.find(store, mailbox, include_disconnected=True).id if mailbox else None
    )
    if show_runs:
        click.echo(q.runs(store, mailbox_id).to_string(index=False))
        return
    if summary:
        df = q.audit_summary(store, run_id=run_id, mailbox_id=mailbox_id, since=since)
        if df.empty:
            click.echo("no messages examined yet")
            return
        for rec in df.itertuples(index=False):
            click.echo(f"{rec.decision:8} {rec.reason:22} {rec.messages:>8}")
        return
    df = q.audit(store, run_id=run_id, mailbox_id=mailbox_id, since=since)
    wrote = False
    for path, kind in ((csv_path, "csv"), (json_path, "json"), (parquet_path, "parquet")):
        if path:
            _write(df, path, kind)
            click.echo(f"wrote {len(df)} ledger rows to {path}")
            wrote = True
    if not wrote:
        if df.empty:
            click.echo("no messages examined yet")
        else:
            cols = [
                "run_id",
                "mailbox",
                "folder",
                "uid",
                "decision",
                "reason",
                "from_addr",
                "subject",
            ]
            click.echo(df[cols].tail(200).to_string(index=False))


def register(cli: click.Group) -> None:
    cli.add_command(audit_cmd)
