"""Helpers for the connection tests: endpoints on the in-process devserver, sign-in stand-ins."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mailops.auth.oauth import DeviceCodePrompt
from mailops.dev.stand_ins import follow_locally
from mailops.providers import Endpoints, endpoints_for_state, resolve


def local_endpoints(mailserver: Any, settings: Any, provider: str) -> Endpoints:
    return resolve(provider, settings).with_overrides(
        **endpoints_for_state(mailserver.state, provider)
    )


class Approver:
    """Device-code callback: records what the user would see and 'signs in on the phone' as
    SIGN_IN_AS (the address itself by default) through the token service's test helper."""

    def __init__(self, mailserver: Any, sign_in_as: str | None = None) -> None:
        self.mailserver = mailserver
        self.sign_in_as = sign_in_as
        self.prompts: list[DeviceCodePrompt] = []
        self.address = ""

    def __call__(self, prompt: DeviceCodePrompt) -> None:
        self.prompts.append(prompt)
        assert self.mailserver.approve(prompt.user_code, self.sign_in_as or self.address)


def browser_for(mailserver: Any):
    return lambda url: follow_locally(url, mailserver.ca_file)


def grants(mailserver: Any, since: int = 0) -> list[str | None]:
    return [g for (_m, p, g) in mailserver.svc.log[since:] if p.endswith("/token")]


def wait_until(pred, timeout: float = 5.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


@contextmanager
def imap_disabled(mailserver: Any, address: str) -> Iterator[None]:
    """Make Dovecot refuse ADDRESS's logins the way a provider with IMAP switched off does
    (passwd-file extra fields ``nologin reason=...``); restored afterwards."""
    path = Path(mailserver.root, "users")
    original = path.read_text()
    lines = [
        line + " nologin reason=IMAP_access_is_disabled_for_this_account"
        if line.startswith(address + ":")
        else line
        for line in original.splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")
    time.sleep(1.2)  # Dovecot re-reads the passwd-file at most once a second
    try:
        yield
    finally:
        path.write_text(original)
        time.sleep(1.2)
