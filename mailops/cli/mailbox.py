"""``mailops mailbox connect | list | test | remove | reconnect`` (C1-C5).

Passwords are never command-line arguments (they would land in shell history and `ps`):
they come from a hidden prompt, ``--password-stdin`` or ``--password-env VAR``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from mailops.cli import HOOKS, Context, pass_ctx
from mailops.cli.output import Output, emit, output_options
from mailops.errors import ConfigError, MailopsError


def _endpoint_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--devserver", is_flag=True, help="Point every endpoint at the running local devserver."
        ),
        click.option("--imap-host"),
        click.option("--imap-port", type=int),
        click.option("--imap-security", type=click.Choice(["ssl", "starttls", "plain"])),
        click.option("--smtp-host"),
        click.option("--smtp-port", type=int),
        click.option("--smtp-security", type=click.Choice(["ssl", "starttls", "plain"])),
        click.option("--authority", help="Microsoft: MSAL authority URL (tenant)."),
        click.option("--token-url", help="OAuth token endpoint (Google)."),
        click.option("--authorize-url", help="OAuth authorize endpoint (Google)."),
        click.option("--client-id", help="OAuth client id (default from settings)."),
        click.option("--ca-file", help="Extra CA certificate to trust (local servers)."),
        click.option(
            "--password-env", metavar="VAR", help="Read the password from environment variable VAR."
        ),
        click.option(
            "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
        ),
        click.option(
            "--method",
            type=click.Choice(["device-code", "browser"]),
            default="device-code",
            show_default=True,
            help="Microsoft sign-in: device code (any terminal) or browser (auth code + PKCE).",
        ),
        click.option(
            "--timeout", type=float, help="Give up the interactive sign-in after N seconds."
        ),
        click.option("--as", "actor", help="Who is doing this (C1: must be the mailbox owner)."),
        click.option(
            "--approve",
            is_flag=True,
            help="With --devserver: approve the device code on the local token service"
            " (stands in for signing in on your phone).",
        ),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


_ENDPOINT_KEYS = (
    "imap_host",
    "imap_port",
    "imap_security",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "authority",
    "token_url",
    "authorize_url",
    "client_id",
    "ca_file",
)


def _password(
    provider: str, password_env: str | None, password_stdin: bool, address: str
) -> str | None:
    if password_env:
        value = os.environ.get(password_env)
        if not value:
            raise ConfigError(f"environment variable {password_env} is empty or not set")
        return value
    if password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise ConfigError("no password on stdin")
        return line
    if provider == "generic":
        if not sys.stdin.isatty():
            raise ConfigError(
                "a password is needed", guidance="use --password-stdin or --password-env VAR"
            )
        return str(click.prompt(f"Password for {address}", hide_input=True))
    return None


def _device_prompt(prompt: Any) -> None:
    click.echo(prompt.message)


def _prompt_for(opts: dict[str, Any], address: str, ctx: Context) -> Callable[[Any], None]:
    """The device-code callback: print the message; with --devserver --approve also approve."""
    if not opts.get("approve"):
        return _device_prompt
    if not opts.get("devserver"):
        raise ConfigError("--approve only works with --devserver (the local token service)")
    return _stand_ins(ctx, address)[0]


def _browser_for(opts: dict[str, Any], ctx: Context) -> Callable[[str], None]:
    """The browser of the auth-code flows; with --devserver --approve a stand-in that follows
    the local token service's redirect (it signs the login_hint in at once)."""
    if not (opts.get("approve") and opts.get("devserver")):
        return _browser
    return _stand_ins(ctx, "")[1]


def _stand_ins(ctx: Context, address: str) -> tuple[Callable[[Any], None], Callable[[str], None]]:
    """The dev wing's stand-ins for the user's phone / browser (``--approve``), which the wing
    plugs in when it registers its commands: this module never imports the wing."""
    if HOOKS.sign_in_stand_ins is None:
        raise ConfigError("--approve needs the dev wing (mailops.dev), which is not registered")
    return HOOKS.sign_in_stand_ins(ctx.settings, address, click.echo)


def _browser(url: str) -> None:
    import webbrowser

    click.echo(f"Opening the sign-in page in your browser. If it does not open, visit:\n{url}")
    webbrowser.open(url)


@click.group("mailbox")
def mailbox() -> None:
    """Connect and manage your mailboxes (Microsoft 365, Google, any IMAP/SMTP server)."""


@mailbox.command("connect")
@click.argument("address")
@click.option("--user", "user_id", required=True, help="Your CRM user id (the mailbox owner).")
@click.option(
    "--provider",
    type=click.Choice(["microsoft", "google", "generic"]),
    required=True,
    help="microsoft (MSAL), google (OAuth), generic (IMAP/SMTP password or app password).",
)
@_endpoint_options
@pass_ctx
def connect_cmd(ctx: Context, address: str, user_id: str, provider: str, **opts: Any) -> None:
    """Connect ADDRESS to your account: sign in, check IMAP and SMTP, store secrets encrypted."""
    from mailops.connect import connect_mailbox

    overrides = {k: opts[k] for k in _ENDPOINT_KEYS if opts.get(k) is not None}
    password = _password(provider, opts["password_env"], opts["password_stdin"], address)
    method = (
        "password"
        if provider == "generic"
        else ("auth_code" if opts["method"] == "browser" else "device_code")
    )
    mb = connect_mailbox(
        ctx.store(),
        ctx.settings,
        user_id=user_id,
        provider=provider,
        address=address,
        password=password,
        method=method,
        device_code_callback=_prompt_for(opts, address, ctx),
        browser=_browser_for(opts, ctx),
        devserver=opts["devserver"],
        overrides=overrides,
        actor_user_id=opts["actor"],
        timeout=opts["timeout"],
    )
    click.echo(
        f"connected {mb.address} (mailbox {mb.id}, {mb.provider}, {mb.auth_kind}) for {mb.owner_user_id}"
    )


@mailbox.command("list")
@click.option("--user", "user_id", help="Only this user's mailboxes.")
@output_options
@pass_ctx
def list_cmd(ctx: Context, user_id: str | None, out: Output) -> None:
    """Mailboxes with their state and, when problematic, why and what to do."""
    import pandas as pd

    from mailops.connect import list_mailboxes

    rows = list_mailboxes(ctx.store(), user_id)
    columns = ["id", "user", "address", "provider", "auth", "state", "problem", "message"]
    columns += ["guidance", "since", "next_probe", "connected_at"]
    emit(pd.DataFrame(rows, columns=columns), out, empty="no mailboxes", table=_mailbox_lines)


def _mailbox_lines(df: Any) -> str:
    lines = []
    for r in df.to_dict("records"):
        line = f"{r['id']:>4}  {r['address']:<36} {r['user']:<12} {r['provider']:<9} {r['state']}"
        if r["problem"]:
            line += f"  [{r['problem']} since {r['since']:%Y-%m-%d %H:%M}] {r['guidance']}"
            if r.get("next_probe") is not None and str(r["next_probe"]) != "NaT":
                line += f" Next probe at {r['next_probe']:%Y-%m-%d %H:%M} UTC."
        lines.append(line)
    return "\n".join(lines)


@mailbox.command("test")
@click.argument("ref")
@click.option("--as", "actor", help="Who is testing (owner, or IT/admin).")
@pass_ctx
def test_cmd(ctx: Context, ref: str, actor: str | None) -> None:
    """Log in to IMAP and SMTP now (tokens refreshed silently); record any problem."""
    from mailops.connect import test_mailbox

    result = test_mailbox(ctx.store(), ctx.settings, ref, actor_user_id=actor)
    if result.ok:
        click.echo(result.line())
        return
    assert result.problem is not None
    state = result.mailbox.state
    if state != "problematic":
        result.problem.message += (
            f" (transient; {result.mailbox.transient_failures} in a row, state stays {state})"
        )
    raise result.problem


@mailbox.command("remove")
@click.argument("ref")
@click.option("--as", "actor", help="Who is removing (owner, or IT/admin).")
@pass_ctx
def remove_cmd(ctx: Context, ref: str, actor: str | None) -> None:
    """Disconnect: delete its secrets; every stored email and activity is kept."""
    from mailops.connect import remove_mailbox

    mb = remove_mailbox(ctx.store(), ctx.settings, ref, actor_user_id=actor)
    click.echo(f"removed {mb.address} (mailbox {mb.id}); stored data kept")


@mailbox.command("reconnect")
@click.argument("ref")
@_endpoint_options
@pass_ctx
def reconnect_cmd(ctx: Context, ref: str, **opts: Any) -> None:
    """Delete the connection and sign in to the same account again (history kept)."""
    from mailops.connect import reconnect_mailbox
    from mailops.store import mailboxes

    store = ctx.store()
    mb = mailboxes.find(store, ref, include_disconnected=True)
    overrides = {k: opts[k] for k in _ENDPOINT_KEYS if opts.get(k) is not None}
    password = _password(mb.provider, opts["password_env"], opts["password_stdin"], mb.address)
    method = (
        "password"
        if mb.auth_kind == "password"
        else ("auth_code" if opts["method"] == "browser" else "device_code")
    )
    again = reconnect_mailbox(
        store,
        ctx.settings,
        mb,
        password=password,
        method=method,
        device_code_callback=_prompt_for(opts, mb.address, ctx),
        browser=_browser_for(opts, ctx),
        devserver=opts["devserver"],
        overrides=overrides,
        actor_user_id=opts["actor"],
        timeout=opts["timeout"],
    )
    click.echo(f"reconnected {again.address} (mailbox {again.id}): {again.state}")


@mailbox.command("transfer")
@click.argument("address")
@click.option("--to", "to_user", required=True, help="The user who gets the address.")
@click.option("--as", "actor", required=True, help="The admin doing the transfer (C6).")
@click.option("--reason", help="Why (kept in the transfer record).")
@pass_ctx
def transfer_cmd(ctx: Context, address: str, to_user: str, actor: str, reason: str | None) -> None:
    """C6: give ADDRESS to another user (admins only; recorded). The other users' live
    connections of it are removed (their stored mail is kept); the new owner then connects
    it himself."""
    from mailops.connect import transfer_mailbox

    t = transfer_mailbox(
        ctx.store(), ctx.settings, address, to_user_id=to_user, actor_user_id=actor, reason=reason
    )
    gone = (
        f"; disconnected mailbox(es) {', '.join(map(str, t.disconnected))}"
        if t.disconnected
        else ""
    )
    click.echo(
        f"transferred {t.address} to {t.to_user_id} (transfer {t.id}){gone};"
        f" {t.to_user_id} connects it with: mailops mailbox connect {t.address} --user {t.to_user_id}"
    )


@mailbox.command("conflicts")
@click.option("--all", "include_resolved", is_flag=True, help="Also conflicts already resolved.")
@output_options
@pass_ctx
def conflicts_cmd(ctx: Context, include_resolved: bool, out: Output) -> None:
    """C6: addresses linked to more than one user before the one-owner rule (found by
    migration 0040); resolve each with `mailops mailbox transfer`."""
    from mailops.store import ownership

    df = ownership.conflicts(ctx.store(), include_resolved=include_resolved)
    emit(df, out, empty="no address is linked to more than one user", table=_conflict_lines)


def _conflict_lines(df: Any) -> str:
    import pandas as pd

    lines = []
    for r in df.itertuples(index=False):
        state = (
            f"resolved by transfer {int(r.resolved_by_transfer)}"
            if pd.notna(r.resolved_at)
            else "open"
        )
        lines.append(
            f"{r.address}: users {', '.join(r.users)}; mailboxes {', '.join(map(str, r.mailbox_ids))}; {state}"
        )
    return "\n".join(lines)


def register(cli: click.Group) -> None:
    cli.add_command(mailbox)


__all__ = ["register", "MailopsError"]
