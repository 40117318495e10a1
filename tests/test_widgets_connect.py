"""R1: the connect widget's callbacks (driven directly) and the notebook run headless under
papermill, against the devserver."""

from __future__ import annotations

import json
import os

import papermill as pm
import pytest
from connect_support import Approver, browser_for
from test_connect_cli import AutoApprover

from mailops.providers import endpoints_for_state
from mailops.secrets import SecretStore
from mailops.store import Store, mailboxes
from mailops.widgets import ConnectPanel

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "connect_mailbox.ipynb")


def _panel(settings, mailserver, provider, address, **kw):
    return ConnectPanel(
        settings,
        user_id="u-1",
        provider=provider,
        address=address,
        endpoint_overrides=endpoints_for_state(mailserver.state, provider),
        timeout=20,
        **kw,
    )


def test_R1_widget_device_code_connect_test_remove_reconnect(settings, mailserver):
    address, _pw = mailserver.new_user()
    approver = Approver(mailserver)
    approver.address = address
    panel = _panel(settings, mailserver, "microsoft", address, device_code_hook=approver)
    assert panel.password_box.layout.display == "none"  # OAuth: no password field
    outcome = panel.on_connect()
    assert outcome.ok, outcome.line
    assert approver.prompts  # the device-code message was shown
    assert "connected" in panel.result.value and address in panel.table.value
    assert panel.selected.value == outcome.mailbox_id
    assert panel.on_test().ok
    removed = panel.on_remove()
    assert removed.ok and "disconnected" in panel.table.value
    again = panel.on_reconnect()
    assert again.ok, again.line
    with Store(settings.db) as s:
        assert mailboxes.get(s, outcome.mailbox_id).state == "connected"


def test_R1_widget_password_flow_and_errors_are_one_line(settings, mailserver):
    address, password = mailserver.new_user()
    panel = _panel(settings, mailserver, "generic", address)
    assert panel.password_box.layout.display == ""
    panel.password.value = "wrong"
    bad = panel.on_connect()
    assert not bad.ok and bad.code == "auth_failed" and "\n" not in bad.line
    assert panel.password.value == ""  # never kept in the widget
    panel.password.value = password
    good = panel.on_connect()
    assert good.ok and panel.password.value == ""
    assert password not in panel.widget.__repr__() and password not in panel.table.value
    SecretStore(settings).put(f"mailbox/{good.mailbox_id}/password", "changed")
    t = panel.on_test()
    assert not t.ok and t.code == "auth_failed" and "problematic" in panel.table.value


def test_R1_widget_google_sign_in(settings, mailserver):
    address, _pw = mailserver.new_user()
    panel = _panel(settings, mailserver, "google", address, browser=browser_for(mailserver))
    assert panel.on_connect().ok


@pytest.fixture
def devserver_env(mailserver, monkeypatch):
    if not os.path.exists(os.path.join(mailserver.root, "state.json")):
        mailserver.state.save()
    monkeypatch.setenv("MAILOPS_DEVSERVER_DIR", mailserver.root)


def _run(tmp_path, **params):
    out = tmp_path / f"connect_{params.get('MODE', 'widget')}.ipynb"
    pm.execute_notebook(
        NOTEBOOK,
        str(out),
        parameters=params,
        kernel_name="python3",
        progress_bar=False,
        cwd=os.path.dirname(NOTEBOOK),
    )
    return out


def test_R1_notebook_headless_password_connect(
    settings, mailserver, devserver_env, tmp_path, monkeypatch
):
    address, password = mailserver.new_user()
    monkeypatch.setenv("NB_LOGIN", password)
    out = _run(
        tmp_path,
        USER_ID="u-nb",
        PROVIDER="generic",
        ADDRESS=address,
        MODE="headless",
        DEVSERVER=True,
        LOGIN_FROM_ENV="NB_LOGIN",
    )
    text = out.read_text()
    assert f"connected {address}" in text and password not in text
    with Store(settings.db) as s:
        [mb] = mailboxes.all_mailboxes(s, owner="u-nb")
    assert mb.state == "connected" and mb.auth_kind == "password"


def test_R1_notebook_headless_msal_device_code(settings, mailserver, devserver_env, tmp_path):
    address, _pw = mailserver.new_user()
    with AutoApprover(mailserver, address):
        out = _run(
            tmp_path,
            USER_ID="u-nb",
            PROVIDER="microsoft",
            ADDRESS=address,
            MODE="headless",
            DEVSERVER=True,
            TIMEOUT=30.0,
        )
    cells = json.loads(out.read_text())["cells"]
    outputs = json.dumps([c.get("outputs", []) for c in cells])
    assert "enter the code" in outputs and f"connected {address}" in outputs
    tokens = [
        t
        for table in (mailserver.svc.access, mailserver.svc.refresh)
        for t, v in list(table.items())
        if v["username"] == address
    ]
    assert tokens and not [t for t in tokens if t in out.read_text()]  # C5
    with Store(settings.db) as s:
        [mb] = mailboxes.all_mailboxes(s, owner="u-nb")
    assert mb.auth_kind == "oauth"


def test_R1_notebook_failed_headless_connect_fails_in_one_line(
    settings, mailserver, devserver_env, tmp_path, monkeypatch
):
    address, password = mailserver.new_user()
    monkeypatch.setenv("NB_LOGIN", "wrong")
    with pytest.raises(pm.PapermillExecutionError) as e:
        _run(
            tmp_path,
            USER_ID="u-nb",
            PROVIDER="generic",
            ADDRESS=address,
            MODE="headless",
            DEVSERVER=True,
            LOGIN_FROM_ENV="NB_LOGIN",
        )
    assert "auth_failed" in str(e.value)


def test_R1_notebook_widget_mode_renders_the_panel(settings, mailserver, devserver_env, tmp_path):
    out = _run(tmp_path, USER_ID="u-nb", MODE="widget", DEVSERVER=True)
    text = out.read_text()
    assert (
        "application/vnd.jupyter.widget-view+json" in text and '"output_type": "error"' not in text
    )


def test_R1_widget_on_devserver_with_stand_in_approval(settings, mailserver, devserver_env):
    import dataclasses

    from mailops.dev.stand_ins import stand_ins_for

    settings = dataclasses.replace(settings, devserver_dir=mailserver.root)
    address, _pw = mailserver.new_user()
    panel = ConnectPanel(
        settings,
        user_id="u-1",
        provider="microsoft",
        address=address,
        devserver=True,
        sign_in_for=stand_ins_for(settings),
        timeout=20,
    )
    first = panel.on_connect()
    assert first.ok, first.line
    assert panel.on_reconnect().ok
    g, _ = mailserver.new_user()
    panel.provider.value, panel.address.value = "google", g
    assert panel.on_connect().ok


def test_R1_notebook_headless_google_with_devserver_approve(
    settings, mailserver, devserver_env, tmp_path
):
    address, _pw = mailserver.new_user()
    _run(
        tmp_path,
        USER_ID="u-nb",
        PROVIDER="google",
        ADDRESS=address,
        MODE="headless",
        DEVSERVER=True,
        DEVSERVER_APPROVE=True,
        TIMEOUT=30.0,
    )
    with Store(settings.db) as s:
        [mb] = mailboxes.all_mailboxes(s, owner="u-nb")
    assert mb.provider == "google" and mb.state == "connected"
