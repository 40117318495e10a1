"""Issue 14 item 6: README's performance figures are generated from the benchmark's output
(bench/results/latest.json by bench/readme.py), never typed by hand. Checks the markers, the
tables' shape and that the block is what the results give -- not the figures themselves."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _bench_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme = _bench_module("readme")


def _block(text: str) -> str:
    return text[text.index(readme.BEGIN) + len(readme.BEGIN) : text.index(readme.END)]


def _tables(block: str) -> list[list[list[str]]]:
    """Markdown tables of BLOCK as rows of cells (separator rows dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in block.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_bench_readme_markers_once_inside_the_performance_section():
    text = README.read_text()
    assert text.count(readme.BEGIN) == 1 and text.count(readme.END) == 1
    start = text.index("<!-- section:performance -->")
    end = text.index("<!-- /section:performance -->")
    assert start < text.index(readme.BEGIN) < text.index(readme.END) < end


def test_bench_readme_block_has_the_sync_and_report_tables():
    tables = _tables(_block(README.read_text()))
    assert len(tables) == 3, "acceptance table, sync detail, report queries"
    summary, detail, reports = tables
    assert summary[0][:5] == ["case", "mailops s", "mbsync s", "imap-tools s", "IMAPClient floor s"]
    assert len(summary) == 1 + 4  # full 10%, full 100%, no-change, many mailboxes
    assert all(len(row) == len(summary[0]) for row in summary)
    assert {row[1] for row in detail[1:]} >= {"mailops", "mbsync", "imap-tools"}
    assert reports[0][0] == "report query" and len(reports[0]) >= 3
    assert any(row[0].startswith("whole activity_report notebook") for row in reports)


def test_bench_readme_block_is_what_the_latest_results_give():
    result = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    assert _block(README.read_text()).strip() == readme.render(result).strip(), (
        "README.md's figures are stale: run python bench/readme.py"
    )


def test_bench_readme_update_keeps_the_text_around_and_is_idempotent():
    text = "# x\n\nbefore\n" + readme.BEGIN + "\nold figures\n" + readme.END + "\nafter\n"
    once = readme.update(text, "| a | b |\n|---|---|\n| 1 | 2 |")
    assert once.startswith("# x\n\nbefore\n" + readme.BEGIN + "\n| a | b |")
    assert once.endswith(readme.END + "\nafter\n") and "old figures" not in once
    assert readme.update(once, "| a | b |\n|---|---|\n| 1 | 2 |") == once
    with pytest.raises(ValueError, match="exactly one"):
        readme.update("no markers here", "x")


def test_make_bench_is_the_one_entry_point():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    assert "bench/run.py" in recipe and "system-deps" in recipe.splitlines()[0]
    peers = (ROOT / "scripts" / "debian-packages.txt").read_text()
    assert re.search(r"^isync\s", peers, re.M), "mbsync comes from the Debian package isync"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    bench_extra = pyproject["project"]["optional-dependencies"]["bench"]
    assert any(r.startswith("imap-tools") for r in bench_extra)
