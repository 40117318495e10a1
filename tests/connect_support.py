"""Helpers for the connection tests: endpoints on the in-process devserver, sign-in stand-ins."""

from __future__ import annotations

import time
from typing import Any

from mailops.auth.oauth import DeviceCodePrompt, follow_locally
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
