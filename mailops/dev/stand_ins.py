"""Stand-ins for the user during a sign-in on the local devserver (demo, tests, the
``--approve`` flag): a "phone" that approves a device code on the local token service, and a
"browser" that follows the local authorize redirect. Never for real providers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests

from mailops.auth.oauth import Browser, DeviceCodePrompt, http_session
from mailops.config import Settings
from mailops.dev import devserver
from mailops.errors import ConnectionProblem, DevServerError


class DevicePhone:
    """Device-code callback for the local devserver: shows the message, then -- standing in
    for the user signing in on their phone -- approves the code on the token service from a
    thread a moment later (the sign-in call is polling by then)."""

    def __init__(
        self,
        state: Any,
        address: str,
        *,
        delay: float = 0.5,
        echo: Callable[[str], Any] = print,
    ) -> None:
        self.state, self.address, self.delay, self.echo = state, address, delay, echo
        self.threads: list[threading.Thread] = []

    def __call__(self, prompt: DeviceCodePrompt) -> None:
        self.echo(f"[{self.address}] {prompt.message}")

        def approve() -> None:
            time.sleep(self.delay)
            self.state.approve(prompt.user_code, self.address)

        t = threading.Thread(target=approve, daemon=True)
        self.threads.append(t)
        t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=5)


def follow_locally(url: str, ca_file: str | None = None) -> None:
    """A stand-in browser for tests and the demo: fetch the authorize URL without following
    redirects (the local token service answers 302 to the redirect URI at once), then deliver
    that redirect to our 127.0.0.1 listener."""
    with http_session(ca_file) as s:
        r = s.get(url, allow_redirects=False, timeout=10)
        location = r.headers.get("Location")
        if not location:
            raise ConnectionProblem(
                f"the sign-in page answered HTTP {r.status_code} without a redirect",
                code="consent_required",
            )
        if urlsplit(location).hostname not in ("127.0.0.1", "localhost"):
            raise ConnectionProblem("refusing a non-local redirect", code="protocol_error")
        requests.get(location, timeout=10, proxies={"http": "", "https": ""})


def running_state(settings: Settings) -> devserver.DevServerState:
    state = devserver.status(settings.devserver_dir)
    if state is None:
        raise DevServerError(
            f"no devserver running in {settings.devserver_dir}",
            guidance="start it with: mailops devserver start",
        )
    return state


def devserver_stand_ins(
    settings: Settings, address: str, echo: Callable[[str], Any] = print
) -> tuple[DevicePhone, Browser]:
    """(device-code callback, browser) that complete a sign-in on the running local devserver:
    the stand-ins for the user's phone and browser. Pass them to ``connect_mailbox``,
    ``headless_connect`` or ``ConnectPanel`` (``device_code_hook`` / ``browser``)."""
    state = running_state(settings)
    phone = DevicePhone(state, address.strip().lower(), echo=echo)
    return phone, (lambda url: follow_locally(url, state.ca_file))


def stand_ins_for(
    settings: Settings, echo: Callable[[str], Any] = print
) -> Callable[[str], tuple[DevicePhone, Browser]]:
    """``sign_in_for`` of ``ConnectPanel`` / ``headless_connect``: the stand-ins per address."""
    return lambda address: devserver_stand_ins(settings, address, echo=echo)


def password_mailbox(
    store: Any,
    settings: Settings,
    state: Any,
    address: str,
    password: str,
    *,
    owner: str = "user-1",
    smtp: bool = True,
    **extra: Any,
) -> Any:
    """A connected password mailbox of the devserver (STATE) written straight to the store,
    its secret in the secrets folder: a stand-in for the connect flow, for tests and benches
    of sync and send. EXTRA: more mailbox columns. Returns the Mailbox."""
    from datetime import UTC, datetime

    from mailops.auth import password_ref
    from mailops.secrets import SecretStore
    from mailops.store import mailboxes

    if smtp:
        extra = {
            "smtp_host": "127.0.0.1",
            "smtp_port": state.smtp_port,
            "smtp_security": "starttls",
            **extra,
        }
    extra.setdefault("connected_at", datetime.now(UTC).replace(tzinfo=None))
    mb = mailboxes.insert(
        store,
        owner_user_id=owner,
        address=address,
        provider="generic",
        auth_kind="password",
        imap_host="127.0.0.1",
        imap_port=state.imaps_port,
        imap_security="ssl",
        ca_file=state.ca_file,
        state="connected",
        **extra,
    )
    ref = password_ref(mb.id)
    SecretStore(settings).put(ref, password)
    mailboxes.update(store, mb.id, secret_ref=ref)
    return mailboxes.get(store, mb.id)
