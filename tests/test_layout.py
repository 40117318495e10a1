"""The house order (issue 9): product modules never import the dev wing (``mailops/dev/``).

The one door into the wing is the CLI's command registry, which loads ``mailops.dev.cli`` by
name like every command module; the wing then plugs its sign-in stand-ins into
``mailops.cli.HOOKS`` (``mailbox connect --devserver --approve``). Notebooks, shells beside
the package, may import it (``connect_mailbox.ipynb`` with ``DEVSERVER_APPROVE``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mailops"
WING = PACKAGE / "dev"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, package: str | None = None) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in PATH, relative ones resolved
    against PACKAGE (by default the package PATH lies in)."""
    tree = ast.parse(path.read_text(), str(path))
    if package is None:
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    out: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, id(node) in top_level) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names] + [base]
            out.extend((n, id(node) in top_level) for n in names)
    return out


def _wing(name: str) -> bool:
    return name == "mailops.dev" or name.startswith("mailops.dev.")


PRODUCT = sorted(p for p in PACKAGE.rglob("*.py") if WING not in p.parents)


@pytest.mark.parametrize("path", PRODUCT, ids=[str(p.relative_to(ROOT)) for p in PRODUCT])
def test_product_module_never_imports_the_dev_wing(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    wing = sorted({name for name, _top in _imports(path) if _wing(name)})
    assert not wing, f"{rel} imports the dev wing: {wing}"


def test_the_registry_names_the_wing_once() -> None:
    """cli/__init__.py loads the wing's commands by name, from its module list only."""
    from mailops.cli import COMMAND_MODULES

    assert [m for m in COMMAND_MODULES if _wing(m)] == ["mailops.dev.cli"]
    text = (PACKAGE / "cli" / "__init__.py").read_text()
    assert text.count("mailops.dev") == 1


def test_layout_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import mailops.dev\ndef f():\n    from .dev import devserver\n"
        "    from mailops.dev.demo import seed\n"
    )
    found = {(n, top) for n, top in _imports(bad, package="mailops") if _wing(n)}
    assert {("mailops.dev", True), ("mailops.dev.devserver", False)} <= found
    assert ("mailops.dev.demo.seed", False) in found


def test_importing_the_product_loads_nothing_of_the_wing() -> None:
    """Also what the AST cannot see (importlib): import every product module in a fresh
    process and look at sys.modules. The CLI loads its registry (the wing's commands among
    them), so it is left out."""
    names = [
        _module_name(p)
        for p in PRODUCT
        if not str(p.relative_to(ROOT)).startswith("mailops/cli/") and p.name != "__main__.py"
    ]
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print(sorted(m for m in sys.modules if m == 'mailops.dev' or m.startswith('mailops.dev.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
