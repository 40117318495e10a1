"""``mailops sync``: one mailbox or all, ad hoc or on a schedule (S1)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from mailops.cli import Context, pass_ctx


class _NoBar:
    """The progress bar when nobody watches (no terminal, --json): tqdm is not imported."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(shown: bool) -> Any:
    if not shown:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(unit="msg", desc="sync", leave=False)


def _summary_line(summary: dict, seconds: float) -> str:
    reasons = ", ".join(
        f"{k} {v}" for k, v in summary["by_reason"].items() if k != "stored_customer"
    )
    text = (
        f"synced {summary['mailboxes']} mailbox(es) in {seconds:.1f}s: examined {summary['examined']},"
        f" stored {summary['stored']} new, linked {summary['linked']}, skipped {summary['skipped']}"
    )
    if reasons:
        text += f" ({reasons})"
    if summary["failed"]:
        text += f"; {summary['failed']} failed"
    skipped = summary.get("mailboxes_skipped", 0)
    if skipped:
        text += f"; {skipped} skipped"
    if summary.get("recovered"):
        text += f"; {summary['recovered']} recovered"
    return text


@click.command("sync")
@click.argument("mailbox", required=False)
@click.option("--all", "all_", is_flag=True, help="Every connected mailbox (the default).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--watch",
    is_flag=True,
    help="Keep syncing until Ctrl-C: IMAP IDLE on each INBOX (new mail within seconds) and every 10-30 min (jittered).",
)
@click.option("--no-idle", is_flag=True, help="--watch: poll on the schedule only, no IMAP IDLE.")
@click.option("--trigger", default="manual", hidden=True)
@click.option("--rounds", type=int, default=None, hidden=True, help="--watch: stop after N rounds.")
@click.option(
    "--for",
    "for_seconds",
    type=float,
    default=None,
    hidden=True,
    help="--watch: stop after S seconds.",
)
@pass_ctx
def sync_cmd(
    ctx: Context,
    mailbox: str | None,
    all_: bool,
    as_json: bool,
    watch: bool,
    no_idle: bool,
    trigger: str,
    rounds: int | None,
    for_seconds: float | None,
) -> None:
    """Sync customer email from MAILBOX (address or id), or from every connected mailbox.

    Headers first, bodies only for customer mail; every message examined gets an audit row
    (see `mailops audit`). Safe to interrupt: the next run resumes where this one stopped.
    One sync per mailbox at a time (S14). Exit codes (O1): 0 ok, 9 a mailbox failed,
    10 a problematic mailbox was skipped, 11 another sync holds a mailbox.
    """
    import time

    from mailops.errors import MailopsError
    from mailops.store import mailboxes as mailbox_store
    from mailops.sync import summarize, sync_all, sync_mailbox

    if mailbox and all_:
        raise MailopsError("give a mailbox or --all, not both", code="usage")
    store = ctx.store()
    settings = ctx.settings
    if watch:
        from mailops.watch import Watch

        def show(r):  # noqa: ANN001
            click.echo(json.dumps(r.as_dict(), default=str) if as_json else r.one_line(), nl=True)
            sys.stdout.flush()

        how = "on schedule" if no_idle else "with IMAP IDLE on each INBOX and on schedule"
        click.echo(f"syncing every connected mailbox {how}; Ctrl-C stops", err=True)

        def state(mb, st):  # noqa: ANN001
            if st in ("idle", "unsupported", "dropped"):
                text = {
                    "idle": "IDLE on",
                    "unsupported": "no IDLE (polling)",
                    "dropped": "IDLE dropped (polling, reconnecting)",
                }[st]
                click.echo(f"{text} {mb.address} INBOX", err=True)

        Watch(store, settings, idle=not no_idle, on_result=show, on_state=state).run(
            seconds=for_seconds, max_rounds=rounds
        )
        return

    bar = _progress_bar(sys.stderr.isatty() and not as_json)
    t0 = time.monotonic()
    try:
        if mailbox:
            mb = mailbox_store.find(store, mailbox)
            results = [sync_mailbox(store, settings, mb, trigger=trigger, progress=bar.update)]
            r = results[0]
            if r.status == "not_connected":
                err = MailopsError(
                    f"{mb.address} is {mb.state}"
                    + (f" [{mb.problem_code}]" if mb.problem_code else "")
                    + "; only connected mailboxes are synced",
                    code="not_connected",
                    guidance=f"reconnect the mailbox (mailops mailbox reconnect {mb.address})",
                )
                err.exit_code = 10  # O1: problematic, skipped
                raise err
        else:
            results = sync_all(store, settings, trigger=trigger, progress=bar.update)
    finally:
        bar.close()
    summary = summarize(results)
    if as_json:
        click.echo(
            json.dumps(
                {"summary": summary, "mailboxes": [r.as_dict() for r in results]},
                default=str,
                indent=2,
            )
        )
    else:
        for r in results:
            if r.status != "ok":
                click.echo(r.one_line(), err=True)
            elif r.recovered:
                since = (
                    f" (problematic since {r.problem_since:%Y-%m-%d %H:%M} UTC)"
                    if r.problem_since
                    else ""
                )
                click.echo(f"{r.address}: recovered by itself{since}", err=True)
        click.echo(_summary_line(summary, time.monotonic() - t0))
    if summary["exit_code"]:
        from mailops.errors import SyncIncomplete

        failed = [r for r in results if r.status == "failed"]
        what = (
            f"{len(failed)} of {len(results)} mailbox(es) failed"
            if failed
            else summary["exit_meaning"]
        )
        raise SyncIncomplete(what, exit_code=summary["exit_code"], code=_code_name(summary))


def _code_name(summary: dict) -> str:
    return {9: "sync_failed", 10: "mailbox_problematic", 11: "already_syncing"}.get(
        summary["exit_code"], "sync_failed"
    )


def register(cli: click.Group) -> None:
    cli.add_command(sync_cmd)
