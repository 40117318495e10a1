"""Issue 14, Build 1: ``mailops sync`` imports nothing it does not use.

Each check runs the real CLI in a fresh process under ``python -X importtime`` against the
devserver and fails when a heavy module shows up in what it imported: pandas (DuckDB's
Python client imports it when it binds a parameter, so the store writes its parameters as
literals), pyarrow (registering an Arrow table makes DuckDB import pandas too), numpy,
matplotlib, nbconvert, nbformat, ipywidgets, jinja2, IPython, or any ``mailops.reports``
module (the other command modules import pandas; ``mailops sync`` loads only its own).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from sync_support import add_customer, append, make_msg

import mailops

HEAVY = (
    "pandas",
    "pyarrow",
    "numpy",
    "matplotlib",
    "nbconvert",
    "nbformat",
    "ipywidgets",
    "jinja2",
    "IPython",
    "mailops.reports",
)
_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$")


def imported(stderr: str) -> set[str]:
    """Module names from ``-X importtime`` output."""
    return {m.group(1) for m in map(_LINE.match, stderr.splitlines()) if m}


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def importtime(*args: str, cwd: Path) -> tuple[int, str, set[str]]:
    """``python -X importtime -m mailops.cli ARGS`` in a fresh process (the mailops this
    test imported, run from CWD): (rc, stdout, modules)."""
    root = str(Path(mailops.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mailops.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=path),
    )
    return done.returncode, done.stdout, imported(done.stderr)


def _with_attachment(frm: str, to: str) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, to, "the plan"
    m["Message-ID"] = make_msgid(domain="cust.test")
    m["Date"] = "Tue, 01 Dec 2026 09:00:00 +0000"
    m.set_content("Please find the floor plan attached.\n")
    m.add_attachment(b"%PDF-1.4 plan" * 50, maintype="application", subtype="pdf", filename="p.pdf")
    return bytes(m)


def test_importtime_parser_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check below can fail: the same parser finds pandas where it is imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import json, pandas"],
        capture_output=True,
        cwd=tmp_path,
        text=True,
        timeout=120,
    )
    mods = imported(done.stderr)
    assert "json" in mods
    assert "pandas" in heavy(mods) and "numpy" in heavy(mods)


def test_sync_help_imports_nothing_heavy(tmp_path: Path) -> None:
    rc, out, mods = importtime("sync", "--help", cwd=tmp_path)
    assert rc == 0 and "Usage: mailops sync" in out
    assert "mailops.cli.sync" in mods
    assert heavy(mods) == []


def test_sync_path_imports_nothing_heavy(
    store, settings, mailserver, password_mailbox, tmp_path: Path
) -> None:
    """A first sync (messages, raw bytes, an attachment, places, activities, notifications,
    ledger) and then a no-change resync, each a fresh ``mailops sync``: nothing heavy."""
    mb, pw = password_mailbox()
    add_customer(store, "c1", "buyer@cust.test")
    append(
        mailserver,
        mb.address,
        pw,
        [
            make_msg("buyer@cust.test", mb.address, subject="viewing tomorrow?"),
            make_msg("news@shop.test", mb.address, subject="deals"),
            _with_attachment("buyer@cust.test", mb.address),
            *[make_msg(f"n{i}@other.test", mb.address, subject=f"n{i}") for i in range(40)],
        ],
    )
    store.close()
    rc, out, mods = importtime("--db", settings.db, "sync", "--json", cwd=tmp_path)
    assert rc == 0, out
    first = json.loads(out)["summary"]
    assert (first["examined"], first["stored"]) == (43, 2)
    assert "mailops.sync" in mods
    assert heavy(mods) == []

    rc, out, mods = importtime("--db", settings.db, "sync", "--json", cwd=tmp_path)
    assert rc == 0, out
    assert json.loads(out)["summary"]["examined"] == 0
    assert heavy(mods) == []
