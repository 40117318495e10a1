"""C5: a known password and the real OAuth tokens go through every connect flow (CLI,
library, widget, notebook; password, MSAL device code + refresh, Google); then the DuckDB
file, the secrets directory, the logs, the CLI output and the executed notebook are scanned
for them. Nothing may be found."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import papermill as pm
from connect_support import Approver, browser_for, local_endpoints

from mailops.auth import credentials_for
from mailops.cli import main
from mailops.connect import connect_mailbox, test_mailbox
from mailops.providers import endpoints_for_state
from mailops.secrets import SecretStore
from mailops.store import Store, mailboxes
from mailops.widgets import ConnectPanel

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "connect_mailbox.ipynb"


def test_C5_secret_scan_finds_nothing(settings, mailserver, tmp_path, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # msal, urllib3, google-auth, mailops: everything
    if not os.path.exists(os.path.join(mailserver.root, "state.json")):
        mailserver.state.save()
    monkeypatch.setenv("MAILOPS_DEVSERVER_DIR", mailserver.root)
    addresses, passwords = [], []

    # 1. CLI, password from the environment
    a, pw = mailserver.new_user()
    addresses.append(a), passwords.append(pw)
    monkeypatch.setenv("SCAN_PW", pw)
    assert (
        main(
            [
                "--debug",
                "mailbox",
                "connect",
                a,
                "--user",
                "u-1",
                "--provider",
                "generic",
                "--devserver",
                "--password-env",
                "SCAN_PW",
            ]
        )
        == 0
    )
    assert main(["mailbox", "test", a]) == 0

    # 2. widget, password field
    b, pw = mailserver.new_user()
    addresses.append(b), passwords.append(pw)
    panel = ConnectPanel(
        settings,
        user_id="u-1",
        provider="generic",
        address=b,
        endpoint_overrides=endpoints_for_state(mailserver.state, "generic"),
    )
    panel.password.value = pw
    assert panel.on_connect().ok

    # 3. MSAL device code, then a forced silent refresh
    c, _ = mailserver.new_user()
    addresses.append(c)
    approver = Approver(mailserver)
    approver.address = c
    with Store(settings.db) as store:
        mb = connect_mailbox(
            store,
            settings,
            user_id="u-1",
            provider="microsoft",
            address=c,
            endpoints=local_endpoints(mailserver, settings, "microsoft"),
            device_code_callback=approver,
        )
        credentials_for(mb, settings, force_refresh=True)
        assert test_mailbox(store, settings, mb.id).ok

        # 4. Google installed-app flow + refresh
        d, _ = mailserver.new_user()
        addresses.append(d)
        g = connect_mailbox(
            store,
            settings,
            user_id="u-1",
            provider="google",
            address=d,
            endpoints=local_endpoints(mailserver, settings, "google"),
            browser=browser_for(mailserver),
        )
        assert test_mailbox(store, settings, g.id, force_refresh=True).ok

    # 5. the notebook, headless, password from an env var
    e, pw = mailserver.new_user()
    addresses.append(e), passwords.append(pw)
    monkeypatch.setenv("SCAN_NB_PW", pw)
    executed = tmp_path / "connect.ipynb"
    pm.execute_notebook(
        str(NOTEBOOK),
        str(executed),
        kernel_name="python3",
        progress_bar=False,
        parameters=dict(
            USER_ID="u-2",
            PROVIDER="generic",
            ADDRESS=e,
            MODE="headless",
            DEVSERVER=True,
            LOGIN_FROM_ENV="SCAN_NB_PW",
        ),
        cwd=str(NOTEBOOK.parent),
    )
    with Store(settings.db) as store:
        assert len(mailboxes.all_mailboxes(store, states=("connected",))) == 5

    tokens = [
        t
        for table in (mailserver.svc.access, mailserver.svc.refresh)
        for t, v in list(table.items())
        if v["username"] in addresses
    ]
    assert len(tokens) >= 6  # ATs and RTs of the Microsoft and Google sign-ins and refreshes
    secrets = [s.encode() for s in passwords + tokens]

    out = capsys.readouterr()
    db = Path(settings.db)
    haystacks = {
        "duckdb": b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file()),
        "secrets dir names": "\n".join(
            p.name for p in SecretStore(settings).dir.rglob("*")
        ).encode(),
        "secrets dir contents": b"".join(
            p.read_bytes() for p in SecretStore(settings).dir.rglob("*") if p.is_file()
        ),
        "logs": caplog.text.encode(),
        "cli output": (out.out + out.err).encode(),
        "notebook": executed.read_bytes(),
    }
    assert all(haystacks.values()), [k for k, v in haystacks.items() if not v]
    found = [
        (where, s.decode()[:6] + "...")
        for where, hay in haystacks.items()
        for s in secrets
        if s in hay
    ]
    assert found == []
    # the scan can fail: the plaintext is really there to be found when it leaks
    assert secrets[0] in secrets[0] + haystacks["logs"]
