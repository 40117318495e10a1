"""`mailops mailbox ...` and `mailops demo connect` against the devserver: one-line errors,
passwords never as arguments, the --devserver endpoints."""

from __future__ import annotations

import os
import threading
import time

import pytest

from mailops.cli import main
from mailops.store import Store, mailboxes


@pytest.fixture
def devserver_dir(mailserver, monkeypatch):
    """Make the session devserver discoverable like a detached one (`--devserver`)."""
    path = os.path.join(mailserver.root, "state.json")
    if not os.path.exists(path):
        mailserver.state.save()
    monkeypatch.setenv("MAILOPS_DEVSERVER_DIR", mailserver.root)
    return mailserver.root


class AutoApprover:
    """Approves every pending device code on the token service as ADDRESS (the user's phone)."""

    def __init__(self, mailserver, address: str) -> None:
        self.svc, self.address = mailserver.svc, address
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            with self.svc.lock:
                pending = [d["user_code"] for d in self.svc.device.values() if not d["username"]]
            for code in pending:
                self.svc.approve(code, self.address)
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(2)


def _mailboxes(settings):
    with Store(settings.db) as s:
        return mailboxes.all_mailboxes(s)


def test_C1_cli_connect_password_from_env_list_test_remove(
    settings, mailserver, devserver_dir, monkeypatch, capsys
):
    address, password = mailserver.new_user()
    monkeypatch.setenv("DEMO_PW", password)
    assert (
        main(
            [
                "mailbox",
                "connect",
                address,
                "--user",
                "u-1",
                "--provider",
                "generic",
                "--devserver",
                "--password-env",
                "DEMO_PW",
            ]
        )
        == 0
    )
    assert f"connected {address}" in capsys.readouterr().out
    assert main(["mailbox", "list", "--user", "u-1"]) == 0
    assert "connected" in capsys.readouterr().out
    assert main(["mailbox", "test", address]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["mailbox", "remove", address]) == 0
    assert _mailboxes(settings)[0].state == "disconnected"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(password + "\n"))
    assert main(["mailbox", "reconnect", address, "--password-stdin"]) == 0
    assert _mailboxes(settings)[0].state == "connected"
    err = capsys.readouterr()
    assert password not in err.out + err.err


def test_C1_cli_connect_wrong_password_is_one_line(
    settings, mailserver, devserver_dir, capsys, monkeypatch
):
    address, password = mailserver.new_user()
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("wrong-" + password + "\n"))
    code = main(
        [
            "mailbox",
            "connect",
            address,
            "--user",
            "u-1",
            "--provider",
            "generic",
            "--devserver",
            "--password-stdin",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "auth_failed" in err and "Traceback" not in err
    assert _mailboxes(settings) == []


def test_C1_cli_refuses_connecting_for_someone_else(
    settings, mailserver, devserver_dir, capsys, monkeypatch
):
    address, password = mailserver.new_user()
    monkeypatch.setenv("PW", password)
    code = main(
        [
            "mailbox",
            "connect",
            address,
            "--user",
            "u-1",
            "--as",
            "admin-1",
            "--provider",
            "generic",
            "--devserver",
            "--password-env",
            "PW",
        ]
    )
    err = capsys.readouterr().err
    assert code == 6 and "permission_denied" in err and err.count("\n") == 1


def test_C2_cli_microsoft_device_code_over_devserver(settings, mailserver, devserver_dir, capsys):
    address, _pw = mailserver.new_user()
    with AutoApprover(mailserver, address):
        assert (
            main(
                [
                    "mailbox",
                    "connect",
                    address,
                    "--user",
                    "u-1",
                    "--provider",
                    "microsoft",
                    "--devserver",
                    "--timeout",
                    "20",
                ]
            )
            == 0
        )
    out = capsys.readouterr().out
    assert "enter the code" in out and f"connected {address}" in out
    [mb] = _mailboxes(settings)
    assert mb.auth_kind == "oauth" and mb.oauth_authority.startswith("https://127.0.0.1")


def test_C3_cli_test_of_problematic_mailbox_prints_reason(
    settings, mailserver, devserver_dir, capsys, monkeypatch
):
    address, password = mailserver.new_user()
    monkeypatch.setenv("PW", password)
    main(
        [
            "mailbox",
            "connect",
            address,
            "--user",
            "u-1",
            "--provider",
            "generic",
            "--devserver",
            "--password-env",
            "PW",
        ]
    )
    [mb] = _mailboxes(settings)
    from mailops.secrets import SecretStore

    SecretStore(settings).put(mb.secret_ref, "nope")
    capsys.readouterr()
    assert main(["mailbox", "test", address]) == 5
    err = capsys.readouterr().err
    assert "auth_failed" in err and err.count("\n") == 1
    main(["mailbox", "list"])
    assert "problematic" in capsys.readouterr().out


def test_C1_demo_connect_every_demo_mailbox_one_through_oauth(
    settings, mailserver, devserver_dir, capsys
):
    a, _ = mailserver.new_user()
    b, _ = mailserver.new_user()
    with Store(settings.db) as s:
        s.execute("INSERT INTO users (id, email) VALUES ('u-a', ?), ('u-b', ?)", [a, b])
    assert main(["demo", "connect"]) == 0
    out = capsys.readouterr().out
    assert "MSAL device code" in out and "password" in out
    got = {m.address: m for m in _mailboxes(settings)}
    assert got[a].auth_kind == "oauth" and got[b].auth_kind == "password"
    assert all(m.state == "connected" for m in got.values())
    assert main(["demo", "connect"]) == 0  # safe to re-run
    assert "already connected" in capsys.readouterr().out
    assert len(_mailboxes(settings)) == 2


def test_C2_cli_devserver_approve_flag_stands_in_for_the_phone(
    settings, mailserver, devserver_dir, capsys
):
    address, _pw = mailserver.new_user()
    assert (
        main(
            [
                "mailbox",
                "connect",
                address,
                "--user",
                "u-1",
                "--provider",
                "microsoft",
                "--devserver",
                "--approve",
                "--timeout",
                "20",
            ]
        )
        == 0
    )
    assert f"connected {address}" in capsys.readouterr().out
    assert (
        main(["mailbox", "reconnect", address, "--devserver", "--approve", "--timeout", "20"]) == 0
    )
    assert _mailboxes(settings)[0].state == "connected"


def test_C2_cli_google_over_devserver(settings, mailserver, devserver_dir, capsys):
    address, _pw = mailserver.new_user()
    assert (
        main(
            [
                "mailbox",
                "connect",
                address,
                "--user",
                "u-1",
                "--provider",
                "google",
                "--devserver",
                "--approve",
                "--timeout",
                "20",
            ]
        )
        == 0
    )
    [mb] = _mailboxes(settings)
    assert mb.provider == "google" and mb.auth_kind == "oauth"
    assert main(["mailbox", "test", address]) == 0
