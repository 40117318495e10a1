"""R5: every notebook runs headless under papermill on an empty store and on a store whose
first sync is under way (a run row open, nothing finished), and says what is missing
instead of failing."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import nbformat
import pytest
from report_support import notebooks_path, scraps

from mailops.notebook import list_notebooks, run_report
from mailops.reports import Scope, open_reader, readiness
from mailops.store import Store
from mailops.store import sync as sync_store

pytestmark = pytest.mark.notebook

NOTEBOOKS = sorted(p.stem for p in notebooks_path().glob("*.ipynb"))

#: What each notebook must say is missing, per state.
EXPECTED = {
    "empty": {
        "sync_audit": ["no_mailboxes"],
        "activity_report": ["no_customers", "no_mailboxes"],
        "problematic_accounts": ["no_mailboxes"],
        "scheduled_sync": ["no_mailboxes"],
        "compose_email": ["unknown_user", "no_connected_mailbox", "no_customers"],
        "connect_mailbox": ["unknown_user"],
        "customer_activity": ["unknown_user", "no_customers"],
        "followups": ["no_customers", "no_mailboxes"],
    },
    "first_sync": {
        "sync_audit": ["first_sync_running"],
        "activity_report": ["first_sync_running"],
        "problematic_accounts": [],
        "scheduled_sync": [],  # it syncs the mailbox itself; the other run is a note
        "compose_email": [],
        "connect_mailbox": [],
        "customer_activity": [],
        "followups": ["first_sync_running"],
    },
}


def test_R5_every_notebook_is_covered():
    assert set(NOTEBOOKS) == set(EXPECTED["empty"]) == set(EXPECTED["first_sync"])
    assert {i.name for i in list_notebooks()} == set(NOTEBOOKS)


def _first_sync_under_way(store: Store, settings, mailserver) -> datetime:
    """The directory imported, a mailbox connected (a real devserver account), and its first
    sync started in another process: the run row open, a batch of ledger rows committed."""
    from conftest import add_password_mailbox

    store.execute(
        "INSERT INTO users (id, email, role) VALUES ('u-anna', 'anna@corp.test', 'sales')"
    )
    store.execute(
        "INSERT INTO customers (id, name, owner_user_id) VALUES ('c1', 'Carla', 'u-anna')"
    )
    store.execute(
        "INSERT INTO customer_addresses (customer_id, address, is_primary, valid_from)"
        " VALUES ('c1', 'carla@buyer.test', TRUE, '1970-01-01')"
    )
    address, password = mailserver.new_user()
    mb = add_password_mailbox(store, settings, mailserver, address, password, owner="u-anna")
    started = datetime.utcnow().replace(microsecond=0) - timedelta(minutes=3)
    [run_id] = sync_store.allocate_run_ids(store, 1)
    sync_store.insert_run(store, run_id, mb.id, "manual", started)
    store.execute(
        "INSERT INTO audit_ledger (run_id, mailbox_id, folder, uidvalidity, uid, message_id,"
        " decision, reason) SELECT ?, ?, 'INBOX', 1, i, '<m' || i || '@x>', 'skipped',"
        " 'no_customer' FROM range(1, 43) t(i)",
        [run_id, mb.id],
    )
    return started


@pytest.fixture(params=["empty", "first_sync"])
def young_store(request, store, settings, tmp_path):
    if request.param == "first_sync":
        _first_sync_under_way(store, settings, request.getfixturevalue("mailserver"))
    store.close()  # the kernel is another process
    run_settings = replace(
        settings, reports_dir=str(tmp_path / "reports"), notebooks_dir=str(notebooks_path())
    )
    return request.param, run_settings


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_R5_notebook_runs_on_a_young_store_and_says_what_is_missing(young_store, name):
    state, settings = young_store
    res = run_report(name, {}, settings=settings)  # interactive ones build their panels
    assert res.html_path.exists()
    assert scraps(res.ipynb_path)["missing"] == EXPECTED[state][name]
    text = _outputs(res.ipynb_path)
    assert "Traceback" not in text and "Error" not in text.replace("IT guidance", "")
    if state == "first_sync" and name in ("sync_audit", "activity_report"):
        assert "under way" in text and "42 message(s) examined so far" in text


def _outputs(path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for v in out.get("data", {}).values())
            if out.get("output_type") == "error":
                parts.append("Traceback " + out.get("ename", ""))
    return "\n".join(parts)


def test_R5_readiness_names_the_running_first_sync_and_respects_the_viewer(
    store, settings, mailserver
):
    started = _first_sync_under_way(store, settings, mailserver)
    store.execute("INSERT INTO users (id, email, role) VALUES ('u-sam', 'sam@corp.test', 'sales')")
    store.close()
    reader = open_reader(settings.db)
    try:
        ready = readiness.check(Scope(reader), needs=readiness.NEEDS)
        assert ready.codes == ["first_sync_running"]
        assert f"since {started:%Y-%m-%d %H:%M} UTC" in repr(ready)
        assert ready._repr_markdown_().startswith("**Not there yet:**")
        # a sales person without a mailbox learns that he has none, not about Anna's sync
        sam = readiness.check(Scope.open("u-sam", store=reader), needs=readiness.NEEDS)
        assert sam.codes == ["no_mailboxes"] and "for u-sam" in repr(sam)
        assert "under way" not in repr(sam)
    finally:
        reader.close()
