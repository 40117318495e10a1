"""P1: SQL lives in ``mailops/store/`` (report queries in ``mailops/reports/``), and every
query there that reads messages, the ledger, runs, activities, the outbox, drafts or
notifications asks the one permission check, ``permissions.visible``. These tests read the
source: they fail when a side path appears."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mailops"
SQL_HOMES = ("store", "reports")
# the dev wing (demo and test scaffolding, never imported by product code) keeps its own
# few inspection queries: they print what the demo did, as the scheduler would see it
DEV_WING = "dev"

# an SQL statement as written in this code base: upper-case keywords
_SQL = re.compile(
    r"^\s*\(?\s*(SELECT\s.+\sFROM\s|SELECT\s+(count|nextval|[a-z_]+\()|INSERT\s+INTO\s|"
    r"UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s*\(|CREATE\s+(TABLE|INDEX|SEQUENCE)\s|"
    r"ALTER\s+TABLE\s|DROP\s+TABLE\s)",
    re.S,
)


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            out.append((node.lineno, text))
    return out


def _is_sql(text: str) -> bool:
    return bool(_SQL.match(text))


def sql_outside_homes() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in SQL_HOMES or rel.parts[0] == DEV_WING:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for line, text in _strings(tree):
            if _is_sql(text):
                found.append(f"mailops/{rel}:{line}: {' '.join(text.split())[:70]}")
    return found


@pytest.mark.parametrize(
    "text, is_sql",
    [
        ("SELECT id FROM customers", True),
        ("SELECT count(*) FROM x", True),
        (" INSERT INTO outbox (a) VALUES (?)", True),
        ("UPDATE outbox SET error_code = ? WHERE id = ?", True),
        ("DELETE FROM drafts WHERE id = ?", True),
        ("WITH seen AS (SELECT 1)", True),
        ("Select the folder to sync", False),
        ("Drop every account from the cached MSAL state", False),
        ("create an OAuth 'Desktop app' client", False),
    ],
)
def test_P1_the_sql_detector(text: str, is_sql: bool) -> None:
    assert _is_sql(text) is is_sql


def test_P1_sql_lives_in_store_and_reports_only() -> None:
    found = sql_outside_homes()
    assert not found, "SQL outside mailops/store and mailops/reports:\n" + "\n".join(found)


def test_P1_the_check_catches_a_new_side_path(tmp_path: Path) -> None:
    """The scan must be able to fail: a module with a query is found."""
    tree = ast.parse('q = store.rows(\n    "SELECT subject FROM messages WHERE id = ?", [1])\n')
    assert [t for _, t in _strings(tree) if _is_sql(t)]


# -- every read of the guarded tables asks permissions.visible ---------------------------
GUARDED = ("messages", "audit_ledger", "activities", "outbox", "notifications", "drafts")
GUARDED_RE = re.compile(r"\b(FROM|JOIN)\s+(" + "|".join(GUARDED) + r")\b")

# functions of the engine (sync, send, erasure): they read to write, never to show anyone
ENGINE = {
    "store/messages.py": {
        "existing_ids",
        "save_messages",
        "raw_bytes_unchecked",
        "unlink_activity",
        "relink_activity",
        "record_message",
        "_message_access",  # is the check itself, composed of visible() clauses
        "resolve_identities",  # migration 0020's re-keying (S13)
        "rekey_identities",
    },
    "store/timeline.py": {
        "message_exists",
        "thread_of",
    },  # does an id exist (nothing of it is shown)
    "store/sync.py": {"mark_stale_runs", "first_stored", "ledger_place"},  # facts of a place
    # or message the caller already reached through the check
    "store/erasure.py": {"plan", "remove", "_count", "customer_addresses"},  # G1 (admins)
    "store/notifications.py": {"notify_new_inbound"},  # the sync writing them
    # F1's log joins drafts only for the outcome; its rows are scoped by the caller's viewer
    "store/followups.py": {
        "pending_suggestions",
        "decided_pending",
        "outcomes_by_message",
        "suggestion_frame",
    },
    "store/outbox.py": {
        "get_item",
        "items",
        "enqueue",
        "get_draft",
        "delete_draft",
        "mark_draft_sent",
        "insert_draft",
        "update_draft",
        "sent_with_subject",  # the demo's "sent already?" (no row is shown)
    },
}


def _functions(path: Path) -> list[ast.FunctionDef]:
    tree = ast.parse(path.read_text(), str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]


def _reads_guarded(fn: ast.FunctionDef) -> bool:
    return any(GUARDED_RE.search(t) and "SELECT" in t for _, t in _strings(fn))


def _called(fn: ast.FunctionDef) -> set[str]:
    return {
        n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
        for n in ast.walk(fn)
        if isinstance(n, ast.Call)
    }


def _askers(fns: list[ast.FunctionDef]) -> set[str]:
    """Functions that call ``visible`` (or ``Scope.access``), directly or through another
    function of the same module."""
    calls = {f.name: _called(f) for f in fns}
    # Viewer.mailbox_clause / activity_clause are thin wrappers of visible() (row scope only);
    # permissions.activity_access is visible() for the usual activities/customers/mailboxes join
    asking = {
        name
        for name, c in calls.items()
        if c & {"visible", "access", "mailbox_clause", "activity_clause", "activity_access"}
    }
    grew = True
    while grew:
        more = {name for name, c in calls.items() if c & asking} - asking
        asking |= more
        grew = bool(more)
    return asking


def test_P1_every_read_of_mail_asks_the_one_check() -> None:
    missing = []
    for home in SQL_HOMES:
        for path in sorted((PACKAGE / home).rglob("*.py")):
            rel = str(path.relative_to(PACKAGE))
            if rel.endswith("migrations.py"):
                continue
            allowed = ENGINE.get(rel, set())
            fns = _functions(path)
            asking = _askers(fns)
            for fn in fns:
                if fn.name in allowed or not _reads_guarded(fn):
                    continue
                if fn.name not in asking:
                    missing.append(f"mailops/{rel}:{fn.lineno} {fn.name}")
    assert not missing, "reads of mail that skip permissions.visible:\n" + "\n".join(missing)


def test_P1_no_module_rebuilds_the_rule() -> None:
    """The role names are decided in permissions.py only (the compose widget used to
    re-implement them in SQL: a manager saw every customer)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if str(rel) in ("permissions.py", "store/migrations.py", "directory.py"):
            continue
        text = path.read_text()
        if re.search(r"role\s+IN\s*\(", text) or re.search(
            r"role\s*=\s*'(admin|manager|it)'", text
        ):
            offenders.append(str(rel))
    assert not offenders, offenders
