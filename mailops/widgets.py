"""R1: the widget-driven connect flow of ``notebooks/connect_mailbox.ipynb``.

``ConnectPanel`` is the ipywidgets UI (provider, address, sign-in: device-code message or
password field, test, result, the user's mailboxes with state and problem, remove /
reconnect). Its callbacks call the same ``mailops.connect`` functions as the CLI; each
opens the store only for the duration of the action, so the notebook never holds the
DuckDB lock while it sits idle. ``headless_connect`` is the papermill path.

Nothing secret reaches an output: the password field is cleared after every attempt, the
device-code message holds only the short-lived user code, and errors are one line.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ipywidgets as w
import pandas as pd

from mailops.auth.oauth import Browser, DeviceCodePrompt
from mailops.config import Settings
from mailops.errors import MailopsError
from mailops.store import Store

# address -> (device-code callback, browser) that stand in for the user signing in: the
# notebook passes the dev wing's ``mailops.dev.stand_ins.stand_ins_for(settings)`` when
# DEVSERVER_APPROVE is set; product code never builds one itself.
SignInStandIns = Callable[[str], tuple[Callable[[DeviceCodePrompt], Any], Browser]]

log = logging.getLogger(__name__)

#: What the CLI says (flags, commands) and what a panel user does instead: errors and
#: guidance shown in a panel name the panel's own fields and buttons (issue 13).
PANEL_WORDS: list[tuple[str, str]] = [
    (r"give --imap-host/--smtp-host \(or --devserver\)",
     "fill in IMAP host and SMTP host (or click Use the demo server)"),
    (r"use the hidden prompt, --password-stdin or --password-env VAR",
     "type it in the Password field"),
    (r"(?:to sign in again use|connect it again): mailops mailbox reconnect \S+",
     "pick it under Your mailboxes and click Reconnect"),
    (r"reconnect the mailbox \(mailops mailbox reconnect\)",
     "reconnect the mailbox (Reconnect button in the Connect a mailbox notebook)"),
    (r"start it with: mailops devserver start",
     "start it first: make demo (or mailops devserver start in a terminal)"),
    (r"\(or pick the deal with --deal\)", "(or pick the deal in the Deal list)"),
    (r"`?mailops outbox retry( \d+)?`?", "the Send button again (the outbox never sends twice)"),
    (r"`?mailops mailbox reconnect( \S+)?`?", "the Reconnect button"),
    (r"`?mailops mailbox remove( \S+)?`?", "the Remove button"),
    (r"`?mailops mailbox test( \S+)?`?", "the Test button"),
    (r"--imap-host", "the IMAP host field"),
    (r"--smtp-host", "the SMTP host field"),
    (r"--imap-port", "the IMAP port field"),
    (r"--smtp-port", "the SMTP port field"),
    (r"--imap-security", "the IMAP security field"),
    (r"--smtp-security", "the SMTP security field"),
    (r"--password-(?:stdin|env)(?: VAR)?", "the Password field"),
    (r"--devserver", "Use the demo server"),
    (r"--deal", "the Deal list"),
    (r"--template", "the Template list"),
    (r"--customer", "the To list"),
    (r"--subject", "the Subject field"),
    (r"--body", "the Body field"),
]  # fmt: skip


def for_panel(text: str) -> str:
    """TEXT (a one-line error) in the panel's words: fields and buttons, not CLI flags."""
    import re

    for pattern, words in PANEL_WORDS:
        text = re.sub(pattern, words, text)
    return text


def split_host(value: str, port: int | None) -> tuple[str, int | None]:
    """``mail.example.com:993`` typed in a host field: the host, and the port it names."""
    host = value.strip()
    name, sep, tail = host.rpartition(":")
    if sep and tail.isdigit() and name and "]" not in tail:
        return name.strip("[]"), int(tail)
    return host, port


SECURITY_CHOICES = [
    ("SSL/TLS (IMAPS 993, SMTPS 465)", "ssl"),
    ("STARTTLS (IMAP 143, submission 587)", "starttls"),
    ("none (local test servers only)", "none"),
]


def demo_hint(settings: Settings) -> str:
    """How a newcomer reaches the demo mail server from the form (HTML)."""
    from mailops.providers import LocalServer

    server = LocalServer.running(settings.devserver_dir)
    if server is None:
        return (
            "<div class='mailops-hint'><b>Trying mailops?</b> Start the demo mail server "
            "first (<code>make demo</code>, or <code>mailops devserver start</code> in a "
            "terminal), then come back here and click <b>Use the demo server</b>: it fills "
            "in host, ports and security (IMAP over SSL, SMTP with STARTTLS on "
            "127.0.0.1). The demo's sales mailboxes sign in with Microsoft 365 (device "
            "code) against the demo's own sign-in service.</div>"
        )
    return (
        "<div class='mailops-hint'><b>Demo mail server running here:</b> IMAP "
        f"<code>{html.escape(server.host)}:{server.imaps_port}</code> (SSL/TLS), SMTP "
        f"<code>{html.escape(server.host)}:{server.smtp_port}</code> (STARTTLS). Click "
        "<b>Use the demo server</b> to fill these in (its certificate authority is trusted "
        "for you).</div>"
    )


PROVIDER_CHOICES = [
    ("Microsoft 365 / Outlook", "microsoft"),
    ("Google Workspace / Gmail", "google"),
    ("Other IMAP/SMTP (password or app password)", "generic"),
]


@contextmanager
def _store(settings: Settings) -> Iterator[Store]:
    store = Store(settings.db)  # migrates on open
    try:
        yield store
    finally:
        store.close()


def mailbox_frame(settings: Settings, user_id: str | None) -> pd.DataFrame:
    """The user's mailboxes: state, and for problematic ones the reason, since when and IT guidance."""
    from mailops.connect import list_mailboxes

    with _store(settings) as store:
        rows = list_mailboxes(store, user_id or None)
    cols = ["id", "address", "provider", "state", "problem", "since", "message", "guidance"]
    return pd.DataFrame(rows, columns=[*cols, "user", "auth", "connected_at"])[cols]


@dataclass
class Outcome:
    ok: bool
    line: str
    code: str = ""
    mailbox_id: int | None = None

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.ok else "#b42318"
        return f'<p style="color:{color}">{html.escape(self.line)}</p>'

    def __repr__(self) -> str:
        return self.line


class NotebookFailure(MailopsError):
    """Raised at the end of a failed headless run: IPython shows one line, no traceback."""

    def _render_traceback_(self) -> list[str]:
        return [self.one_line()]


def headless_connect(
    settings: Settings,
    *,
    user_id: str,
    provider: str,
    address: str,
    login_from_env: str = "",
    devserver: bool = False,
    device_code_callback: Callable[[DeviceCodePrompt], Any] | None = None,
    browser: Browser | None = None,
    sign_in_for: SignInStandIns | None = None,
    timeout: float | None = None,
) -> Outcome:
    """Scripted connect (papermill): the password comes from the environment variable NAMED
    by LOGIN_FROM_ENV, never from a parameter."""
    from mailops.connect import connect_mailbox

    if not address:
        return Outcome(False, "no ADDRESS given: nothing to connect", "config")
    password = None
    if provider == "generic":
        if not login_from_env or not os.environ.get(login_from_env):
            return Outcome(
                False,
                f"environment variable {login_from_env or '(none)'} holds no password",
                "password_required",
            )
        password = os.environ[login_from_env]
    try:
        if sign_in_for is not None and provider != "generic":
            device_code_callback, browser = sign_in_for(address)
        with _store(settings) as store:
            mb = connect_mailbox(
                store,
                settings,
                user_id=user_id,
                provider=provider,
                address=address,
                password=password,
                device_code_callback=device_code_callback or _print_prompt,
                browser=browser,
                devserver=devserver,
                timeout=timeout,
            )
    except MailopsError as e:
        return Outcome(False, e.one_line(), e.code)
    finally:
        password = None
    return Outcome(
        True,
        f"connected {mb.address} (mailbox {mb.id}) for {user_id}: IMAP and SMTP work",
        "connected",
        mb.id,
    )


def _print_prompt(prompt: DeviceCodePrompt) -> None:
    print(prompt.message, flush=True)


def finish(outcome: Outcome | None) -> Outcome | None:
    """Last cell of a headless run: a failed connect fails the papermill run with one line."""
    if outcome is not None and not outcome.ok:
        raise NotebookFailure(outcome.line, code=outcome.code or "connect_failed")
    return outcome


class ConnectPanel:
    """The R1 connect widget. ``device_code_hook`` / ``browser`` (or ``sign_in_for``, per
    address) let tests and the demo stand in for the user's phone / browser; by default the
    device-code message is shown and the system browser opens."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        user_id: str,
        provider: str = "microsoft",
        address: str = "",
        devserver: bool = False,
        device_code_hook: Callable[[DeviceCodePrompt], Any] | None = None,
        browser: Browser | None = None,
        endpoint_overrides: dict[str, Any] | None = None,
        timeout: float | None = None,
        sign_in_for: SignInStandIns | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        self.sign_in_for = sign_in_for
        self._acting = address
        self.user_id = user_id
        self.devserver = devserver
        self.device_code_hook = device_code_hook
        self.browser = browser
        self.endpoint_overrides = endpoint_overrides or {}
        self.timeout = timeout
        style = {"description_width": "110px"}
        self.provider = w.Dropdown(
            options=PROVIDER_CHOICES,
            value=provider,
            description="Provider",
            style=style,
            layout=w.Layout(width="460px"),
        )
        self.address = w.Text(
            value=address,
            description="Address",
            placeholder="you@company.com",
            style=style,
            layout=w.Layout(width="460px"),
        )
        self.password = w.Password(
            description="Password",
            placeholder="password or app password",
            style=style,
            layout=w.Layout(width="460px"),
        )
        self.imap_host = w.Text(
            description="IMAP host",
            placeholder="imap.example.com (or host:port)",
            style=style,
            layout=w.Layout(width="460px"),
        )
        self.imap_port = w.BoundedIntText(
            value=993,
            min=1,
            max=65535,
            description="IMAP port",
            style=style,
            layout=w.Layout(width="220px"),
        )
        self.imap_security = w.Dropdown(
            options=SECURITY_CHOICES,
            value="ssl",
            description="IMAP security",
            style=style,
            layout=w.Layout(width="460px"),
        )
        self.smtp_host = w.Text(
            description="SMTP host",
            placeholder="smtp.example.com (empty: the IMAP host)",
            style=style,
            layout=w.Layout(width="460px"),
        )
        self.smtp_port = w.BoundedIntText(
            value=587,
            min=1,
            max=65535,
            description="SMTP port",
            style=style,
            layout=w.Layout(width="220px"),
        )
        self.smtp_security = w.Dropdown(
            options=SECURITY_CHOICES,
            value="starttls",
            description="SMTP security",
            style=style,
            layout=w.Layout(width="460px"),
        )
        self.demo_button = w.Button(
            description="Use the demo server",
            icon="flask",
            tooltip="fill in the local demo mail server's host, ports and security",
            layout=w.Layout(width="220px"),
        )
        self.hint = w.HTML(demo_hint(self.settings))
        self._demo: dict[str, Any] = {}
        self.connect_button = w.Button(
            description="Sign in and connect",
            button_style="primary",
            icon="sign-in",
            layout=w.Layout(width="220px"),
        )
        self.device = w.HTML()
        self.result = w.HTML()
        self.table = w.HTML()
        self.selected = w.Dropdown(
            description="Mailbox", style=style, layout=w.Layout(width="460px")
        )
        self.test_button = w.Button(description="Test", icon="check")
        self.remove_button = w.Button(description="Remove", icon="trash", button_style="danger")
        self.reconnect_button = w.Button(
            description="Reconnect", icon="refresh", button_style="warning"
        )
        # S9: which folders of the selected mailbox are synced (the owner's choice)
        self.folders = w.SelectMultiple(
            description="Folders", rows=6, style=style, layout=w.Layout(width="460px")
        )
        self.folders_button = w.Button(description="Load folders", icon="folder-open")
        self.save_folders_button = w.Button(description="Sync these folders", icon="save")
        self.folders_button.on_click(lambda _b: self.on_load_folders())
        self.save_folders_button.on_click(lambda _b: self.on_save_folders())
        self.server_box = w.VBox(
            [
                w.HBox([self.imap_host, self.imap_port]),
                self.imap_security,
                w.HBox([self.smtp_host, self.smtp_port]),
                self.smtp_security,
                self.demo_button,
                self.hint,
            ]
        )
        self.password_box = w.VBox([self.password, self.server_box])
        self.demo_button.on_click(lambda _b: self.use_demo_server())
        self.connect_button.on_click(lambda _b: self.on_connect())
        self.test_button.on_click(lambda _b: self.on_test())
        self.remove_button.on_click(lambda _b: self.on_remove())
        self.reconnect_button.on_click(lambda _b: self.on_reconnect())
        self.provider.observe(lambda _c: self._sync_fields(), names="value")
        self._sync_fields()
        self.widget = w.VBox(
            [
                w.HTML(f"<h3>Connect a mailbox for <code>{html.escape(user_id)}</code></h3>"),
                self.provider,
                self.address,
                self.password_box,
                self.connect_button,
                self.device,
                self.result,
                w.HTML("<h4>Your mailboxes</h4>"),
                self.table,
                w.HBox(
                    [self.selected, self.test_button, self.remove_button, self.reconnect_button]
                ),
                w.HBox([self.folders, w.VBox([self.folders_button, self.save_folders_button])]),
            ]
        )
        self.refresh()

    # -- view helpers ---------------------------------------------------------------------
    def _sync_fields(self) -> None:
        generic = self.provider.value == "generic"
        self.password_box.layout.display = "" if generic else "none"
        self.server_box.layout.display = "" if generic and not self.devserver else "none"
        self.connect_button.description = "Connect" if generic else "Sign in and connect"

    def _say(self, ok: bool, text: str) -> None:
        color = "#1a7f37" if ok else "#b42318"
        self.result.value = f'<p style="color:{color}">{html.escape(for_panel(text))}</p>'

    def _show_prompt(self, prompt: DeviceCodePrompt) -> None:
        url = html.escape(prompt.verification_uri)
        self.device.value = (
            f"<div style='padding:6px;border:1px solid #888'><b>{html.escape(prompt.message)}</b>"
            f"<br>Code: <code style='font-size:1.3em'>{html.escape(prompt.user_code)}</code>"
            f" &mdash; <a href='{url}' target='_blank'>{url}</a></div>"
        )
        if self.device_code_hook is not None:
            self.device_code_hook(prompt)
        elif self.sign_in_for is not None:
            self.sign_in_for(self._acting)[0](prompt)

    def _browser(self) -> Browser | None:
        if self.browser is None and self.sign_in_for is not None:
            return self.sign_in_for(self._acting)[1]
        return self.browser

    def refresh(self, select: int | None = None) -> pd.DataFrame:
        frame = mailbox_frame(self.settings, self.user_id)
        keep = select if select is not None else self.selected.value
        shown = frame.astype(object).where(frame.notna(), "")  # a missing value is blank, not None
        self.table.value = (
            shown.to_html(index=False, na_rep="", escape=True) if len(frame) else "<i>none yet</i>"
        )
        options = [(f"{r.address} ({r.state})", int(r.id)) for r in frame.itertuples()]
        self.selected.options = options
        ids = [i for _label, i in options]
        self.selected.value = keep if keep in ids else (ids[-1] if ids else None)
        return frame

    def use_demo_server(self) -> None:
        """Fill in the running demo server's endpoints (and trust its CA)."""
        from mailops.providers import devserver_overrides

        try:
            self._demo = devserver_overrides(self.settings, name="generic")
        except MailopsError as e:
            self._say(False, e.one_line())
            return
        self.imap_host.value = str(self._demo["imap_host"])
        self.imap_port.value = int(self._demo["imap_port"])
        self.imap_security.value = str(self._demo["imap_security"])
        self.smtp_host.value = str(self._demo["smtp_host"])
        self.smtp_port.value = int(self._demo["smtp_port"])
        self.smtp_security.value = str(self._demo["smtp_security"])
        self.hint.value = demo_hint(self.settings)
        self._say(True, "demo server filled in: enter a demo address and its password")

    def _overrides(self) -> dict[str, Any]:
        out = dict(self.endpoint_overrides)
        if self.provider.value == "generic" and not self.devserver:
            imap_host, imap_port = split_host(self.imap_host.value, self.imap_port.value)
            smtp_host, smtp_port = split_host(self.smtp_host.value, self.smtp_port.value)
            if imap_host:
                out.update(
                    imap_host=imap_host, imap_port=imap_port, imap_security=self.imap_security.value
                )
            if smtp_host or imap_host:
                out.update(
                    smtp_host=smtp_host or imap_host,
                    smtp_port=smtp_port,
                    smtp_security=self.smtp_security.value,
                )
            if self._demo and imap_host == self._demo.get("imap_host"):
                out["ca_file"] = self._demo.get("ca_file", "")
                out["local"] = True
        return out

    # -- callbacks (the same functions as the CLI) -----------------------------------------
    def on_connect(self) -> Outcome:
        from mailops.connect import connect_mailbox

        self.device.value = ""
        self._say(True, "signing in ...")
        password = self.password.value or None
        self.password.value = ""  # never kept in the widget state
        self._acting = self.address.value
        try:
            with _store(self.settings) as store:
                mb = connect_mailbox(
                    store,
                    self.settings,
                    user_id=self.user_id,
                    provider=self.provider.value,
                    address=self.address.value,
                    password=password,
                    device_code_callback=self._show_prompt,
                    browser=self._browser(),
                    devserver=self.devserver,
                    overrides=self._overrides(),
                    timeout=self.timeout,
                )
            outcome = Outcome(
                True, f"connected {mb.address}: IMAP and SMTP work", "connected", mb.id
            )
        except MailopsError as e:
            outcome = Outcome(False, e.one_line(), e.code)
        finally:
            password = None
        self.device.value = ""
        self._say(outcome.ok, outcome.line)
        self.refresh(select=outcome.mailbox_id)
        return outcome

    def _act(self, action: str) -> Outcome:
        from mailops.connect import reconnect_mailbox, remove_mailbox, test_mailbox

        mailbox_id = self.selected.value
        if mailbox_id is None:
            outcome = Outcome(False, "pick a mailbox first", "config")
            self._say(False, outcome.line)
            return outcome
        try:
            with _store(self.settings) as store:
                if action == "test":
                    r = test_mailbox(
                        store, self.settings, int(mailbox_id), actor_user_id=self.user_id
                    )
                    outcome = Outcome(
                        r.ok, r.line(), r.problem.code if r.problem else "ok", r.mailbox.id
                    )
                elif action == "remove":
                    mb = remove_mailbox(
                        store, self.settings, int(mailbox_id), actor_user_id=self.user_id
                    )
                    outcome = Outcome(
                        True, f"removed {mb.address}; stored emails kept", "disconnected", mb.id
                    )
                else:
                    from mailops.store import mailboxes

                    password = self.password.value or None
                    self.password.value = ""
                    self._acting = mailboxes.get(store, int(mailbox_id)).address
                    mb = reconnect_mailbox(
                        store,
                        self.settings,
                        int(mailbox_id),
                        password=password,
                        device_code_callback=self._show_prompt,
                        browser=self._browser(),
                        devserver=self.devserver,
                        overrides=self.endpoint_overrides or None,
                        actor_user_id=self.user_id,
                        timeout=self.timeout,
                    )
                    password = None
                    outcome = Outcome(
                        True, f"reconnected {mb.address}: IMAP and SMTP work", "connected", mb.id
                    )
        except MailopsError as e:
            outcome = Outcome(False, e.one_line(), e.code)
        self.device.value = ""
        self._say(outcome.ok, outcome.line)
        self.refresh(select=outcome.mailbox_id)
        return outcome

    def on_load_folders(self) -> Outcome:
        """List the selected mailbox's folders on the server; the synced ones are selected."""
        from mailops.selective import server_folders
        from mailops.store import mailboxes

        if self.selected.value is None:
            outcome = Outcome(False, "pick a mailbox first", "config")
        else:
            try:
                with _store(self.settings) as store:
                    mb = mailboxes.get(store, int(self.selected.value))
                rows = server_folders(mb, self.settings)
                self.folders.options = [
                    (
                        r["folder"]
                        + ("" if r["why"] in ("", "not_selected") else f" ({r['why']})"),
                        r["folder"],
                    )
                    for r in rows
                ]
                self.folders.value = tuple(r["folder"] for r in rows if r["synced"])
                outcome = Outcome(True, f"{mb.address}: {len(rows)} folders", "ok", mb.id)
            except MailopsError as e:
                outcome = Outcome(False, e.one_line(), e.code)
        self._say(outcome.ok, outcome.line)
        return outcome

    def on_save_folders(self) -> Outcome:
        """Sync only the selected folders from the next sync on (S9; the owner's choice)."""
        from mailops.selective import set_folders

        if self.selected.value is None:
            outcome = Outcome(False, "pick a mailbox first", "config")
        else:
            try:
                with _store(self.settings) as store:
                    mb = set_folders(
                        store, self.user_id, int(self.selected.value), list(self.folders.value)
                    )
                chosen = ", ".join(mb.folders or []) or "the default folders"
                outcome = Outcome(True, f"{mb.address}: syncing {chosen}", "ok", mb.id)
            except MailopsError as e:
                outcome = Outcome(False, e.one_line(), e.code)
        self._say(outcome.ok, outcome.line)
        return outcome

    def on_test(self) -> Outcome:
        return self._act("test")

    def on_remove(self) -> Outcome:
        return self._act("remove")

    def on_reconnect(self) -> Outcome:
        return self._act("reconnect")

    def show(self) -> w.VBox:
        return self.widget
