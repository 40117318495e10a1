"""The local mail server: logins (PLAIN, XOAUTH2), SMTP -> LMTP delivery, clean stop."""

from __future__ import annotations

import os
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time

import imapclient
import pytest
from imapclient.exceptions import LoginError

from mailops.dev.devserver import DevServerState, pid_alive


def _ctx(ms) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ms.ca_file)


def test_imap_plain_login_over_starttls_and_imaps(mailserver):
    addr, pw = mailserver.new_user()
    c = imapclient.IMAPClient("127.0.0.1", mailserver.imap_port, ssl=False, timeout=10)
    c.starttls(_ctx(mailserver))
    c.login(addr, pw)
    caps = c.capabilities()
    assert b"CONDSTORE" in caps and b"QRESYNC" in caps and b"SPECIAL-USE" in caps
    c.logout()
    c = imapclient.IMAPClient(
        "127.0.0.1", mailserver.imaps_port, ssl=True, ssl_context=_ctx(mailserver), timeout=10
    )
    c.login(addr, pw)
    special = {
        flag for _, flags, _ in [(f[0], f[0], f[2]) for f in c.list_folders()] for flag in flags
    }
    assert b"\\Sent" in special and b"\\Drafts" in special
    c.logout()


def test_imap_wrong_password_is_refused(mailserver):
    addr, _ = mailserver.new_user()
    c = imapclient.IMAPClient(
        "127.0.0.1", mailserver.imaps_port, ssl=True, ssl_context=_ctx(mailserver), timeout=10
    )
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        c.login(addr, "wrong")
    c.shutdown()


def test_imap_xoauth2_accepts_issued_token_and_rejects_bad_or_foreign(mailserver):
    alice, _ = mailserver.new_user()
    bob, _ = mailserver.new_user()
    token = mailserver.issue_token(alice)["access_token"]

    def login(user, tok):
        c = imapclient.IMAPClient(
            "127.0.0.1", mailserver.imaps_port, ssl=True, ssl_context=_ctx(mailserver), timeout=10
        )
        try:
            c.oauth2_login(user, tok)
            c.logout()
        finally:
            try:
                c.shutdown()
            except Exception:
                pass

    login(alice, token)
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        login(alice, "not-a-token")
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        login(bob, token)  # alice's token is not bob's
    mailserver.revoke(token=token)
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        login(alice, token)


def test_smtp_delivers_into_recipient_inbox_via_lmtp(mailserver):
    sender, spw = mailserver.new_user()
    rcpt, rpw = mailserver.new_user()
    token = mailserver.issue_token(sender)["access_token"]
    with smtplib.SMTP("127.0.0.1", mailserver.smtp_port, timeout=10) as s:
        s.starttls(context=_ctx(mailserver))
        s.ehlo()  # smtplib does not re-EHLO after STARTTLS, and treats the server's 503 as success
        raw = f"user={sender}\x01auth=Bearer {token}\x01\x01"
        code, _ = s.auth(
            "XOAUTH2",
            lambda challenge=None: raw if challenge is None else "",
            initial_response_ok=True,
        )
        assert code == 235
        s.sendmail(
            sender,
            [rcpt],
            f"From: {sender}\r\nTo: {rcpt}\r\nSubject: lmtp check\r\n\r\nhello\r\n".encode(),
        )
    with smtplib.SMTP("127.0.0.1", mailserver.smtp_port, timeout=10) as s:
        s.starttls(context=_ctx(mailserver))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(sender, "wrong")
        s.login(sender, spw)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail(sender, ["nobody-here@example.test"], b"Subject: x\r\n\r\nx\r\n")
    c = imapclient.IMAPClient(
        "127.0.0.1", mailserver.imaps_port, ssl=True, ssl_context=_ctx(mailserver), timeout=10
    )
    c.login(rcpt, rpw)
    c.select_folder("INBOX", readonly=True)
    uids = c.search()
    assert len(uids) == 1
    msg = c.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]
    assert b"Subject: lmtp check" in msg and b"Delivered-To:" in msg
    c.logout()


def test_cli_start_status_stop_leaves_no_process():
    root = tempfile.mkdtemp(prefix="mailops-cli-", dir="/tmp")
    env = dict(os.environ, MAILOPS_DEVSERVER_DIR=root)
    mailops = [sys.executable, "-m", "mailops.cli"]
    try:
        out = subprocess.run(
            [*mailops, "devserver", "start"], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        state = DevServerState.load(root)
        assert state is not None and pid_alive(state.pid) and pid_alive(state.dovecot_pid)
        again = subprocess.run(
            [*mailops, "devserver", "start"], env=env, capture_output=True, text=True, timeout=60
        )
        assert (
            again.returncode == 0 and f"pid {state.pid}" in again.stdout
        )  # idempotent: same server
        st = subprocess.run(
            [*mailops, "devserver", "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert st.returncode == 0 and str(state.imap_port) in st.stdout
        stop = subprocess.run(
            [*mailops, "devserver", "stop"], env=env, capture_output=True, text=True, timeout=60
        )
        assert stop.returncode == 0, stop.stderr
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (
            pid_alive(state.pid) or pid_alive(state.dovecot_pid)
        ):
            time.sleep(0.1)
        assert not pid_alive(state.pid) and not pid_alive(state.dovecot_pid)
        leftovers = subprocess.run(["pgrep", "-f", root], capture_output=True, text=True)
        assert leftovers.stdout.strip() == ""
        st = subprocess.run(
            [*mailops, "devserver", "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert st.returncode == 1 and "not running" in st.stdout
    finally:
        subprocess.run([*mailops, "devserver", "stop"], env=env, capture_output=True, timeout=60)
        subprocess.run(["rm", "-rf", root])


def test_restart_keeps_the_same_endpoints():
    """Connected mailboxes store host, ports and the OAuth authority: a devserver restart
    (make demo run again) must come back on the same ones."""
    import shutil

    from mailops.dev.devserver import DevServer

    root = tempfile.mkdtemp(prefix="mailops-restart-", dir="/tmp")
    try:
        with DevServer(root, users={"keep@example.test": "pw"}) as first:
            token = first.issue_token("keep@example.test")["access_token"]
            before = (
                first.imap_port,
                first.imaps_port,
                first.smtp_port,
                first.oauth_url,
                first.oauth_http_url,
            )
        with DevServer(root) as second:
            after = (
                second.imap_port,
                second.imaps_port,
                second.smtp_port,
                second.oauth_url,
                second.oauth_http_url,
            )
            # the identity provider remembers live tokens across the restart (the demo's
            # OAuth mailbox must not turn problematic because the devserver restarted)
            c = imapclient.IMAPClient(
                "127.0.0.1",
                second.imaps_port,
                ssl=True,
                ssl_context=ssl.create_default_context(cafile=second.ca_file),
                timeout=10,
            )
            c.oauth2_login("keep@example.test", token)
            c.logout()
            second.revoke(token=token)
        assert after == before
        with DevServer(root) as third:  # a revoked token stays revoked
            c = imapclient.IMAPClient(
                "127.0.0.1",
                third.imaps_port,
                ssl=True,
                ssl_context=ssl.create_default_context(cafile=third.ca_file),
                timeout=10,
            )
            with pytest.raises(LoginError):
                c.oauth2_login("keep@example.test", token)
            c.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_devserver_add_user_creates_accounts_that_log_in(mailserver, capsys, monkeypatch):
    """`mailops devserver add-user` (issue 9): a new account with a printed random password,
    one with a password from the environment; an existing one keeps its password."""
    from mailops.cli import main

    new = f"added-{os.getpid()}@example.test"
    chosen = f"chosen-{os.getpid()}@example.test"
    existing, existing_pw = mailserver.new_user()
    monkeypatch.setenv("ADD_USER_PW", "s3cret-pw")
    assert main(["devserver", "add-user", new, "--dir", mailserver.root]) == 0
    out = capsys.readouterr().out
    password = out.split("password ", 1)[1].split()[0]
    assert (
        main(
            [
                "devserver",
                "add-user",
                chosen,
                existing.upper(),
                "--dir",
                mailserver.root,
            ]
        )
        == 0
    )
    assert "already there" in capsys.readouterr().out
    assert (
        main(
            [
                "devserver",
                "add-user",
                chosen,
                "--dir",
                mailserver.root,
                "--password-env",
                "ADD_USER_PW",
            ]
        )
        == 0
    )
    assert f"{chosen}: password set" in capsys.readouterr().out
    for address, pw in ((new, password), (chosen, "s3cret-pw"), (existing, existing_pw)):
        c = imapclient.IMAPClient(
            "127.0.0.1", mailserver.imaps_port, ssl=True, ssl_context=_ctx(mailserver), timeout=10
        )
        c.login(address, pw)
        c.logout()
    assert main(["devserver", "add-user", "not-an-address", "--dir", mailserver.root]) != 0
    assert capsys.readouterr().err.count("\n") == 1
