"""``mailops worker``: a long-running sync process; start several to split the mailboxes (D1)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import click

from mailops.cli import Context, pass_ctx


@click.command("worker")
@click.option(
    "--once",
    is_flag=True,
    help="One pass over the due mailboxes, then exit with the exit code of the worst outcome (O1).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Mailboxes synced at once, one connection each (default: sync_parallel, 8).",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    help="Mailboxes claimed and handed to the engine at a time (default: 4 x concurrency);"
    " SIGTERM finishes the batch.",
)
@click.option(
    "--max-mailboxes",
    type=click.IntRange(min=1),
    default=None,
    help="At most N mailboxes per pass; the rest are left to other workers or the next pass.",
)
@click.option(
    "--cadence",
    type=click.FloatRange(min=0),
    default=None,
    help="Minutes between two syncs of a mailbox (default: worker_cadence, 15).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per mailbox synced.")
@click.option("--for", "for_seconds", type=float, default=None, hidden=True)
@pass_ctx
def worker_cmd(
    ctx: Context,
    once: bool,
    concurrency: int | None,
    batch: int | None,
    max_mailboxes: int | None,
    cadence: float | None,
    as_json: bool,
    for_seconds: float | None,
) -> None:
    """Sync due mailboxes pass after pass: connected ones whose last sync is older than the
    cadence, each claimed by lease (S14; on a lake a PostgreSQL lease row, D1), synced by
    the engine, given back. Several workers on one store split the mailboxes; a killed
    worker's mailboxes are taken over once its leases expire (lease_ttl). SIGTERM or Ctrl-C
    finishes the current batch, gives its leases back and exits 0. With --once, exit codes
    as `mailops sync` (O1): 0 ok, 9 a mailbox failed, 10 a problematic mailbox was skipped."""
    from mailops.cli.sync import _code_name
    from mailops.errors import SyncIncomplete
    from mailops.sync import summarize
    from mailops.worker import Worker

    store = ctx.store()

    def show(r: Any) -> None:
        if as_json:
            click.echo(json.dumps(r.as_dict(), default=str))
        else:
            click.echo(r.one_line())
        sys.stdout.flush()

    def pass_failed(e: BaseException) -> None:
        from mailops.poison import one_line

        click.echo(f"worker: pass failed, trying again: {one_line(e)}", err=True)

    w = Worker(
        store,
        ctx.settings,
        cadence=cadence,
        concurrency=concurrency,
        batch=batch,
        max_mailboxes=max_mailboxes,
        on_result=show,
        on_error=pass_failed,
    )
    kind = type(w.leases).__name__
    every = w.cadence.total_seconds() / 60
    click.echo(
        f"worker pid {os.getpid()}: mailboxes due every {every:g} min, {w.concurrency} at a"
        f" time, leases: {kind}; SIGTERM stops after the current batch",
        err=True,
    )

    def on_signal(signum: int, _frame: object) -> None:
        if w.stopping.is_set():  # the second one: stop now (leases are given back on the way)
            raise KeyboardInterrupt
        click.echo(f"worker: {signal.Signals(signum).name}: finishing the current batch", err=True)
        w.stop()

    before = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    t0 = time.monotonic()
    try:
        if once:
            p = w.run_once()
        else:
            w.run(seconds=for_seconds)
            return
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    summary = summarize(p.results)
    _finish_once(p, summary, time.monotonic() - t0, as_json)
    if p.exit_code:
        failed = summary["failed"]
        what = (
            f"{failed} of {len(p.results)} mailbox(es) failed"
            if failed
            else summary["exit_meaning"]
        )
        raise SyncIncomplete(what, exit_code=p.exit_code, code=_code_name(summary))


def _finish_once(p: Any, summary: dict[str, Any], seconds: float, as_json: bool) -> None:
    from mailops.cli.sync import _summary_line

    extra = {"due": p.due, "claimed": p.claimed, "busy": p.busy, "fresh": p.fresh, "lost": p.lost}
    if as_json:
        click.echo(json.dumps({"summary": {**summary, **extra}}, default=str))
        return
    line = _summary_line(summary, seconds)
    if p.busy or p.fresh:
        line += f"; {p.busy + p.fresh} left to other workers"
    if p.lost:
        line += f"; {p.lost} lease(s) lost while syncing (see the log)"
    if p.more:
        line += "; more are due (--max-mailboxes)"
    click.echo(line)


def register(cli: click.Group) -> None:
    cli.add_command(worker_cmd)
