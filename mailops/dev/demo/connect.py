"""``mailops demo connect``: connect every demo mailbox on the running devserver.

Through the same ``mailops.connect`` functions as the CLI and the widgets; the first
mailboxes sign in through MSAL's device-code flow with a stand-in for the user's phone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from mailops.config import Settings
from mailops.connect import connect_mailbox, existing_mailbox, reconnect_mailbox
from mailops.dev import devserver
from mailops.dev.stand_ins import DevicePhone, running_state
from mailops.errors import MailopsError
from mailops.store import Store

MANIFEST_NAMES = ("demo-manifest.json", "demo_manifest.json", "manifest.json", "demo.json")


def load_demo_manifest(settings: Settings, store: Store | None = None) -> list[dict[str, str]]:
    """The demo mailboxes [{"user_id", "address"}]: the seed manifest in the devserver dir
    (``demo-manifest.json``, written by ``mailops demo seed``: address + owner_user_id per
    mailbox, no passwords), else every CRM user whose e-mail is an account on the devserver."""
    root = settings.devserver_dir
    for name in MANIFEST_NAMES:
        path = os.path.join(root, name)
        if os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
            items = data.get("mailboxes", data) if isinstance(data, dict) else data
            out = []
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    address = item.get("address") or item.get("email") or item.get("mailbox")
                    user = (
                        item.get("owner_user_id")
                        or item.get("user_id")
                        or item.get("user")
                        or item.get("owner")
                    )
                    if address and user:
                        out.append({"user_id": str(user), "address": str(address).lower()})
            if out:
                return out
    state = devserver.status(root)
    accounts = set(state.users()) if state else set()
    if store is None:
        return []
    from mailops.store.directory import active_user_emails

    return [
        {"user_id": uid, "address": email}
        for uid, email in active_user_emails(store)
        if email in accounts
    ]


def connect_demo_mailboxes(
    store: Store, settings: Settings, *, oauth_count: int = 1, approve_delay: float = 0.5
) -> Iterator[str]:
    """Connect every demo mailbox on the running devserver; the first OAUTH_COUNT sign in
    through MSAL's device-code flow (a thread approves the code on the token service: the
    demo's stand-in for the user signing in on their phone), the rest with their password.
    Already connected mailboxes are left alone (safe to re-run)."""
    state = running_state(settings)
    entries = load_demo_manifest(settings, store)
    if not entries:
        raise MailopsError(
            "no demo mailboxes found", code="demo", guidance="run: mailops demo seed"
        )
    passwords = state.users()
    oauth_left = oauth_count
    for entry in entries:
        user_id, address = entry["user_id"], entry["address"]
        current = existing_mailbox(store, user_id, address)
        if current is not None and current.state == "connected":
            oauth_left -= current.auth_kind == "oauth"
            yield f"{address}: already connected ({current.provider}, mailbox {current.id})"
            continue
        use_oauth = current.auth_kind == "oauth" if current is not None else oauth_left > 0
        phone = DevicePhone(
            state, address, delay=approve_delay, echo=lambda m: print(f"  {m}", flush=True)
        )
        try:
            if use_oauth:
                kwargs: dict[str, Any] = dict(
                    provider="microsoft", device_code_callback=phone, timeout=60.0
                )
            else:
                if address not in passwords:
                    yield f"{address}: skipped (no account on the devserver)"
                    continue
                kwargs = dict(provider="generic", password=passwords[address])
            if current is not None:
                mb = reconnect_mailbox(
                    store,
                    settings,
                    current,
                    devserver=True,
                    password=kwargs.get("password"),
                    device_code_callback=kwargs.get("device_code_callback"),
                    timeout=kwargs.get("timeout"),
                )
            else:
                mb = connect_mailbox(
                    store, settings, user_id=user_id, address=address, devserver=True, **kwargs
                )
        except MailopsError as e:
            yield f"{address}: FAILED {e.one_line()}"
            continue
        finally:
            phone.join()
        if use_oauth:
            oauth_left -= 1
        how = "MSAL device code, XOAUTH2" if mb.auth_kind == "oauth" else "password"
        yield f"{address}: connected for {user_id} (mailbox {mb.id}, {how})"
