"""Acceptance tests of mailbox connections against the real devserver (Dovecot + SMTP + the
local OAuth token service driven by the real MSAL and google-auth libraries)."""

from __future__ import annotations

import time

import pytest
from connect_support import Approver, browser_for, grants, imap_disabled, local_endpoints

from mailops.auth import credentials_for, token_cache_ref
from mailops.connect import (
    connect_mailbox,
    list_mailboxes,
    reconnect_mailbox,
    remove_mailbox,
    test_mailbox,
)
from mailops.errors import ConnectionProblem, MailopsError, PermissionDenied
from mailops.imap import imap_session
from mailops.providers import endpoints_for_state
from mailops.secrets import SecretStore
from mailops.smtp import open_smtp
from mailops.store import mailboxes


def _ms_connect(store, settings, mailserver, address, user_id="user-1", **kw):
    approver = Approver(mailserver)
    approver.address = address
    mb = connect_mailbox(
        store,
        settings,
        user_id=user_id,
        provider="microsoft",
        address=address,
        endpoints=local_endpoints(mailserver, settings, "microsoft"),
        device_code_callback=approver,
        **kw,
    )
    return mb, approver


def test_C1_C2_msal_device_code_connects_with_xoauth2_for_imap_and_smtp(
    store, settings, mailserver
):
    address, _pw = mailserver.new_user()
    mb, approver = _ms_connect(store, settings, mailserver, address.upper())
    assert approver.prompts and approver.prompts[0].user_code in approver.prompts[0].message
    assert mb.state == "connected" and mb.auth_kind == "oauth" and mb.provider == "microsoft"
    assert mb.address == address and mb.secret_ref == token_cache_ref(mb.id)
    assert "IMAP4REV1" in (mb.capabilities or "") and "SMTP:AUTH" in (mb.capabilities or "")
    creds = credentials_for(mb, settings)
    assert creds.mechanism == "xoauth2" and creds.secret.startswith("at-")
    with imap_session(mb, creds) as client:  # Dovecot accepted the MSAL token over XOAUTH2
        assert client.select_folder("INBOX")
    smtp = open_smtp(mb, creds)
    smtp.sendmail(address, [address], b"Subject: hi\r\n\r\nbody\r\n")
    smtp.quit()
    # a password login is impossible for this mailbox: no password exists anywhere
    assert SecretStore(settings).has(token_cache_ref(mb.id))


def test_C2_msal_auth_code_pkce_with_localhost_redirect(store, settings, mailserver):
    address, _pw = mailserver.new_user()
    mb = connect_mailbox(
        store,
        settings,
        user_id="user-1",
        provider="microsoft",
        address=address,
        method="auth_code",
        endpoints=local_endpoints(mailserver, settings, "microsoft"),
        browser=browser_for(mailserver),
    )
    assert mb.state == "connected"
    assert test_mailbox(store, settings, mb.id).ok


def test_C5_expired_access_token_refreshed_silently(store, settings, mailserver):
    address, _pw = mailserver.new_user()
    mailserver.configure(at_ttl=301)  # MSAL's 5-minute rule: < 300 s left = expired
    try:
        mb, _ = _ms_connect(store, settings, mailserver, address)
        first = credentials_for(mb, settings).secret
        time.sleep(1.2)
        mark = len(mailserver.svc.log)
        result = test_mailbox(store, settings, mb.id)
        assert result.ok
        assert "refresh_token" in grants(mailserver, mark)  # silent refresh, no user involved
        assert credentials_for(mb, settings).secret != first
    finally:
        mailserver.configure(at_ttl=3600)
    # a valid token is served from the (encrypted) cache without a refresh
    mark = len(mailserver.svc.log)
    credentials_for(mb, settings, force_refresh=True)
    credentials_for(mb, settings)
    assert grants(mailserver, mark) == ["refresh_token"]


def test_C4_revoked_refresh_token_makes_mailbox_problematic(store, settings, mailserver):
    address, _pw = mailserver.new_user()
    mb, _ = _ms_connect(store, settings, mailserver, address)
    mailserver.revoke(
        username=address
    )  # the cached AT is refused too: refresh once -> invalid_grant
    result = test_mailbox(store, settings, mb.id)
    assert not result.ok and result.flipped
    assert result.problem.code == "token_revoked" and not result.problem.transient
    got = mailboxes.get(store, mb.id)
    assert got.state == "problematic" and got.problem_code == "token_revoked" and got.problem_since
    listed = list_mailboxes(store, "user-1")
    row = next(r for r in listed if r["id"] == mb.id)
    assert row["guidance"] and "reconnect" in row["guidance"].lower()


def test_C4_wrong_password_makes_mailbox_problematic(store, settings, mailserver, password_mailbox):
    mb, password = password_mailbox()
    assert test_mailbox(store, settings, mb.id).ok
    SecretStore(settings).put(mb.secret_ref, password + "-changed")
    result = test_mailbox(store, settings, mb.id)
    assert not result.ok and result.flipped and result.problem.code == "auth_failed"
    assert mailboxes.get(store, mb.id).state == "problematic"
    SecretStore(settings).put(mb.secret_ref, password)  # works again, but C3: only reconnect
    again = test_mailbox(store, settings, mb.id)
    assert again.ok and again.mailbox.state == "problematic" and "until reconnected" in again.line()


def test_C1_wrong_password_connect_stores_nothing(store, settings, mailserver):
    address, password = mailserver.new_user()
    with pytest.raises(ConnectionProblem) as e:
        connect_mailbox(
            store,
            settings,
            user_id="user-1",
            provider="generic",
            address=address,
            password=password + "x",
            endpoints=local_endpoints(mailserver, settings, "generic"),
        )
    assert e.value.code == "auth_failed"
    assert mailboxes.all_mailboxes(store) == []


def test_C1_oauth_identity_of_another_address_refused(store, settings, mailserver):
    address, _pw = mailserver.new_user()
    other, _ = mailserver.new_user()
    mailserver.configure(identity_for=address, identity=other)  # id_token names OTHER
    with pytest.raises(ConnectionProblem) as e:
        _ms_connect(store, settings, mailserver, address)
    assert e.value.code == "identity_mismatch" and other in str(e.value)
    assert mailboxes.all_mailboxes(store) == []
    # and signing in on the phone as someone else than the address entered
    third, _ = mailserver.new_user()
    approver = Approver(mailserver, sign_in_as=other)
    with pytest.raises(ConnectionProblem) as e2:
        connect_mailbox(
            store,
            settings,
            user_id="user-1",
            provider="microsoft",
            address=third,
            endpoints=local_endpoints(mailserver, settings, "microsoft"),
            device_code_callback=approver,
        )
    assert e2.value.code == "identity_mismatch"


def test_C1_linking_to_another_user_refused_admins_included(store, settings, mailserver):
    store.execute(
        "INSERT INTO users (id, email, role) VALUES ('boss', 'boss@example.test', 'admin')"
    )
    address, password = mailserver.new_user()
    with pytest.raises(PermissionDenied):
        connect_mailbox(
            store,
            settings,
            user_id="user-1",
            actor_user_id="boss",
            provider="generic",
            address=address,
            password=password,
            endpoints=local_endpoints(mailserver, settings, "generic"),
        )
    assert mailboxes.all_mailboxes(store) == []


def test_C1_two_mailboxes_for_one_user_and_no_duplicate(store, settings, mailserver):
    a, pa = mailserver.new_user()
    b, _ = mailserver.new_user()
    ep = local_endpoints(mailserver, settings, "generic")
    m1 = connect_mailbox(
        store, settings, user_id="user-1", provider="generic", address=a, password=pa, endpoints=ep
    )
    m2, _ = _ms_connect(store, settings, mailserver, b)
    assert {m.id for m in mailboxes.all_mailboxes(store, owner="user-1")} == {m1.id, m2.id}
    with pytest.raises(MailopsError) as e:
        connect_mailbox(
            store,
            settings,
            user_id="user-1",
            provider="generic",
            address=a,
            password=pa,
            endpoints=ep,
        )
    assert e.value.code == "already_connected"


def test_C3_reconnect_keeps_stored_data(store, settings, mailserver):
    address, _pw = mailserver.new_user()
    mb, _ = _ms_connect(store, settings, mailserver, address)
    store.execute("INSERT INTO messages (id, subject) VALUES ('<m1@x>', 'kept')")
    store.execute(
        "INSERT INTO activities (message_id, customer_id, mailbox_id, user_id, direction)"
        " VALUES ('<m1@x>', 'c1', ?, 'user-1', 'inbound')",
        [mb.id],
    )
    mailserver.revoke(username=address)
    assert test_mailbox(store, settings, mb.id, force_refresh=True).problem.code == "token_revoked"
    approver = Approver(mailserver)
    approver.address = address
    again = reconnect_mailbox(store, settings, mb.id, device_code_callback=approver)
    assert again.id == mb.id and again.state == "connected" and again.problem_code is None
    assert store.scalar("SELECT count(*) FROM activities WHERE mailbox_id = ?", [mb.id]) == 1
    assert store.scalar("SELECT subject FROM messages WHERE id = '<m1@x>'") == "kept"
    states = [
        r[0]
        for r in store.rows(
            "SELECT to_state FROM mailbox_events WHERE mailbox_id = ? ORDER BY id", [mb.id]
        )
    ]
    assert states == ["connected", "problematic", "disconnected", "connected"]
    assert test_mailbox(store, settings, mb.id).ok


def test_C3_remove_deletes_secrets_keeps_row(store, settings, mailserver, password_mailbox):
    mb, _ = password_mailbox()
    secrets = SecretStore(settings)
    assert secrets.has(mb.secret_ref)
    gone = remove_mailbox(store, settings, mb.id)
    assert gone.state == "disconnected" and gone.secret_ref is None and gone.disconnected_at
    assert not secrets.has(mb.secret_ref)
    with pytest.raises(MailopsError):
        test_mailbox(store, settings, mb.id)


def test_C4_transient_token_fault_does_not_flip_until_budget(store, settings, mailserver):
    address, _pw = mailserver.new_user()
    mb, _ = _ms_connect(store, settings, mailserver, address)
    mailserver.fault("/oauth2/v2.0/token", status=500, count=1)
    first = test_mailbox(store, settings, mb.id, force_refresh=True, budget=2)
    assert not first.ok and first.problem.code == "server_unavailable" and first.problem.transient
    assert not first.flipped and mailboxes.get(store, mb.id).state == "connected"
    assert test_mailbox(store, settings, mb.id, budget=2).ok  # recovered: count reset
    assert mailboxes.get(store, mb.id).transient_failures == 0
    mailserver.fault("/oauth2/v2.0/token", status=500, count=2)
    results = [test_mailbox(store, settings, mb.id, force_refresh=True, budget=2) for _ in range(2)]
    assert [r.flipped for r in results] == [False, True]  # budget exhausted
    got = mailboxes.get(store, mb.id)
    assert got.state == "problematic" and got.problem_code == "server_unavailable"


def test_C4_closed_imap_port_flips_only_when_budget_exhausted(
    store, settings, mailserver, password_mailbox
):
    from mailops.dev.devserver import free_port

    mb, _ = password_mailbox()
    mailboxes.update(store, mb.id, imap_port=free_port())  # nothing listens: connection refused
    results = [test_mailbox(store, settings, mb.id, budget=3) for _ in range(3)]
    assert [r.problem.code for r in results] == ["network"] * 3
    assert [r.flipped for r in results] == [False, False, True]
    got = mailboxes.get(store, mb.id)
    assert got.state == "problematic" and got.problem_code == "network"


def test_C2_google_installed_app_flow_and_refresh(store, settings, mailserver):
    address, _pw = mailserver.new_user()
    mb = connect_mailbox(
        store,
        settings,
        user_id="user-1",
        provider="google",
        address=address,
        endpoints=local_endpoints(mailserver, settings, "google"),
        browser=browser_for(mailserver),
    )
    assert mb.state == "connected" and mb.provider == "google"
    mark = len(mailserver.svc.log)
    assert test_mailbox(store, settings, mb.id, force_refresh=True).ok
    assert "refresh_token" in grants(mailserver, mark)
    mailserver.revoke(username=address)
    result = test_mailbox(store, settings, mb.id, force_refresh=True)
    assert result.problem.code == "token_revoked" and result.flipped


def test_C2_devserver_overrides_point_every_endpoint_local(mailserver):
    ep = endpoints_for_state(mailserver.state, "microsoft")
    for key in ("authority", "token_url", "authorize_url"):
        assert ep[key].startswith("https://127.0.0.1:")
    assert ep["imap_host"] == ep["smtp_host"] == "127.0.0.1" and ep["ca_file"]


def test_C4_missing_secret_is_a_problem_not_a_crash(store, settings, password_mailbox):
    mb, _ = password_mailbox()
    SecretStore(settings).delete(mb.secret_ref)
    result = test_mailbox(store, settings, mb.id)
    assert result.problem.code == "secret_missing" and result.flipped
    with pytest.raises(ConnectionProblem):
        credentials_for(mb, settings)


def test_C1_store_not_locked_while_user_signs_in(store, settings, mailserver):
    """Another process (the sync scheduler) can use the store during a device-code sign-in."""
    import subprocess
    import sys

    address, _pw = mailserver.new_user()
    store.scalar("SELECT count(*) FROM mailboxes")  # the store is open in this process
    seen = []

    def prompt(p):
        code = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute('SELECT 1')"
        seen.append(
            subprocess.run([sys.executable, "-c", code, settings.db], timeout=60).returncode
        )
        mailserver.approve(p.user_code, address)

    connect_mailbox(
        store,
        settings,
        user_id="user-1",
        provider="microsoft",
        address=address,
        endpoints=local_endpoints(mailserver, settings, "microsoft"),
        device_code_callback=prompt,
    )
    assert seen == [0]


def test_C4_imap_disabled_by_the_server_flips_at_once(
    store, settings, mailserver, password_mailbox
):
    mb, _ = password_mailbox()
    with imap_disabled(mailserver, mb.address):
        result = test_mailbox(store, settings, mb.id)
    assert result.problem.code == "imap_disabled" and result.flipped
    got = mailboxes.get(store, mb.id)
    assert got.state == "problematic" and "IMAP access is disabled" in (got.problem_message or "")


def test_C4_tls_failure_flips_at_once(store, settings, mailserver, password_mailbox):
    mb, _ = password_mailbox()
    mailboxes.update(store, mb.id, ca_file=None)  # the devserver's CA is no longer trusted
    result = test_mailbox(store, settings, mb.id)
    assert result.problem.code == "tls_failed" and result.flipped
    other, _ = password_mailbox()
    mailboxes.update(store, other.id, imap_port=mailserver.imap_port)  # plain port, TLS expected
    assert test_mailbox(store, settings, other.id).problem.code == "tls_failed"


def test_C4_sign_in_service_down_valid_cached_token_still_works(store, settings, mailserver):
    address, _pw = mailserver.new_user()
    mb, _ = _ms_connect(store, settings, mailserver, address)
    mailserver.fault("/v2.0/.well-known/openid-configuration", status=503, count=2)
    assert test_mailbox(store, settings, mb.id).ok  # cached AT (1 h left) used, no discovery
    result = test_mailbox(store, settings, mb.id, force_refresh=True)  # must reach the IdP
    assert result.problem.transient and not result.flipped
    assert result.problem.code == "server_unavailable"


def test_C4_declined_or_unfinished_device_code_sign_in_stores_nothing(store, settings, mailserver):
    address, _pw = mailserver.new_user()
    ep = local_endpoints(mailserver, settings, "microsoft")
    with pytest.raises(ConnectionProblem) as declined:
        connect_mailbox(
            store,
            settings,
            user_id="user-1",
            provider="microsoft",
            address=address,
            endpoints=ep,
            device_code_callback=lambda p: mailserver.approve(p.user_code, address, deny=True),
        )
    assert declined.value.code == "consent_required"
    with pytest.raises(ConnectionProblem) as late:
        connect_mailbox(
            store,
            settings,
            user_id="user-1",
            provider="microsoft",
            address=address,
            endpoints=ep,
            device_code_callback=lambda p: None,
            timeout=1.0,
        )
    assert late.value.code == "consent_required" and "in time" in late.value.message
    assert mailboxes.all_mailboxes(store) == []


def test_C3_reconnect_after_remove_uses_the_stored_endpoints(store, settings, mailserver):
    for provider in ("microsoft", "google"):
        address, _pw = mailserver.new_user()
        if provider == "microsoft":
            mb, _ = _ms_connect(store, settings, mailserver, address)
        else:
            mb = connect_mailbox(
                store,
                settings,
                user_id="user-1",
                provider="google",
                address=address,
                endpoints=local_endpoints(mailserver, settings, "google"),
                browser=browser_for(mailserver),
            )
        remove_mailbox(store, settings, mb.id)  # the sign-in data is gone with the secrets
        approver = Approver(mailserver)
        approver.address = address
        again = reconnect_mailbox(
            store, settings, address, device_code_callback=approver, browser=browser_for(mailserver)
        )
        assert again.id == mb.id and again.state == "connected"
