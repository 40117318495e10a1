"""R1/E2/A1 widgets in a real JupyterLab on 127.0.0.1, driven by headless Chromium (Debian's,
through Playwright: no browser download): each widget notebook is opened under the mailops
kernel, run, and one flow clicked through; the test checks what the screen shows.

Slow (JupyterLab and three kernels start): ~40-60 s. Set ``MAILOPS_SCREENSHOT_DIR`` to
keep the screenshots."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import papermill as pm
import pytest
from send_support import add_deal, make_party

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.notebook]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAPTOP = {"width": 1366, "height": 900}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kernel_installed() -> bool:
    from jupyter_client.kernelspec import KernelSpecManager

    return "mailops" in KernelSpecManager().find_kernel_specs()


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/install-system-deps.sh)")
    if not _kernel_installed():
        pytest.skip("the mailops kernel is not installed (make install)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def lab(settings, store, mailserver, password_mailbox, tmp_path) -> Iterator[dict[str, Any]]:
    """A store with a sales user, his connected mailbox, customers and deals; the widget
    notebooks parameterized for them in a folder; JupyterLab serving that folder."""
    from mailops.sync import sync_mailbox

    if not (Path(mailserver.root) / "endpoints.json").exists():
        mailserver.state.save()  # what `mailops devserver start` writes for the product
    party = make_party(store, settings, mailserver, password_mailbox)
    party.customer("c-1", "Carla Buyer")
    party.customer("c-2", "Carl Cobuyer")
    party.customer("c-3", "Dora Other")
    add_deal(store, "d-1", ["c-1", "c-2"], unit="A-12", project="Harbour View")
    add_deal(store, "d-2", ["c-3"], unit="B-1", project="Linden Park")
    msg = EmailMessage()
    msg["From"] = f"Carla Buyer <{party.customers['c-1'][0]}>"
    msg["To"] = party.mailbox.address
    msg["Subject"] = "Is the balcony south facing?"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="customer.example")
    msg.set_content("Hello,\nis the balcony of A-12 south facing?\nCarla\n")
    mailserver.deliver(party.customers["c-1"][0], party.mailbox.address, msg.as_bytes())
    assert sync_mailbox(store, settings, party.mailbox.id).status == "ok"
    store.execute(
        "INSERT INTO users (id, email, name, role) VALUES ('u-new', 'new@corp.test', 'Nia New', 'sales')"
    )
    store.close()
    new_address, new_password = mailserver.new_user()

    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for name, params in {
        "connect_mailbox": {"USER_ID": "u-new", "PROVIDER": "generic", "ADDRESS": new_address},
        "compose_email": {"USER_ID": "user-1", "CUSTOMER_ID": "c-1"},
        "customer_activity": {"USER_ID": "user-1", "CUSTOMER": "c-1", "SYNC": False},
    }.items():
        pm.execute_notebook(
            str(ROOT / "notebooks" / f"{name}.ipynb"),
            str(nbdir / f"{name}.ipynb"),
            parameters=params,
            prepare_only=True,
            progress_bar=False,
            log_output=False,
        )
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        MAILOPS_DB=str(Path(settings.db).resolve()),
        MAILOPS_SECRETS_DIR=str(settings.secrets_path.resolve()),
        MAILOPS_DEVSERVER_DIR=mailserver.root,
        MAILOPS_KEYRING="0",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "jupyter-workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "jupyter-settings"),
    )
    settings_dir = tmp_path / "jupyter-settings" / "@jupyterlab" / "apputils-extension"
    settings_dir.mkdir(parents=True)
    (settings_dir / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
            f"--port={port}", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={nbdir}", "--allow-root",
            "--ServerApp.open_browser=False", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        "JupyterLab did not start: " + (tmp_path / "lab.log").read_text()[-2000:]
                    )
                time.sleep(0.5)
        yield {
            "base": base,
            "token": token,
            "party": party,
            "new_address": new_address,
            "new_password": new_password,
            "settings": settings,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("MAILOPS_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _open_and_run(page: Any, lab: dict[str, Any], name: str) -> None:
    page.goto(f"{lab['base']}/lab/tree/{name}.ipynb?token={lab['token']}")
    page.wait_for_selector(".jp-NotebookPanel:visible .jp-Cell", timeout=60_000)
    page.wait_for_selector(f".lm-TabBar-tab.lm-mod-current:has-text('{name}.ipynb')")
    # the notebook declares the mailops kernel: JupyterLab starts it without asking
    page.locator("#jp-main-statusbar").get_by_text("Python (mailops) | Idle").wait_for(
        timeout=90_000
    )
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.locator(".jp-NotebookPanel:visible .jp-InputPrompt", has_text="[1]").first.wait_for(
        timeout=60_000
    )


def _button(area: Any, label: str) -> Any:
    """The widget button labelled exactly LABEL (its icon aside)."""
    return area.locator("button").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")).first


def _dropdown(area: Any, label: str) -> Any:
    """The <select> of the dropdown widget whose label is exactly LABEL."""
    exact = area.page.locator("label", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    return area.locator(".widget-dropdown").filter(has=exact).locator("select").last


def test_R1_E2_A1_widget_notebooks_in_jupyterlab(lab, playwright_browser, tmp_path) -> None:
    shots = _shots(tmp_path)
    context = playwright_browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    try:
        # -- connect: generic form, the demo button, connect ------------------------------
        _open_and_run(page, lab, "connect_mailbox")
        panel = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output .widget-vbox").filter(
            has_text="Connect a mailbox for"
        )
        panel.wait_for(timeout=90_000)
        for field in ("IMAP port", "IMAP security", "SMTP port", "SMTP security"):
            assert panel.get_by_text(field, exact=True).first.is_visible(), field
        assert panel.get_by_text("Demo mail server running here").is_visible()
        _button(panel, "Use the demo server").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.widget-text input')].some(i => i.value === '127.0.0.1')"
        )
        panel.locator("input[type=password]").fill(lab["new_password"])
        _button(panel, "Connect").click()
        done = panel.get_by_text(f"connected {lab['new_address']}: IMAP and SMTP work")
        done.wait_for(timeout=60_000)
        assert "None" not in panel.locator("table").first.inner_text()
        page.screenshot(path=str(shots / "lab_connect_mailbox.png"), full_page=False)

        # -- compose: To prefilled, the customer's deals only, preview, send ----------------
        _open_and_run(page, lab, "compose_email")
        form = (
            page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output .widget-vbox")
            .filter(has_text="Subject")
            .first
        )
        form.wait_for(timeout=90_000)
        to = _dropdown(form, "To")
        carla = lab["party"].customers["c-1"][0]
        shown = to.evaluate("s => s.options[s.selectedIndex].text").replace("\xa0", " ")
        assert shown == f"Carla Buyer <{carla}>"
        assert to.bounding_box()["width"] >= 500  # addresses fit
        deal = _dropdown(form, "Deal")
        assert [
            t.replace("\xa0", " ") for t in deal.evaluate("s => [...s.options].map(o => o.text)")
        ] == [
            "(none)",
            "Harbour View A-12 (d-1)",
        ]
        form.locator(".widget-text").filter(has_text="Subject").locator("input").fill("Balcony")
        form.locator("textarea").fill("Dear Carla,\nyes, the balcony faces south.\n")
        _button(form, "Preview").click()
        form.get_by_text("yes, the balcony faces south.").first.wait_for(timeout=30_000)
        assert "None" not in form.inner_text()
        _button(form, "Send").click()
        form.get_by_text("Sent:").wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "lab_compose_email.png"), full_page=False)
        assert lab["party"].inbox("c-1")[-1]["Subject"] == "Balcony"

        # -- a customer's timeline: open the email, reply opens the compose form -----------
        _open_and_run(page, lab, "customer_activity")
        out = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output .widget-vbox").first
        out.get_by_text("Is the balcony south facing?").first.wait_for(timeout=90_000)
        pick = _dropdown(out, "Message")
        labels = pick.evaluate("s => [...s.options].map(o => o.text)")
        (index,) = [i for i, t in enumerate(labels) if "balcony south" in t.replace("\xa0", " ")]
        pick.select_option(index=index)
        _button(out, "Open").click()
        out.get_by_text("is the balcony of A-12 south facing?").first.wait_for(timeout=30_000)
        _button(out, "Reply").click()
        reply_to = _dropdown(out, "To")
        reply_to.wait_for(timeout=30_000)
        shown = reply_to.evaluate("s => s.options[s.selectedIndex].text").replace("\xa0", " ")
        assert shown == f"Carla Buyer <{carla}>"  # the reply's To is the customer, prefilled
        out.locator(".widget-textarea textarea").last.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "lab_customer_activity.png"), full_page=False)
        assert "Traceback" not in page.locator(".jp-NotebookPanel:visible").inner_text()
    except Exception:
        page.screenshot(path=str(shots / "lab_failure.png"), full_page=False)
        raise
    finally:
        context.close()
