"""The dev wing's commands: ``mailops devserver ...`` (the local mail server for tests and
the demo) and ``mailops demo ...`` (seed, status, connect, send: the demo company).

``mailops.cli`` registers them through ``register(cli)`` like any command module."""

from __future__ import annotations

import json
import os
import secrets
import sys
from typing import Any

import click

from mailops.cli import HOOKS, Context, pass_ctx


@click.group("devserver")
def devserver() -> None:
    """Local Dovecot IMAP + SMTP + OAuth token service on 127.0.0.1."""


def _describe(st: object) -> str:
    from mailops.dev.devserver import DevServerState

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
def devserver_start(ctx: Context, root: str | None) -> None:
    """Start it in the background (installs Dovecot with apt when missing). Safe to re-run."""
    from mailops.dev.devserver import start_detached

    st = start_detached(root or ctx.settings.devserver_dir)
    click.echo(_describe(st))


@devserver.command("stop")
@click.option("--dir", "root", help="State directory.")
@pass_ctx
def devserver_stop(ctx: Context, root: str | None) -> None:
    """Stop it; no process is left behind. Mail data stays in the directory."""
    from mailops.dev.devserver import stop_detached

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
def devserver_status(ctx: Context, root: str | None, as_json: bool) -> None:
    """Is it running, and where."""
    from dataclasses import asdict

    from mailops.dev.devserver import status as get_status

    st = get_status(root or ctx.settings.devserver_dir)
    if as_json:
        click.echo(json.dumps(asdict(st) if st else {"running": False}))
    elif st:
        click.echo(_describe(st))
    else:
        click.echo("devserver not running")
        raise SystemExit(1)


@devserver.command("add-user")
@click.argument("addresses", nargs=-1, required=True)
@click.option("--dir", "root", help="State directory.")
@click.option(
    "--password-env", metavar="VAR", help="Password from environment variable VAR (all users)."
)
@click.option(
    "--password-stdin", is_flag=True, help="Password from the first line of stdin (all users)."
)
@pass_ctx
def add_user(
    ctx: Context,
    addresses: tuple[str, ...],
    root: str | None,
    password_env: str | None,
    password_stdin: bool,
) -> None:
    """Create mail accounts ADDRESSES on the devserver (or set their password). Without
    --password-env/--password-stdin each gets a new random password, printed once; the
    password is never an argument. Existing accounts keep theirs unless one is given."""
    from mailops.dev.devserver import add_users, read_users
    from mailops.errors import ConfigError

    folder = root or ctx.settings.devserver_dir
    given: str | None = None
    if password_env:
        given = os.environ.get(password_env) or None
        if given is None:
            raise ConfigError(f"environment variable {password_env} is empty or not set")
    elif password_stdin:
        given = sys.stdin.readline().rstrip("\r\n") or None
        if given is None:
            raise ConfigError("no password on stdin")
    known = read_users(folder)
    wanted: dict[str, str] = {}
    for raw in addresses:
        address = raw.strip().lower()
        if address.count("@") != 1 or not all(address.split("@")):
            raise ConfigError(f"not an email address: {raw!r}")
        if given is not None:
            wanted[address] = given
        elif address not in known:
            wanted[address] = secrets.token_urlsafe(12)
    os.makedirs(folder, exist_ok=True)
    add_users(folder, wanted)
    for raw in addresses:
        address = raw.strip().lower()
        if address in wanted and given is None:
            click.echo(f"{address}: created, password {wanted[address]}")
        elif address in wanted:
            click.echo(f"{address}: password set")
        else:
            click.echo(f"{address}: already there (password unchanged)")


@devserver.group("postgres")
def devserver_postgres() -> None:
    """A local PostgreSQL (D1: the lake's catalog and the sync leases) in its own folder."""


def _pg_dir(root: str | None) -> str:
    return root or os.environ.get("MAILOPS_POSTGRES_DIR") or "/tmp/mailops-postgres"


def _pg_describe(st: object) -> str:
    from mailops.dev.postgres import PgState

    assert isinstance(st, PgState)
    return (
        f"postgres running (pid {st.pid}, user {st.os_user}) in {st.root}\n"
        f"  DSN   {st.dsn}\n"
        f"  store {st.store_url(os.path.join(st.root, 'lake-data'))}\n"
        f"  log   {st.log_file}"
    )


@devserver_postgres.command("start")
@click.option(
    "--dir", "root", help="Its folder (default $MAILOPS_POSTGRES_DIR or /tmp/mailops-postgres)."
)
@click.option("--port", type=int, default=0, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--db", "dbname", default="mailops", show_default=True, help="Database to create.")
def postgres_start(root: str | None, port: int, dbname: str) -> None:
    """Start it (initdb the first time; installs Debian's postgresql with apt when missing).
    Safe to re-run. Trusts every local connection: for tests and demos only."""
    from mailops.dev.postgres import PostgresServer, status

    folder = _pg_dir(root)
    st = status(folder)
    if st is None:
        st = PostgresServer(folder, dbname=dbname, port=port).start()
    click.echo(_pg_describe(st))


@devserver_postgres.command("stop")
@click.option("--dir", "root", help="Its folder.")
@click.option("--remove", is_flag=True, help="Also delete the folder (data included).")
def postgres_stop(root: str | None, remove: bool) -> None:
    """Stop it; no process is left behind. The data stays unless --remove."""
    from mailops.dev.postgres import PostgresServer, status

    folder = _pg_dir(root)
    st = status(folder)
    if os.path.isdir(folder):
        PostgresServer(folder).stop(remove=remove)
    click.echo(f"postgres stopped (pid {st.pid})" if st else "postgres was not running")


@devserver_postgres.command("status")
@click.option("--dir", "root", help="Its folder.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (with the DSN).")
def postgres_status(root: str | None, as_json: bool) -> None:
    """Is it running, and its DSN. Exit code 1 when not running."""
    from dataclasses import asdict

    from mailops.dev.postgres import status

    st = status(_pg_dir(root))
    if as_json:
        click.echo(json.dumps({**asdict(st), "dsn": st.dsn} if st else {"running": False}))
    elif st:
        click.echo(_pg_describe(st))
    if st is None:
        if not as_json:
            click.echo("postgres not running")
        raise SystemExit(1)


@click.group("demo")
def demo() -> None:
    """The demo company (Northwind Homes): directory, mailboxes and mail on the devserver."""


def _mailbox_table(manifest: dict[str, Any]) -> list[str]:
    from mailops.dev.demo.mail import FOLDERS

    width = max(len(m["address"]) for m in manifest["mailboxes"])
    lines = [f"{'mailbox':{width}}  " + "  ".join(f"{f:>7}" for f in FOLDERS) + "    total"]
    for m in manifest["mailboxes"]:
        lines.append(
            f"{m['address']:{width}}  "
            + "  ".join(f"{m['folders'].get(f, 0):>7}" for f in FOLDERS)
            + f"  {m['messages']:>7}"
        )
    return lines


@demo.command("seed")
@click.option(
    "--seed",
    default=2026,
    show_default=True,
    help="Random seed (same seed, same day: same company).",
)
@click.option(
    "--customers",
    default=200,
    show_default=True,
    type=click.IntRange(min=5),
    help="Number of customers.",
)
@click.option(
    "--messages",
    default=3000,
    show_default=True,
    type=click.IntRange(min=50),
    help="Approximate number of messages.",
)
@click.option("--dir", "root", help="Devserver directory (default $MAILOPS_DEVSERVER_DIR).")
@click.option("--csv-dir", help="Where to write the CRM CSV exports (default DIR/demo-crm).")
@click.option("--force", is_flag=True, help="Empty the demo mailboxes and seed again.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_ctx
def demo_seed(
    ctx: Context,
    seed: int,
    customers: int,
    messages: int,
    root: str | None,
    csv_dir: str | None,
    force: bool,
    no_progress: bool,
) -> None:
    """Create the demo accounts on the running devserver, append the demo mail (IMAP
    MULTIAPPEND), write the CRM exports as CSV and import them into the store.

    Safe to re-run: when the same seed is already on the server (manifest and Dovecot's
    counts agree) the mail is left alone; the directory import is idempotent."""
    from mailops.dev.demo import seed_demo

    report = seed_demo(
        ctx.store(),
        root or ctx.settings.devserver_dir,
        seed=seed,
        customers=customers,
        messages=messages,
        force=force,
        csv_dir=csv_dir,
        progress=not no_progress,
    )
    m = report.manifest
    if report.skipped:
        click.echo(
            f"already seeded: {report.messages} messages in {len(m['mailboxes'])} mailboxes"
            f" (seed {m['seed']}, {m['seeded_at']}); --force reseeds"
        )
    else:
        click.echo(
            f"seeded {report.messages} messages into {len(m['mailboxes'])} demo mailboxes"
            f" (seed {m['seed']})"
        )
    for line in _mailbox_table(m):
        click.echo("  " + line)
    kinds = ", ".join(f"{k} {n}" for k, n in m["counts"]["kinds"].items())
    click.echo(f"  by kind: {kinds}")
    click.echo(f"directory import (CSV exports in {m['csv_dir']}):")
    for name, result in report.imports:
        click.echo(f"  {name}: {result.summary()}")
    counts = ", ".join(f"{k} {v}" for k, v in report.directory_counts.items())
    click.echo(f"directory in the store {ctx.settings.db}: {counts}")
    click.echo(f"manifest: {report.manifest_path}  ({report.seconds:.1f} s)")


@demo.command("status")
@click.option("--dir", "root", help="Devserver directory (default $MAILOPS_DEVSERVER_DIR).")
@pass_ctx
def demo_status(ctx: Context, root: str | None) -> None:
    """What the demo seed put on the devserver (from its manifest)."""
    from mailops.dev.demo import load_manifest
    from mailops.errors import MailopsError

    folder = root or ctx.settings.devserver_dir
    m = load_manifest(folder)
    if m is None:
        raise MailopsError(
            f"no demo manifest in {folder}",
            code="demo_not_seeded",
            guidance="run `mailops demo seed`",
        )
    click.echo(
        f"{m['company']}: seed {m['seed']}, seeded {m['seeded_at']}, {m['counts']['messages']} messages,"
        f" {m['counts']['customers']} customers, {m['counts']['deals']} deals"
    )
    for line in _mailbox_table(m):
        click.echo("  " + line)


@demo.command("connect")
@click.option(
    "--oauth",
    "oauth_count",
    type=int,
    default=1,
    show_default=True,
    help="How many demo mailboxes sign in through the MSAL device-code path.",
)
@pass_ctx
def demo_connect(ctx: Context, oauth_count: int) -> None:
    """Connect every demo mailbox on the devserver (some through MSAL device code)."""
    from mailops.dev.demo.connect import connect_demo_mailboxes

    for line in connect_demo_mailboxes(ctx.store(), ctx.settings, oauth_count=oauth_count):
        click.echo(line)


@demo.command("send")
@pass_ctx
def demo_send(ctx: Context) -> None:
    """Send a few demo emails (a template offer, a reply, a note) and show the activities."""
    from mailops.dev.demo.send import run_demo

    items = run_demo(ctx.store(), ctx.settings, click.echo)
    click.echo(f"{sum(i.state == 'sent' for i in items)} of {len(items)} demo email(s) sent")


@demo.command("inbound")
@click.option(
    "--count", default=2, show_default=True, type=click.IntRange(min=1), help="Customers who write."
)
@click.option("--user", help="Write to this sales person's mailbox (default: any).")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=0.0,
    help="Then wait up to S seconds for the notifications a running `mailops sync --watch` writes.",
)
@pass_ctx
def demo_inbound(ctx: Context, count: int, user: str | None, wait_s: float) -> None:
    """Demo customers write to their sales person now, through the devserver's SMTP (new
    mail after the connection: it notifies, N1)."""
    from mailops.dev.demo.inbound import deliver_inbound, wait_for_notifications

    delivered = deliver_inbound(ctx.store(), ctx.settings, count=count, user=user, echo=click.echo)
    ctx.close()  # a running watcher writes the store; read it only in between
    if wait_s > 0:
        wait_for_notifications(ctx.settings.db, delivered, timeout=wait_s, echo=click.echo)


def _stand_ins(settings: Any, address: str, echo: Any) -> tuple[Any, Any]:
    from mailops.dev.stand_ins import devserver_stand_ins

    return devserver_stand_ins(settings, address, echo=echo)


def register(cli: click.Group) -> None:
    cli.add_command(devserver)
    cli.add_command(demo)
    HOOKS.sign_in_stand_ins = _stand_ins  # `mailbox connect --devserver --approve`
