"""Connecting mailboxes (C1-C5): the functions behind the CLI, the widgets and the demo.

- ``connect_mailbox``: sign in (MSAL device code / auth code, Google installed app, or an
  IMAP password), prove the address by that login (C1), check IMAP *and* SMTP, record the
  capabilities, store the secret encrypted (C5) and the mailbox as ``connected``.
- ``test_mailbox``: log in again (refreshing tokens silently); failures are classified and
  counted against the retry budget (C4).
- ``remove_mailbox``: ``disconnected``, secrets deleted, stored data kept (C3).
- ``reconnect_mailbox``: remove + connect the same account again on the same mailbox row,
  so every message, activity, checkpoint and event stays attached (C3).
- ``transfer_mailbox``: C6, the one way an address changes owner: an admin's recorded
  action; the new owner then connects it by signing in himself (C1).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailops.auth import Credentials, password_ref, token_cache_ref
from mailops.auth.oauth import Browser, DeviceCodePrompt, SignIn
from mailops.config import Settings
from mailops.errors import ConnectionProblem, MailopsError, PermissionDenied
from mailops.providers import Endpoints, resolve
from mailops.secrets import SecretStore
from mailops.store import Store, mailboxes, ownership
from mailops.store.mailboxes import Mailbox

log = logging.getLogger(__name__)

METHODS = ("device_code", "auth_code", "password")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class TestResult:
    mailbox: Mailbox
    ok: bool
    problem: ConnectionProblem | None = None
    flipped: bool = False  # this test moved the mailbox to problematic
    capabilities: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.ok:
            line = f"{self.mailbox.address}: ok (IMAP and SMTP logins work)"
            if self.mailbox.state == "problematic":  # C3: only reconnect resumes syncing
                line += f"; still problematic ({self.mailbox.problem_code}) until reconnected"
            return line
        assert self.problem is not None
        return f"{self.mailbox.address}: {self.problem.one_line()}"


def _require_self(user_id: str, actor_user_id: str | None, what: str) -> None:
    """C1: only the user links a mailbox to their own account -- admins included."""
    if actor_user_id is not None and actor_user_id != user_id:
        raise PermissionDenied(
            f"{actor_user_id} cannot {what} a mailbox for {user_id}",
            guidance="each user connects their own mailboxes by signing in themselves (C1)",
        )


def _require_owner_or_it(store: Store, mb: Mailbox, actor_user_id: str | None, what: str) -> None:
    from mailops.store.directory import find_user

    if actor_user_id is None or actor_user_id == mb.owner_user_id:
        return
    actor = find_user(store, actor_user_id)
    if actor is None or actor.role not in ("it", "admin"):
        raise PermissionDenied(f"{actor_user_id} cannot {what} {mb.address} (not theirs)")


def _release(store: Store) -> None:
    """Let other processes (sync, reports) at the DuckDB file while we wait on the network or
    on the user signing in; the connection reopens on next use."""
    if store.path != ":memory:":
        store.release()


def _normalize(address: str) -> str:
    address = (address or "").strip().lower()
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise MailopsError(f"{address!r} is not an email address", code="bad_address")
    return address


def _probe_mailbox(address: str, ep: Endpoints, mailbox_id: int = 0) -> Mailbox:
    return Mailbox(
        id=mailbox_id,
        owner_user_id="",
        address=address,
        provider=ep.provider,
        auth_kind=ep.auth_kind,
        imap_host=ep.imap_host,
        imap_port=ep.imap_port,
        imap_security=ep.imap_security,
        smtp_host=ep.smtp_host,
        smtp_port=ep.smtp_port,
        smtp_security=ep.smtp_security,
        oauth_authority=_authority_of(ep),
        ca_file=ep.ca_file or None,
    )


def _authority_of(ep: Endpoints) -> str | None:
    if ep.provider == "microsoft":
        return ep.authority
    if ep.provider == "google":
        return ep.token_url  # google-auth only needs the token URI to refresh
    return None


def check_logins(mb: Mailbox, creds: Credentials, settings: Settings) -> list[str]:
    """Log in to IMAP and SMTP with CREDS; return the capabilities (IMAP, then SMTP:*)."""
    from mailops.imap import imap_session
    from mailops.smtp import open_smtp

    timeout = float(settings.socket_timeout)
    with imap_session(mb, creds, timeout=timeout, ca_file=mb.ca_file) as client:
        caps = [c.decode() if isinstance(c, bytes) else str(c) for c in client.capabilities()]
    smtp = open_smtp(mb, creds, timeout=timeout, ca_file=mb.ca_file)
    try:
        caps += [f"SMTP:{k.upper()}" for k in sorted(smtp.esmtp_features)]
    finally:
        try:
            smtp.quit()
        except Exception:  # noqa: BLE001 - already gone is fine
            smtp.close()
    return caps


def sign_in(
    ep: Endpoints,
    address: str,
    *,
    method: str = "device_code",
    device_code_callback: Callable[[DeviceCodePrompt], Any] | None = None,
    browser: Browser | None = None,
    timeout: float | None = None,
) -> SignIn:
    """The provider's OAuth sign-in for ADDRESS; the identity is checked by the caller."""
    if ep.provider == "microsoft":
        from mailops.auth import microsoft

        if method == "auth_code":
            return microsoft.auth_code_sign_in(ep, address, browser, timeout=timeout or 300.0)
        return microsoft.device_code_sign_in(ep, device_code_callback, timeout=timeout)
    if ep.provider == "google":
        from mailops.auth import google

        return google.installed_app_sign_in(ep, address, browser, timeout=timeout or 300.0)
    raise MailopsError(f"provider {ep.provider} has no OAuth sign-in", code="config")


def _already_linked(address: str) -> MailopsError:
    """C6: says that the address belongs to someone, never to whom."""
    return MailopsError(
        f"{address} is already linked to another user",
        code="already_linked",
        guidance="an address has one owner at a time; an admin can transfer it"
        " (mailops mailbox transfer ADDRESS --to USER --as ADMIN)",
    )


def require_linkable(store: Store, address: str, user_id: str) -> None:
    """C6: refuse before any sign-in when ADDRESS is linked to another user (or to several:
    a double link from before C6 waits for an admin transfer)."""
    if ownership.owner_of(store, address) not in (None, user_id):
        raise _already_linked(address)


def existing_mailbox(store: Store, user_id: str, address: str) -> Mailbox | None:
    """The newest mailbox row of USER_ID for ADDRESS (any state), or None."""
    rows = [m for m in mailboxes.all_mailboxes(store, owner=user_id) if m.address == address]
    return rows[-1] if rows else None


def connect_mailbox(
    store: Store,
    settings: Settings | None = None,
    *,
    user_id: str,
    provider: str,
    address: str,
    password: str | None = None,
    method: str | None = None,
    device_code_callback: Callable[[DeviceCodePrompt], Any] | None = None,
    browser: Browser | None = None,
    devserver: bool = False,
    endpoints: Endpoints | None = None,
    overrides: dict[str, Any] | None = None,
    actor_user_id: str | None = None,
    secrets: SecretStore | None = None,
    timeout: float | None = None,
    _reuse: Mailbox | None = None,
) -> Mailbox:
    """Connect ADDRESS to USER_ID's account (C1). Nothing is stored unless the login proves
    the address and both IMAP and SMTP work."""
    settings = settings or Settings.load()
    secrets = secrets or SecretStore(settings)
    _require_self(user_id, actor_user_id, "connect")
    address = _normalize(address)
    require_linkable(store, address, user_id)  # C6: whatever credentials come next
    existing = _reuse or existing_mailbox(store, user_id, address)
    if existing is not None and existing.state == "connected" and _reuse is None:
        raise MailopsError(
            f"{address} is already connected for {user_id} (mailbox {existing.id})",
            code="already_connected",
            guidance=f"to sign in again use: mailops mailbox reconnect {address}",
        )
    ep = endpoints or resolve(provider, settings, devserver=devserver)
    if overrides:
        ep = ep.with_overrides(**overrides)
    method = method or ("password" if ep.auth_kind == "password" else "device_code")
    if method not in METHODS:
        raise MailopsError(f"unknown sign-in method {method!r}", code="config")
    probe = _probe_mailbox(address, ep)
    _release(store)  # the sign-in may take minutes (device code): don't hold the store lock
    if method == "password" or ep.auth_kind == "password":
        if ep.imap_host and not ep.smtp_host:  # self-hosted: usually one host for both
            ep = ep.with_overrides(smtp_host=ep.imap_host)
            probe.smtp_host = ep.imap_host
        if not ep.imap_host or not ep.smtp_host:
            raise MailopsError(
                "IMAP and SMTP hosts are needed for a password mailbox",
                code="config",
                guidance="give --imap-host/--smtp-host (or --devserver)",
            )
        if not password:
            raise MailopsError(
                "a password (or app password) is needed",
                code="password_required",
                guidance="use the hidden prompt, --password-stdin or --password-env VAR",
            )
        probe.auth_kind = "password"
        creds = Credentials(address, "password", password)
        secret, ref_of = password, password_ref
    else:
        signed = sign_in(
            ep,
            address,
            method=method,
            device_code_callback=device_code_callback,
            browser=browser,
            timeout=timeout,
        )
        if not signed.proves(address):  # C1: the login itself proves the address
            raise ConnectionProblem(
                f"signed in as {signed.identity or 'an unknown account'}, not {address}",
                code="identity_mismatch",
                guidance="sign in with the account of that exact address (C1)",
                mailbox=address,
            )
        probe.auth_kind = "oauth"
        creds = Credentials(address, "xoauth2", signed.access_token)
        secret, ref_of = _with_endpoints(signed.blob, ep), token_cache_ref
    caps = check_logins(probe, creds, settings)  # raises ConnectionProblem (C4 codes)
    return _store_connected(
        store, secrets, probe, user_id, caps, secret, ref_of, existing, actor_user_id or user_id
    )


def _with_endpoints(blob: str, ep: Endpoints) -> str:
    """Keep the non-secret sign-in endpoints beside the tokens so reconnect can redo them."""
    data = json.loads(blob)
    data["endpoints"] = {
        "authorize_url": ep.authorize_url,
        "token_url": ep.token_url,
        "authority": ep.authority,
        "client_id": ep.client_id,
        "local": ep.local,
    }
    return json.dumps(data)


def _store_connected(
    store: Store,
    secrets: SecretStore,
    probe: Mailbox,
    user_id: str,
    caps: list[str],
    secret: str,
    ref_of: Callable[[int], str],
    existing: Mailbox | None,
    actor: str,
) -> Mailbox:
    values = dict(
        provider=probe.provider,
        auth_kind=probe.auth_kind,
        imap_host=probe.imap_host,
        imap_port=probe.imap_port,
        imap_security=probe.imap_security,
        smtp_host=probe.smtp_host,
        smtp_port=probe.smtp_port,
        smtp_security=probe.smtp_security,
        oauth_authority=probe.oauth_authority,
        ca_file=probe.ca_file,
        capabilities=" ".join(caps),
        connected_at=_now(),
        disconnected_at=None,
        transient_failures=0,
    )
    with store.transaction():
        if not ownership.claim(store, probe.address, user_id, by=actor):
            raise _already_linked(probe.address)  # C6: lost a race with another user
        if existing is None:
            mb = mailboxes.insert(
                store,
                owner_user_id=user_id,
                address=probe.address,
                state="connected",
                **{k: v for k, v in values.items() if v is not None},
            )
            mailboxes.add_event(
                store,
                mb.id,
                None,
                "connected",
                "connected",
                f"connected via {probe.auth_kind}",
                actor,
            )
        else:
            mb = existing
            mailboxes.update(store, mb.id, **values)
            mailboxes.set_state(
                store,
                mb.id,
                "connected",
                code="reconnected",
                message=f"reconnected via {probe.auth_kind}",
                actor=actor,
            )
        ref = ref_of(mb.id)
        mailboxes.update(store, mb.id, secret_ref=ref)
        secrets.put(ref, secret)  # inside the transaction: a failed write stores nothing
    log.info("mailbox %s connected for %s (id %s)", probe.address, user_id, mb.id)
    return mailboxes.get(store, mb.id)


def test_mailbox(
    store: Store,
    settings: Settings | None = None,
    mailbox: Mailbox | int | str = 0,
    *,
    actor_user_id: str | None = None,
    secrets: SecretStore | None = None,
    budget: int | None = None,
    force_refresh: bool = False,
) -> TestResult:
    """Log in to IMAP and SMTP again (tokens refreshed silently). A failure is classified and
    recorded (C4: transient ones count against the budget); success resets the count. A
    problematic mailbox stays problematic until reconnected (C3)."""
    from mailops.auth import credentials_for
    from mailops.problems import classify, record_failure, record_success

    settings = settings or Settings.load()
    secrets = secrets or SecretStore(settings)
    mb = mailbox if isinstance(mailbox, Mailbox) else mailboxes.find(store, mailbox)
    _require_owner_or_it(store, mb, actor_user_id, "test")
    if mb.state == "disconnected":
        raise MailopsError(
            f"{mb.address} is disconnected",
            code="disconnected",
            guidance=f"connect it again: mailops mailbox reconnect {mb.address}",
        )
    _release(store)
    try:
        creds = credentials_for(mb, settings, secrets, force_refresh=force_refresh)
        try:
            caps = check_logins(mb, creds, settings)
        except ConnectionProblem as refused:
            if refused.transient or mb.auth_kind != "oauth" or force_refresh:
                raise
            # a refused token (revoked or expired early): refresh once; invalid_grant -> C4
            creds = credentials_for(mb, settings, secrets, force_refresh=True)
            caps = check_logins(mb, creds, settings)
    except (ConnectionProblem, MailopsError) as e:
        p = classify(e, mb.address)
        flipped = record_failure(
            store, mb, p, budget=budget or settings.connect_retry_budget, actor=actor_user_id
        )
        return TestResult(mailboxes.get(store, mb.id), False, p, flipped)
    record_success(store, mb)
    mailboxes.update(store, mb.id, capabilities=" ".join(caps))
    return TestResult(mailboxes.get(store, mb.id), True, None, False, caps)


def _delete_secrets(secrets: SecretStore, mb: Mailbox) -> None:
    for ref in {mb.secret_ref, password_ref(mb.id), token_cache_ref(mb.id)}:
        if ref:
            secrets.delete(ref)
    if mb.provider == "google":
        from mailops.auth import google

        google.forget(mb.id)


def remove_mailbox(
    store: Store,
    settings: Settings | None = None,
    mailbox: Mailbox | int | str = 0,
    *,
    actor_user_id: str | None = None,
    secrets: SecretStore | None = None,
) -> Mailbox:
    """Disconnect: secrets deleted, state ``disconnected``; every stored row is kept (C3)."""
    settings = settings or Settings.load()
    secrets = secrets or SecretStore(settings)
    mb = mailbox if isinstance(mailbox, Mailbox) else mailboxes.find(store, mailbox)
    _require_owner_or_it(store, mb, actor_user_id, "remove")
    _delete_secrets(secrets, mb)
    with store.transaction():
        mailboxes.update(store, mb.id, secret_ref=None)
        mailboxes.set_state(
            store,
            mb.id,
            "disconnected",
            code="removed",
            message="connection removed",
            actor=actor_user_id or mb.owner_user_id,
        )
    return mailboxes.get(store, mb.id)


def transfer_mailbox(
    store: Store,
    settings: Settings | None = None,
    address: str = "",
    *,
    to_user_id: str,
    actor_user_id: str,
    reason: str | None = None,
    secrets: SecretStore | None = None,
) -> ownership.Transfer:
    """C6: give ADDRESS to TO_USER_ID -- an admin's explicit, recorded action. Live mailboxes
    of that address owned by anyone else are disconnected (secrets deleted, stored mail
    kept with its old owner). The new owner then connects the address himself: the admin
    never signs in for him (C1)."""
    from mailops.store.directory import find_user

    settings = settings or Settings.load()
    secrets = secrets or SecretStore(settings)
    address = _normalize(address)
    actor = find_user(store, actor_user_id)
    if actor is None or not actor.active or actor.role != "admin":
        raise PermissionDenied(
            f"{actor_user_id} cannot transfer mailboxes",
            guidance="a transfer is an admin action (C6); name an admin with --as",
        )
    target = find_user(store, to_user_id)
    if target is None or not target.active:
        raise PermissionDenied(f"no active user {to_user_id!r} to transfer {address} to")
    before = ownership.owner_of(store, address)
    others = [
        m for m in mailboxes.live_with_address(store, address) if m.owner_user_id != target.id
    ]
    for mb in others:
        _delete_secrets(secrets, mb)
    with store.transaction():
        for mb in others:
            mailboxes.update(store, mb.id, secret_ref=None)
            mailboxes.set_state(
                store,
                mb.id,
                "disconnected",
                code="transferred",
                message=f"address transferred to another user by {actor.id}",
                actor=actor.id,
            )
        done = ownership.record_transfer(
            store,
            address,
            from_user_id=None if before in (None, ownership.CONFLICT) else before,
            to_user_id=target.id,
            by_user_id=actor.id,
            reason=reason,
            disconnected=[m.id for m in others],
        )
    log.info("address %s transferred to %s by %s", address, target.id, actor.id)
    return done


def endpoints_of(mb: Mailbox, settings: Settings, secrets: SecretStore) -> Endpoints:
    """The endpoints a mailbox was connected with (row + non-secret part of its blob)."""
    ep = resolve(mb.provider, settings)
    extra: dict[str, Any] = {}
    if mb.auth_kind == "oauth" and mb.secret_ref and secrets.has(mb.secret_ref):
        try:
            extra = dict(json.loads(secrets.get(mb.secret_ref)).get("endpoints") or {})
        except (ValueError, MailopsError):
            extra = {}
    if mb.provider == "microsoft" and mb.oauth_authority:
        extra["authority"] = mb.oauth_authority
    if mb.provider == "google" and mb.oauth_authority:
        extra["token_url"] = mb.oauth_authority
    from urllib.parse import urlsplit

    from mailops.providers import DEVSERVER_CLIENT_ID, DEVSERVER_CLIENT_SECRET

    loopback = (urlsplit(mb.oauth_authority or "").hostname or "") in ("127.0.0.1", "localhost")
    if loopback and not (extra.get("client_id") or ep.client_id):
        # a devserver mailbox whose sign-in data was removed: the local service takes any id
        extra.update(local=True, client_id=DEVSERVER_CLIENT_ID)
    if extra.get("local") and mb.provider == "google":
        extra["client_secret"] = DEVSERVER_CLIENT_SECRET
        if not extra.get("authorize_url") and mb.oauth_authority:
            extra["authorize_url"] = mb.oauth_authority.rsplit("/token", 1)[0] + "/authorize"
    return ep.with_overrides(
        imap_host=mb.imap_host,
        imap_port=mb.imap_port,
        imap_security=mb.imap_security,
        smtp_host=mb.smtp_host,
        smtp_port=mb.smtp_port,
        smtp_security=mb.smtp_security,
        ca_file=mb.ca_file,
        **extra,
    )


def reconnect_mailbox(
    store: Store,
    settings: Settings | None = None,
    mailbox: Mailbox | int | str = 0,
    *,
    password: str | None = None,
    method: str | None = None,
    device_code_callback: Callable[[DeviceCodePrompt], Any] | None = None,
    browser: Browser | None = None,
    devserver: bool = False,
    overrides: dict[str, Any] | None = None,
    actor_user_id: str | None = None,
    secrets: SecretStore | None = None,
    timeout: float | None = None,
) -> Mailbox:
    """C3: delete the connection and connect the same account again (same row: history,
    messages, activities and checkpoints stay attached). If the new sign-in fails the
    mailbox stays disconnected and the error is raised."""
    settings = settings or Settings.load()
    secrets = secrets or SecretStore(settings)
    if isinstance(mailbox, Mailbox):
        mb = mailbox
    else:
        mb = mailboxes.find(store, mailbox, include_disconnected=True)
    _require_self(mb.owner_user_id, actor_user_id, "reconnect")
    ep = endpoints_of(mb, settings, secrets)
    if devserver:
        from mailops.providers import devserver_overrides

        ep = ep.with_overrides(**devserver_overrides(settings, name=mb.provider))
    if overrides:
        ep = ep.with_overrides(**overrides)
    if mb.provider == "microsoft" and mb.secret_ref and secrets.has(mb.secret_ref):
        from mailops.auth import microsoft

        try:  # MSAL keeps the account after invalid_grant; drop it so sign-in starts clean
            secrets.put(mb.secret_ref, microsoft.remove_account(mb, secrets.get(mb.secret_ref)))
        except MailopsError:
            pass
    if mb.state != "disconnected":
        mb = remove_mailbox(store, settings, mb, secrets=secrets)
    return connect_mailbox(
        store,
        settings,
        user_id=mb.owner_user_id,
        provider=mb.provider,
        address=mb.address,
        password=password,
        method=method,
        device_code_callback=device_code_callback,
        browser=browser,
        endpoints=ep,
        actor_user_id=actor_user_id,
        secrets=secrets,
        timeout=timeout,
        _reuse=mb,
    )


def list_mailboxes(store: Store, user_id: str | None = None) -> list[dict[str, Any]]:
    """Rows for display: state, problem (code, message, IT guidance, since, and for a
    transient one the next self-healing probe, C4)."""
    from mailops.healing import next_probe_at
    from mailops.problems import reason
    from mailops.store.probes import probes_for

    boxes = mailboxes.all_mailboxes(store, owner=user_id)
    probes = probes_for(store, [m.id for m in boxes if m.state == "problematic"])
    settings = Settings.load()
    out = []
    for m in boxes:
        out.append(
            {
                "id": m.id,
                "user": m.owner_user_id,
                "address": m.address,
                "provider": m.provider,
                "auth": m.auth_kind,
                "state": m.state,
                "problem": m.problem_code or "",
                "message": m.problem_message or "",
                "guidance": reason(m.problem_code).guidance if m.problem_code else "",
                "since": m.problem_since,
                "next_probe": next_probe_at(m, probes.get(m.id), settings),
                "connected_at": m.connected_at,
            }
        )
    return out


test_mailbox.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported
TestResult.__test__ = False  # type: ignore[attr-defined]
