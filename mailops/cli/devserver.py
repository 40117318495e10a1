"""``mailops devserver``: the local mail server for tests and the demo."""

from __future__ import annotations

import json

import click

from mailops.cli import Context, pass_ctx


@click.group("devserver")
def devserver() -> None:
    """Local Dovecot IMAP + SMTP + OAuth token service on 127.0.0.1."""


def _describe(st: object) -> str:
    from mailops.devserver import DevServerState

    assert isinstance(st, DevServerState)
    return (
        f"devserver running (pid {st.pid}, dovecot {st.dovecot_pid}) in {st.root}\n"
        f"  IMAP  127.0.0.1:{st.imap_port} (STARTTLS)  IMAPS 127.0.0.1:{st.imaps_port}\n"
        f"  SMTP  127.0.0.1:{st.smtp_port} (STARTTLS)\n"
        f"  OAuth {st.oauth_url}  (authority {st.microsoft_authority})\n"
        f"  CA    {st.ca_file}"
    )


@devserver.command("start")
@click.option(
    "--dir",
    "root",
    help="State directory (default $MAILOPS_DEVSERVER_DIR or /tmp/mailops-devserver).",
)
@pass_ctx
def start(ctx: Context, root: str | None) -> None:
    """Start it in the background (installs Dovecot with apt when missing). Safe to re-run."""
    from mailops.devserver import start_detached

    st = start_detached(root or ctx.settings.devserver_dir)
    click.echo(_describe(st))


@devserver.command("stop")
@click.option("--dir", "root", help="State directory.")
@pass_ctx
def stop(ctx: Context, root: str | None) -> None:
    """Stop it; no process is left behind. Mail data stays in the directory."""
    from mailops.devserver import stop_detached

    pids = stop_detached(root or ctx.settings.devserver_dir)
    click.echo(
        f"devserver stopped (pids {', '.join(map(str, pids))})"
        if pids
        else "devserver was not running"
    )


@devserver.command("status")
@click.option("--dir", "root", help="State directory.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(ctx: Context, root: str | None, as_json: bool) -> None:
    """Is it running, and where."""
    from dataclasses import asdict

    from mailops.devserver import status as get_status

    st = get_status(root or ctx.settings.devserver_dir)
    if as_json:
        click.echo(json.dumps(asdict(st) if st else {"running": False}))
    elif st:
        click.echo(_describe(st))
    else:
        click.echo("devserver not running")
        raise SystemExit(1)


def register(cli: click.Group) -> None:
    cli.add_command(devserver)
